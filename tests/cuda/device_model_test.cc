// Whole models through the GPU code path against the CPU graph: the tiny OPT (pre-LN) and LLaMA (GQA)
// fixtures, float and quantized with several recipes; prefill, and decode after a prefill.
#include <algorithm>
#include <cmath>
#include <map>

#include "backends/cuda/device_model.h"
#include "cuda/cuda_test_util.h"
#include "fq/checkpoint.h"
#include "fq/quant/calibrate.h"
#include "fq/quant/recipe.h"
#include "fq/gpu.h"
#include "fq/profile.h"

namespace dev = fq::FQ_CUDA_NS;

FQ_CUDA_SUITE(DeviceModel);

namespace {

using fq::Model;
using fq::Tensor;

constexpr int64_t kVocab = 320;  // both fixtures'

std::vector<int32_t> random_tokens(int64_t count, uint32_t seed) {
  std::mt19937 random(seed);
  std::uniform_int_distribution<int32_t> token(0, kVocab - 1);
  std::vector<int32_t> tokens(count);
  for (int32_t& t : tokens) t = token(random);
  return tokens;
}

Model load_fixture(const std::string& name) {
  return Model::from_checkpoint(fq::load_checkpoint(dev::testing::fixture_path(name)), fq::DType::f32);
}

// max |a - b| over max |b|: the device runs f16 activations, so agreement is to f16 rounding.
double relative_difference(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double difference = 0, scale = 0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    difference = std::max(difference, std::fabs(double(a.data<float>()[i]) - b.data<float>()[i]));
    scale = std::max(scale, std::fabs(double(b.data<float>()[i])));
  }
  return difference / scale;
}

Tensor cpu_logits(const Model& model, const std::vector<int32_t>& tokens, int64_t batch, int64_t seq) {
  fq::KVCache cache = model.new_cache(batch, seq);
  return model.forward(tokens.data(), batch, seq, cache);
}

void quantize(Model& model, const std::string& recipe) {
  std::vector<std::vector<int32_t>> windows = {random_tokens(48, 11), random_tokens(32, 12)};
  fq::Calibration calibration = fq::calibrate(model, windows);
  fq::RecipeOptions options;
  options.name = recipe;
  fq::apply_recipe(model, calibration, options);
}

}  // namespace

FQ_CUDA_TEST(DeviceModel, FloatFixturesMatchTheCpuGraph) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE(seed);
  for (const std::string name : {"llama_gqa", "opt_preln"}) {
    SCOPED_TRACE(name);
    const Model model = load_fixture(name);
    const std::vector<int32_t> tokens = random_tokens(2 * 9, seed);
    const Tensor expected = cpu_logits(model, tokens, 2, 9);
    std::unique_ptr<fq::GpuModel> device = dev::upload_model(model);
    device->reset(2, 16);
    EXPECT_LT(relative_difference(device->forward(tokens.data(), 2, 9), expected), 1e-2);
    EXPECT_EQ(device->length(), 9);
    EXPECT_GT(device->weight_bytes(), size_t{0});
  }
}

FQ_CUDA_TEST(DeviceModel, DecodeAfterPrefillMatchesOnePrefill) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE(seed);
  const Model model = load_fixture("llama_gqa");
  const std::vector<int32_t> tokens = random_tokens(2 * 8, seed);
  std::unique_ptr<fq::GpuModel> device = dev::upload_model(model);
  device->reset(2, 8);
  const Tensor whole = device->forward(tokens.data(), 2, 8);

  // Prefill 6 positions, then two single-token steps; the last step's logits are position 7's.
  std::vector<int32_t> prefix, step(2);
  for (int64_t b = 0; b < 2; ++b) prefix.insert(prefix.end(), tokens.begin() + b * 8, tokens.begin() + b * 8 + 6);
  device->reset(2, 8);
  device->forward(prefix.data(), 2, 6, true);
  Tensor last;
  for (int64_t t = 6; t < 8; ++t) {
    for (int64_t b = 0; b < 2; ++b) step[b] = tokens[b * 8 + t];
    last = device->forward(step.data(), 2, 1, true);
  }
  const Tensor whole_last = Tensor::empty(fq::DType::f32, {2, 1, kVocab});
  for (int64_t b = 0; b < 2; ++b)
    std::copy_n(whole.data<float>() + (b * 8 + 7) * kVocab, kVocab, whole_last.data<float>() + b * kVocab);
  EXPECT_LT(relative_difference(last, whole_last), 2e-3);
}

FQ_CUDA_TEST(DeviceModel, QuantizedRecipesMatchTheCpuIntegerPath) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE(seed);
  // Static per-tensor (plain and staggered), INT4 weights, and dynamic per-token activations.
  for (const std::string recipe : {"flatten-w8a8", "flatten-w8a8-stagger", "flatten-w4a8", "pertoken-w8a8"}) {
    for (const std::string name : {"llama_gqa", "opt_preln"}) {
      SCOPED_TRACE(recipe + " on " + name);
      Model model = load_fixture(name);
      const std::vector<int32_t> tokens = random_tokens(2 * 7, seed);
      const Tensor unquantized = cpu_logits(model, tokens, 2, 7);
      quantize(model, recipe);
      const Tensor expected = cpu_logits(model, tokens, 2, 7);

      std::unique_ptr<fq::GpuModel> device = dev::upload_model(model);
      device->reset(2, 7);
      // The device quantizes f16 inputs, the CPU f32 ones: codes near a rounding boundary (and, per token, the
      // steps) can differ, so the two are different quantizations of one model, alike in their error.
      // tests/cuda/device_linear_test.cc checks each Linear exactly on f16-representable inputs.
      const Tensor got = device->forward(tokens.data(), 2, 7);
      const double quantization_error = relative_difference(expected, unquantized);
      EXPECT_LT(relative_difference(got, expected), 0.06);
      EXPECT_LT(relative_difference(got, unquantized), 1.25 * quantization_error + 0.01);
    }
  }
}

FQ_CUDA_TEST(DeviceModel, RefusesPostNormGraphsAndBadCalls) {
  EXPECT_THROW(dev::upload_model(load_fixture("opt_postln")), fq::Error);
  std::unique_ptr<fq::GpuModel> device = dev::upload_model(load_fixture("llama_gqa"));
  const std::vector<int32_t> tokens = random_tokens(8, 1);
  EXPECT_THROW(device->forward(tokens.data(), 1, 4), fq::Error);  // no reset yet
  device->reset(1, 4);
  EXPECT_THROW(device->forward(tokens.data(), 2, 4), fq::Error);  // batch differs from the cache's
  EXPECT_THROW(device->forward(tokens.data(), 1, 5), fq::Error);  // beyond the capacity
  const std::vector<int32_t> outside = {0, 1, kVocab, 2};
  EXPECT_THROW(device->forward(outside.data(), 1, 4), fq::Error);
}

FQ_CUDA_TEST(DeviceModel, RandomWeightModelsRunInEveryFormat) {
  const nlohmann::json llama = {{"model_type", "llama"},     {"hidden_size", 128},      {"num_hidden_layers", 2},
                                {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"intermediate_size", 256},
                                {"vocab_size", 512},        {"max_position_embeddings", 64}};
  const nlohmann::json opt = {{"model_type", "opt"}, {"hidden_size", 128}, {"num_hidden_layers", 2},
                              {"num_attention_heads", 4}, {"ffn_dim", 512}, {"vocab_size", 512},
                              {"max_position_embeddings", 64}, {"word_embed_proj_dim", 128}};
  for (const nlohmann::json& json : {llama, opt}) {
    const fq::ModelConfig config = fq::ModelConfig::from_hf(json, "test");
    SCOPED_TRACE(config.model_type);
    std::vector<size_t> weight_bytes;
    for (fq::RandomFormat format : {fq::RandomFormat::fp16, fq::RandomFormat::fp8, fq::RandomFormat::w8a8,
                                    fq::RandomFormat::mixed, fq::RandomFormat::w4a8}) {
      std::unique_ptr<fq::GpuModel> model = dev::random_model(config, format, 3);
      model->reset(2, 12);
      std::vector<int32_t> tokens(2 * 8);
      for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 37 % 512);
      const Tensor logits = model->forward(tokens.data(), 2, 8, true);
      ASSERT_EQ(logits.shape(), (fq::Shape{2, 1, 512}));
      double sum = 0;
      for (int64_t i = 0; i < logits.numel(); ++i) sum += std::fabs(logits.data<float>()[i]);
      EXPECT_TRUE(std::isfinite(sum) && sum > 0) << static_cast<int>(format);
      model->forward_timed(tokens.data(), 2, 1);
      EXPECT_EQ(model->length(), 9);
      weight_bytes.push_back(model->weight_bytes());
    }
    // Smaller weights with every step down in bits: fp16 > fp8 ≈ w8a8 > mixed > w4a8.
    EXPECT_GT(weight_bytes[0], weight_bytes[1]);
    EXPECT_GT(weight_bytes[2], weight_bytes[3]);
    EXPECT_GT(weight_bytes[3], weight_bytes[4]);
  }
}

// The mixed benchmark format spends flatten-mixed's default share of the Linear FLOPs on 4 bits.
FQ_CUDA_TEST(DeviceModel, MixedRandomFormatPutsHalfTheFlopsInFourBits) {
  for (const char* name : {"opt-6.7b", "opt-13b", "llama-2-7b"}) {
    SCOPED_TRACE(name);
    const fq::ModelConfig c = fq::preset_config(name);
    const dev::MixedPlan plan = dev::plan_mixed(c);
    ASSERT_EQ(plan.down_in_4_bits.size(), static_cast<size_t>(c.num_layers));
    // Multiply-adds per token, counted here independently of the planner.
    const double hidden = double(c.hidden_size), inter = double(c.intermediate_size);
    const double attention = hidden * double(2 * c.num_heads * c.head_dim + 2 * c.num_kv_heads * c.head_dim);
    const double mlp_in = (c.gated_mlp ? 2 : 1) * inter * hidden, down = inter * hidden;
    const double downs = double(std::count(plan.down_in_4_bits.begin(), plan.down_in_4_bits.end(), true));
    const double share = (c.num_layers * mlp_in + downs * down) / (c.num_layers * (attention + mlp_in + down));
    EXPECT_NEAR(plan.int4_share, share, 1e-12);
    // At least half, and one down projection fewer would fall short.
    EXPECT_GE(share, fq::RecipeOptions{}.int4_share);
    // (Compared as sums of whole multiply-adds, exact in double, so a share of exactly one half is not blurred.)
    const double total = c.num_layers * (attention + mlp_in + down);
    EXPECT_LT(c.num_layers * mlp_in + (downs - 1) * down, fq::RecipeOptions{}.int4_share * total);
    EXPECT_TRUE(plan.down_in_4_bits.front());
    EXPECT_FALSE(plan.down_in_4_bits.back());
  }
}

FQ_CUDA_TEST(DeviceModel, ProfileCountsOneQuantizationPerSharedInput) {
  Model model = load_fixture("llama_gqa");
  quantize(model, "flatten-w8a8-stagger");
  std::unique_ptr<fq::GpuModel> device = dev::upload_model(model);
  const std::vector<int32_t> tokens = random_tokens(6, 5);
  device->reset(1, 6);
  fq::profile::reset();
  fq::profile::enable(true);
  device->forward_timed(tokens.data(), 1, 6);
  fq::profile::enable(false);
  std::map<std::string, int64_t> calls;
  for (const fq::profile::Section& section : fq::profile::report()) calls[section.name] = section.calls;
  // Per layer: q/k/v share one quantization and gate/up another, each fused with the norm before them; o has its
  // own, and down's computes SiLU(gate) · up as it reads; 7 integer GEMMs. The norm runs alone only before the float
  // head, and no activation kernel runs.
  EXPECT_EQ(calls["norm+flatten+quantize"], 2 * 2);
  EXPECT_EQ(calls["flatten+quantize"], 2);
  EXPECT_EQ(calls["activation+flatten+quantize"], 2);
  EXPECT_EQ(calls["norm"], 1);
  EXPECT_EQ(calls.count("activation"), 0u);
  EXPECT_EQ(calls["int8 gemm"], 2 * 7);
  EXPECT_EQ(calls["int rescale"], 2 * 7);
  EXPECT_EQ(calls["attention"], 2);
  EXPECT_EQ(calls["fp16 gemm"], 1);  // the head
  fq::profile::reset();
}
