// Kernels that exercise the CUDA features the emulator imitates (warp shuffles, ballot, block barriers with
// shared memory, atomics, dynamic shared memory), for tests/cuda/emulator_test.cc: run on a GPU they pin down
// what the hardware does, run on the emulator they show it does the same.
#pragma once

#include <cstdint>

#include "backends/cuda/portable.h"

namespace fq::FQ_CUDA_NS {

// One block of `threads` (a multiple of 32, at most 1024) writes, per thread t (lane l, warp w):
//   out[5t + 0] = __shfl_xor_sync(value of lane l ^ 5)          (values are 1000·w + l)
//   out[5t + 1] = __shfl_sync(value of lane 31 - l)
//   out[5t + 2] = __shfl_down_sync(value, 3): lane l + 3's value, or l's own for l >= 29
//   out[5t + 3] = __ballot_sync(l % 3 == 0) as a bit pattern
//   out[5t + 4] = the block-wide sum of every thread's index, through shared memory and __syncthreads
// and out[5·threads] = the sum of all indices by atomicAdd, out[5·threads + 1] their maximum by atomicMax.
void probe_thread_semantics(int32_t* out, unsigned threads);

// Each of `blocks` blocks of 64 threads reverses a row of 64 ints through dynamic shared memory.
void probe_dynamic_shared(const int32_t* in, int32_t* out, unsigned blocks);

}  // namespace fq::FQ_CUDA_NS
