// The integer GEMMs with the fused rescale (int_gemm.h) against the CPU: the int32 sums of
// fq::quant::int_gemm, then fmaf(sum, step · scale, bias) in f32 and one f16 rounding. The sums are
// exact on both sides, so every output must match bit for bit. Shapes cover the decode kernel (rows
// ≤ 16) and the tiled one, rows and columns that are not multiples of any tile, and k of 1-3 chunks.
#include <cmath>
#include <random>
#include <span>

#include "backends/cuda/int_gemm.h"
#include "cuda/cuda_test_util.h"
#include "fq/dtype.h"
#include "fq/error.h"
#include "fq/quant/quantize.h"
#include "quant/int_gemm.h"

namespace dev = fq::FQ_CUDA_NS;

FQ_CUDA_SUITE(IntGemm);

namespace {

enum class Path {
  w8a8,  // int_gemm_rescale, weight_bits 8
  w4a8,  // int_gemm_rescale, weight_bits 4
  w4a4,  // int4_gemm_s4mma
};

struct Case {
  Path path;
  int64_t rows, k, n;
  bool step_per_row = false, scale_per_column = true, with_bias = true;
  dev::IntGemmKernel kernel = dev::IntGemmKernel::automatic;
};

// Random i8 codes over the whole range of `bits`-bit signed codes.
fq::Tensor random_codes(std::mt19937& rng, int64_t rows, int64_t columns, int bits) {
  std::uniform_int_distribution<int> code(-(1 << (bits - 1)), (1 << (bits - 1)) - 1);
  fq::Tensor codes = fq::Tensor::empty(fq::DType::i8, {rows, columns});
  for (int64_t i = 0; i < codes.numel(); ++i) codes.data<int8_t>()[i] = static_cast<int8_t>(code(rng));
  return codes;
}

dev::DeviceBuffer upload_codes(const fq::Tensor& codes) {
  const auto* bytes = codes.dtype() == fq::DType::i4 ? codes.data<uint8_t>()
                                                      : reinterpret_cast<const uint8_t*>(codes.data<int8_t>());
  return dev::upload<uint8_t>(std::span<const uint8_t>(bytes, codes.nbytes()));
}

std::vector<float> random_floats(std::mt19937& rng, int64_t count, float low, float high) {
  std::uniform_real_distribution<float> value(low, high);
  std::vector<float> out(count);
  for (float& v : out) v = value(rng);
  return out;
}

void check_case(const Case& c) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed << ", path " << static_cast<int>(c.path) << ", rows " << c.rows
                                    << ", k " << c.k << ", n " << c.n << ", step per row " << c.step_per_row
                                    << ", scale per column " << c.scale_per_column << ", bias " << c.with_bias
                                    << ", kernel " << static_cast<int>(c.kernel));
  std::mt19937 rng(seed);
  const fq::Tensor codes = random_codes(rng, c.rows, c.k, c.path == Path::w4a4 ? 4 : 8);
  const fq::Tensor weights = random_codes(rng, c.n, c.k, c.path == Path::w8a8 ? 8 : 4);
  const fq::Tensor stored_codes = c.path == Path::w4a4 ? fq::pack_int4(codes) : codes;
  const fq::Tensor stored_weights = c.path == Path::w8a8 ? weights : fq::pack_int4(weights);
  const std::vector<float> steps = random_floats(rng, c.step_per_row ? c.rows : 1, 1e-3f, 1e-2f);
  const std::vector<float> scales = random_floats(rng, c.scale_per_column ? c.n : 1, 1e-3f, 5e-2f);
  const std::vector<float> bias = c.with_bias ? random_floats(rng, c.n, -1.0f, 1.0f) : std::vector<float>();

  std::vector<int32_t> sums(c.rows * c.n);
  fq::quant::int_gemm(codes.data<int8_t>(), c.rows, stored_weights, sums.data());
  std::vector<uint16_t> expected(sums.size());
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t j = 0; j < c.n; ++j) {
      const float step = steps[c.step_per_row ? r : 0], scale = scales[c.scale_per_column ? j : 0];
      const float value = std::fma(static_cast<float>(sums[r * c.n + j]), step * scale, c.with_bias ? bias[j] : 0.0f);
      expected[r * c.n + j] = fq::f32_to_f16(value);
    }

  const dev::DeviceBuffer codes_device = upload_codes(stored_codes), weights_device = upload_codes(stored_weights);
  const dev::DeviceBuffer steps_device = dev::upload<float>(steps), scales_device = dev::upload<float>(scales);
  const dev::DeviceBuffer bias_device = dev::upload<float>(bias);
  const dev::DeviceBuffer out_device = dev::upload<uint16_t>(std::vector<uint16_t>(expected.size(), 0xffff));  // NaN
  const float* bias_pointer = c.with_bias ? bias_device.as<float>() : nullptr;
  auto* out = out_device.as<__half>();
  if (c.path == Path::w4a4) {
    dev::int4_gemm_s4mma(codes_device.as<uint8_t>(), c.rows, c.k, weights_device.as<uint8_t>(), c.n,
                         steps_device.as<float>(), c.step_per_row, scales_device.as<float>(), c.scale_per_column,
                         bias_pointer, out);
  } else {
    dev::int_gemm_rescale(codes_device.as<int8_t>(), c.rows, c.k, weights_device.data(), c.path == Path::w8a8 ? 8 : 4,
                          c.n, steps_device.as<float>(), c.step_per_row, scales_device.as<float>(), c.scale_per_column,
                          bias_pointer, out, {}, c.kernel);
  }
  const std::vector<uint16_t> got = dev::download<uint16_t>(out_device.data(), expected.size());
  int64_t mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != expected[i] && mismatches++ < 5)
      ADD_FAILURE() << "out[" << i / c.n << ", " << i % c.n << "] = " << fq::f16_to_f32(got[i]) << ", expected "
                    << fq::f16_to_f32(expected[i]) << " (int32 sum " << sums[i] << ")";
  EXPECT_EQ(mismatches, 0);
}

}  // namespace

// Rows ≤ 16 take the split-k decode kernel, more the 128×128 tiles; 130 × 136 spans two tiles each way;
// 1100 rows span more than one group of row tiles (int_gemm.cu: grouped_tile).
FQ_CUDA_TEST(IntGemm, Int8WeightsMatchCpu) {
  check_case({Path::w8a8, 1, 64, 8});
  check_case({Path::w8a8, 5, 192, 200, true, true, false});
  check_case({Path::w8a8, 16, 128, 24, false, false, true});
  check_case({Path::w8a8, 37, 192, 200, true, false, true});
  check_case({Path::w8a8, 130, 64, 136, true, true, true});
  check_case({Path::w8a8, 1100, 64, 136, false, true, true});  // 9 row tiles: a group of 8, then a group of 1
}

// The wgmma kernel's 128×256 tiles and 128-byte stages of k: one partial tile; rows and columns past a
// tile; k of half a stage, of several stages (the pipeline wraps around its 4 stages), and not a
// multiple of a stage.
FQ_CUDA_TEST(IntGemm, Int8WeightsOnWgmmaMatchCpu) {
  if (!dev::wgmma_supported()) GTEST_SKIP() << "wgmma needs an sm_90 GPU";
  const auto wgmma = dev::IntGemmKernel::wgmma;
  check_case({Path::w8a8, 1, 64, 8, false, true, true, wgmma});
  check_case({Path::w8a8, 37, 192, 200, true, false, true, wgmma});
  check_case({Path::w8a8, 130, 640, 264, true, true, false, wgmma});
  check_case({Path::w8a8, 256, 1088, 512, false, true, true, wgmma});
  check_case({Path::w8a8, 1100, 128, 264, true, true, true, wgmma});  // 9 row tiles: a group of 8, then a group of 1
}

FQ_CUDA_TEST(IntGemm, Int4WeightsMatchCpu) {
  check_case({Path::w4a8, 1, 192, 200});
  check_case({Path::w4a8, 5, 64, 24, true, false, false});
  check_case({Path::w4a8, 17, 64, 8, true, true, true});
  check_case({Path::w4a8, 37, 128, 24, false, true, false});
}

FQ_CUDA_TEST(IntGemm, Int4CodesOnS4MmaMatchCpu) {
  check_case({Path::w4a4, 1, 128, 24});
  check_case({Path::w4a4, 5, 192, 8, true, false, true});
  check_case({Path::w4a4, 37, 64, 200, true, true, false});
  check_case({Path::w4a4, 37, 192, 24, false, true, true});
}

FQ_CUDA_TEST(IntGemm, RejectsBadArguments) {
  const dev::DeviceBuffer buffer(4096);
  const auto* codes = buffer.as<int8_t>();
  const auto* steps = buffer.as<float>();
  auto* out = buffer.as<__half>();
  auto run = [&](int64_t rows, int64_t k, int bits, int64_t n) {
    dev::int_gemm_rescale(codes, rows, k, buffer.data(), bits, n, steps, false, steps, false, nullptr, out);
  };
  EXPECT_THROW(run(0, 64, 8, 8), fq::Error);
  EXPECT_THROW(run(1, 96, 8, 8), fq::Error);     // k not a multiple of 64
  EXPECT_THROW(run(1, 64, 3, 8), fq::Error);     // no such weight width
  EXPECT_THROW(run(1, 64, 8, -1), fq::Error);
  EXPECT_THROW(run(1, 1 << 20, 8, 8), fq::Error);  // int32 sums could overflow
  EXPECT_THROW(dev::int_gemm_rescale(codes + 1, 1, 64, buffer.data(), 8, 8, steps, false, steps, false, nullptr, out),
               fq::Error);  // misaligned
  EXPECT_THROW(dev::int_gemm_rescale(codes, 32, 64, buffer.data(), 4, 8, steps, false, steps, false, nullptr, out, {},
                                     dev::IntGemmKernel::wgmma),
               fq::Error);  // wgmma takes int8 weights only
  EXPECT_THROW(dev::int4_gemm_s4mma(buffer.as<uint8_t>(), 1, 64, nullptr, 8, steps, false, steps, false, nullptr, out),
               fq::Error);
}
