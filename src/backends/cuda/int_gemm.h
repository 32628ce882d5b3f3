// The integer GEMM of a quantized Linear on the GPU (int_gemm.cu), with the rescale fused:
//   out[r, c] = half(float(Σ_j codes[r, j] · weights[c, j]) · (step_r · scale_c) + bias_c)
// computed as fmaf(float(sum), step_r · scale_c, bias_c) rounded to f16 once. The sums are exact int32
// (tensor-core mma.sync, mma.h). All pointers are device memory, codes and weights 16-byte aligned;
// k (the flattened input width) is a multiple of 64. steps: one per row when step_per_row, else one; weight_scales: one
// per output column when scale_per_column, else one; bias: n values, or nullptr for none.
// An epilogue (epilogue.h) applies an activation to the f32 value and may add it to an f32 residual instead of
// writing out.
//
// Kernels: rows ≤ 16 (decoding) take one that splits k over the warps of a block (mma.sync); more rows take
// 128×256 tiles on Hopper's wgmma when the weights are int8 and the GPU is an sm_90 (H100, H200), else
// 128×128 tiles on mma.sync. The environment variable FQ_CUDA_WGMMA=0 keeps automatic to mma.sync, =1 picks
// wgmma on the emulator too. `kernel` forces one (for tests and benchmarks).
#pragma once

#include <cstdint>

#include "backends/cuda/epilogue.h"
#include "backends/cuda/portable.h"

namespace fq::FQ_CUDA_NS {

enum class IntGemmKernel {
  automatic,
  mma_sync,  // the decode kernel for rows ≤ 16, else the 128×128 tiles
  wgmma,     // 128×256 tiles on wgmma, whatever the rows; int8 weights, sm_90 GPUs and the emulator only
};

// Whether IntGemmKernel::wgmma can run here.
bool wgmma_supported();
// What IntGemmKernel::automatic runs for `rows` rows of codes and weights of `weight_bits` (8 or 4).
IntGemmKernel automatic_int_gemm_kernel(int64_t rows, int weight_bits);

// codes i8 [rows, k]; weights [n, k]: i8 codes (weight_bits 8) or packed int4 codes (weight_bits 4: two
// per byte, the even column in the low nibble, as fq::pack_int4), unpacked to int8 inside the kernel
// so that the weights cost half the memory and bandwidth (W4A8).
void int_gemm_rescale(const int8_t* codes, int64_t rows, int64_t k, const void* weights, int weight_bits, int64_t n,
                      const float* steps, bool step_per_row, const float* weight_scales, bool scale_per_column,
                      const float* bias, __half* out, const Epilogue& epilogue = {},
                      IntGemmKernel kernel = IntGemmKernel::automatic);

// Both operands packed int4 codes (codes [rows, k], weights [n, k], as fq::pack_int4) on the native
// int4 mma of sm_80/sm_89 (A100, L40, RTX 4090); Hopper runs that instruction emulated and slowly.
void int4_gemm_s4mma(const uint8_t* codes, int64_t rows, int64_t k, const uint8_t* weights, int64_t n,
                     const float* steps, bool step_per_row, const float* weight_scales, bool scale_per_column,
                     const float* bias, __half* out, const Epilogue& epilogue = {});

// One warp runs one mma of mma.h, for its test: d[16, 8] = a[16, K] · b[8, K]ᵀ + c (int32, row-major),
// a and b rows of 32 bytes: K = 32 int8 codes (bits 8) or 64 packed int4 codes (bits 4).
void mma_tile(int bits, const uint8_t* a, const uint8_t* b, const int32_t* c, int32_t* d);

// One warpgroup runs one wgmma of wgmma.h, for its test: d[64, 256] = a[64, 32] · b[256, 32]ᵀ + c (int8
// codes, int32 sums, all row-major), the operands staged in shared memory in the layout wgmma.h documents.
// Needs wgmma_supported().
void wgmma_tile(const int8_t* a, const int8_t* b, const int32_t* c, int32_t* d);

}  // namespace fq::FQ_CUDA_NS
