// Each device Linear against its CPU form on inputs that f16 represents exactly, so both quantize to the
// same codes: the FP16 GEMM, and FlattenQuant Linears of every recipe (static, dynamic per-tensor and
// per-token steps; plain and staggered flattening; 8- and 4-bit weights; flat widths not a multiple of 64),
// each with every epilogue (plain f16 output, ReLU, added to an f32 residual).
#include <algorithm>
#include <cmath>

#include "backends/cuda/autotune.h"
#include "backends/cuda/device_linear.h"
#include "backends/cuda/elementwise.h"
#include "cuda/cuda_test_util.h"
#include "fq/quant/quantized_linear.h"

namespace dev = fq::FQ_CUDA_NS;

FQ_CUDA_SUITE(DeviceLinear);

namespace {

using fq::Tensor;

// Random rows with a few outlier channels, rounded to f16 values.
Tensor half_exact_input(int64_t rows, int64_t in, std::mt19937& random) {
  std::normal_distribution<float> normal(0.f, 1.f);
  Tensor x = Tensor::empty(fq::DType::f32, {rows, in});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < in; ++j) {
      const float value = normal(random) * (j % 13 == 5 ? 20.f : 1.f);
      x.data<float>()[r * in + j] = fq::f16_to_f32(fq::f32_to_f16(value));
    }
  return x;
}

fq::SlotStatistics statistics_of(const Tensor& x) {
  fq::SlotStatistics stats;
  const int64_t rows = x.dim(0), in = x.dim(1);
  stats.channel_max.assign(in, 0.f);
  stats.channel_square_sum.assign(in, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < in; ++j) {
      const float v = x.data<float>()[r * in + j];
      stats.channel_max[j] = std::max(stats.channel_max[j], std::fabs(v));
      stats.channel_square_sum[j] += double(v) * v;
    }
  stats.in_features = in;
  stats.rows_seen = rows;
  return stats;
}

void expect_close(const Tensor& got, const Tensor& want, double tolerance) {
  double scale = 0;
  for (int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::fabs(double(want.data<float>()[i])));
  for (int64_t i = 0; i < want.numel(); ++i)
    ASSERT_NEAR(got.data<float>()[i], want.data<float>()[i], tolerance * scale) << "element " << i;
}

enum class Finish { plain, relu, residual };

// y = linear(x) on the device, as f32; with Finish::relu the epilogue applies ReLU, with Finish::residual it adds y
// to a random f32 residual, and this returns what was added.
Tensor device_forward(const dev::DeviceLinear& linear, const Tensor& x, Finish finish = Finish::plain) {
  const int64_t rows = x.dim(0), in = x.dim(1), out = linear.out_features();
  std::vector<uint16_t> halves(rows * in);
  fq::convert_f32_to_f16(x.data<float>(), halves.data(), rows * in);
  std::vector<float> residual(rows * out);
  // Large next to the outputs, so that a residual dropped or overwritten shows beyond the tolerance.
  for (int64_t i = 0; i < rows * out; ++i) residual[i] = 4096.f * static_cast<float>(i % 7 - 3) + 0.5f;
  dev::DeviceBuffer input = dev::upload<uint16_t>(halves), output(rows * out * sizeof(uint16_t)),
                    floats = dev::upload<float>(residual);
  dev::LinearWorkspace workspace;
  dev::Epilogue epilogue;
  if (finish == Finish::relu) epilogue = {.activate = true, .activation = fq::Activation::relu};
  if (finish == Finish::residual) epilogue.residual = floats.as<float>();
  linear.forward(input.as<const __half>(), rows, output.as<__half>(), workspace, epilogue);
  if (finish != Finish::residual) dev::convert_to_float(output.as<const __half>(), floats.as<float>(), rows * out);
  std::vector<float> values = dev::download<float>(floats.data(), rows * out);
  if (finish == Finish::residual)
    for (int64_t i = 0; i < rows * out; ++i) values[i] -= residual[i];
  return Tensor::from_floats(values, {rows, out});
}

Tensor relu(const Tensor& y) {
  Tensor out = y.clone();
  for (int64_t i = 0; i < out.numel(); ++i) out.data<float>()[i] = std::max(out.data<float>()[i], 0.f);
  return out;
}

// Every epilogue of `linear` against the CPU's y.
void expect_every_epilogue(const dev::DeviceLinear& linear, const Tensor& x, const Tensor& want) {
  expect_close(device_forward(linear, x), want, 2e-3);
  expect_close(device_forward(linear, x, Finish::relu), relu(want), 2e-3);
  expect_close(device_forward(linear, x, Finish::residual), want, 2e-3);
}

}  // namespace

FQ_CUDA_TEST(DeviceLinear, HalfLinearMatchesFloatLinear) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937 random(seed);
  const int64_t rows = 5, in = 67, out = 24;
  const Tensor weight = half_exact_input(out, in, random), bias = half_exact_input(1, out, random).reshape({out});
  const fq::FloatLinear cpu(weight, bias, fq::DType::f32);
  const Tensor x = half_exact_input(rows, in, random);
  Tensor want = Tensor::empty(fq::DType::f32, {rows, out});
  cpu.forward(x, want);
  expect_every_epilogue(*dev::upload_linear(cpu), x, want);
}

FQ_CUDA_TEST(DeviceLinear, QuantizedLinearsMatchTheCpuIntegerPath) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937 random(seed);
  struct Case {
    int weight_bits, activation_bits;
    bool dynamic, per_token, stagger;
    int64_t align;
  };
  for (const Case c : {Case{8, 8, false, false, true, 64}, Case{8, 8, false, false, false, 64},
                       Case{8, 8, true, false, true, 64}, Case{8, 8, true, true, true, 64},
                       Case{4, 8, false, false, true, 64}, Case{4, 4, false, false, true, 64},
                       Case{8, 8, false, false, true, 8}, Case{4, 8, true, true, false, 16}}) {
    SCOPED_TRACE(::testing::Message() << "W" << c.weight_bits << "A" << c.activation_bits << " dynamic " << c.dynamic
                                      << " per-token " << c.per_token << " stagger " << c.stagger << " align "
                                      << c.align);
    const int64_t rows = 6, in = 90, out = 40;
    const Tensor calibration = half_exact_input(32, in, random);
    const Tensor weight = half_exact_input(out, in, random), bias = half_exact_input(1, out, random).reshape({out});
    fq::LinearQuantConfig config;
    config.weights.bits = c.weight_bits;
    config.activation_bits = c.activation_bits;
    config.dynamic_activations = c.dynamic;
    config.per_token_activations = c.per_token;
    config.flattening.stagger = c.stagger;
    config.flattening.align = c.align;
    config.flattening.budget = 0.3;
    const auto cpu = fq::quantize_linear(weight, bias, statistics_of(calibration), config);
    const Tensor x = half_exact_input(rows, in, random);
    Tensor want = Tensor::empty(fq::DType::f32, {rows, out});
    cpu->forward(x, want);
    // The same codes on both sides; the device rounds its output to f16.
    expect_every_epilogue(*dev::upload_linear(*cpu), x, want);
    if (c.weight_bits == 8) {
      // Both ways of multiplying, and the run-time choice between them with tuning on: the candidates' timing
      // runs must leave the residual as one forward pass would.
      for (const auto product : {dev::Int8Product::cublaslt, dev::Int8Product::fused}) {
        SCOPED_TRACE(product == dev::Int8Product::fused ? "fused" : "cublaslt");
        const dev::QuantizedDeviceLinear linear(dev::quantized_weights(*cpu), dev::preferred_int4_product(), product);
        expect_every_epilogue(linear, x, want);
      }
      const dev::Tuning previous = dev::tuning();
      dev::set_tuning(dev::Tuning::on);
      const dev::QuantizedDeviceLinear tuned(dev::quantized_weights(*cpu));
      for (const Finish finish : {Finish::plain, Finish::relu, Finish::residual}) {
        dev::forget_tuned_choices();
        const size_t timed_before = dev::tuned_choices();
        expect_close(device_forward(tuned, x, finish), finish == Finish::relu ? relu(want) : want, 2e-3);
        EXPECT_EQ(dev::tuned_choices(), timed_before + 1);
      }
      dev::set_tuning(previous);
    }
    if (c.weight_bits == 4 && c.activation_bits == 4) {
      const dev::QuantizedDeviceLinear native(dev::quantized_weights(*cpu), dev::Int4Product::native_s4);
      expect_every_epilogue(native, x, want);
    }
  }
}
