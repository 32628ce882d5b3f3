// Dense GEMMs of the CUDA backend, y = x · Wᵀ as in a Linear layer: on the GPU through cuBLASLt
// (gemm_cuda.cc), emulated on the plain kernels of reference_gemm.cu (gemm_emulated.cc).
//
// Device pointers, row-major: x [m,k], w [n,k], y [m,n]. Every product accumulates in f32 (int32 for
// int8). Bias vectors are f16: cuBLASLt's bias epilogue reads the bias in the output's type when the
// output is f16 (for the f16 and the FP8 GEMM alike). Shapes outside cuBLASLt's layout rules (below)
// and null or misaligned pointers throw fq::Error, in both backends alike.
#pragma once

#include <cstdint>

#include "backends/cuda/portable.h"

namespace fq::FQ_CUDA_NS {

// y [m,n] = x [m,k] · w [n,k]ᵀ + bias [n] (bias may be null). Any m, n, k >= 1.
void gemm_f16(const __half* x, const __half* w, const __half* bias, __half* y, int64_t m, int64_t n, int64_t k);

// acc [m,n] = a [m,k] · b [n,k]ᵀ in int32 (cuBLASLt IMMA). n and k multiples of 4, k <= 131071 so that the
// int32 sum cannot overflow; pointers 4-byte aligned.
void gemm_s8(const int8_t* a, const int8_t* b, int32_t* acc, int64_t m, int64_t n, int64_t k);

// Whether gemm_e4m3 runs here (compute capability 8.9 or above; always when emulated).
bool fp8_supported();

// y [m,n] = (x_scale · w_scale) · x [m,k] · w [n,k]ᵀ + bias [n], with x and w FP8 e4m3 bytes and
// per-tensor scales at device pointers (bias may be null). n and k multiples of 16, x and w 16-byte aligned.
void gemm_e4m3(const uint8_t* x, const uint8_t* w, const float* x_scale, const float* w_scale, const __half* bias,
               __half* y, int64_t m, int64_t n, int64_t k);

// out[i] = e4m3(x[i] / *scale): round to nearest even, saturated to ±448 (NaN stays NaN). x 16-byte and
// out 8-byte aligned. One kernel (reference_gemm.cu) for both backends.
void quantize_e4m3(const __half* x, int64_t count, const float* scale, uint8_t* out);

}  // namespace fq::FQ_CUDA_NS
