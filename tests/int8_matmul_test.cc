// The oneDNN integer GEMMs against the plain reference: exact int32 sums (extreme codes, sizes that are
// not multiples of any tile), the fused rescale epilogue, 4-bit slices through the plain-weight GEMM.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "backends/cpu/int8_matmul.h"
#include "quant/int_gemm.h"

namespace fq {
namespace {

struct Operands {
  Tensor codes, weights;
};

Operands random_operands(int64_t m, int64_t k, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> code(-127, 127);
  Operands o{Tensor::empty(DType::i8, {m, k}), Tensor::empty(DType::i8, {n, k})};
  for (int64_t i = 0; i < m * k; ++i) o.codes.data<int8_t>()[i] = static_cast<int8_t>(i % 17 == 0 ? 127 : code(rng));
  for (int64_t i = 0; i < n * k; ++i) o.weights.data<int8_t>()[i] = static_cast<int8_t>(i % 13 == 0 ? -127 : code(rng));
  return o;
}

std::vector<int32_t> reference(const Operands& o) {
  std::vector<int32_t> sums(o.codes.dim(0) * o.weights.dim(0));
  quant::int_gemm(o.codes.data<int8_t>(), o.codes.dim(0), o.weights, sums.data());
  return sums;
}

class Int8Shapes : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t>> {};

TEST_P(Int8Shapes, BlockedWeightsGiveTheReferenceSumsBitForBit) {
  auto [m, k, n] = GetParam();
  const Operands o = random_operands(m, k, n, static_cast<uint32_t>(m * 131 + k * 7 + n));
  const cpu::Int8Matmul matmul(o.weights, {}, Tensor());
  std::vector<int32_t> got(m * n, 0x5a5a5a5a);
  matmul.accumulate(o.codes.data<int8_t>(), m, got.data());
  EXPECT_EQ(got, reference(o));
  // The blocked layout converts back to the same codes.
  const Tensor back = matmul.weights();
  EXPECT_EQ(std::memcmp(back.raw(), o.weights.raw(), o.weights.nbytes()), 0);
}

TEST_P(Int8Shapes, FusedEpilogueEqualsTheRescaledSums) {
  auto [m, k, n] = GetParam();
  const Operands o = random_operands(m, k, n, static_cast<uint32_t>(m + k + n));
  std::vector<float> scales(n);
  Tensor bias = Tensor::empty(DType::f32, {n});
  for (int64_t i = 0; i < n; ++i) {
    scales[i] = 1e-4f * float(1 + i % 7);
    bias.data<float>()[i] = 0.25f * float(i % 5) - 0.5f;
  }
  const std::vector<int32_t> sums = reference(o);
  for (bool per_channel : {true, false}) {
    const std::vector<float> used = per_channel ? scales : std::vector<float>{scales[3 % n]};
    const cpu::Int8Matmul matmul(o.weights, used, bias);
    std::vector<float> got(m * n, std::nanf("")), want(m * n);
    matmul.run(o.codes.data<int8_t>(), m, got.data());
    const float one = 1.f;
    cpu::rescale_rows(sums.data(), m, n, {&one, 1}, used, bias.data<float>(), want.data());
    for (int64_t i = 0; i < m * n; ++i) {
      const double scale = used[per_channel ? i % n : 0];
      const double exact = double(sums[i]) * scale + bias.data<float>()[i % n];
      // Both are float computations of the same exact value, a few roundings each.
      const double tolerance = (std::abs(double(sums[i]) * scale) + std::abs(exact)) * 4e-7 + 1e-7;
      ASSERT_NEAR(got[i], exact, tolerance) << "element " << i << (per_channel ? " per-channel" : " per-tensor");
      ASSERT_NEAR(want[i], exact, tolerance) << "element " << i;
    }
  }
}

TEST_P(Int8Shapes, PlainWeightSlicesWriteTheirColumns) {
  auto [m, k, n] = GetParam();
  const Operands o = random_operands(m, k, n, static_cast<uint32_t>(3 * m + k + n));
  const std::vector<int32_t> want = reference(o);
  std::vector<int32_t> got(m * n, 0x5a5a5a5a);
  const int64_t slice = std::max<int64_t>(1, n / 3);
  for (int64_t first = 0; first < n; first += slice) {
    const int64_t count = std::min(slice, n - first);
    cpu::int8_matmul_plain(o.codes.data<int8_t>(), m, k, o.weights.data<int8_t>() + first * k, count,
                           got.data() + first, n);
  }
  EXPECT_EQ(got, want);
}

INSTANTIATE_TEST_SUITE_P(Ops, Int8Shapes,
                         ::testing::Values(std::make_tuple(1, 64, 8), std::make_tuple(3, 100, 33),
                                           std::make_tuple(8, 72, 17), std::make_tuple(77, 640, 96),
                                           std::make_tuple(512, 1536, 64), std::make_tuple(130, 576, 200)));

TEST(Int8Matmul, RejectsBadArguments) {
  const Operands o = random_operands(2, 16, 4, 1);
  EXPECT_THROW(cpu::Int8Matmul(o.weights.to(DType::f32), {}, Tensor()), Error);
  EXPECT_THROW(cpu::Int8Matmul(o.weights, {1.f, 2.f}, Tensor()), Error);
  EXPECT_THROW(cpu::Int8Matmul(o.weights, {1.f}, Tensor::empty(DType::f32, {3})), Error);
  const cpu::Int8Matmul no_scales(o.weights, {}, Tensor());
  std::vector<float> y(8);
  EXPECT_THROW(no_scales.run(o.codes.data<int8_t>(), 2, y.data()), Error);
}

}  // namespace
}  // namespace fq
