#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <tuple>

#include "backends/cpu/matmul.h"
#include "backends/cpu/parallel_threshold.h"
#include "backends/cpu/vector_math.h"
#include "fq/linear.h"
#include "ops/ops.h"
#include "ops/reference.h"

namespace fq {
namespace {

std::vector<float> random_values(size_t count, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, scale);
  std::vector<float> out(count);
  for (float& v : out) v = normal(rng);
  return out;
}

// Largest error over the largest value; NaN when any result is NaN (so that EXPECT_LT fails).
float max_relative_error(const float* got, const std::vector<float>& want) {
  float peak = 0, error = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    peak = std::max(peak, std::abs(want[i]));
    const float difference = std::abs(got[i] - want[i]);
    if (!(difference <= error)) error = difference;
  }
  return error / peak;
}

class LinearShapes : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t>> {};

TEST_P(LinearShapes, FloatLinearMatchesReference) {
  auto [m, k, n] = GetParam();
  auto x = random_values(m * k, 1), w = random_values(n * k, 2), b = random_values(n, 3);
  auto want = reference::linear(x, w, b, m, k, n);
  for (DType compute : {DType::f32, DType::bf16}) {
    FloatLinear linear(Tensor::from_floats(w, {n, k}), Tensor::from_floats(b, {n}), compute);
    Tensor y = Tensor::empty(DType::f32, {m, n});
    linear.forward(Tensor::from_floats(x, {m, k}), y);
    // bf16 rounds both operands to 8 mantissa bits; the error grows like sqrt(k) * 2^-8.
    EXPECT_LT(max_relative_error(y.data<float>(), want), compute == DType::f32 ? 1e-5f : 2e-2f)
        << dtype_name(compute) << " " << m << "x" << k << "x" << n;
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, LinearShapes,
                         ::testing::Values(std::make_tuple(1, 64, 32), std::make_tuple(7, 33, 65),
                                           std::make_tuple(130, 256, 96)));

class AttentionLengths : public ::testing::TestWithParam<int64_t> {};

// Decode (few queries), prefill, and more than one query block.
TEST_P(AttentionLengths, MatchesReferenceWithGroupsAndPast) {
  const int64_t heads = 6, kv_heads = 2, head_dim = 16, start = 5, seq = GetParam();
  const int64_t total = start + seq;
  auto q = random_values(seq * heads * head_dim, 4);
  auto keys = random_values(total * kv_heads * head_dim, 5);
  auto values = random_values(total * kv_heads * head_dim, 6);
  auto want = reference::attention(q, keys, values, seq, start, heads, kv_heads, head_dim);
  std::vector<float> got(want.size(), NAN);
  ops::attention(q.data(), keys.data(), values.data(), got.data(), seq, start, heads, kv_heads, head_dim);
  EXPECT_LT(max_relative_error(got.data(), want), 1e-5f);
}

INSTANTIATE_TEST_SUITE_P(Ops, AttentionLengths, ::testing::Values(1, 3, 8, 9, 300));

TEST(Ops, RmsNormAndLayerNorm) {
  const int64_t rows = 3, width = 10;
  auto values = random_values(rows * width, 7, 3.f);
  auto weights = random_values(width, 8), biases = random_values(width, 9);
  Tensor x = Tensor::from_floats(values, {rows, width});
  Norm norm{Tensor::from_floats(weights, {width}), Tensor::from_floats(biases, {width})};
  Tensor out = Tensor::empty(DType::f32, {rows, width});
  ops::norm(x, out, norm, NormKind::layer_norm, 1e-5f);
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < width; ++i) mean += values[r * width + i] / double(width);
    for (int64_t i = 0; i < width; ++i) var += std::pow(values[r * width + i] - mean, 2) / double(width);
    for (int64_t i = 0; i < width; ++i)
      EXPECT_NEAR(out.data<float>()[r * width + i],
                  (values[r * width + i] - mean) / std::sqrt(var + 1e-5) * weights[i] + biases[i], 1e-5);
  }
  ops::norm(x, out, Norm{norm.weight, Tensor()}, NormKind::rms_norm, 1e-6f);
  for (int64_t r = 0; r < rows; ++r) {
    double squares = 0;
    for (int64_t i = 0; i < width; ++i) squares += std::pow(values[r * width + i], 2) / double(width);
    for (int64_t i = 0; i < width; ++i)
      EXPECT_NEAR(out.data<float>()[r * width + i], values[r * width + i] / std::sqrt(squares + 1e-6) * weights[i],
                  1e-5);
  }
}

TEST(Ops, RopeRotatesHalfSplitPairs) {
  const int64_t heads = 2, head_dim = 8, seq = 3, start = 4;
  auto values = random_values(seq * heads * head_dim, 10);
  Tensor x = Tensor::from_floats(values, {seq, heads * head_dim});
  ops::rope(x, seq, heads, head_dim, start, 10000.0);
  for (int64_t t = 0; t < seq; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < head_dim / 2; ++i) {
        double angle = double(start + t) * std::pow(10000.0, -2.0 * i / head_dim);
        int64_t base = t * heads * head_dim + h * head_dim;
        double a = values[base + i], b = values[base + i + head_dim / 2];
        EXPECT_NEAR(x.data<float>()[base + i], a * std::cos(angle) - b * std::sin(angle), 1e-5);
        EXPECT_NEAR(x.data<float>()[base + i + head_dim / 2], b * std::cos(angle) + a * std::sin(angle), 1e-5);
      }
}

// Attention at odd sizes: decode and prefill lengths around the kernel's tile and panel edges,
// with and without a cache, GQA groups 1/3/4 and 16 (more rows than one tile), head_dim 32/64/80
// and 24 (a partial vector), with f32 and bf16 operands.
TEST(Ops, AttentionMatchesReferenceAtOddShapes) {
  struct Heads {
    int64_t heads, kv_heads;
  };
  for (int64_t head_dim : {32, 64, 80, 24})
    for (Heads h : {Heads{4, 4}, Heads{9, 3}, Heads{8, 2}, Heads{16, 1}})
      for (int64_t start : {0, 5, 67})
        for (int64_t seq : {1, 2, 8, 9, 16, 17, 33, 48, 63, 65, 70}) {
          const int64_t total = start + seq, kv_width = h.kv_heads * head_dim;
          const uint32_t seed = static_cast<uint32_t>(head_dim * 7919 + h.heads * 131 + start * 17 + seq);
          auto q = random_values(seq * h.heads * head_dim, seed);
          auto keys = random_values(total * kv_width, seed + 1);
          auto values = random_values(total * kv_width, seed + 2);
          auto want = reference::attention(q, keys, values, seq, start, h.heads, h.kv_heads, head_dim);
          for (auto precision : {ops::AttentionPrecision::f32, ops::AttentionPrecision::bf16}) {
            std::vector<float> got(want.size(), NAN);
            ops::attention(q.data(), keys.data(), values.data(), got.data(), seq, start, h.heads, h.kv_heads, head_dim,
                           precision);
            // bf16 rounds q, k, v and the probabilities to 8 mantissa bits; the sums stay f32.
            const float bound = precision == ops::AttentionPrecision::f32 ? 1e-5f : 1e-2f;
            ASSERT_LT(max_relative_error(got.data(), want), bound)
                << "seq " << seq << " start " << start << " heads " << h.heads << "/" << h.kv_heads << " head_dim "
                << head_dim << (precision == ops::AttentionPrecision::f32 ? " f32" : " bf16");
          }
        }
}

// A cache longer than needed: the rows past start + seq (an odd count, so bf16 pairs a last key
// with padding) are never read, so NaNs there must not leak into the result. f32 also with large
// logits (a peaked softmax), where bf16's rounded logits would be off by more than its bound.
TEST(Ops, AttentionIgnoresCacheRowsPastTheQueries) {
  const int64_t heads = 6, kv_heads = 2, head_dim = 64, start = 30, seq = 41, total = start + seq, spare = 9;
  struct Case {
    ops::AttentionPrecision precision;
    float logit_scale, bound;
  };
  for (Case c : {Case{ops::AttentionPrecision::f32, 4.f, 1e-5f}, Case{ops::AttentionPrecision::bf16, 1.f, 1e-2f}}) {
    auto q = random_values(seq * heads * head_dim, 21, c.logit_scale);
    auto keys = random_values(total * kv_heads * head_dim, 22, c.logit_scale);
    auto values = random_values(total * kv_heads * head_dim, 23);
    auto want = reference::attention(q, keys, values, seq, start, heads, kv_heads, head_dim);
    keys.resize((total + spare) * kv_heads * head_dim, NAN);
    values.resize((total + spare) * kv_heads * head_dim, NAN);
    std::vector<float> got(want.size(), NAN);
    ops::attention(q.data(), keys.data(), values.data(), got.data(), seq, start, heads, kv_heads, head_dim,
                   c.precision);
    EXPECT_LT(max_relative_error(got.data(), want), c.bound) << (c.precision == ops::AttentionPrecision::f32);
  }
}

TEST(Ops, AttentionRejectsHeadsThatDoNotGroup) {
  std::vector<float> q(6 * 8), kv(2 * 4 * 8), out(6 * 8);
  EXPECT_THROW(ops::attention(q.data(), kv.data(), kv.data(), out.data(), 1, 1, 6, 4, 8), Error);
  EXPECT_THROW(ops::attention(q.data(), kv.data(), kv.data(), out.data(), 0, 1, 4, 4, 8), Error);
}

// Plain double-precision norm of one row, as HF computes it.
std::vector<double> reference_norm(const float* row, int64_t width, const std::vector<float>& weight,
                                   const std::vector<float>* bias, NormKind kind, double eps) {
  double mean = 0, squares = 0;
  if (kind == NormKind::layer_norm)
    for (int64_t i = 0; i < width; ++i) mean += row[i] / double(width);
  for (int64_t i = 0; i < width; ++i) squares += (row[i] - mean) * (row[i] - mean) / double(width);
  std::vector<double> out(width);
  for (int64_t i = 0; i < width; ++i)
    out[i] = (row[i] - mean) / std::sqrt(squares + eps) * weight[i] + (bias ? (*bias)[i] : 0.0);
  return out;
}

// Widths around the vector length, the SmolLM2 and OPT hidden sizes; a single row (decode, serial)
// and enough rows to run in parallel; in place and out of place; inputs with a large mean.
TEST(Ops, NormsMatchTheReference) {
  for (NormKind kind : {NormKind::rms_norm, NormKind::layer_norm})
    for (int64_t width : {1, 15, 16, 17, 576, 4096})
      for (int64_t rows : {int64_t{1}, int64_t{3}, cpu::kParallelFloats / width + 2}) {
        const uint32_t seed = static_cast<uint32_t>(width * 31 + rows);
        auto values = random_values(rows * width, seed, 3.f);
        for (size_t i = 0; i < values.size(); ++i) values[i] += 5.f;  // the mean LayerNorm removes
        auto weights = random_values(width, seed + 1), biases = random_values(width, seed + 2);
        const Norm norm{Tensor::from_floats(weights, {width}),
                        kind == NormKind::layer_norm ? Tensor::from_floats(biases, {width}) : Tensor()};
        const Tensor x = Tensor::from_floats(values, {rows, width});
        Tensor out = Tensor::empty(DType::f32, {rows, width});
        ops::norm(x, out, norm, kind, 1e-5f);
        Tensor in_place = x.clone();
        ops::norm(in_place, norm, kind, 1e-5f);
        for (int64_t r = 0; r < rows; ++r) {
          const auto want = reference_norm(values.data() + r * width, width, weights,
                                           kind == NormKind::layer_norm ? &biases : nullptr, kind, 1e-5);
          for (int64_t i = 0; i < width; ++i) {
            const float got = out.data<float>()[r * width + i];
            ASSERT_NEAR(got, want[i], 2e-6 * (1 + std::abs(want[i]))) << "width " << width << " row " << r << " " << i;
            ASSERT_EQ(in_place.data<float>()[r * width + i], got);
          }
        }
      }
}

TEST(Ops, NormRejectsMismatchedShapes) {
  const Tensor x = Tensor::zeros(DType::f32, {2, 8});
  Tensor out = Tensor::empty(DType::f32, {2, 8});
  EXPECT_THROW(ops::norm(x, out, Norm{Tensor::zeros(DType::f32, {7}), Tensor()}, NormKind::rms_norm, 1e-5f), Error);
  EXPECT_THROW(ops::norm(x, out, Norm{Tensor::zeros(DType::f32, {8}), Tensor::zeros(DType::f32, {3})},
                         NormKind::layer_norm, 1e-5f),
               Error);
  Tensor wrong = Tensor::empty(DType::f32, {2, 9});
  EXPECT_THROW(ops::norm(x, wrong, Norm{Tensor::zeros(DType::f32, {8}), Tensor()}, NormKind::rms_norm, 1e-5f), Error);
}

// Two sequences at once (positions restart per sequence), positions past the first table size and
// far out (the angle is rounded to f32 as HF does), head_dim 64 and 80.
TEST(Ops, RopeMatchesTheReferenceAtManyPositions) {
  const double theta = 100000.0;
  for (int64_t head_dim : {64, 80})
    for (int64_t start : {0, 3, 700, 5000}) {
      const int64_t heads = 3, seq = 37, batch = 2, width = heads * head_dim, half = head_dim / 2;
      auto values = random_values(batch * seq * width, static_cast<uint32_t>(start + head_dim));
      Tensor x = Tensor::from_floats(values, {batch * seq, width});
      ops::rope(x, seq, heads, head_dim, start, theta);
      for (int64_t r = 0; r < batch * seq; ++r)
        for (int64_t h = 0; h < heads; ++h)
          for (int64_t i = 0; i < half; ++i) {
            const float inverse_frequency = static_cast<float>(std::pow(theta, -2.0 * i / head_dim));
            const double angle = static_cast<float>(start + r % seq) * inverse_frequency;
            const int64_t at = r * width + h * head_dim + i;
            const double a = values[at], b = values[at + half];
            ASSERT_NEAR(x.data<float>()[at], a * std::cos(angle) - b * std::sin(angle), 1e-5) << r << " " << i;
            ASSERT_NEAR(x.data<float>()[at + half], b * std::cos(angle) + a * std::sin(angle), 1e-5) << r << " " << i;
          }
    }
}

TEST(Ops, RopeRejectsRowsThatAreNotWholeSequences) {
  Tensor x = Tensor::zeros(DType::f32, {5, 16});
  EXPECT_THROW(ops::rope(x, 2, 2, 8, 0, 10000.0), Error);
  EXPECT_THROW(ops::rope(x, 5, 3, 8, 0, 10000.0), Error);
}

// Sizes below and above the point where the elementwise ops go parallel.
TEST(Ops, AddAndActivationsMatchScalarLoops) {
  for (int64_t count : {int64_t{1}, int64_t{17}, int64_t{576}, cpu::kParallelFloats + 3}) {
    const auto a = random_values(count, static_cast<uint32_t>(count), 4.f), b = random_values(count, 99);
    Tensor x = Tensor::from_floats(a, {count});
    ops::add(x, Tensor::from_floats(b, {count}));
    for (int64_t i = 0; i < count; ++i) ASSERT_EQ(x.data<float>()[i], a[i] + b[i]);

    auto silu = [](double v) { return v / (1 + std::exp(-v)); };
    auto gelu = [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); };
    auto relu = [](double v) { return v > 0 ? v : 0.0; };
    const std::tuple<Activation, std::function<double(double)>> activations[] = {
        {Activation::silu, silu}, {Activation::gelu, gelu}, {Activation::relu, relu}};
    for (const auto& [activation, function] : activations) {
      Tensor gate = Tensor::from_floats(a, {count});
      ops::gated_activate(gate, Tensor::from_floats(b, {count}), activation);
      Tensor plain = Tensor::from_floats(a, {count});
      ops::activate(plain, activation);
      for (int64_t i = 0; i < count; ++i) {
        const double want = function(a[i]);
        ASSERT_NEAR(plain.data<float>()[i], want, 1e-6 * (1 + std::abs(want))) << i;
        ASSERT_NEAR(gate.data<float>()[i], want * b[i], 1e-6 * (1 + std::abs(want * b[i]))) << i;
      }
    }
  }
  Tensor x = Tensor::zeros(DType::f32, {4});
  EXPECT_THROW(ops::add(x, Tensor::zeros(DType::f32, {5})), Error);
  EXPECT_THROW(ops::gated_activate(x, Tensor::zeros(DType::f32, {3}), Activation::silu), Error);
}

TEST(Ops, LinearRejectsWrongShapes) {
  FloatLinear linear(Tensor::zeros(DType::f32, {4, 3}), Tensor(), DType::f32);
  Tensor y = Tensor::empty(DType::f32, {2, 4});
  EXPECT_THROW(linear.forward(Tensor::zeros(DType::f32, {2, 5}), y), Error);
  EXPECT_THROW(FloatLinear(Tensor::zeros(DType::f32, {4, 3}), Tensor::zeros(DType::f32, {3}), DType::f32), Error);
}

}  // namespace
}  // namespace fq

namespace fq {
namespace {

TEST(VectorMath, ExpAndSiluMatchTheScalarFunctions) {
  std::vector<float> values;
  for (float v = -110.f; v <= 95.f; v += 0.0173f) values.push_back(v);
  std::vector<float> exps = values;
  const double sum = cpu::exp_scaled_sum(exps.data(), static_cast<int64_t>(exps.size()), 0.5f, 1.25f);
  double want_sum = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    // The argument is rounded to float once (fused multiply-subtract), as the kernel does.
    const double want = std::exp(double(std::fma(values[i], 0.5f, -1.25f)));
    want_sum += want;
    ASSERT_NEAR(exps[i], want, want * 1e-6 + 1e-37) << values[i];
  }
  EXPECT_NEAR(sum, want_sum, want_sum * 1e-6);
  std::vector<float> gate = values, up(values.size(), 0.5f);
  cpu::silu_mul(gate.data(), up.data(), static_cast<int64_t>(gate.size()));
  for (size_t i = 0; i < values.size(); ++i) {
    const double v = values[i], want = v / (1 + std::exp(-v)) * 0.5;
    ASSERT_NEAR(gate[i], want, std::abs(want) * 1e-6 + 1e-30) << values[i];
  }
}

}  // namespace
}  // namespace fq
