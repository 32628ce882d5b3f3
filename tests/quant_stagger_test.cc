// Staggered flattening: the offset construction's n codes sum to exactly round(x / step) (Hermite's
// identity with round half up), proved exhaustively here in exact rational arithmetic. The library
// rounds F = x / step to nearest even and splits it in integers, floor((F + i) / n): the offset
// construction applied to F, which sums to F whatever the tie rule. Then measured against plain flattening.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>

#include "fq/quant/flatten.h"
#include "fq/quant/quantize.h"
#include "fq/quant/quantized_linear.h"
#include "quant_test_util.h"

namespace fq {
namespace {

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  return a / b - (a % b != 0 && a < 0);
}
// round half up of p / q (q > 0), exactly: floor(p/q + 1/2) = floor((2p + q) / 2q).
int64_t round_half_up(int64_t p, int64_t q) { return floor_div(2 * p + q, 2 * q); }
// round half to even of p / q (q > 0), exactly.
int64_t round_half_even(int64_t p, int64_t q) {
  const int64_t down = floor_div(p, q), twice_remainder = 2 * (p - down * q);
  if (twice_remainder < q) return down;
  if (twice_remainder > q) return down + 1;
  return down % 2 == 0 ? down : down + 1;
}
// Copy i of n for x / step = a / d, with the offset (i - (n-1)/2) / n:
// a / (n d) + (2i - n + 1) / (2n) = (2a + (2i - n + 1) d) / (2 n d).
int64_t staggered_copy(int64_t a, int64_t d, int64_t n, int64_t i) {
  return round_half_up(2 * a + (2 * i - n + 1) * d, 2 * n * d);
}

TEST(QuantStagger, HermiteIdentityHoldsExactlyWithRoundHalfUp) {
  int64_t cases = 0;
  for (int64_t n = 1; n <= 24; ++n)
    for (int64_t d : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{4}, int64_t{7}, 2 * n, 6 * n})
      for (int64_t a = -40 * d; a <= 40 * d; ++a) {  // x / step from -40 to 40, every tie included
        int64_t sum = 0;
        for (int64_t i = 0; i < n; ++i) sum += staggered_copy(a, d, n, i);
        ASSERT_EQ(sum, round_half_up(a, d)) << "n " << n << " x/step " << a << "/" << d;
        ++cases;
      }
  EXPECT_GT(cases, 100000);
}

TEST(QuantStagger, RoundHalfEvenIsNotExact) {
  // n = 2, x / step = 3/2: copies round(3/4 - 1/4) = round(1/2) -> 0 and round(1) = 1 sum to 1,
  // but round(3/2) = 2. Half up gives 1 + 1 = 2.
  EXPECT_EQ(round_half_even(1, 2) + round_half_even(1, 1), 1);
  EXPECT_EQ(round_half_even(3, 2), 2);
  EXPECT_EQ(staggered_copy(3, 2, 2, 0) + staggered_copy(3, 2, 2, 1), round_half_up(3, 2));
}

TEST(QuantStagger, IntegerSplitSumsExactlyAndIsBalanced) {
  for (int32_t n = 1; n <= 40; ++n)
    for (int64_t total = -2000; total <= 2000; ++total) {
      std::vector<int32_t> codes(n);
      stagger_codes(total, n, codes.data());
      int64_t sum = 0;
      for (int32_t i = 0; i < n; ++i) {
        sum += codes[i];
        EXPECT_LE(codes[i] - codes[0], 1);
        EXPECT_EQ(codes[i], floor_div(total + i, n));
      }
      ASSERT_EQ(sum, total) << n << " " << total;
    }
  int32_t one;
  EXPECT_THROW(stagger_codes(5, 0, &one), Error);
}

// The library's float entry point gives, copy by copy, the offset formula evaluated exactly on
// F = round_half_even(x / step), and on x / step itself away from ties, for values whose x / step is
// exact in binary (power-of-two denominators and steps).
TEST(QuantStagger, FloatPathMatchesTheOffsetFormulaCopyByCopy) {
  const int qmax = 127;
  int64_t ties = 0;
  for (float step : {1.f, 0.25f, 2.f})
    for (int32_t n = 1; n <= 12; ++n)
      for (int64_t d : {1, 2, 4, 64})
        for (int64_t a = -n * qmax * d; a <= n * qmax * d; a += (d == 64 ? 7 : 1)) {
          const float x = static_cast<float>(double(a) / d * step);
          const int64_t total = round_half_even(a, d);
          const bool tie = 2 * a % (2 * d) == d || 2 * a % (2 * d) == -d;
          ties += tie;
          std::vector<int32_t> codes(n);
          flatten_quantize_value(x, step, n, qmax, true, codes.data());
          int64_t sum = 0;
          for (int32_t i = 0; i < n; ++i) {
            ASSERT_EQ(codes[i], staggered_copy(total, 1, n, i)) << "x " << x << " step " << step << " n " << n << " i " << i;
            if (!tie) {
              ASSERT_EQ(codes[i], staggered_copy(a, d, n, i)) << "x " << x << " n " << n << " i " << i;
            }
            EXPECT_LE(std::abs(codes[i]), qmax);
            sum += codes[i];
          }
          ASSERT_EQ(sum, total);
        }
  EXPECT_GT(ties, 1000);
}

TEST(QuantStagger, TiesRoundToEven) {
  // x / step = k + 1/2 goes to the even neighbour, as vcvtps2dq rounds; the staggered copies still sum to it.
  std::vector<int32_t> codes(3);
  for (auto [x, expected] : {std::pair{2.5f, 2}, {3.5f, 4}, {-2.5f, -2}, {-3.5f, -4}, {0.5f, 0}, {-0.5f, 0}}) {
    flatten_quantize_value(x, 1.f, 1, 127, true, codes.data());
    EXPECT_EQ(codes[0], expected) << x;
    flatten_quantize_value(x, 1.f, 1, 127, false, codes.data());
    EXPECT_EQ(codes[0], expected) << x;
    flatten_quantize_value(3 * x, 1.f, 3, 127, true, codes.data());  // total nearest-even(3x)
    EXPECT_EQ(codes[0] + codes[1] + codes[2], int32_t(std::nearbyint(3 * x))) << x;
  }
  flatten_quantize_value(5.f, 1.f, 2, 127, false, codes.data());  // plain: 5 / 2 = 2.5 -> 2 for both copies
  EXPECT_EQ(codes[0], 2);
  EXPECT_EQ(codes[1], 2);
  // x is scaled by the float reciprocal of the step (one multiply, as the kernels do), not divided exactly:
  // here x / step = 75.4999994 but x · (1.f / step) = 75.5 in float, a tie that goes to 76.
  const float x = 39.0111083984375f, step = 0.5167034268379211f;
  ASSERT_LT(double(x) / step, 75.5);
  flatten_quantize_value(x, step, 1, 127, true, codes.data());
  EXPECT_EQ(codes[0], 76);
}

TEST(QuantStagger, NonFiniteValues) {
  for (bool stagger : {true, false})
    for (int32_t n : {1, 4}) {
      std::vector<int32_t> codes(n, 99);
      flatten_quantize_value(std::numeric_limits<float>::quiet_NaN(), 0.5f, n, 7, stagger, codes.data());
      for (int32_t c : codes) EXPECT_EQ(c, 0);
      flatten_quantize_value(std::numeric_limits<float>::infinity(), 0.5f, n, 7, stagger, codes.data());
      for (int32_t c : codes) EXPECT_EQ(c, 7);
      flatten_quantize_value(-std::numeric_limits<float>::infinity(), 0.5f, n, 7, stagger, codes.data());
      for (int32_t c : codes) EXPECT_EQ(c, -7);
    }
  EXPECT_EQ(nearest_even_saturate(3e38f, int64_t{1} << 40), int64_t{1} << 40);
  EXPECT_EQ(nearest_even_saturate(-3e38f, 127), -127);
  EXPECT_EQ(nearest_even_saturate(126.5f, 127), 126);
  EXPECT_EQ(nearest_even_saturate(127.5f, 127), 127);
}

TEST(QuantStagger, SaturationClampsTheChannelTotal) {
  // Beyond n·qmax steps every copy saturates at ±qmax: the total is clamped to ±n·qmax, as one code
  // of range n·qmax would be. Exactly at n·qmax nothing is lost.
  for (int qmax : {127, 7})
    for (int32_t n : {1, 2, 3, 5, 16}) {
      std::vector<int32_t> codes(n);
      for (float x : {float(n * qmax), float(n * qmax) + 0.49f, float(n * qmax) + 0.5f, float(n * qmax) * 3.f, 1e30f}) {
        for (float sign : {1.f, -1.f}) {
          flatten_quantize_value(sign * x, 1.f, n, qmax, true, codes.data());
          for (int32_t c : codes) EXPECT_EQ(c, int32_t(sign) * qmax) << "x " << sign * x << " n " << n;
          flatten_quantize_value(sign * x, 1.f, n, qmax, false, codes.data());
          for (int32_t c : codes) EXPECT_EQ(c, int32_t(sign) * qmax) << "plain x " << sign * x << " n " << n;
        }
      }
      // Just inside: the staggered total is still exact.
      flatten_quantize_value(float(n * qmax) - 0.6f, 1.f, n, qmax, true, codes.data());
      int64_t sum = 0;
      for (int32_t c : codes) sum += c;
      EXPECT_EQ(sum, n * qmax - 1);
    }
}

TEST(QuantStagger, PlainCopiesAreEqualAndCoarser) {
  std::vector<int32_t> codes(4);
  flatten_quantize_value(5.f, 1.f, 4, 127, false, codes.data());  // 5/4 = 1.25 -> 1, total 4
  for (int32_t c : codes) EXPECT_EQ(c, 1);
  flatten_quantize_value(5.f, 1.f, 4, 127, true, codes.data());   // 1,1,1,2: total 5
  EXPECT_EQ(codes, (std::vector<int32_t>{1, 1, 1, 2}));
}

// Mean squared error of X·Wᵀ when X is flattened and quantized (weights kept in float).
double activation_mse(const Tensor& x, const Tensor& w, const FlattenPlan& plan, int qmax, bool stagger) {
  const float step = plan.threshold / qmax;
  const int64_t rows = x.dim(0), width = x.dim(1), flat = plan.flat_features();
  std::vector<float> dequantized(rows * flat, 0.f);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t column = 0;
    for (int64_t j = 0; j < width; ++j) {
      std::vector<int32_t> codes(plan.copies[j]);
      flatten_quantize_value(x.data<float>()[r * width + j], step, plan.copies[j], qmax, stagger, codes.data());
      for (int32_t code : codes) dequantized[r * flat + column++] = code * step;
    }
  }
  const Tensor x_hat = Tensor::from_floats(dequantized, {rows, flat});
  return test::mean_squared_difference(test::matmul_reference(x_hat, flatten_weight(w, plan)),
                                       test::matmul_reference(x, w));
}

TEST(QuantStagger, StaggeredBeatsPlainOnOutlierHeavyData) {
  const Tensor x = test::outlier_activations(128, 1024, 11, 8);
  const Tensor w = test::random_weight(96, 1024, 12);
  const std::vector<float> channel_max = test::column_abs_max(x);
  const std::vector<double> energy = weight_column_energy(w);
  for (int bits : {8, 4}) {
    const int qmax = quant_max(bits);
    FlattenOptions options;
    options.stagger = true;
    const FlattenPlan staggered_plan = choose_threshold(channel_max, energy, qmax, options).plan;
    options.stagger = false;
    const FlattenPlan plain_plan = choose_threshold(channel_max, energy, qmax, options).plan;
    const double staggered = activation_mse(x, w, staggered_plan, qmax, true);
    const double plain_same_plan = activation_mse(x, w, staggered_plan, qmax, false);
    const double plain_own_plan = activation_mse(x, w, plain_plan, qmax, false);
    std::printf("A%d: MSE staggered %.4g, plain (same T) %.4g, plain (own T) %.4g; K growth %.3f / %.3f\n", bits,
                staggered, plain_same_plan, plain_own_plan, staggered_plan.growth(), plain_plan.growth());
    EXPECT_LE(staggered, plain_same_plan);
    EXPECT_LE(staggered, plain_own_plan);
    EXPECT_GT(staggered_plan.growth(), 0.0);  // the outliers were flattened at all
  }
}

TEST(QuantStagger, StaggeredLinearBeatsPlainEndToEnd) {
  const Tensor x = test::outlier_activations(128, 1024, 21, 8);
  const Tensor w = test::random_weight(96, 1024, 22);
  const SlotStatistics stats = test::statistics_of(x);
  const std::vector<double> exact = test::matmul_reference(x, w);
  for (int bits : {8, 4}) {
    double mse[2];
    for (bool stagger : {false, true}) {
      LinearQuantConfig config;
      config.activation_bits = bits;
      config.flattening.stagger = stagger;
      const auto linear = quantize_linear(w, Tensor(), stats, config);
      Tensor y = Tensor::empty(DType::f32, {128, 96});
      linear->forward(x, y);
      std::vector<double> got(y.data<float>(), y.data<float>() + y.numel());
      mse[stagger] = test::mean_squared_difference(got, exact);
    }
    std::printf("W8A%d QuantizedLinear: MSE staggered %.4g, plain %.4g\n", bits, mse[1], mse[0]);
    EXPECT_LE(mse[1], mse[0]);
  }
}

}  // namespace
}  // namespace fq
