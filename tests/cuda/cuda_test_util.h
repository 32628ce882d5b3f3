// Tests of the CUDA backend, written once and compiled twice (tests/CMakeLists.txt): against the CPU
// emulator, where the suites are named Emulated<Suite> and always run, and against the GPU, where they
// are Gpu<Suite> and skip when no GPU is present. Declare a suite with FQ_CUDA_SUITE(Suite); then
// FQ_CUDA_TEST(Suite, Name) { ... } with `namespace dev = fq::FQ_CUDA_NS;` for the backend under test.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "backends/cuda/device.h"

// In the backend's namespace: the two compilations of a test must not share inline definitions.
namespace fq::FQ_CUDA_NS::testing {

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string reason;
    if (!fq::FQ_CUDA_NS::device_available(&reason)) GTEST_SKIP() << "no CUDA device: " << reason;
  }
};

// A test fixture's path: under $FQ_FIXTURES_DIR when set (the binaries carried to a GPU machine, where the
// checkout lives elsewhere than where they were built), else under the source tree's tests/fixtures.
inline std::string fixture_path(const std::string& name) {
  const char* directory = std::getenv("FQ_FIXTURES_DIR");
  return std::string(directory && *directory ? directory : FQ_FIXTURES_DIR) + "/" + name;
}

// A fresh seed for every run (printed on failure by the caller), so that repeated runs cover new inputs.
inline uint32_t fresh_seed() { return std::random_device{}(); }

template <typename T>
DeviceBuffer to_device(const std::vector<T>& values) {
  return upload(std::span<const T>(values));
}

// A device buffer of `bytes` 0xff bytes (NaN as f32 and f16, -1 as integers), so that outputs left unwritten show.
inline DeviceBuffer poisoned(size_t bytes) { return upload<uint8_t>(std::vector<uint8_t>(bytes, 0xff)); }

}  // namespace fq::FQ_CUDA_NS::testing

#if FQ_CUDA_EMULATED
#define FQ_CUDA_SUITE_NAME_(suite) Emulated##suite
#else
#define FQ_CUDA_SUITE_NAME_(suite) Gpu##suite
#endif
#define FQ_CUDA_SUITE_NAME(suite) FQ_CUDA_SUITE_NAME_(suite)
#define FQ_CUDA_SUITE(suite) using FQ_CUDA_SUITE_NAME(suite) = ::fq::FQ_CUDA_NS::testing::CudaTest
#define FQ_CUDA_TEST(suite, name) TEST_F(FQ_CUDA_SUITE_NAME(suite), name)
