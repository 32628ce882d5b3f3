// Plain GEMM kernels, one thread per output: the emulated backend's GEMMs (gemm_emulated.cc) and, on
// the GPU, the reference that the tests hold cuBLASLt to. Same arguments and rules as gemm.h.
#pragma once

#include <cstdint>

#include "backends/cuda/portable.h"

namespace fq::FQ_CUDA_NS {

void reference_gemm_f16(const __half* x, const __half* w, const __half* bias, __half* y, int64_t m, int64_t n,
                        int64_t k);
void reference_gemm_s8(const int8_t* a, const int8_t* b, int32_t* acc, int64_t m, int64_t n, int64_t k);
void reference_gemm_e4m3(const uint8_t* x, const uint8_t* w, const float* x_scale, const float* w_scale,
                         const __half* bias, __half* y, int64_t m, int64_t n, int64_t k);

// The argument rules of gemm.h (cuBLASLt's layout restrictions), checked by both backends so that the
// emulation rejects what the GPU would. `function` names the caller in the message.
enum class GemmKind { f16, s8, e4m3 };
void check_gemm_arguments(const char* function, GemmKind kind, const void* x, const void* w, const void* y,
                          int64_t m, int64_t n, int64_t k);

}  // namespace fq::FQ_CUDA_NS
