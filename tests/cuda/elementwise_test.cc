// The elementwise and row-wise ops of the CUDA backend (elementwise.h) against the CPU: ops::norm, ops::rope and
// ops::activate / gated_activate within one f16 rounding, embeddings, residual adds and conversions bit for bit.
// Widths that are and are not multiples of the 16-byte packs, and pointers offset off their alignment, cover both
// the packed and the scalar kernels.
#include <bit>
#include <cmath>
#include <random>
#include <span>

#include "backends/cuda/elementwise.h"
#include "cuda/cuda_test_util.h"
#include "fq/dtype.h"
#include "fq/error.h"
#include "ops/ops.h"

namespace dev = fq::FQ_CUDA_NS;

FQ_CUDA_SUITE(Elementwise);

namespace {

using dev::testing::poisoned;
using dev::testing::to_device;

std::vector<float> random_floats(std::mt19937& rng, size_t count, float low, float high) {
  std::uniform_real_distribution<float> value(low, high);
  std::vector<float> out(count);
  for (float& v : out) v = value(rng);
  return out;
}

// The f16 bits of values, and the floats those bits stand for (what the device sees).
std::vector<uint16_t> to_half(const std::vector<float>& values) {
  std::vector<uint16_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = fq::f32_to_f16(values[i]);
  return out;
}
std::vector<float> to_float(const std::vector<uint16_t>& bits) {
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = fq::f16_to_f32(bits[i]);
  return out;
}

std::vector<float> download_half(const dev::DeviceBuffer& buffer, size_t count) {
  return to_float(dev::download<uint16_t>(buffer.data(), count));
}

// got (f16 results) within one f16 rounding of the f32 reference (plus `slack` for the f32 differences near 0).
void expect_half_close(const std::vector<float>& got, const std::vector<float>& want, float slack) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], std::ldexp(std::abs(want[i]), -10) + slack) << "at " << i;
}

void expect_bits_equal(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[i])) << "at " << i << ": " << got[i]
                                                                                 << " vs " << want[i];
}

constexpr int64_t kWidths[] = {3, 67, 200};
constexpr int64_t kRows[] = {1, 5};

}  // namespace

FQ_CUDA_TEST(Elementwise, EmbedAndPositions) {
  for (int64_t width : kWidths)
    for (int64_t rows : kRows) {
      const uint32_t seed = dev::testing::fresh_seed();
      SCOPED_TRACE(::testing::Message() << "seed " << seed << ", width " << width << ", rows " << rows);
      std::mt19937 rng(seed);
      const int64_t vocab = 11, seq = 3, first_position = 2, positions = first_position + seq;
      const std::vector<uint16_t> table = to_half(random_floats(rng, vocab * width, -2, 2));
      const std::vector<uint16_t> position_table = to_half(random_floats(rng, positions * width, -1, 1));
      std::vector<int32_t> tokens(rows);
      for (int32_t& token : tokens) token = std::uniform_int_distribution<int32_t>(0, vocab - 1)(rng);

      const dev::DeviceBuffer device_table = to_device(table), device_positions = to_device(position_table);
      const dev::DeviceBuffer device_tokens = to_device(tokens), out = poisoned(rows * width * sizeof(float));
      dev::embed(device_tokens.as<int32_t>(), rows, device_table.as<__half>(), width, out.as<float>());
      std::vector<float> want(rows * width);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < width; ++c) want[r * width + c] = fq::f16_to_f32(table[tokens[r] * width + c]);
      expect_bits_equal(dev::download<float>(out.data(), want.size()), want);

      dev::add_positions(out.as<float>(), rows, seq, first_position, device_positions.as<__half>(), width);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < width; ++c)
          want[r * width + c] += fq::f16_to_f32(position_table[(first_position + r % seq) * width + c]);
      expect_bits_equal(dev::download<float>(out.data(), want.size()), want);
    }
}

FQ_CUDA_TEST(Elementwise, NormsMatchCpu) {
  for (fq::NormKind kind : {fq::NormKind::rms_norm, fq::NormKind::layer_norm})
    for (bool with_bias : {true, false})
      for (int64_t width : kWidths)
        for (int64_t rows : kRows) {
          if (kind == fq::NormKind::rms_norm && with_bias) continue;
          const uint32_t seed = dev::testing::fresh_seed();
          SCOPED_TRACE(::testing::Message() << "seed " << seed << ", kind " << static_cast<int>(kind) << ", bias "
                                            << with_bias << ", width " << width << ", rows " << rows);
          std::mt19937 rng(seed);
          const float eps = 1e-5f;
          // Off-center values, so that LayerNorm's mean matters.
          const std::vector<float> x = random_floats(rng, rows * width, -1.f, 3.f);
          const std::vector<float> weight = random_floats(rng, width, 0.5f, 1.5f);
          const std::vector<float> bias = random_floats(rng, width, -1.f, 1.f);

          const fq::Norm norm{fq::Tensor::from_floats(weight, {width}),
                              with_bias ? fq::Tensor::from_floats(bias, {width}) : fq::Tensor()};
          fq::Tensor want = fq::Tensor::empty(fq::DType::f32, {rows, width});
          fq::ops::norm(fq::Tensor::from_floats(x, {rows, width}), want, norm, kind, eps);

          const dev::DeviceBuffer device_x = to_device(x), device_weight = to_device(weight);
          const dev::DeviceBuffer device_bias = to_device(bias), out = poisoned(rows * width * sizeof(uint16_t));
          if (kind == fq::NormKind::rms_norm)
            dev::rms_norm(device_x.as<float>(), out.as<__half>(), rows, width, device_weight.as<float>(), eps);
          else
            dev::layer_norm(device_x.as<float>(), out.as<__half>(), rows, width, device_weight.as<float>(),
                            with_bias ? device_bias.as<float>() : nullptr, eps);
          expect_half_close(download_half(out, rows * width),
                            std::vector<float>(want.data<float>(), want.data<float>() + rows * width), 1e-5f);
        }
}

FQ_CUDA_TEST(Elementwise, AddResidual) {
  // 1003 leaves a tail after the packs of 8; offset 1 breaks the 16-byte alignment and takes the scalar kernel.
  for (int64_t count : {3, 67, 200, 1003})
    for (int64_t offset : {0, 1}) {
      const uint32_t seed = dev::testing::fresh_seed();
      SCOPED_TRACE(::testing::Message() << "seed " << seed << ", count " << count << ", offset " << offset);
      std::mt19937 rng(seed);
      const std::vector<float> x = random_floats(rng, count + offset, -4, 4);
      const std::vector<uint16_t> branch = to_half(random_floats(rng, count + offset, -4, 4));
      const dev::DeviceBuffer device_x = to_device(x), device_branch = to_device(branch);
      dev::add_residual(device_x.as<float>() + offset, device_branch.as<__half>() + offset, count);
      std::vector<float> want = x;
      for (int64_t i = offset; i < count + offset; ++i) want[i] += fq::f16_to_f32(branch[i]);
      expect_bits_equal(dev::download<float>(device_x.data(), x.size()), want);
    }
}

FQ_CUDA_TEST(Elementwise, RopeMatchesCpu) {
  struct Case {
    int64_t rows, seq, start, heads, head_dim, extra_columns;
  };
  // head_dim 16 with no extra columns takes the packed kernel; the others the scalar one.
  const Case cases[] = {{5, 5, 0, 3, 16, 0}, {6, 3, 7, 2, 6, 0}, {1, 1, 40, 1, 2, 0}, {4, 2, 3, 3, 16, 5}};
  const double theta = 10000.0;
  for (const Case& c : cases) {
    const uint32_t seed = dev::testing::fresh_seed();
    SCOPED_TRACE(::testing::Message() << "seed " << seed << ", rows " << c.rows << ", seq " << c.seq << ", start "
                                      << c.start << ", heads " << c.heads << ", head_dim " << c.head_dim
                                      << ", extra columns " << c.extra_columns);
    std::mt19937 rng(seed);
    const int64_t width = c.heads * c.head_dim, stride = width + c.extra_columns, half = c.head_dim / 2;
    const std::vector<uint16_t> x = to_half(random_floats(rng, c.rows * stride, -3, 3));

    // The tables ops::rope rotates by.
    const int64_t positions = c.start + c.seq;
    const auto table = fq::ops::rotation_table(positions, c.head_dim, theta);
    const std::vector<float> cosines(table->cosines.begin(), table->cosines.begin() + positions * half),
        sines(table->sines.begin(), table->sines.begin() + positions * half);

    std::vector<float> rows_in(c.rows * width);
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t i = 0; i < width; ++i) rows_in[r * width + i] = fq::f16_to_f32(x[r * stride + i]);
    fq::Tensor want = fq::Tensor::from_floats(rows_in, {c.rows, width});
    fq::ops::rope(want, c.seq, c.heads, c.head_dim, c.start, theta);

    const dev::DeviceBuffer device_x = to_device(x), device_cosines = to_device(cosines),
                            device_sines = to_device(sines);
    dev::rope(device_x.as<__half>(), c.rows, c.seq, c.start, c.heads, c.head_dim, stride, device_cosines.as<float>(),
              device_sines.as<float>());
    const std::vector<uint16_t> got = dev::download<uint16_t>(device_x.data(), x.size());
    std::vector<float> got_rows(c.rows * width);
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t i = 0; i < width; ++i) got_rows[r * width + i] = fq::f16_to_f32(got[r * stride + i]);
      for (int64_t i = width; i < stride; ++i) ASSERT_EQ(got[r * stride + i], x[r * stride + i]) << "row " << r;
    }
    expect_half_close(got_rows, std::vector<float>(want.data<float>(), want.data<float>() + want.numel()), 1e-5f);
  }
}

FQ_CUDA_TEST(Elementwise, ActivationsMatchCpu) {
  for (fq::Activation activation : {fq::Activation::relu, fq::Activation::silu, fq::Activation::gelu})
    for (bool gated : {false, true})
      for (int64_t count : kWidths) {
        const uint32_t seed = dev::testing::fresh_seed();
        SCOPED_TRACE(::testing::Message() << "seed " << seed << ", activation " << static_cast<int>(activation)
                                          << ", gated " << gated << ", count " << count);
        std::mt19937 rng(seed);
        const std::vector<uint16_t> gate = to_half(random_floats(rng, count, -8, 8));
        const std::vector<uint16_t> up = to_half(random_floats(rng, count, -2, 2));

        fq::Tensor want = fq::Tensor::from_floats(to_float(gate), {count});
        if (gated)
          fq::ops::gated_activate(want, fq::Tensor::from_floats(to_float(up), {count}), activation);
        else
          fq::ops::activate(want, activation);

        const dev::DeviceBuffer device_gate = to_device(gate), device_up = to_device(up);
        if (gated)
          dev::gated_activate(device_gate.as<__half>(), device_up.as<__half>(), count, activation);
        else
          dev::activate(device_gate.as<__half>(), count, activation);
        expect_half_close(download_half(device_gate, count),
                          std::vector<float>(want.data<float>(), want.data<float>() + count), 1e-6f);
      }
}

FQ_CUDA_TEST(Elementwise, ConversionsAreExact) {
  // Every f16 bit pattern to f32 and back: exact, NaN stays NaN.
  std::vector<uint16_t> every_half(1 << 16);
  for (size_t i = 0; i < every_half.size(); ++i) every_half[i] = static_cast<uint16_t>(i);
  const dev::DeviceBuffer halves = to_device(every_half);
  const dev::DeviceBuffer floats = poisoned(every_half.size() * sizeof(float));
  dev::convert_to_float(halves.as<__half>(), floats.as<float>(), static_cast<int64_t>(every_half.size()));
  const std::vector<float> got_floats = dev::download<float>(floats.data(), every_half.size());
  for (size_t i = 0; i < every_half.size(); ++i) {
    const float want = fq::f16_to_f32(every_half[i]);
    if (std::isnan(want))
      ASSERT_TRUE(std::isnan(got_floats[i])) << "half bits " << i;
    else
      ASSERT_EQ(std::bit_cast<uint32_t>(got_floats[i]), std::bit_cast<uint32_t>(want)) << "half bits " << i;
  }

  // f32 to f16: random values over the whole f16 range and beyond, ties, subnormals, ±0, ±inf; an odd count.
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  std::vector<float> values = {0.f, -0.f, INFINITY, -INFINITY, 65504.f, 65519.f, 65520.f, -70000.f, 1e-8f,
                               3e-8f, -6e-8f, 1.f + 1.f / 2048, 1.f + 3.f / 2048, 2049.f, 2051.f};
  for (int i = 0; i < 3001; ++i)
    values.push_back(std::ldexp(std::uniform_real_distribution<float>(-1, 1)(rng),
                                std::uniform_int_distribution<int>(-26, 17)(rng)));
  const dev::DeviceBuffer device_values = to_device(values);
  const dev::DeviceBuffer out = poisoned(values.size() * sizeof(uint16_t));
  dev::convert_to_half(device_values.as<float>(), out.as<__half>(), static_cast<int64_t>(values.size()));
  const std::vector<uint16_t> got = dev::download<uint16_t>(out.data(), values.size());
  for (size_t i = 0; i < values.size(); ++i) ASSERT_EQ(got[i], fq::f32_to_f16(values[i])) << "value " << values[i];
}

FQ_CUDA_TEST(Elementwise, RejectsBadSizes) {
  const dev::DeviceBuffer buffer(1024);
  EXPECT_THROW(dev::add_residual(buffer.as<float>(), buffer.as<__half>(), 0), fq::Error);
  EXPECT_THROW(dev::activate(buffer.as<__half>(), -1, fq::Activation::silu), fq::Error);
  EXPECT_THROW(dev::rms_norm(buffer.as<float>(), buffer.as<__half>(), 0, 4, buffer.as<float>(), 1e-5f), fq::Error);
  EXPECT_THROW(dev::rope(buffer.as<__half>(), 2, 2, 0, 2, 5, 10, buffer.as<float>(), buffer.as<float>()), fq::Error);
  EXPECT_THROW(dev::rope(buffer.as<__half>(), 2, 2, 0, 2, 4, 7, buffer.as<float>(), buffer.as<float>()), fq::Error);
  EXPECT_THROW(dev::add_positions(buffer.as<float>(), 2, 0, 0, buffer.as<__half>(), 4), fq::Error);
}
