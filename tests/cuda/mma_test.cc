// The mma.sync wrappers of mma.h: one warp multiplies one tile (int_gemm.h: mma_tile), checked against
// plain loops. On a GPU this checks the instruction and the fragment layouts mma.h documents; emulated,
// the emulation of them, so the two agree by the same test.
#include <random>

#include "backends/cuda/int_gemm.h"
#include "cuda/cuda_test_util.h"
#include "fq/error.h"

namespace dev = fq::FQ_CUDA_NS;

FQ_CUDA_SUITE(Mma);

namespace {

// Code k of a row of 32 bytes: int8 codes (bits 8), or int4 codes two per byte, low nibble first.
int32_t code_at(const std::vector<uint8_t>& matrix, int row, int k, int bits) {
  const uint8_t byte = matrix[row * 32 + k * bits / 8];
  if (bits == 8) return static_cast<int8_t>(byte);
  const int nibble = k % 2 ? byte >> 4 : byte & 0xf;
  return nibble >= 8 ? nibble - 16 : nibble;
}

void check_tile(int bits) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed << ", bits " << bits);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int32_t> addend(-1 << 20, 1 << 20);
  std::vector<uint8_t> a(16 * 32), b(8 * 32);  // every byte is a valid int8 or pair of int4 codes
  for (uint8_t& value : a) value = static_cast<uint8_t>(byte(rng));
  for (uint8_t& value : b) value = static_cast<uint8_t>(byte(rng));
  std::vector<int32_t> c(16 * 8);
  for (int32_t& value : c) value = addend(rng);

  const int depth = 32 * 8 / bits;
  std::vector<int32_t> expected(16 * 8);
  for (int row = 0; row < 16; ++row)
    for (int column = 0; column < 8; ++column) {
      int32_t sum = c[row * 8 + column];
      for (int k = 0; k < depth; ++k) sum += code_at(a, row, k, bits) * code_at(b, column, k, bits);
      expected[row * 8 + column] = sum;
    }

  const dev::DeviceBuffer a_device = dev::upload<uint8_t>(a), b_device = dev::upload<uint8_t>(b);
  const dev::DeviceBuffer c_device = dev::upload<int32_t>(c);
  dev::DeviceBuffer d_device(c.size() * sizeof(int32_t));
  dev::copy_to_device(d_device.data(), std::vector<int32_t>(c.size(), -1).data(), d_device.bytes());
  dev::mma_tile(bits, a_device.as<uint8_t>(), b_device.as<uint8_t>(), c_device.as<int32_t>(), d_device.as<int32_t>());
  EXPECT_EQ(dev::download<int32_t>(d_device.data(), expected.size()), expected);
}

}  // namespace

FQ_CUDA_TEST(Mma, Int8TileMatchesLoops) { check_tile(8); }

FQ_CUDA_TEST(Mma, Int4TileMatchesLoops) { check_tile(4); }

// One m64n256k32 wgmma (int_gemm.h: wgmma_tile): on an H100 this checks the instruction, the matrix
// descriptor and the shared-memory and accumulator layouts that wgmma.h documents.
FQ_CUDA_TEST(Mma, WgmmaTileMatchesLoops) {
  if (!dev::wgmma_supported()) GTEST_SKIP() << "wgmma needs an sm_90 GPU";
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> code(-128, 127);
  std::uniform_int_distribution<int32_t> addend(-1 << 20, 1 << 20);
  std::vector<int8_t> a(64 * 32), b(256 * 32);
  for (int8_t& value : a) value = static_cast<int8_t>(code(rng));
  for (int8_t& value : b) value = static_cast<int8_t>(code(rng));
  std::vector<int32_t> c(64 * 256);
  for (int32_t& value : c) value = addend(rng);
  std::vector<int32_t> expected(c);
  for (int row = 0; row < 64; ++row)
    for (int column = 0; column < 256; ++column)
      for (int k = 0; k < 32; ++k) expected[row * 256 + column] += a[row * 32 + k] * b[column * 32 + k];

  const dev::DeviceBuffer a_device = dev::testing::to_device(a), b_device = dev::testing::to_device(b);
  const dev::DeviceBuffer c_device = dev::testing::to_device(c), d_device = dev::testing::poisoned(c.size() * 4);
  dev::wgmma_tile(a_device.as<int8_t>(), b_device.as<int8_t>(), c_device.as<int32_t>(), d_device.as<int32_t>());
  const std::vector<int32_t> got = dev::download<int32_t>(d_device.data(), expected.size());
  int mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != expected[i] && mismatches++ < 5)
      ADD_FAILURE() << "d[" << i / 256 << ", " << i % 256 << "] = " << got[i] << ", expected " << expected[i];
  EXPECT_EQ(mismatches, 0);
}

FQ_CUDA_TEST(Mma, RejectsOtherWidths) {
  const dev::DeviceBuffer buffer(16 * 32);
  EXPECT_THROW(dev::mma_tile(2, buffer.as<uint8_t>(), buffer.as<uint8_t>(), buffer.as<int32_t>(), buffer.as<int32_t>()),
               fq::Error);
}
