// FlattenQuantizer: the vector kernel equals the scalar reference bit for bit on random plans and data
// (ragged widths, many and no flattened channels, plain and staggered, 8 and 4 bits, non-finite and huge
// values, 1 to 70 rows), and the reference follows the plan's columns and flatten_quantize_value().
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fq/error.h"
#include "fq/quant/flatten.h"
#include "quant/activation_quant.h"

namespace fq::quant {
namespace {

using Path = FlattenQuantizer::Path;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int8_t kUnwritten = 0x5A;
constexpr int64_t kGuard = 67;  // bytes after the codes that must stay untouched

enum class PlanKind { none, few, many, wide };

FlattenPlan random_plan(int64_t width, PlanKind kind, int64_t align, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<int32_t> copies(width, 1);
  for (int64_t j = 0; j < width; ++j) {
    const double u = uniform(rng);
    if (kind == PlanKind::few && u < 0.1) copies[j] = 2 + static_cast<int32_t>(rng() % 3);
    if (kind == PlanKind::many && u < 0.5) copies[j] = 2 + static_cast<int32_t>(rng() % 8);
    // A channel with more copies than a 64-column block, next to ordinary ones.
    if (kind == PlanKind::wide && j % 40 == 3) copies[j] = j % 80 == 3 ? 70 : 150;
  }
  return FlattenPlan::from_copies(std::move(copies), 1.f, align);
}

// rows x stride floats: heavy per-channel scales (larger on flattened channels), a few non-finite, huge, tiny
// and tie values, and a huge finite value in the gap past each row that no result may depend on.
std::vector<float> random_rows(const FlattenPlan& plan, int64_t rows, int64_t stride, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::lognormal_distribution<float> spread(0.f, 1.f);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  const float specials[] = {kNaN, kInf, -kInf, 3e38f, -3e38f, 1e-40f, -0.f, 0.f, 0.125f, -0.375f, 2.5f, -1.5f};
  std::vector<float> scale(plan.in_features);
  for (int64_t j = 0; j < plan.in_features; ++j) scale[j] = spread(rng) * float(plan.copies[j]);
  std::vector<float> x(rows * stride, 1e30f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < plan.in_features; ++j) {
      float& value = x[r * stride + j];
      value = uniform(rng) < 0.03f ? specials[rng() % std::size(specials)] : normal(rng) * scale[j];
    }
  return x;
}

struct Codes {
  std::vector<int8_t> bytes;
  int64_t size;
  Codes(int64_t rows, int64_t flat) : bytes(rows * flat + kGuard, kUnwritten), size(rows * flat) {}
  int8_t* data() { return bytes.data(); }
  bool guard_intact() const {
    for (int64_t i = size; i < size + kGuard; ++i)
      if (bytes[i] != kUnwritten) return false;
    return true;
  }
};

// "" when equal, else where the first difference is.
std::string first_difference(const Codes& got, const Codes& expected, const FlattenPlan& plan) {
  for (int64_t i = 0; i < expected.size; ++i)
    if (got.bytes[i] != expected.bytes[i]) {
      const int64_t column = i % plan.flat_features();
      return "row " + std::to_string(i / plan.flat_features()) + " column " + std::to_string(column) + " (channel " +
             std::to_string(plan.source[column]) + "): " + std::to_string(got.bytes[i]) + " vs " +
             std::to_string(expected.bytes[i]);
    }
  return got.guard_intact() ? "" : "wrote past the codes";
}

TEST(ActivationQuant, VectorKernelEqualsReferenceBitForBit) {
  std::printf("vector kernel in this build: %s\n", FlattenQuantizer::vectorized_kernel() ? "AVX-512" : "none");
  const int64_t row_counts[] = {1, 2, 31, 32, 33, 70};
  int64_t cases = 0;
  for (int64_t width : {1, 5, 16, 17, 63, 64, 65, 130, 577})
    for (PlanKind kind : {PlanKind::none, PlanKind::few, PlanKind::many, PlanKind::wide})
      for (int64_t align : {1, 16, 64}) {
        const uint64_t seed = 1000 * width + 10 * int(kind) + align;
        const FlattenPlan plan = random_plan(width, kind, align, seed);
        const int64_t rows = row_counts[cases % std::size(row_counts)], stride = width + (cases % 3) * 5;
        const int64_t flat = plan.flat_features();
        const std::vector<float> x = random_rows(plan, rows, stride, seed + 1);
        for (int qmax : {127, 7})
          for (bool stagger : {true, false}) {
            ++cases;
            const std::string where = "K " + std::to_string(width) + " K' " + std::to_string(flat) + " rows " +
                                      std::to_string(rows) + " qmax " + std::to_string(qmax) +
                                      (stagger ? " staggered" : " plain");
            const FlattenQuantizer quantizer(plan, qmax, stagger);
            ASSERT_EQ(quantizer.flat_features(), flat);
            const float largest = quantizer.flattened_max(x.data(), rows, stride);
            // (the reference never reads the 1e30 past each row)
            ASSERT_EQ(largest, quantizer.flattened_max(x.data(), rows, stride, Path::reference)) << where;

            std::mt19937_64 rng(seed + 2);
            std::vector<float> row_steps(rows);
            for (float& step : row_steps) step = std::ldexp(1.f, int(rng() % 40) - 30) * (1 + float(rng() % 5) / 7);
            const float tensor_step = dynamic_step(largest, qmax);
            for (std::span<const float> steps : {std::span(&tensor_step, 1), std::span<const float>(row_steps)}) {
              Codes got(rows, flat), expected(rows, flat);
              quantizer.quantize(x.data(), rows, stride, steps, got.data());
              quantizer.quantize(x.data(), rows, stride, steps, expected.data(), Path::reference);
              ASSERT_EQ(first_difference(got, expected, plan), "") << where << ", " << steps.size() << " steps";
            }
            Codes got(rows, flat), expected(rows, flat);
            std::vector<float> got_steps(rows), expected_steps(rows);
            quantizer.quantize_per_token(x.data(), rows, stride, got_steps.data(), got.data());
            quantizer.quantize_per_token(x.data(), rows, stride, expected_steps.data(), expected.data(),
                                         Path::reference);
            ASSERT_EQ(got_steps, expected_steps) << where;
            ASSERT_EQ(first_difference(got, expected, plan), "") << where << ", per token";
          }
      }
  EXPECT_EQ(cases, 9 * 4 * 3 * 4);
}

// The reference, checked against the plan's columns: column c holds copy copy_index[c] of
// flatten_quantize_value(x[source[c]]), padding holds 0.
TEST(ActivationQuant, ReferenceFollowsThePlanColumns) {
  const FlattenPlan plan = random_plan(37, PlanKind::many, 16, 5);
  const std::vector<float> x = random_rows(plan, 3, 37, 6);
  for (bool stagger : {true, false}) {
    const FlattenQuantizer quantizer(plan, 127, stagger);
    const float step = 0.03f;
    Codes codes(3, plan.flat_features());
    quantizer.quantize(x.data(), 3, 37, std::span(&step, 1), codes.data(), Path::reference);
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t c = 0; c < plan.flat_features(); ++c) {
        const int32_t source = plan.source[c];
        int32_t expected = 0;
        if (source >= 0) {
          std::vector<int32_t> copies(plan.copies[source]);
          flatten_quantize_value(x[r * 37 + source], step, plan.copies[source], 127, stagger, copies.data());
          expected = copies[plan.copy_index[c]];
        }
        ASSERT_EQ(codes.bytes[r * plan.flat_features() + c], expected) << "row " << r << " column " << c;
      }
    EXPECT_TRUE(codes.guard_intact());
  }
}

TEST(ActivationQuant, NonFiniteInputs) {
  // Channel 1 has 3 copies; K' = 8 with padding.
  const FlattenPlan plan = FlattenPlan::from_copies({1, 3, 1}, 1.f, 8);
  const float rows[] = {kNaN, kNaN, kNaN, kInf, kInf, -kInf, 3e38f, -2.f, -3e38f};
  for (auto path : {Path::vectorized, Path::reference})
    for (bool stagger : {true, false}) {
      const FlattenQuantizer quantizer(plan, 7, stagger);
      EXPECT_EQ(quantizer.flattened_max(rows, 2, 3, path), 0.f);  // only non-finite values
      EXPECT_EQ(quantizer.flattened_max(rows, 3, 3, path), 3e38f);
      const float step = 0.5f;
      Codes codes(3, 8);
      quantizer.quantize(rows, 3, 3, std::span(&step, 1), codes.data(), path);
      const std::vector<int8_t> expected = {0, 0, 0, 0, 0, 0, 0, 0,  7, 7, 7, 7, -7, 0, 0, 0,
                                            7, -2, -1, -1, -7, 0, 0, 0};
      // Staggered: -2 / 0.5 = -4 split over 3 copies as floor((-4 + i) / 3) = -2, -1, -1. Plain: -4 / 3 -> -1 each.
      std::vector<int8_t> got(codes.bytes.begin(), codes.bytes.begin() + 24);
      std::vector<int8_t> want = expected;
      if (!stagger) want[17] = -1;
      EXPECT_EQ(got, want) << (stagger ? "staggered" : "plain");
      float steps[3];
      quantizer.quantize_per_token(rows, 3, 3, steps, codes.data(), path);
      EXPECT_EQ(steps[0], 1.f);  // nothing finite: step 1, and NaN still gives 0
      EXPECT_EQ(steps[1], 1.f);
      EXPECT_EQ(steps[2], static_cast<float>(double(3e38f) / 7));
    }
}

TEST(ActivationQuant, DynamicStep) {
  EXPECT_EQ(dynamic_step(0.f, 127), 1.f);
  EXPECT_EQ(dynamic_step(kNaN, 127), 1.f);
  EXPECT_EQ(dynamic_step(254.f, 127), 2.f);
  EXPECT_EQ(dynamic_step(1.f, 7), static_cast<float>(1.0 / 7));
  // A subnormal maximum still gives a step whose reciprocal is finite.
  const float tiny = dynamic_step(1e-44f, 127);
  EXPECT_EQ(tiny, std::numeric_limits<float>::min());
  EXPECT_TRUE(std::isfinite(1.f / tiny));
}

TEST(ActivationQuant, PerTokenEqualsQuantizeAtItsSteps) {
  const FlattenPlan plan = random_plan(200, PlanKind::few, 64, 9);
  const std::vector<float> x = random_rows(plan, 40, 200, 10);
  const FlattenQuantizer quantizer(plan, 127, true);
  Codes per_token(40, plan.flat_features()), per_row(40, plan.flat_features());
  std::vector<float> steps(40);
  quantizer.quantize_per_token(x.data(), 40, 200, steps.data(), per_token.data());
  for (int64_t r = 0; r < 40; ++r)
    EXPECT_EQ(steps[r], dynamic_step(quantizer.flattened_max(x.data() + r * 200, 1, 200), 127));
  quantizer.quantize(x.data(), 40, 200, steps, per_row.data());
  EXPECT_EQ(first_difference(per_token, per_row, plan), "");
}

TEST(ActivationQuant, RejectsBadArguments) {
  const FlattenPlan plan = FlattenPlan::from_copies({1, 2, 1}, 1.f, 4);
  EXPECT_THROW(FlattenQuantizer(plan, 0, true), Error);
  EXPECT_THROW(FlattenQuantizer(plan, 128, true), Error);
  FlattenPlan short_copies = plan;
  short_copies.copies.pop_back();
  EXPECT_THROW(FlattenQuantizer(short_copies, 127, true), Error);
  FlattenPlan too_narrow = plan;
  too_narrow.source.resize(3);  // K' = 3 < 4 copies
  EXPECT_THROW(FlattenQuantizer(too_narrow, 127, true), Error);
  FlattenPlan no_copies = plan;
  no_copies.copies[1] = 0;
  EXPECT_THROW(FlattenQuantizer(no_copies, 127, true), Error);

  const FlattenQuantizer quantizer(plan, 127, true);
  const float x[6] = {1, 2, 3, 4, 5, 6};
  int8_t codes[8];
  float steps[2];
  const float good = 0.1f, zero = 0.f, infinite = kInf, two[2] = {0.1f, 0.2f};
  EXPECT_THROW(quantizer.quantize(x, 2, 2, std::span(&good, 1), codes), Error);  // stride below K
  EXPECT_THROW(quantizer.quantize(x, -1, 3, std::span(&good, 1), codes), Error);
  EXPECT_THROW(quantizer.quantize(x, 2, 3, std::span(&zero, 1), codes), Error);
  EXPECT_THROW(quantizer.quantize(x, 2, 3, std::span(&infinite, 1), codes), Error);
  EXPECT_THROW(quantizer.quantize(x, 1, 3, std::span(two), codes), Error);  // 2 steps for 1 row
  EXPECT_THROW(quantizer.quantize(x, 2, 3, std::span(&good, 1), nullptr), Error);
  EXPECT_THROW(quantizer.quantize_per_token(x, 2, 3, nullptr, codes), Error);
  EXPECT_THROW(quantizer.flattened_max(nullptr, 2, 3), Error);
  EXPECT_NO_THROW(quantizer.quantize(x, 2, 3, std::span(two), codes));
  EXPECT_NO_THROW(quantizer.quantize_per_token(x, 2, 3, steps, codes));
  EXPECT_NO_THROW(quantizer.quantize(nullptr, 0, 3, std::span(&good, 1), nullptr));  // no rows
}

}  // namespace
}  // namespace fq::quant
