// The dense GEMMs of gemm.h and the e4m3 quantizer against host loops, on shapes that meet cuBLASLt's
// alignment rules but not the tiles (m 1, 5, 33; n 16, 48; k 32, 64). On the GPU, cuBLASLt is also held
// to the plain reference kernels on shapes of real layers.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "backends/cuda/gemm.h"
#include "backends/cuda/random_fill.h"
#include "backends/cuda/reference_gemm.h"
#include "cuda/cuda_test_util.h"
#include "fq/dtype.h"
#include "fq/error.h"

namespace dev = fq::FQ_CUDA_NS;

FQ_CUDA_SUITE(Gemm);

namespace {

struct Shape {
  int64_t m, n, k;
};

std::vector<Shape> small_shapes() {
  std::vector<Shape> shapes;
  for (int64_t m : {1, 5, 33})
    for (int64_t n : {16, 48})
      for (int64_t k : {32, 64}) shapes.push_back({m, n, k});
  return shapes;
}

std::string describe(const Shape& s, bool bias) {
  return "m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) +
         (bias ? " with bias" : "");
}

// f16 values: the bits to upload, and what they are exactly.
struct Halves {
  std::vector<uint16_t> bits;
  std::vector<float> values;
};

Halves random_halves(std::mt19937& rng, int64_t count, float bound) {
  std::uniform_real_distribution<float> uniform(-bound, bound);
  Halves h;
  for (int64_t i = 0; i < count; ++i) {
    h.bits.push_back(fq::f32_to_f16(uniform(rng)));
    h.values.push_back(fq::f16_to_f32(h.bits.back()));
  }
  return h;
}

// Device memory of `count` T filled with 0xff bytes, so that an output the kernel skips shows.
template <typename T>
dev::DeviceBuffer poisoned(int64_t count) {
  return dev::testing::poisoned(count * sizeof(T));
}

// The e4m3 value of a code, computed independently of the kernels' decoder.
float decode_e4m3_on_host(uint8_t code) {
  const int exponent = (code >> 3) & 15, mantissa = code & 7;
  float magnitude = exponent == 15 && mantissa == 7 ? std::numeric_limits<float>::quiet_NaN()
                    : exponent == 0                ? std::ldexp(float(mantissa), -9)
                                                   : std::ldexp(1.0f + mantissa / 8.0f, exponent - 7);
  return code & 0x80 ? -magnitude : magnitude;
}

// The e4m3 code of v by search over every code: the nearest value, ties to the even code, saturated to ±448.
uint8_t encode_e4m3_on_host(float v) {
  const uint8_t sign = std::signbit(v) ? 0x80 : 0;
  if (std::isnan(v)) return sign | 0x7f;
  const float magnitude = std::fabs(v);
  if (magnitude >= 448) return sign | 0x7e;
  uint8_t best = 0;
  for (uint8_t code = 1; code <= 0x7e; ++code) {
    const float gap = std::fabs(decode_e4m3_on_host(code) - magnitude);
    const float best_gap = std::fabs(decode_e4m3_on_host(best) - magnitude);
    if (gap < best_gap || (gap == best_gap && code % 2 == 0)) best = code;
  }
  return sign | best;
}

// Random e4m3 codes over the whole range (subnormals included), NaN left out.
std::vector<uint8_t> random_e4m3_codes(std::mt19937& rng, int64_t count) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> codes;
  while (int64_t(codes.size()) < count) {
    const auto code = uint8_t(byte(rng));
    if ((code & 0x7f) != 0x7f) codes.push_back(code);
  }
  return codes;
}

// A float GEMM on the host in double: y = scale · x · wᵀ + bias, and Σ|x·w|·scale per output for tolerances.
struct HostResult {
  std::vector<double> y, magnitude;
};
HostResult host_linear(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>* bias,
                       double scale, const Shape& s) {
  HostResult r{std::vector<double>(s.m * s.n), std::vector<double>(s.m * s.n)};
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      double sum = 0, magnitude = 0;
      for (int64_t t = 0; t < s.k; ++t) {
        const double product = double(x[i * s.k + t]) * w[j * s.k + t];
        sum += product;
        magnitude += std::fabs(product);
      }
      r.y[i * s.n + j] = sum * scale + (bias ? (*bias)[j] : 0.0);
      r.magnitude[i * s.n + j] = magnitude * scale;
    }
  return r;
}

// f16 outputs against the host: one rounding to f16 (a relative 2^-11) and f32 accumulation in any order.
::testing::AssertionResult halves_match(const std::vector<uint16_t>& got, const HostResult& expected) {
  int64_t wrong = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double value = fq::f16_to_f32(got[i]);
    const double tolerance = std::ldexp(std::fabs(expected.y[i]), -10) + 1e-5 * expected.magnitude[i] + 1e-7;
    if (!(std::fabs(value - expected.y[i]) <= tolerance)) {
      ++wrong;
      if (first < 0) first = int64_t(i);
    }
  }
  if (wrong == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << wrong << " of " << got.size() << " outputs differ; the first, #" << first
                                       << ": " << fq::f16_to_f32(got[first]) << " instead of " << expected.y[first];
}

}  // namespace

FQ_CUDA_TEST(Gemm, F16MatchesHostLoops) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  int index = 0;
  for (const Shape& s : small_shapes()) {
    const bool with_bias = index++ % 2 == 1;
    SCOPED_TRACE(describe(s, with_bias));
    const Halves x = random_halves(rng, s.m * s.k, 2), w = random_halves(rng, s.n * s.k, 1), bias = random_halves(rng, s.n, 4);
    const dev::DeviceBuffer x_d = dev::upload<uint16_t>(x.bits), w_d = dev::upload<uint16_t>(w.bits),
                            bias_d = dev::upload<uint16_t>(bias.bits), y_d = poisoned<uint16_t>(s.m * s.n);
    dev::gemm_f16(x_d.as<__half>(), w_d.as<__half>(), with_bias ? bias_d.as<__half>() : nullptr, y_d.as<__half>(), s.m,
                  s.n, s.k);
    const HostResult expected = host_linear(x.values, w.values, with_bias ? &bias.values : nullptr, 1, s);
    EXPECT_TRUE(halves_match(dev::download<uint16_t>(y_d.data(), s.m * s.n), expected));
  }
}

FQ_CUDA_TEST(Gemm, S8MatchesHostLoopsExactly) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> code(-128, 127);
  for (const Shape& s : small_shapes()) {
    SCOPED_TRACE(describe(s, false));
    std::vector<int8_t> a(s.m * s.k), b(s.n * s.k);
    for (int8_t& v : a) v = int8_t(code(rng));
    for (int8_t& v : b) v = int8_t(code(rng));
    std::fill(a.begin(), a.begin() + s.k, int8_t{-128});  // the largest products: row 0 · column 0 = k·2^14
    std::fill(b.begin(), b.begin() + s.k, int8_t{-128});
    const dev::DeviceBuffer a_d = dev::upload<int8_t>(a), b_d = dev::upload<int8_t>(b),
                            acc_d = poisoned<int32_t>(s.m * s.n);
    dev::gemm_s8(a_d.as<int8_t>(), b_d.as<int8_t>(), acc_d.as<int32_t>(), s.m, s.n, s.k);
    const std::vector<int32_t> got = dev::download<int32_t>(acc_d.data(), s.m * s.n);
    int64_t wrong = 0;
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) {
        int32_t sum = 0;
        for (int64_t t = 0; t < s.k; ++t) sum += int32_t{a[i * s.k + t]} * b[j * s.k + t];
        if (got[i * s.n + j] != sum && wrong++ == 0)
          ADD_FAILURE() << "acc[" << i << "," << j << "] = " << got[i * s.n + j] << " instead of " << sum;
      }
    EXPECT_EQ(wrong, 0);
  }
}

FQ_CUDA_TEST(Gemm, E4m3MatchesHostLoops) {
  if (!dev::fp8_supported()) GTEST_SKIP() << "FP8 needs compute capability 8.9";
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> scale(0.5e-3f, 2e-3f);  // keeps k·448² · scales within f16
  int index = 0;
  for (const Shape& s : small_shapes()) {
    const bool with_bias = index++ % 2 == 0;
    SCOPED_TRACE(describe(s, with_bias));
    const std::vector<uint8_t> x = random_e4m3_codes(rng, s.m * s.k), w = random_e4m3_codes(rng, s.n * s.k);
    const std::vector<float> scales = {scale(rng), scale(rng)};
    const Halves bias = random_halves(rng, s.n, 4);
    const dev::DeviceBuffer x_d = dev::upload<uint8_t>(x), w_d = dev::upload<uint8_t>(w),
                            scales_d = dev::upload<float>(scales), bias_d = dev::upload<uint16_t>(bias.bits),
                            y_d = poisoned<uint16_t>(s.m * s.n);
    const float* x_scale = scales_d.as<float>();
    dev::gemm_e4m3(x_d.as<uint8_t>(), w_d.as<uint8_t>(), x_scale, x_scale + 1,
                   with_bias ? bias_d.as<__half>() : nullptr, y_d.as<__half>(), s.m, s.n, s.k);
    std::vector<float> x_values, w_values;
    for (uint8_t c : x) x_values.push_back(decode_e4m3_on_host(c));
    for (uint8_t c : w) w_values.push_back(decode_e4m3_on_host(c));
    const HostResult expected = host_linear(x_values, w_values, with_bias ? &bias.values : nullptr,
                                            double(scales[0]) * scales[1], s);
    EXPECT_TRUE(halves_match(dev::download<uint16_t>(y_d.data(), s.m * s.n), expected));
  }
}

FQ_CUDA_TEST(Gemm, QuantizeE4m3MatchesHostEncoder) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  // A scale of a few bits, so that the ties below stay exact ties through f16 and the division.
  const float scale = std::ldexp(rng() % 2 ? 0.75f : 1.0f, std::uniform_int_distribution<int>(-3, 3)(rng));
  // Magnitudes from far below e4m3's smallest subnormal (2^-9) to far above its largest value (448)...
  std::uniform_real_distribution<float> exponent(-14, 11), sign(-1, 1);
  std::vector<float> values;
  for (int i = 0; i < 240; ++i) values.push_back(std::copysign(std::exp2(exponent(rng)), sign(rng)) * scale);
  // ...and the edges: zeros, infinities, NaN, the saturation point, and ties between neighbouring codes.
  const float ties[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 448, -464, 480, 0x1p-10f, 0x3p-10f, 7.5f * 0x1p-9f,
                        0x1p-6f, 1.0625f, 1.1875f, -3.25f, 0.5f * (416 + 448), 240, 1e-30f};
  for (float tie : ties) values.push_back(tie * scale);
  while (values.size() % 8 != 5) values.push_back(sign(rng) * 500 * scale);  // a tail after the 8-value chunks
  Halves x;
  for (float v : values) {
    x.bits.push_back(fq::f32_to_f16(v));
    x.values.push_back(fq::f16_to_f32(x.bits.back()));
  }
  const int64_t count = int64_t(values.size());
  const std::vector<float> scales = {scale};
  const dev::DeviceBuffer x_d = dev::upload<uint16_t>(x.bits), scale_d = dev::upload<float>(scales),
                          out_d = poisoned<uint8_t>(count);
  dev::quantize_e4m3(x_d.as<__half>(), count, scale_d.as<float>(), out_d.as<uint8_t>());
  const std::vector<uint8_t> got = dev::download<uint8_t>(out_d.data(), count);
  for (int64_t i = 0; i < count; ++i) {
    const float quotient = x.values[i] / scale;
    const uint8_t expected = encode_e4m3_on_host(quotient);
    EXPECT_EQ(int(got[i]), int(expected)) << "#" << i << ": " << x.values[i] << " / " << scale << " = " << quotient;
  }
}

FQ_CUDA_TEST(Gemm, BadArgumentsThrow) {
  const dev::DeviceBuffer buffer(4096);
  const auto* half = buffer.as<__half>();
  auto* out = buffer.as<__half>();
  const auto* bytes = buffer.as<uint8_t>();
  const auto* scale = buffer.as<float>();
  EXPECT_THROW(dev::gemm_f16(half, half, nullptr, out, 0, 16, 16), fq::Error);
  EXPECT_THROW(dev::gemm_f16(nullptr, half, nullptr, out, 1, 16, 16), fq::Error);
  EXPECT_THROW(dev::gemm_s8(buffer.as<int8_t>(), buffer.as<int8_t>(), buffer.as<int32_t>(), 4, 6, 32), fq::Error);
  EXPECT_THROW(dev::gemm_s8(buffer.as<int8_t>(), buffer.as<int8_t>(), buffer.as<int32_t>(), 4, 8, 30), fq::Error);
  EXPECT_THROW(dev::gemm_s8(buffer.as<int8_t>(), buffer.as<int8_t>(), buffer.as<int32_t>(), 1, 4, 131072), fq::Error);
  EXPECT_THROW(dev::gemm_s8(buffer.as<int8_t>() + 2, buffer.as<int8_t>(), buffer.as<int32_t>(), 1, 4, 4), fq::Error);
  if (dev::fp8_supported()) {
    EXPECT_THROW(dev::gemm_e4m3(bytes, bytes, scale, scale, nullptr, out, 2, 24, 32), fq::Error);
    EXPECT_THROW(dev::gemm_e4m3(bytes, bytes, scale, scale, nullptr, out, 2, 16, 40), fq::Error);
    EXPECT_THROW(dev::gemm_e4m3(bytes + 8, bytes, scale, scale, nullptr, out, 2, 16, 32), fq::Error);
    EXPECT_THROW(dev::gemm_e4m3(bytes, bytes, nullptr, scale, nullptr, out, 2, 16, 32), fq::Error);
  }
  EXPECT_THROW(dev::quantize_e4m3(half, 0, scale, buffer.as<uint8_t>()), fq::Error);
  EXPECT_THROW(dev::quantize_e4m3(half + 1, 8, scale, buffer.as<uint8_t>()), fq::Error);
}

#if !FQ_CUDA_EMULATED
// cuBLASLt against the plain kernels on the shapes of real layers (too slow for host loops): the same
// inputs, outputs within 1/1000 of the largest (f32 sums in another order; int8 exactly).
namespace {

::testing::AssertionResult close_to_reference(const std::vector<uint16_t>& got, const std::vector<uint16_t>& reference) {
  double largest = 0;
  for (uint16_t r : reference) largest = std::max(largest, double(std::fabs(fq::f16_to_f32(r))));
  int64_t wrong = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(fq::f16_to_f32(got[i]) - fq::f16_to_f32(reference[i])) <= 1e-3 * largest)) {
      ++wrong;
      if (first < 0) first = int64_t(i);
    }
  if (wrong == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << wrong << " of " << got.size() << " outputs differ; the first, #" << first
                                       << ": " << fq::f16_to_f32(got[first]) << " instead of "
                                       << fq::f16_to_f32(reference[first]) << " (largest " << largest << ")";
}

const Shape kLayerShapes[] = {{1, 4096, 4096}, {16, 5120, 5120}, {257, 1040, 2048}, {512, 4096, 1024}};

}  // namespace

FQ_CUDA_TEST(Gemm, CublasLtMatchesReferenceKernels) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  uint64_t stream = seed;  // fill_random_* seeds, one per buffer
  auto halves = [&](int64_t count, float scale) {
    dev::DeviceBuffer buffer(count * sizeof(__half));
    dev::fill_random_half(buffer.as<__half>(), count, ++stream, scale);
    return buffer;
  };
  auto bytes = [&](int64_t count) {
    dev::DeviceBuffer buffer(count);
    dev::fill_random_bytes(buffer.data(), count, ++stream);
    return buffer;
  };
  const std::vector<float> scales = {1.0f / 64, 1.0f / 128};  // e4m3 codes up to 448: outputs within f16
  const dev::DeviceBuffer scales_d = dev::upload<float>(scales);
  const float* x_scale = scales_d.as<float>();
  auto e4m3 = [&](int64_t count) {
    const dev::DeviceBuffer values = halves(count, 4);
    dev::DeviceBuffer codes(count);
    dev::quantize_e4m3(values.as<__half>(), count, x_scale, codes.as<uint8_t>());
    return codes;
  };
  for (const Shape& s : kLayerShapes) {
    SCOPED_TRACE(describe(s, true));
    const dev::DeviceBuffer bias = halves(s.n, 4);
    {
      const dev::DeviceBuffer x = halves(s.m * s.k, 2), w = halves(s.n * s.k, 1);
      const dev::DeviceBuffer y = poisoned<uint16_t>(s.m * s.n), reference = poisoned<uint16_t>(s.m * s.n);
      dev::gemm_f16(x.as<__half>(), w.as<__half>(), bias.as<__half>(), y.as<__half>(), s.m, s.n, s.k);
      dev::reference_gemm_f16(x.as<__half>(), w.as<__half>(), bias.as<__half>(), reference.as<__half>(), s.m, s.n,
                              s.k);
      EXPECT_TRUE(close_to_reference(dev::download<uint16_t>(y.data(), s.m * s.n),
                                     dev::download<uint16_t>(reference.data(), s.m * s.n)))
          << "f16";
    }
    {
      const dev::DeviceBuffer a = bytes(s.m * s.k), b = bytes(s.n * s.k);
      const dev::DeviceBuffer acc = poisoned<int32_t>(s.m * s.n), reference = poisoned<int32_t>(s.m * s.n);
      dev::gemm_s8(a.as<int8_t>(), b.as<int8_t>(), acc.as<int32_t>(), s.m, s.n, s.k);
      dev::reference_gemm_s8(a.as<int8_t>(), b.as<int8_t>(), reference.as<int32_t>(), s.m, s.n, s.k);
      EXPECT_TRUE(dev::download<int32_t>(acc.data(), s.m * s.n) ==
                  dev::download<int32_t>(reference.data(), s.m * s.n))
          << "s8";
    }
    if (dev::fp8_supported()) {
      const dev::DeviceBuffer x = e4m3(s.m * s.k), w = e4m3(s.n * s.k);
      const dev::DeviceBuffer y = poisoned<uint16_t>(s.m * s.n), reference = poisoned<uint16_t>(s.m * s.n);
      dev::gemm_e4m3(x.as<uint8_t>(), w.as<uint8_t>(), x_scale, x_scale + 1, bias.as<__half>(), y.as<__half>(), s.m,
                     s.n, s.k);
      dev::reference_gemm_e4m3(x.as<uint8_t>(), w.as<uint8_t>(), x_scale, x_scale + 1, bias.as<__half>(),
                               reference.as<__half>(), s.m, s.n, s.k);
      EXPECT_TRUE(close_to_reference(dev::download<uint16_t>(y.data(), s.m * s.n),
                                     dev::download<uint16_t>(reference.data(), s.m * s.n)))
          << "e4m3";
    }
  }
}

FQ_CUDA_TEST(Gemm, ReferenceKernelsMatchHostLoops) {
  // The reference the test above trusts, checked as the emulated build checks it.
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  for (const Shape& s : small_shapes()) {
    SCOPED_TRACE(describe(s, true));
    const Halves x = random_halves(rng, s.m * s.k, 2), w = random_halves(rng, s.n * s.k, 1),
                 bias = random_halves(rng, s.n, 4);
    const dev::DeviceBuffer x_d = dev::upload<uint16_t>(x.bits), w_d = dev::upload<uint16_t>(w.bits),
                            bias_d = dev::upload<uint16_t>(bias.bits), y_d = poisoned<uint16_t>(s.m * s.n);
    dev::reference_gemm_f16(x_d.as<__half>(), w_d.as<__half>(), bias_d.as<__half>(), y_d.as<__half>(), s.m, s.n, s.k);
    EXPECT_TRUE(halves_match(dev::download<uint16_t>(y_d.data(), s.m * s.n),
                             host_linear(x.values, w.values, &bias.values, 1, s)));
  }
}
#endif
