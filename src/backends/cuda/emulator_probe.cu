#include "backends/cuda/emulator_probe.h"

#include "fq/error.h"

namespace fq::FQ_CUDA_NS {

namespace {

__global__ void thread_semantics_kernel(int32_t* out) {
  __shared__ int32_t partial[32];
  const unsigned t = threadIdx.x, lane = t % 32, warp = t / 32;
  const int32_t value = static_cast<int32_t>(1000 * warp + lane);
  out[5 * t + 0] = __shfl_xor_sync(0xffffffffu, value, 5);
  out[5 * t + 1] = __shfl_sync(0xffffffffu, value, static_cast<int>(31 - lane));
  out[5 * t + 2] = __shfl_down_sync(0xffffffffu, value, 3u);
  out[5 * t + 3] = static_cast<int32_t>(__ballot_sync(0xffffffffu, lane % 3 == 0));

  int32_t sum = static_cast<int32_t>(t);
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (lane == 0) partial[warp] = sum;
  __syncthreads();
  int32_t total = 0;
  for (unsigned w = 0; w < blockDim.x / 32; ++w) total += partial[w];
  out[5 * t + 4] = total;

  atomicAdd(out + 5 * blockDim.x, static_cast<int32_t>(t));
  atomicMax(out + 5 * blockDim.x + 1, static_cast<int32_t>(t));
}

__global__ void dynamic_shared_kernel(const int32_t* in, int32_t* out) {
  FQ_DYNAMIC_SHARED(int32_t, row);
  const unsigned t = threadIdx.x, base = blockIdx.x * blockDim.x;
  row[t] = in[base + t];
  __syncthreads();
  out[base + t] = row[blockDim.x - 1 - t];
}

}  // namespace

void probe_thread_semantics(int32_t* out, unsigned threads) {
  check(threads >= 32 && threads <= 1024 && threads % 32 == 0, "probe: {} threads (a multiple of 32 up to 1024)",
        threads);
  FQ_LAUNCH(1, threads, 0, nullptr, thread_semantics_kernel)(out);
  FQ_CHECK_LAUNCH();
}

void probe_dynamic_shared(const int32_t* in, int32_t* out, unsigned blocks) {
  FQ_LAUNCH(blocks, 64, 64 * sizeof(int32_t), nullptr, dynamic_shared_kernel)(in, out);
  FQ_CHECK_LAUNCH();
}

}  // namespace fq::FQ_CUDA_NS
