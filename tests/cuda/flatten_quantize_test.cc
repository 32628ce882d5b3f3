// The FlattenQuant input side of the CUDA backend (flatten_quantize.h) against the CPU, bit for bit: flattened
// maxima as quant::FlattenQuantizer, steps as quant::dynamic_step, codes as flatten_quantize_value on random and
// edge values (±0, ties, saturation, f16 max, ±inf, NaN) for n = 1..5 copies, qmax 7 and 127, both roundings, one
// step or one per row; the norm fused with flatten + quantize against ops::norm then flatten_quantize_value; the
// gated MLP's act(gate) · up read inside flattened_max and flatten_quantize against ops::gated_activate; and the
// rescale epilogue as cpu::rescale_rows within one f16 rounding.
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <span>

#include "backends/cpu/int8_matmul.h"
#include "backends/cuda/flatten_quantize.h"
#include "cuda/cuda_test_util.h"
#include "fq/dtype.h"
#include "fq/error.h"
#include "fq/quant/flatten.h"
#include "ops/ops.h"
#include "quant/activation_quant.h"

namespace dev = fq::FQ_CUDA_NS;

FQ_CUDA_SUITE(FlattenQuantize);

namespace {

using dev::testing::poisoned;
using dev::testing::to_device;


// A plan with copy counts 1..5 over in_features channels (threshold 1: channel maxima in (0, 5]).
fq::FlattenPlan random_plan(std::mt19937& rng, int64_t in_features, int64_t align) {
  std::vector<float> channel_max(in_features);
  for (float& m : channel_max) m = std::uniform_real_distribution<float>(0.01f, 5.f)(rng);
  return fq::plan_flatten(channel_max, 1.f, align);
}

// f16 activations [rows, in_features]: mostly random within ±n·T of each channel (T = 1), some edge values.
std::vector<uint16_t> random_activations(std::mt19937& rng, const fq::FlattenPlan& plan, int64_t rows,
                                         float edge_step) {
  const float edges[] = {0.f,
                         -0.f,
                         0.5f * edge_step,
                         -0.5f * edge_step,
                         1.5f * edge_step,
                         -2.5f * edge_step,
                         3.5f * edge_step,
                         127.5f * edge_step,
                         -127.5f * edge_step,
                         7.5f * edge_step,
                         65504.f,
                         -65504.f,
                         INFINITY,
                         -INFINITY,
                         NAN,
                         6e-8f};
  std::vector<uint16_t> x(rows * plan.in_features);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < plan.in_features; ++j) {
      const float range = static_cast<float>(plan.copies[j]);
      float value = std::uniform_real_distribution<float>(-range, range)(rng);
      if (std::uniform_int_distribution<int>(0, 9)(rng) == 0)
        value = edges[std::uniform_int_distribution<size_t>(0, std::size(edges) - 1)(rng)];
      x[r * plan.in_features + j] = fq::f32_to_f16(value);
    }
  return x;
}

std::vector<float> to_float(const std::vector<uint16_t>& bits) {
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = fq::f16_to_f32(bits[i]);
  return out;
}

void expect_bits_equal(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[i])) << "at " << i << ": " << got[i]
                                                                                 << " vs " << want[i];
}

// The device codes of x f16 [rows, plan.in_features] against flatten_quantize_value, column by column.
void expect_codes_match(const fq::FlattenPlan& plan, const std::vector<uint16_t>& x, int64_t rows,
                        const std::vector<float>& steps, int qmax, bool stagger) {
  const int64_t flat = plan.flat_features();
  const bool step_per_row = steps.size() > 1;
  const dev::DevicePlanStorage device_plan = dev::upload_plan(plan);
  const dev::DeviceBuffer device_x = to_device(x), device_steps = to_device(steps);
  const dev::DeviceBuffer codes = poisoned(rows * flat);
  dev::flatten_quantize(device_x.as<__half>(), rows, device_plan.view, qmax, stagger, device_steps.as<float>(),
                        step_per_row, codes.as<int8_t>());
  const std::vector<int8_t> got = dev::download<int8_t>(codes.data(), rows * flat);

  std::vector<int32_t> copy_codes;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t column = 0; column < flat; ++column) {
      const int32_t channel = plan.source[column];
      int32_t want = 0;
      float value = 0;
      if (channel >= 0) {
        value = fq::f16_to_f32(x[r * plan.in_features + channel]);
        copy_codes.resize(plan.copies[channel]);
        fq::flatten_quantize_value(value, steps[step_per_row ? r : 0], plan.copies[channel], qmax, stagger,
                                   copy_codes.data());
        want = copy_codes[plan.copy_index[column]];
      }
      ASSERT_EQ(got[r * flat + column], want) << "row " << r << ", column " << column << ", x " << value << ", step "
                                              << steps[step_per_row ? r : 0] << ", copy " << plan.copy_index[column]
                                              << " of " << (channel >= 0 ? plan.copies[channel] : 0);
    }
}

struct QuantizeCase {
  int64_t in_features, rows, align;
  int qmax;
  bool stagger, step_per_row;
};

void check_random_codes(const QuantizeCase& c) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed << ", in_features " << c.in_features << ", rows " << c.rows
                                    << ", align " << c.align << ", qmax " << c.qmax << ", stagger " << c.stagger
                                    << ", step per row " << c.step_per_row);
  std::mt19937 rng(seed);
  const fq::FlattenPlan plan = random_plan(rng, c.in_features, c.align);
  // Power-of-two steps make the edge values exact ties; a random step per row covers the rest.
  const float edge_step = std::ldexp(1.f, std::uniform_int_distribution<int>(-7, -2)(rng));
  const std::vector<uint16_t> x = random_activations(rng, plan, c.rows, edge_step);
  std::vector<float> steps = {edge_step};
  if (c.step_per_row)
    for (int64_t r = 1; r < c.rows; ++r) steps.push_back(std::uniform_real_distribution<float>(0.001f, 0.5f)(rng));
  expect_codes_match(plan, x, c.rows, steps, c.qmax, c.stagger);
}

}  // namespace

FQ_CUDA_TEST(FlattenQuantize, CodesMatchCpuBitForBit) {
  // align 64 and 8 give widths that are multiples of the 8-code packs; align 1 an odd width (the scalar kernel).
  for (int64_t in_features : {3, 67, 200})
    for (int64_t align : {1, 8})
      for (int qmax : {7, 127})
        for (bool stagger : {true, false})
          for (bool step_per_row : {false, true}) {
            const int64_t rows = in_features == 200 ? 2 : 5;
            check_random_codes({in_features, rows, align, qmax, stagger, step_per_row});
          }
  // Many rows on a narrow plan: the grid's rows loop (each thread quantizes several rows).
  check_random_codes({5, 150, 64, 127, true, true});
}

FQ_CUDA_TEST(FlattenQuantize, EveryHalfValueWithEveryCopyCount) {
  // Row r holds the 16 f16 bit patterns 16r..16r+15 (similar magnitudes), so its step can put them anywhere in the
  // code range: a power of two (exact ties) on even rows, any float on odd rows. Channel j has 1 + (j + shift) % 5
  // copies, so over the five shifts every value meets every n in 1..5.
  const int64_t in_features = 16, rows = (1 << 16) / in_features;
  std::vector<uint16_t> x(rows * in_features);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<uint16_t>(i);
  for (int qmax : {7, 127})
    for (bool stagger : {true, false}) {
      const uint32_t seed = dev::testing::fresh_seed();
      SCOPED_TRACE(::testing::Message() << "seed " << seed << ", qmax " << qmax << ", stagger " << stagger);
      std::mt19937 rng(seed);
      std::vector<float> steps(rows);
      for (int64_t r = 0; r < rows; ++r) {
        const float magnitude = std::abs(fq::f16_to_f32(x[r * in_features]));
        const float target_code = std::uniform_real_distribution<float>(0.3f, 6.f * qmax)(rng);
        float step = std::isfinite(magnitude) && magnitude > 0 ? magnitude / target_code : 1.f;
        if (r % 2 == 0) step = std::ldexp(1.f, std::ilogb(step));
        steps[r] = std::max(step, std::numeric_limits<float>::min());
      }
      for (int shift = 0; shift < 5; ++shift) {
        std::vector<int32_t> copies(in_features);
        for (int64_t j = 0; j < in_features; ++j) copies[j] = 1 + static_cast<int32_t>((j + shift) % 5);
        expect_codes_match(fq::FlattenPlan::from_copies(copies, 1.f, 8), x, rows, steps, qmax, stagger);
      }
    }
}

FQ_CUDA_TEST(FlattenQuantize, FlattenedMaxMatchesCpu) {
  for (int64_t in_features : {3, 67, 200})
    for (int64_t rows : {1, 5}) {
      const uint32_t seed = dev::testing::fresh_seed();
      SCOPED_TRACE(::testing::Message() << "seed " << seed << ", in_features " << in_features << ", rows " << rows);
      std::mt19937 rng(seed);
      const fq::FlattenPlan plan = random_plan(rng, in_features, 8);
      const std::vector<uint16_t> x = random_activations(rng, plan, rows, 0.25f);
      const std::vector<float> x_float = to_float(x);
      const fq::quant::FlattenQuantizer quantizer(plan, 127, true);
      const auto path = fq::quant::FlattenQuantizer::Path::reference;
      std::vector<float> want_rows(rows);
      for (int64_t r = 0; r < rows; ++r)
        want_rows[r] = quantizer.flattened_max(x_float.data() + r * in_features, 1, in_features, path);
      const float want_tensor = quantizer.flattened_max(x_float.data(), rows, in_features, path);

      const dev::DevicePlanStorage device_plan = dev::upload_plan(plan);
      const dev::DeviceBuffer device_x = to_device(x);
      const dev::DeviceBuffer row_max = poisoned(rows * sizeof(float)), tensor_max = poisoned(sizeof(float));
      dev::flattened_max(device_x.as<__half>(), rows, device_plan.view, row_max.as<float>(), tensor_max.as<float>());
      expect_bits_equal(dev::download<float>(row_max.data(), rows), want_rows);
      expect_bits_equal(dev::download<float>(tensor_max.data(), 1), {want_tensor});

      // Each output alone; the tensor maximum starts from zero again.
      dev::flattened_max(device_x.as<__half>(), rows, device_plan.view, nullptr, tensor_max.as<float>());
      expect_bits_equal(dev::download<float>(tensor_max.data(), 1), {want_tensor});
      const dev::DeviceBuffer row_only = poisoned(rows * sizeof(float));
      dev::flattened_max(device_x.as<__half>(), rows, device_plan.view, row_only.as<float>(), nullptr);
      expect_bits_equal(dev::download<float>(row_only.data(), rows), want_rows);
    }
}

FQ_CUDA_TEST(FlattenQuantize, FlattenedMaxOfNonFiniteRowIsZero) {
  const fq::FlattenPlan plan = fq::FlattenPlan::from_copies({2, 1, 3}, 1.f, 8);
  const std::vector<uint16_t> x = {fq::f32_to_f16(INFINITY), fq::f32_to_f16(NAN), fq::f32_to_f16(-INFINITY)};
  const dev::DevicePlanStorage device_plan = dev::upload_plan(plan);
  const dev::DeviceBuffer device_x = to_device(x), row_max = poisoned(sizeof(float)), tensor_max = poisoned(4);
  dev::flattened_max(device_x.as<__half>(), 1, device_plan.view, row_max.as<float>(), tensor_max.as<float>());
  expect_bits_equal(dev::download<float>(row_max.data(), 1), {0.f});
  expect_bits_equal(dev::download<float>(tensor_max.data(), 1), {0.f});
}

FQ_CUDA_TEST(FlattenQuantize, DynamicStepsMatchCpu) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  std::vector<float> maxima = {0.f,  -0.f, 1.f, -1.f, NAN, INFINITY, std::numeric_limits<float>::denorm_min(),
                               1e-40f, std::numeric_limits<float>::min(), 3e38f, 127.f, 7.f, 1e-37f};
  for (int i = 0; i < 200; ++i)
    maxima.push_back(std::ldexp(std::uniform_real_distribution<float>(0.5f, 1.f)(rng),
                                std::uniform_int_distribution<int>(-140, 127)(rng)));
  for (int qmax : {7, 127}) {
    SCOPED_TRACE(::testing::Message() << "qmax " << qmax);
    const dev::DeviceBuffer device_maxima = to_device(maxima), steps = poisoned(maxima.size() * sizeof(float));
    dev::dynamic_steps(device_maxima.as<float>(), static_cast<int64_t>(maxima.size()), qmax, steps.as<float>());
    std::vector<float> want;
    for (float m : maxima) want.push_back(fq::quant::dynamic_step(m, qmax));
    expect_bits_equal(dev::download<float>(steps.data(), maxima.size()), want);
  }
}

FQ_CUDA_TEST(FlattenQuantize, RescaleMatchesCpu) {
  for (int64_t cols : {3, 67, 200})
    for (int64_t rows : {1, 5})
      for (bool step_per_row : {false, true})
        for (bool scale_per_column : {false, true})
          for (bool with_bias : {false, true}) {
            const uint32_t seed = dev::testing::fresh_seed();
            SCOPED_TRACE(::testing::Message() << "seed " << seed << ", cols " << cols << ", rows " << rows
                                              << ", step per row " << step_per_row << ", scale per column "
                                              << scale_per_column << ", bias " << with_bias);
            std::mt19937 rng(seed);
            std::vector<int32_t> acc(rows * cols);
            for (int32_t& a : acc) a = std::uniform_int_distribution<int32_t>(-(1 << 26), 1 << 26)(rng);
            auto random = [&](int64_t count, float low, float high) {
              std::vector<float> out(count);
              for (float& v : out) v = std::uniform_real_distribution<float>(low, high)(rng);
              return out;
            };
            const std::vector<float> steps = random(step_per_row ? rows : 1, 1e-4f, 1e-3f);
            const std::vector<float> scales = random(scale_per_column ? cols : 1, 1e-4f, 1e-3f);
            const std::vector<float> bias = random(cols, -2.f, 2.f);

            std::vector<float> want(rows * cols);
            fq::cpu::rescale_rows(acc.data(), rows, cols, steps, scales, with_bias ? bias.data() : nullptr,
                                  want.data());

            const dev::DeviceBuffer device_acc = to_device(acc), device_steps = to_device(steps);
            const dev::DeviceBuffer device_scales = to_device(scales), device_bias = to_device(bias);
            const dev::DeviceBuffer out = poisoned(rows * cols * sizeof(uint16_t));
            dev::rescale(device_acc.as<int32_t>(), rows, cols, device_steps.as<float>(), step_per_row,
                         device_scales.as<float>(), scale_per_column, with_bias ? device_bias.as<float>() : nullptr,
                         out.as<__half>());
            const std::vector<float> got = to_float(dev::download<uint16_t>(out.data(), rows * cols));
            for (int64_t i = 0; i < rows * cols; ++i) {
              ASSERT_NEAR(got[i], want[i], std::ldexp(std::abs(want[i]), -10) + 1e-6f) << "at " << i;
              // Bit for bit against the one fma the kernel documents.
              const int64_t r = i / cols, c = i % cols;
              const float fused = std::fmaf(static_cast<float>(acc[i]),
                                            steps[step_per_row ? r : 0] * scales[scale_per_column ? c : 0],
                                            with_bias ? bias[c] : 0.f);
              ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(fq::f16_to_f32(fq::f32_to_f16(fused))))
                  << "at " << i;
            }
          }
}

FQ_CUDA_TEST(FlattenQuantize, NormFusedWithQuantizationMatchesCpu) {
  // RMSNorm and LayerNorm (with and without bias), widths that take the packed and the scalar kernels, static and
  // dynamic per-row steps. The CPU sums the norm's statistics in double and the device in float, so a few codes
  // whose scaled value sits on a rounding boundary may differ by one; everything else must match.
  struct Case {
    fq::NormKind kind;
    bool bias;
    int64_t width, align;
    bool stagger, dynamic;
  };
  int64_t compared = 0, differing = 0;
  for (const Case c : {Case{fq::NormKind::rms_norm, false, 200, 8, true, false},
                       Case{fq::NormKind::rms_norm, false, 200, 8, true, true},
                       Case{fq::NormKind::layer_norm, true, 200, 8, false, false},
                       Case{fq::NormKind::layer_norm, true, 67, 1, true, true},
                       Case{fq::NormKind::layer_norm, false, 96, 8, false, true},
                       Case{fq::NormKind::rms_norm, false, 67, 8, true, false}}) {
    const uint32_t seed = dev::testing::fresh_seed();
    SCOPED_TRACE(::testing::Message() << "seed " << seed << ", layer norm " << (c.kind == fq::NormKind::layer_norm)
                                      << ", bias " << c.bias << ", width " << c.width << ", stagger " << c.stagger
                                      << ", dynamic " << c.dynamic);
    std::mt19937 rng(seed);
    const int64_t rows = 7;
    const int qmax = 127;
    const float eps = 1e-5f;
    std::normal_distribution<float> normal(0.f, 1.f);
    fq::Tensor x = fq::Tensor::empty(fq::DType::f32, {rows, c.width});
    fq::Norm norm{fq::Tensor::empty(fq::DType::f32, {c.width}), {}};
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = normal(rng) * (i % 11 == 3 ? 30.f : 1.f) + 0.3f;
    for (int64_t j = 0; j < c.width; ++j) norm.weight.data<float>()[j] = 1.f + 0.2f * normal(rng);
    if (c.bias) {
      norm.bias = fq::Tensor::empty(fq::DType::f32, {c.width});
      for (int64_t j = 0; j < c.width; ++j) norm.bias.data<float>()[j] = 0.1f * normal(rng);
    }
    fq::Tensor normed = fq::Tensor::empty(fq::DType::f32, {rows, c.width});
    fq::ops::norm(x, normed, norm, c.kind, eps);

    // The plan from the normalized values' channel maxima, so that outlier channels are split.
    std::vector<float> channel_max(c.width, 0.f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < c.width; ++j)
        channel_max[j] = std::max(channel_max[j], std::fabs(normed.data<float>()[r * c.width + j]));
    const fq::FlattenPlan plan = fq::plan_flatten(channel_max, 3.f, c.align);
    const int64_t flat = plan.flat_features();
    const fq::quant::FlattenQuantizer quantizer(plan, qmax, c.stagger);

    const dev::DevicePlanStorage device_plan = dev::upload_plan(plan);
    const dev::DeviceBuffer device_x = to_device(std::vector<float>(x.data<float>(), x.data<float>() + x.numel()));
    const dev::DeviceBuffer weight = to_device(std::vector<float>(norm.weight.data<float>(),
                                                                  norm.weight.data<float>() + c.width));
    const dev::DeviceBuffer bias = c.bias ? to_device(std::vector<float>(norm.bias.data<float>(),
                                                                         norm.bias.data<float>() + c.width))
                                          : dev::DeviceBuffer();
    const float static_step = 3.f / qmax;
    const dev::DeviceBuffer step = to_device(std::vector<float>{static_step}), row_steps = poisoned(rows * 4),
                            codes = poisoned(rows * flat);
    const dev::NormParameters parameters{weight.as<float>(), c.bias ? bias.as<float>() : nullptr,
                                         c.kind == fq::NormKind::layer_norm, eps};
    dev::norm_flatten_quantize(device_x.as<float>(), rows, parameters, device_plan.view, qmax, c.stagger,
                               c.dynamic ? nullptr : step.as<float>(), c.dynamic ? row_steps.as<float>() : nullptr,
                               codes.as<int8_t>());
    const std::vector<int8_t> got = dev::download<int8_t>(codes.data(), rows * flat);
    const std::vector<float> got_steps = dev::download<float>(row_steps.data(), rows);

    std::vector<int32_t> copy_codes;
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = normed.data<float>() + r * c.width;
      float row_step = static_step;
      if (c.dynamic) {
        const float want_step = fq::quant::dynamic_step(
            quantizer.flattened_max(row, 1, c.width, fq::quant::FlattenQuantizer::Path::reference), qmax);
        ASSERT_NEAR(got_steps[r], want_step, 1e-5f * want_step) << "row " << r;
        row_step = got_steps[r];  // the codes below are compared at the device's step
      }
      for (int64_t column = 0; column < flat; ++column) {
        const int32_t channel = plan.source[column];
        int32_t want = 0;
        if (channel >= 0) {
          copy_codes.resize(plan.copies[channel]);
          fq::flatten_quantize_value(row[channel], row_step, plan.copies[channel], qmax, c.stagger, copy_codes.data());
          want = copy_codes[plan.copy_index[column]];
        }
        const int got_code = got[r * flat + column];
        ASSERT_LE(std::abs(got_code - want), 1) << "row " << r << ", column " << column << ", x " << row[channel];
        ++compared;
        differing += got_code != want;
      }
    }
  }
  EXPECT_LE(differing, compared / 200) << differing << " of " << compared << " codes differ";
}

FQ_CUDA_TEST(FlattenQuantize, GatedInputMatchesCpuActivationThenQuantize) {
  // The device evaluates the activation with its own exp/erf, so a value on a rounding boundary may give a code
  // one off; everything else must match, and the maxima to float rounding.
  int64_t compared = 0, differing = 0;
  for (const fq::Activation activation : {fq::Activation::silu, fq::Activation::gelu})
    for (const bool stagger : {true, false}) {
      const uint32_t seed = dev::testing::fresh_seed();
      SCOPED_TRACE(::testing::Message() << "seed " << seed << ", activation " << static_cast<int>(activation)
                                        << ", stagger " << stagger);
      std::mt19937 rng(seed);
      const int64_t rows = 6, width = 136;
      std::normal_distribution<float> normal(0.f, 1.f);
      std::vector<uint16_t> gate(rows * width), up(rows * width);
      fq::Tensor product = fq::Tensor::empty(fq::DType::f32, {rows, width});
      fq::Tensor up_values = fq::Tensor::empty(fq::DType::f32, {rows, width});
      for (int64_t i = 0; i < rows * width; ++i) {
        gate[i] = fq::f32_to_f16(2.f * normal(rng));
        up[i] = fq::f32_to_f16(normal(rng) * (i % 17 == 4 ? 25.f : 1.f));
        product.data<float>()[i] = fq::f16_to_f32(gate[i]);
        up_values.data<float>()[i] = fq::f16_to_f32(up[i]);
      }
      fq::ops::gated_activate(product, up_values, activation);
      std::vector<float> channel_max(width, 0.f);
      for (int64_t i = 0; i < rows * width; ++i)
        channel_max[i % width] = std::max(channel_max[i % width], std::fabs(product.data<float>()[i]));
      const fq::FlattenPlan plan = fq::plan_flatten(channel_max, 2.f, 8);
      const int64_t flat = plan.flat_features();
      const fq::quant::FlattenQuantizer quantizer(plan, 127, stagger);

      const dev::DevicePlanStorage device_plan = dev::upload_plan(plan);
      const dev::DeviceBuffer device_gate = to_device(gate), device_up = to_device(up);
      const dev::QuantizerInput input(device_gate.as<__half>(), device_up.as<__half>(), activation);
      const dev::DeviceBuffer row_max = poisoned(rows * 4), tensor_max = poisoned(4), steps = poisoned(rows * 4);
      dev::flattened_max(input, rows, device_plan.view, row_max.as<float>(), tensor_max.as<float>());
      dev::dynamic_steps(row_max.as<float>(), rows, 127, steps.as<float>());
      const dev::DeviceBuffer codes = poisoned(rows * flat);
      dev::flatten_quantize(input, rows, device_plan.view, 127, stagger, steps.as<float>(), true, codes.as<int8_t>());
      const std::vector<float> got_max = dev::download<float>(row_max.data(), rows);
      const std::vector<float> got_steps = dev::download<float>(steps.data(), rows);
      const std::vector<int8_t> got = dev::download<int8_t>(codes.data(), rows * flat);

      const auto path = fq::quant::FlattenQuantizer::Path::reference;
      const float want_tensor = quantizer.flattened_max(product.data<float>(), rows, width, path);
      EXPECT_NEAR(dev::download<float>(tensor_max.data(), 1)[0], want_tensor, 1e-5f * want_tensor);
      std::vector<int32_t> copy_codes;
      for (int64_t r = 0; r < rows; ++r) {
        const float* row = product.data<float>() + r * width;
        const float want_max = quantizer.flattened_max(row, 1, width, path);
        ASSERT_NEAR(got_max[r], want_max, 1e-5f * want_max) << "row " << r;
        for (int64_t column = 0; column < flat; ++column) {
          const int32_t channel = plan.source[column];
          int32_t want = 0;
          if (channel >= 0) {
            copy_codes.resize(plan.copies[channel]);
            fq::flatten_quantize_value(row[channel], got_steps[r], plan.copies[channel], 127, stagger,
                                       copy_codes.data());
            want = copy_codes[plan.copy_index[column]];
          }
          const int got_code = got[r * flat + column];
          ASSERT_LE(std::abs(got_code - want), 1) << "row " << r << ", column " << column;
          ++compared;
          differing += got_code != want;
        }
      }
    }
  EXPECT_LE(differing, compared / 200) << differing << " of " << compared << " codes differ";
}

FQ_CUDA_TEST(FlattenQuantize, NormFusionRefusesWideRowsAndAmbiguousSteps) {
  EXPECT_TRUE(dev::norm_fusable(12288));
  EXPECT_FALSE(dev::norm_fusable(12289));
  const dev::DevicePlanStorage plan = dev::upload_plan(fq::FlattenPlan::from_copies({1, 2}, 1.f, 4));
  const dev::DeviceBuffer buffer(1024);
  const dev::NormParameters rms{buffer.as<float>(), nullptr, false, 1e-5f};
  // Both a static step and row steps, then neither.
  EXPECT_THROW(dev::norm_flatten_quantize(buffer.as<float>(), 1, rms, plan.view, 127, true, buffer.as<float>(),
                                          buffer.as<float>(), buffer.as<int8_t>()),
               fq::Error);
  EXPECT_THROW(dev::norm_flatten_quantize(buffer.as<float>(), 1, rms, plan.view, 127, true, nullptr, nullptr,
                                          buffer.as<int8_t>()),
               fq::Error);
  const dev::DevicePlanStorage wide = dev::upload_plan(fq::FlattenPlan::from_copies(std::vector<int32_t>(12289, 1), 1.f, 1));
  EXPECT_THROW(dev::norm_flatten_quantize(buffer.as<float>(), 1, rms, wide.view, 127, true, buffer.as<float>(), nullptr,
                                          buffer.as<int8_t>()),
               fq::Error);
}

FQ_CUDA_TEST(FlattenQuantize, RejectsBadArguments) {
  fq::FlattenPlan bad = fq::FlattenPlan::from_copies({1, 2}, 1.f, 4);
  bad.source[1] = 5;
  EXPECT_THROW(dev::upload_plan(bad), fq::Error);
  bad = fq::FlattenPlan::from_copies({1, 2}, 1.f, 4);
  bad.copy_index[2] = 2;
  EXPECT_THROW(dev::upload_plan(bad), fq::Error);

  const dev::DevicePlanStorage plan = dev::upload_plan(fq::FlattenPlan::from_copies({1, 2}, 1.f, 4));
  const dev::DeviceBuffer buffer(1024);
  EXPECT_THROW(dev::flattened_max(buffer.as<__half>(), 1, plan.view, nullptr, nullptr), fq::Error);
  EXPECT_THROW(dev::flattened_max(buffer.as<__half>(), 0, plan.view, buffer.as<float>(), nullptr), fq::Error);
  EXPECT_THROW(dev::flatten_quantize(buffer.as<__half>(), 1, plan.view, 128, true, buffer.as<float>(), false,
                                     buffer.as<int8_t>()),
               fq::Error);
  EXPECT_THROW(dev::flatten_quantize(buffer.as<__half>(), 0, plan.view, 127, true, buffer.as<float>(), false,
                                     buffer.as<int8_t>()),
               fq::Error);
  EXPECT_THROW(dev::dynamic_steps(buffer.as<float>(), 0, 127, buffer.as<float>()), fq::Error);
  EXPECT_THROW(dev::rescale(buffer.as<int32_t>(), 1, 0, buffer.as<float>(), false, buffer.as<float>(), false, nullptr,
                            buffer.as<__half>()),
               fq::Error);
}
