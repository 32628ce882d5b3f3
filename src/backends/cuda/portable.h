// The subset of CUDA C++ that the kernels of src/backends/cuda are written in, so that one source
// compiles twice: by nvcc for the GPU (namespace fq::cuda), and by the host compiler against the CPU
// emulator (namespace fq::cuda_emu, emulator.h), which is how the kernels are tested on machines
// without a GPU.
//
// Kernels may use: threadIdx/blockIdx/blockDim/gridDim, __syncthreads, __syncwarp, static __shared__
// arrays, FQ_DYNAMIC_SHARED, __shfl_sync/__shfl_xor_sync/__shfl_down_sync (full-warp mask, blocks a
// multiple of 32 threads), __ballot_sync, atomicAdd/atomicMax/atomicMin/atomicCAS on 32-bit values,
// __half with __half2float/__float2half_rn, the vector types (int4, uint4, float4, float2, uint2, char4),
// __ldg, rsqrtf, __expf, __float2int_rn and the <cmath> functions; the mma.sync wrappers of mma.h; the
// wgmma, cp.async and fence wrappers of wgmma.h.
// Not: inline PTX elsewhere, ldmatrix, cooperative groups, textures.
//
// Launch with FQ_LAUNCH(grid, block, shared_bytes, stream, kernel)(arguments...), then FQ_CHECK_LAUNCH();
// a kernel that needs more than 48 KiB of dynamic shared memory first calls FQ_ALLOW_DYNAMIC_SHARED(kernel,
// bytes).
//
// The emulated build defines FQ_CUDA_EMULATE (CMake does, for the fq_cuda_emu library and the emulated
// tests); everything else is the real backend: kernels compiled by nvcc, host code by the C++ compiler
// against the CUDA runtime's headers.
#pragma once

#if !defined(FQ_CUDA_EMULATE)

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define FQ_CUDA_NS cuda
#define FQ_CUDA_EMULATED 0
#define FQ_DYNAMIC_SHARED(type, name)                        \
  extern __shared__ __align__(16) unsigned char fq_dynamic_shared_[]; \
  type* name = reinterpret_cast<type*>(fq_dynamic_shared_)
#if defined(__CUDACC__)
#define FQ_LAUNCH(grid, block, shared_bytes, stream, ...) __VA_ARGS__<<<(grid), (block), (shared_bytes), (stream)>>>
#endif
#define FQ_CHECK_LAUNCH() ::fq::cuda::check_launch(__FILE__, __LINE__)
#define FQ_ALLOW_DYNAMIC_SHARED(kernel, bytes) \
  ::fq::cuda::allow_dynamic_shared(reinterpret_cast<const void*>(kernel), (bytes))

namespace fq::cuda {
// Throws fq::Error naming the launch site when the last launch failed (runtime_cuda.cc).
void check_launch(const char* file, int line);
// Lets `kernel` launch with up to `bytes` of dynamic shared memory (above the default 48 KiB).
void allow_dynamic_shared(const void* kernel, size_t bytes);
}  // namespace fq::cuda

#else

#include "backends/cuda/emulator.h"

#define FQ_CUDA_NS cuda_emu
#define FQ_CUDA_EMULATED 1
#define FQ_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(::fq::cuda_emu::emulator::dynamic_shared())
#define FQ_LAUNCH(grid, block, shared_bytes, stream, ...) \
  ::fq::cuda_emu::emulator::Launch((grid), (block), (shared_bytes)).run(__VA_ARGS__)
#define FQ_CHECK_LAUNCH() ((void)0)
#define FQ_ALLOW_DYNAMIC_SHARED(kernel, bytes) ((void)0)

#endif
