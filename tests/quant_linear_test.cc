// QuantizedLinear: the integer path against its fake-quant reference and a scalar GEMM, accuracy
// against the float layer, and checked construction.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "fq/quant/quantized_linear.h"
#include "quant_test_util.h"

namespace fq {
namespace {

struct Case {
  int weight_bits, activation_bits;
  bool per_channel, dynamic, stagger, bias;
};

std::string name_of(const Case& c) {
  return fmt::format("w{}a{}{}{}{}{}", c.weight_bits, c.activation_bits, c.per_channel ? " per-channel" : " per-tensor",
                     c.dynamic ? " dynamic" : " static", c.stagger ? " staggered" : " plain", c.bias ? " bias" : "");
}

std::unique_ptr<QuantizedLinear> make_linear(const Case& c, const Tensor& w, const Tensor& bias, const SlotStatistics& stats) {
  LinearQuantConfig config;
  config.weights.bits = c.weight_bits;
  config.weights.granularity =
      c.per_channel ? WeightScaleGranularity::per_output_channel : WeightScaleGranularity::per_tensor;
  config.activation_bits = c.activation_bits;
  config.dynamic_activations = c.dynamic;
  config.flattening.stagger = c.stagger;
  config.flattening.budget = 0.5;
  return quantize_linear(w, c.bias ? bias : Tensor(), stats, config);
}

// Sums of code products, one plain loop, in int64 (and the sums of their magnitudes in `magnitudes`).
std::vector<int64_t> reference_accumulators(const Tensor& codes, const QuantizedLinear& linear,
                                            std::vector<int64_t>& magnitudes) {
  const Tensor weights =
      linear.weight_codes().dtype() == DType::i4 ? unpack_int4(linear.weight_codes()) : linear.weight_codes();
  const int64_t rows = codes.dim(0), flat = codes.dim(1), outputs = weights.dim(0);
  std::vector<int64_t> acc(rows * outputs, 0);
  magnitudes.assign(rows * outputs, 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t n = 0; n < outputs; ++n)
      for (int64_t c = 0; c < flat; ++c) {
        const int64_t product = int64_t{codes.data<int8_t>()[r * flat + c]} * weights.data<int8_t>()[n * flat + c];
        acc[r * outputs + n] += product;
        magnitudes[r * outputs + n] += std::abs(product);
      }
  return acc;
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (int wb : {8, 4})
    for (int ab : {8, 4})
      for (bool per_channel : {true, false})
        for (bool dynamic : {false, true})
          for (bool stagger : {true, false}) cases.push_back({wb, ab, per_channel, dynamic, stagger, (wb + ab) % 8 == 0});
  return cases;
}

TEST(QuantLinear, IntegerPathEqualsTheSimulatedOne) {
  const int64_t width = 192, outputs = 37;  // 37: not a multiple of the GEMM's row block
  const Tensor calibration_rows = test::outlier_activations(96, width, 31, 3);
  const SlotStatistics stats = test::statistics_of(calibration_rows);
  const Tensor w = test::random_weight(outputs, width, 32);
  const Tensor bias = test::random_weight(1, outputs, 33).reshape({outputs});
  // Other rows of the same distribution, some scaled 3x beyond what calibration saw (static saturation).
  Tensor x = test::outlier_activations(64, width, 31, 3);
  for (int64_t i = 0; i < 8 * width; ++i) x.data<float>()[i] *= 3.f;
  for (const Case& c : all_cases()) {
    const auto linear = make_linear(c, w, bias, stats);
    for (int64_t rows : {int64_t{1}, int64_t{5}, int64_t{64}}) {
      const Tensor input = x.slice(0, 0, rows).contiguous();
      float step = 0;
      const Tensor codes = linear->quantize_input(input, step);
      const Tensor acc = linear->accumulate(codes);
      std::vector<int64_t> magnitudes;
      const std::vector<int64_t> expected = reference_accumulators(codes, *linear, magnitudes);
      for (int64_t i = 0; i < acc.numel(); ++i)
        ASSERT_EQ(acc.data<int32_t>()[i], expected[i]) << name_of(c) << " rows " << rows << " element " << i;

      Tensor y = Tensor::empty(DType::f32, {rows, outputs}), simulated = Tensor::empty(DType::f32, {rows, outputs});
      linear->forward(input, y);
      linear->forward_simulated(input, simulated);
      for (int64_t i = 0; i < y.numel(); ++i) {
        const int64_t n = i % outputs;
        const double scale = linear->weight_scales().size() == 1 ? linear->weight_scales()[0] : linear->weight_scales()[n];
        const double terms = double(magnitudes[i]) * step * scale + (c.bias ? std::abs(bias.data<float>()[n]) : 0);
        const float got = y.data<float>()[i], want = simulated.data<float>()[i];
        // The integer path rescales in float (the sum, step · scale, the product, the bias: a few
        // roundings of the terms' size); the simulated one sums rounded double products.
        ASSERT_LE(std::abs(got - want), std::abs(want) * 1.2e-7 + terms * 5e-7) << name_of(c) << " element " << i;
      }
    }
  }
}

TEST(QuantLinear, CloseToTheFloatLayer) {
  const int64_t width = 256, outputs = 64;
  const Tensor x = test::outlier_activations(128, width, 41, 4);
  const Tensor w = test::random_weight(outputs, width, 42);
  const SlotStatistics stats = test::statistics_of(x);
  const std::vector<double> exact = test::matmul_reference(x, w);
  double reference_power = 0;
  for (double v : exact) reference_power += v * v / double(exact.size());
  auto relative_mse = [&](const Case& c) {
    const auto linear = make_linear(c, w, Tensor(), stats);
    Tensor y = Tensor::empty(DType::f32, {128, outputs});
    linear->forward(x, y);
    return test::mean_squared_difference(std::vector<double>(y.data<float>(), y.data<float>() + y.numel()), exact) /
           reference_power;
  };
  const double w8a8 = relative_mse({8, 8, true, false, true, false});
  const double w4a8 = relative_mse({4, 8, true, false, true, false});
  const double w4a4 = relative_mse({4, 4, true, false, true, false});
  std::printf("relative MSE: w8a8 %.3g, w4a8 %.3g, w4a4 %.3g\n", w8a8, w4a8, w4a4);
  EXPECT_LT(w8a8, 1e-3);
  EXPECT_LT(w8a8, w4a8);
  EXPECT_LT(w4a8, w4a4);
  EXPECT_LT(w4a4, 0.2);
}

TEST(QuantLinear, DynamicStepFollowsTheInput) {
  const Tensor x = test::outlier_activations(16, 64, 51, 2);
  const auto linear = make_linear({8, 8, true, true, true, false}, test::random_weight(8, 64, 52), Tensor(),
                                  test::statistics_of(x));
  float step = 0;
  const Tensor codes = linear->quantize_input(x, step);
  double largest = 0;
  for (int64_t r = 0; r < 16; ++r)
    for (int64_t j = 0; j < 64; ++j)
      largest = std::max(largest, std::abs(double(x.data<float>()[r * 64 + j])) / linear->plan().copies[j]);
  EXPECT_EQ(step, static_cast<float>(largest / 127));
  int largest_code = 0;
  for (int64_t i = 0; i < codes.numel(); ++i) largest_code = std::max(largest_code, std::abs(int(codes.data<int8_t>()[i])));
  EXPECT_EQ(largest_code, 127);
  // Scaling the input by a power of two scales the step and keeps the codes.
  Tensor doubled = x.clone();
  for (int64_t i = 0; i < doubled.numel(); ++i) doubled.data<float>()[i] *= 4.f;
  float doubled_step = 0;
  const Tensor same = linear->quantize_input(doubled, doubled_step);
  EXPECT_EQ(doubled_step, 4 * step);
  EXPECT_EQ(std::memcmp(same.raw(), codes.raw(), codes.nbytes()), 0);
}

TEST(QuantLinear, StaticInputsFarOutOfRangeSaturate) {
  const Tensor x = test::outlier_activations(16, 64, 61, 2);
  const auto linear = make_linear({8, 8, true, false, true, true}, test::random_weight(8, 64, 62),
                                  test::random_weight(1, 8, 63).reshape({8}), test::statistics_of(x));
  Tensor huge = x.clone();
  for (int64_t i = 0; i < huge.numel(); ++i) huge.data<float>()[i] *= 1e6f;
  float step = 0;
  const Tensor codes = linear->quantize_input(huge, step);
  for (int64_t r = 0; r < 16; ++r)
    for (int64_t c = 0; c < linear->plan().total_copies(); ++c) {
      const int code = codes.data<int8_t>()[r * linear->plan().flat_features() + c];
      const float value = huge.data<float>()[r * 64 + linear->plan().source[c]];
      if (std::abs(value) > 1e3f * step * 127) {
        EXPECT_EQ(code, value > 0 ? 127 : -127);
      }
    }
  Tensor y = Tensor::empty(DType::f32, {16, 8});
  linear->forward(huge, y);
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_TRUE(std::isfinite(y.data<float>()[i]));
}

TEST(QuantLinear, Int4WeightsArePacked) {
  const Tensor x = test::outlier_activations(8, 64, 71, 1);
  const auto linear = make_linear({4, 8, true, false, true, false}, test::random_weight(8, 64, 72), Tensor(),
                                  test::statistics_of(x));
  EXPECT_EQ(linear->weight_codes().dtype(), DType::i4);
  EXPECT_EQ(linear->weight_codes().nbytes(), size_t(8 * linear->plan().flat_features() / 2));
  EXPECT_NE(linear->kind().find("w4a8"), std::string::npos) << linear->kind();
  const Linear& as_linear = *linear;  // a drop-in Linear
  EXPECT_EQ(as_linear.in_features(), 64);
  EXPECT_EQ(as_linear.out_features(), 8);
}

TEST(QuantLinear, RejectsBadConstruction) {
  const FlattenPlan plan = FlattenPlan::from_copies({1, 2, 1}, 1.f, 8);
  const ActivationQuant activation{8, false, 0.01f, true};
  auto codes = [](int8_t value, int64_t width) {
    Tensor t = Tensor::zeros(DType::i8, {2, width});
    t.data<int8_t>()[1] = value;
    return t;
  };
  EXPECT_NO_THROW(QuantizedLinear(plan, codes(127, 8), 8, {1.f}, activation, Tensor()));
  EXPECT_THROW(QuantizedLinear(plan, codes(-128, 8), 8, {1.f}, activation, Tensor()), Error);  // outside ±127
  EXPECT_THROW(QuantizedLinear(plan, codes(8, 8), 4, {1.f}, activation, Tensor()), Error);     // outside ±7
  EXPECT_THROW(QuantizedLinear(plan, codes(1, 7), 8, {1.f}, activation, Tensor()), Error);     // width != K'
  EXPECT_THROW(QuantizedLinear(plan, codes(1, 8), 6, {1.f}, activation, Tensor()), Error);     // bits
  EXPECT_THROW(QuantizedLinear(plan, codes(1, 8), 8, {1.f, 1.f, 1.f}, activation, Tensor()), Error);
  EXPECT_THROW(QuantizedLinear(plan, codes(1, 8), 8, {0.f}, activation, Tensor()), Error);
  EXPECT_THROW(QuantizedLinear(plan, codes(1, 8), 8, {std::nanf("")}, activation, Tensor()), Error);
  EXPECT_THROW(QuantizedLinear(plan, codes(1, 8), 8, {1.f}, {8, false, 0.f, true}, Tensor()), Error);
  EXPECT_THROW(QuantizedLinear(plan, codes(1, 8), 8, {1.f}, {5, true, 0.f, true}, Tensor()), Error);
  EXPECT_THROW(QuantizedLinear(plan, codes(1, 8), 8, {1.f}, activation, Tensor::zeros(DType::f32, {3})), Error);
  FlattenPlan tampered = plan;
  tampered.source[1] = 2;
  EXPECT_THROW(QuantizedLinear(tampered, codes(1, 8), 8, {1.f}, activation, Tensor()), Error);
  // K' x 127 x 127 beyond int32.
  const FlattenPlan wide = FlattenPlan::from_copies({140000}, 1.f, 64);
  EXPECT_THROW(QuantizedLinear(wide, Tensor::zeros(DType::i8, {1, wide.flat_features()}), 8, {1.f}, activation, Tensor()),
               Error);
}

TEST(QuantLinear, RejectsBadShapes) {
  const QuantizedLinear linear(FlattenPlan::from_copies({1, 2, 1}, 1.f, 8), Tensor::zeros(DType::i8, {2, 8}), 8, {1.f},
                               {8, false, 0.01f, true}, Tensor());
  Tensor y = Tensor::empty(DType::f32, {4, 2});
  EXPECT_THROW(linear.forward(Tensor::zeros(DType::f32, {4, 4}), y), Error);
  Tensor wrong = Tensor::empty(DType::f32, {4, 3});
  EXPECT_THROW(linear.forward(Tensor::zeros(DType::f32, {4, 3}), wrong), Error);
  EXPECT_THROW(linear.accumulate(Tensor::zeros(DType::i8, {4, 7})), Error);
  EXPECT_NO_THROW(linear.forward(Tensor::zeros(DType::f32, {4, 3}), y));
}

}  // namespace
}  // namespace fq

namespace fq {
namespace {

// Per-token activations: one step per row, one integer GEMM; the integer path still equals the
// simulated one, and a row of small values keeps its precision next to a row of huge ones.
TEST(QuantLinear, PerTokenStepsFollowEachRow) {
  const int64_t width = 64, outputs = 16;
  Tensor x = test::outlier_activations(4, width, 81, 0);
  for (int64_t j = 0; j < width; ++j) x.data<float>()[j] *= 1000.f;  // row 0 is huge
  LinearQuantConfig config;
  config.flatten = false;
  config.per_token_activations = true;
  const Tensor w = test::random_weight(outputs, width, 82);
  const auto linear = quantize_linear(w, Tensor(), test::statistics_of(x), config);
  EXPECT_TRUE(linear->activation().per_token && linear->activation().dynamic);
  EXPECT_NE(linear->kind().find("per-token"), std::string::npos) << linear->kind();
  std::vector<float> steps;
  linear->quantize_input_rows(x, steps);
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_GT(steps[0], 100 * steps[1]);
  float unused;
  EXPECT_THROW(linear->quantize_input(x, unused), Error);

  Tensor y = Tensor::empty(DType::f32, {4, outputs}), simulated = Tensor::empty(DType::f32, {4, outputs});
  linear->forward(x, y);
  linear->forward_simulated(x, simulated);
  const std::vector<double> exact = test::matmul_reference(x, w);
  for (int64_t i = 0; i < y.numel(); ++i) {
    EXPECT_NEAR(y.data<float>()[i], simulated.data<float>()[i], 1e-5 * std::abs(simulated.data<float>()[i]) + 1e-6);
    // Rows 1..3 are quantized at their own scale: close to exact despite row 0.
    if (i >= outputs) EXPECT_NEAR(y.data<float>()[i], exact[i], 0.05 * std::abs(exact[i]) + 0.05);
  }
}

}  // namespace
}  // namespace fq
