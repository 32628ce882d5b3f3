// The emulator against the CUDA semantics it imitates (emulator_probe.h): on a GPU the same checks pin down the
// hardware's behaviour, so the two agree by construction of the test. Emulated only: deadlocks are reported.
#include <numeric>

#include "backends/cuda/emulator_probe.h"
#include "cuda/cuda_test_util.h"

namespace dev = fq::FQ_CUDA_NS;

FQ_CUDA_SUITE(ThreadSemantics);

FQ_CUDA_TEST(ThreadSemantics, ShufflesBallotBarriersAndAtomicsBehaveAsCuda) {
  for (unsigned threads : {32u, 96u, 1024u}) {
    SCOPED_TRACE(threads);
    const size_t count = 5 * threads + 2;
    const std::vector<int32_t> zeros(count, 0);
    dev::DeviceBuffer out = dev::upload<int32_t>(zeros);
    dev::probe_thread_semantics(out.as<int32_t>(), threads);
    const std::vector<int32_t> got = dev::download<int32_t>(out.data(), count);
    const int32_t index_sum = static_cast<int32_t>(threads * (threads - 1) / 2);
    uint32_t ballot = 0;
    for (unsigned l = 0; l < 32; l += 3) ballot |= 1u << l;
    for (unsigned t = 0; t < threads; ++t) {
      const int32_t warp_base = static_cast<int32_t>(1000 * (t / 32));
      const unsigned lane = t % 32;
      ASSERT_EQ(got[5 * t + 0], warp_base + static_cast<int32_t>(lane ^ 5)) << t;
      ASSERT_EQ(got[5 * t + 1], warp_base + static_cast<int32_t>(31 - lane)) << t;
      ASSERT_EQ(got[5 * t + 2], warp_base + static_cast<int32_t>(lane + 3 < 32 ? lane + 3 : lane)) << t;
      ASSERT_EQ(static_cast<uint32_t>(got[5 * t + 3]), ballot) << t;
      ASSERT_EQ(got[5 * t + 4], index_sum) << t;
    }
    EXPECT_EQ(got[5 * threads], index_sum);
    EXPECT_EQ(got[5 * threads + 1], static_cast<int32_t>(threads - 1));
  }
}

FQ_CUDA_TEST(ThreadSemantics, DynamicSharedMemoryIsPerBlock) {
  std::vector<int32_t> in(3 * 64);
  std::iota(in.begin(), in.end(), 7);
  dev::DeviceBuffer input = dev::upload<int32_t>(in), output(in.size() * sizeof(int32_t));
  dev::probe_dynamic_shared(input.as<const int32_t>(), output.as<int32_t>(), 3);
  const std::vector<int32_t> got = dev::download<int32_t>(output.data(), in.size());
  for (size_t b = 0; b < 3; ++b)
    for (size_t t = 0; t < 64; ++t) ASSERT_EQ(got[b * 64 + t], in[b * 64 + 63 - t]);
}

#if FQ_CUDA_EMULATED
namespace {
__global__ void divergent_barrier_kernel(int32_t* out) {
  // Half the warp waits for the warp, the other half for the block: neither barrier can complete.
  if (threadIdx.x % 32 < 16)
    __syncwarp();
  else
    __syncthreads();
  out[threadIdx.x] = 1;
}
__global__ void early_return_kernel(int32_t* out) {
  if (threadIdx.x % 2) return;  // threads that have returned no longer hold up the barrier
  __syncthreads();
  out[threadIdx.x] = 1;
}
}  // namespace

FQ_CUDA_TEST(ThreadSemantics, ReportsDeadlocksAndReleasesBarriersOfReturnedThreads) {
  std::vector<int32_t> out(64, 0);
  EXPECT_THROW(FQ_LAUNCH(1, 64, 0, nullptr, divergent_barrier_kernel)(out.data()), fq::Error);
  std::fill(out.begin(), out.end(), 0);
  FQ_LAUNCH(1, 64, 0, nullptr, early_return_kernel)(out.data());
  for (int t = 0; t < 64; ++t) EXPECT_EQ(out[t], t % 2 ? 0 : 1) << t;
}
#endif
