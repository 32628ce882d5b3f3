// Device memory: round trips, poisoning of fresh buffers (emulated), accounting.
#include <numeric>

#include "cuda/cuda_test_util.h"

namespace dev = fq::FQ_CUDA_NS;

FQ_CUDA_SUITE(Device);

FQ_CUDA_TEST(Device, RoundTripAndAccounting) {
  std::vector<int32_t> values(1000);
  std::iota(values.begin(), values.end(), -500);
  const size_t before = dev::memory_in_use();
  {
    dev::DeviceBuffer buffer = dev::upload<int32_t>(values);
    EXPECT_EQ(dev::memory_in_use(), before + values.size() * sizeof(int32_t));
    EXPECT_GE(dev::peak_memory_in_use(), dev::memory_in_use());
    EXPECT_EQ(dev::download<int32_t>(buffer.data(), values.size()), values);
    dev::DeviceBuffer copy(buffer.bytes());
    dev::copy_on_device(copy.data(), buffer.data(), buffer.bytes());
    dev::fill_zero(buffer.data(), buffer.bytes());
    EXPECT_EQ(dev::download<int32_t>(copy.data(), values.size()), values);
    EXPECT_EQ(dev::download<int32_t>(buffer.data(), values.size()), std::vector<int32_t>(values.size(), 0));
    dev::DeviceBuffer moved = std::move(copy);
    EXPECT_TRUE(copy.empty());
    EXPECT_EQ(moved.bytes(), values.size() * sizeof(int32_t));
  }
  dev::synchronize();
  EXPECT_EQ(dev::memory_in_use(), before);
}

#if FQ_CUDA_EMULATED
FQ_CUDA_TEST(Device, FreshEmulatedMemoryIsPoisoned) {
  dev::DeviceBuffer buffer(16);
  for (int32_t word : dev::download<int32_t>(buffer.data(), 4)) EXPECT_EQ(word, -1);
}
#endif
