// Quantized models saved as .fq and loaded back: logits bit for bit, the tokenizer intact, and every
// corrupted or inconsistent file refused with fq::Error (never a crash).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <random>

#include "fq/checkpoint.h"
#include "fq/quant.h"
#include "fq/quant/recipe.h"
#include "fq/quant/serialize.h"
#include "fq/tokenizer.h"
#include "io/fq_file.h"
#include "test_util.h"

namespace fq {
namespace {

constexpr int64_t kVocab = 320;  // every model fixture's vocabulary

std::vector<int32_t> tokens_for(int64_t length, int64_t seed) {
  std::vector<int32_t> tokens;
  for (int64_t t = 0; t < length; ++t) tokens.push_back(static_cast<int32_t>((t * 37 + seed * 11 + 5) % kVocab));
  return tokens;
}

// Logits of two sequences at once, then one more step from the cache (batched prefill and decode).
std::vector<float> logits_of(const Model& model) {
  const int64_t seq = 12;
  std::vector<int32_t> prompt = tokens_for(seq, 1);
  const std::vector<int32_t> second = tokens_for(seq, 2);
  prompt.insert(prompt.end(), second.begin(), second.end());
  KVCache cache = model.new_cache(2, seq + 1);
  const Tensor prefill = model.forward(prompt.data(), 2, seq, cache);
  const int32_t next[2] = {7, 300};
  const Tensor step = model.forward(next, 2, 1, cache);
  std::vector<float> out(prefill.data<float>(), prefill.data<float>() + prefill.numel());
  out.insert(out.end(), step.data<float>(), step.data<float>() + step.numel());
  return out;
}

Calibration calibrate_fixture(Model& model) {
  return calibrate(model, {tokens_for(32, 3), tokens_for(24, 4)});
}

// The model of `checkpoint` quantized by `options` and written to `path`, with the metadata it was saved with.
struct Quantized {
  Model model;
  FqMetadata metadata;
};

// `storage`: convert the float parts as fq quantize does before saving (unset: keep them as loaded).
Quantized quantize_and_save(const Checkpoint& checkpoint, const RecipeOptions& options, const std::string& path,
                            const std::optional<FloatStorage>& storage = std::nullopt) {
  Model model = Model::from_checkpoint(checkpoint, DType::f32);
  Calibration calibration = calibrate_fixture(model);
  nlohmann::json report = apply_recipe(model, calibration, options);
  if (storage) convert_float_storage(model, *storage);
  FqMetadata metadata{checkpoint.config, checkpoint.tokenizer, {{"name", options.name}}, report};
  save_fq(path, model, metadata);
  return {std::move(model), std::move(metadata)};
}

void expect_bitwise_equal(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << what;
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << what << " at logit " << i;
}

// Saves, reloads and compares the reloaded model with the in-memory one: logits, layer kinds,
// metadata, and how the file stores each quantized layer. Returns the recipe's report.
nlohmann::json expect_round_trip(const std::string& fixture, const RecipeOptions& options,
                                 const std::optional<FloatStorage>& storage = std::nullopt) {
  const std::string what = fixture + " " + options.name + (options.per_channel_weights ? " per-channel" : "") +
                           (options.dynamic_activations ? " dynamic" : "") + (options.quantize_head ? " +head" : "") +
                           (options.smooth ? " +smooth" : "") +
                           (storage ? fmt::format(" embedding {} linears {}", dtype_name(storage->embedding),
                                                  dtype_name(storage->linears))
                                    : "");
  SCOPED_TRACE(what);
  test::TempDir dir;
  const std::string path = dir.file("model.fq");
  Quantized quantized = quantize_and_save(load_checkpoint(test::fixture(fixture)), options, path, storage);
  const Checkpoint reloaded_checkpoint = load_checkpoint(path);
  EXPECT_EQ(reloaded_checkpoint.format, "fq");
  EXPECT_EQ(reloaded_checkpoint.config, quantized.metadata.config);
  EXPECT_EQ(reloaded_checkpoint.metadata.at("recipe"), quantized.metadata.recipe);
  EXPECT_EQ(reloaded_checkpoint.metadata.at("report"), quantized.metadata.report);
  Model reloaded = Model::from_checkpoint(reloaded_checkpoint, DType::f32);
  expect_bitwise_equal(logits_of(reloaded), logits_of(quantized.model), what);

  std::vector<LinearSlot> before = quantized.model.linears(), after = reloaded.linears();
  EXPECT_EQ(before.size(), after.size());
  if (before.size() != after.size()) return quantized.metadata.report;
  int64_t quantized_slots = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ((*after[i].linear)->kind(), (*before[i].linear)->kind()) << before[i].name;
    quantized_slots += dynamic_cast<const QuantizedLinear*>(before[i].linear->get()) != nullptr;
  }
  EXPECT_EQ(static_cast<int64_t>(reloaded_checkpoint.quantization.size()), quantized_slots);
  if (options.name != "fp") {
    EXPECT_EQ(quantized_slots, static_cast<int64_t>(before.size()) - (options.quantize_head ? 0 : 1));
  }
  EXPECT_EQ(quantized.metadata.report.value("layers", nlohmann::json::array()).size(), size_t(quantized_slots));

  // 4-bit layers are stored packed (i4), 8-bit ones as i8, with one scale or one per output.
  const io::FqContents file = io::read_fq(path);
  int64_t four_bit_layers = 0;
  for (const LinearSlot& slot : before) {
    const auto* layer = dynamic_cast<const QuantizedLinear*>(slot.linear->get());
    if (!layer) {
      EXPECT_FALSE(file.tensors.count(slot.checkpoint_name + ".weight_codes")) << slot.name;
      continue;
    }
    four_bit_layers += layer->weight_bits() == 4;
    const Tensor& codes = file.tensors.at(slot.checkpoint_name + ".weight_codes");
    EXPECT_EQ(codes.dtype(), layer->weight_bits() == 4 ? DType::i4 : DType::i8) << slot.name;
    EXPECT_EQ(codes.shape(), (Shape{layer->out_features(), layer->plan().flat_features()})) << slot.name;
    const bool per_token = options.name == "pertoken-w8a8";  // forces per-channel weights, dynamic rows
    EXPECT_EQ(file.tensors.at(slot.checkpoint_name + ".weight_scales").numel(),
              options.per_channel_weights || per_token ? layer->out_features() : 1)
        << slot.name;
    const nlohmann::json& activation = file.header.at("quantization").at(slot.checkpoint_name).at("activation");
    EXPECT_EQ(activation.at("dynamic").get<bool>(), options.dynamic_activations || per_token) << slot.name;
    EXPECT_EQ(activation.at("per_token").get<bool>(), per_token) << slot.name;
  }
  const int64_t expected_four_bit = options.name == "naive-w4a4" || options.name == "flatten-w4a8" ? quantized_slots : 0;
  if (options.name == "flatten-mixed") {
    EXPECT_GT(four_bit_layers, 0);
  } else {
    EXPECT_EQ(four_bit_layers, expected_four_bit);
  }
  return quantized.metadata.report;
}

RecipeOptions recipe(const std::string& name) {
  RecipeOptions options;
  options.name = name;
  return options;
}

std::vector<RecipeOptions> recipes_under_test() {
  std::vector<RecipeOptions> all;
  for (const char* name : {"flatten-w8a8-stagger", "flatten-mixed", "flatten-w4a8", "smoothquant-w8a8", "pertoken-w8a8", "naive-w4a4", "fp"})
    all.push_back(recipe(name));
  RecipeOptions per_channel_dynamic = recipe("flatten-w8a8-stagger");
  per_channel_dynamic.per_channel_weights = true;
  per_channel_dynamic.dynamic_activations = true;
  all.push_back(per_channel_dynamic);
  RecipeOptions mixed_per_channel = recipe("flatten-mixed");
  mixed_per_channel.per_channel_weights = true;
  all.push_back(mixed_per_channel);
  return all;
}

TEST(FqModel, LlamaGgufRoundTripsBitForBit) {
  for (const RecipeOptions& options : recipes_under_test()) expect_round_trip("llama_gqa/model-f32.gguf", options);
  RecipeOptions with_head = recipe("flatten-w8a8");
  with_head.quantize_head = true;
  expect_round_trip("llama_gqa/model-f32.gguf", with_head);
}

TEST(FqModel, OptPreLayerNormRoundTripsBitForBit) {
  for (const RecipeOptions& options : recipes_under_test()) expect_round_trip("opt_preln", options);
  // OPT ties its head to the embedding: a quantized head is saved and loaded as its own layer.
  RecipeOptions with_head = recipe("naive-w8a8");
  with_head.quantize_head = true;
  expect_round_trip("opt_preln", with_head);
}

TEST(FqModel, OptPostLayerNormRoundTripsWithSmoothingSkipped) {
  const nlohmann::json report = expect_round_trip("opt_postln", recipe("smoothquant-w8a8"));
  EXPECT_FALSE(report.at("smooth_skipped").empty()) << report.dump();
  RecipeOptions smoothed_mixed = recipe("flatten-mixed");
  smoothed_mixed.smooth = true;
  expect_round_trip("opt_postln", smoothed_mixed);
  expect_round_trip("opt_postln", recipe("naive-w4a4"));
}

TEST(FqModel, BiasedQwen2RoundTripsBitForBit) {
  expect_round_trip("qwen2_bias", recipe("smoothquant-w8a8"));
  expect_round_trip("qwen2_bias", recipe("flatten-mixed"));
}

// --- compact float parts: int8 or bf16 embeddings, bf16 float Linears ---

// The tensor whose name ends with `suffix` (e.g. "embed_tokens.weight"), or "" when none does.
std::string name_ending(const std::map<std::string, Tensor>& tensors, const std::string& suffix) {
  for (const auto& [name, tensor] : tensors)
    if (name.ends_with(suffix)) return name;
  return "";
}

TEST(FqModel, CompactFloatStorageRoundTripsBitForBit) {
  const std::vector<FloatStorage> storages = {{DType::i8, DType::bf16}, {DType::i8, DType::f32},
                                              {DType::bf16, DType::bf16}, {DType::bf16, DType::f32},
                                              {DType::f32, DType::bf16}};
  // The GGUF fixture has its own lm_head; the OPT and Qwen2 ones tie it to the embedding.
  for (const char* fixture : {"llama_gqa/model-f32.gguf", "opt_preln", "qwen2_bias"}) {
    const bool tied = ModelConfig::from_hf(load_checkpoint(test::fixture(fixture)).config, fixture).tied_embeddings;
    for (const FloatStorage& storage : storages) {
      for (const char* recipe_name : {"flatten-w8a8-stagger", "fp"}) {
        SCOPED_TRACE(fmt::format("{} {} embedding {} linears {}", fixture, recipe_name, dtype_name(storage.embedding),
                                 dtype_name(storage.linears)));
        test::TempDir dir;
        expect_round_trip(fixture, recipe(recipe_name), storage);
        quantize_and_save(load_checkpoint(test::fixture(fixture)), recipe(recipe_name), dir.file("m.fq"), storage);
        const io::FqContents file = io::read_fq(dir.file("m.fq"));
        const std::string embedding = name_ending(file.tensors, "embed_tokens.weight");
        ASSERT_NE(embedding, "");
        EXPECT_EQ(file.tensors.at(embedding).dtype(), storage.embedding);
        const std::string scales = embedding + "_scales";
        ASSERT_EQ(file.tensors.count(scales), storage.embedding == DType::i8 ? 1u : 0u);
        if (storage.embedding == DType::i8) {
          EXPECT_EQ(file.tensors.at(scales).dtype(), DType::f32);
          EXPECT_EQ(file.tensors.at(scales).shape(), (Shape{kVocab}));
        }
        // A tied head is written only when it differs from the embedding table.
        const bool own_head = !tied || storage.embedding != storage.linears;
        ASSERT_EQ(file.tensors.count("lm_head.weight"), own_head ? 1u : 0u);
        if (own_head) EXPECT_EQ(file.tensors.at("lm_head.weight").dtype(), storage.linears);
        for (const auto& [name, tensor] : file.tensors)  // every other float Linear of the fp recipe
          if (name.ends_with("proj.weight") || name.ends_with("fc1.weight") || name.ends_with("fc2.weight"))
            EXPECT_EQ(tensor.dtype(), storage.linears) << name;
      }
    }
  }
}

TEST(FqModel, FloatLinearsStoredInBf16ComputeInBf16EvenInAnF32Model) {
  test::TempDir dir;
  const Checkpoint source = load_checkpoint(test::fixture("llama_gqa"));
  Model model = Model::from_checkpoint(source, DType::f32);
  convert_float_storage(model, {DType::bf16, DType::bf16});
  save_fq(dir.file("m.fq"), model, {source.config, source.tokenizer, {{"name", "fp"}}, {{"recipe", "fp"}}});
  for (DType compute : {DType::f32, DType::bf16}) {
    const Model reloaded = Model::from_checkpoint(load_checkpoint(dir.file("m.fq")), compute);
    EXPECT_EQ(reloaded.token_embedding.dtype(), DType::bf16);
    EXPECT_EQ(reloaded.lm_head->kind(), "bf16");
    expect_bitwise_equal(logits_of(reloaded), logits_of(Model::from_checkpoint(source, DType::bf16)),
                         std::string(dtype_name(compute)));
  }
}

TEST(FqModel, VersionOneFilesStillLoad) {
  test::TempDir dir;
  const Quantized quantized =
      quantize_and_save(load_checkpoint(test::fixture("opt_preln")), recipe("flatten-w8a8-stagger"), dir.file("v2.fq"));
  std::vector<uint8_t> bytes = test::read_bytes(dir.file("v2.fq"));
  ASSERT_EQ(bytes[8], io::kFqFormatVersion);
  bytes[8] = 1;  // version 1 files are these: f32 embedding, a tied head rebuilt from it
  test::write_bytes(dir.file("v1.fq"), bytes);
  expect_bitwise_equal(logits_of(Model::from_checkpoint(load_checkpoint(dir.file("v1.fq")), DType::f32)),
                       logits_of(quantized.model), "version 1");
}

// --- the tokenizer inside the .fq ---

void expect_same_tokenizer(const Checkpoint& source, const std::string& path,
                           const std::vector<std::string>& samples) {
  Model copy = Model::from_checkpoint(source, DType::f32);
  save_fq(path, copy, {source.config, source.tokenizer, {{"name", "fp"}}, {{"recipe", "fp"}}});
  const TokenizerSpec& want = source.tokenizer;
  const TokenizerSpec got = load_checkpoint(path).tokenizer;
  EXPECT_EQ(got.kind, want.kind);
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_EQ(got.merges, want.merges);
  EXPECT_EQ(got.scores, want.scores);
  EXPECT_EQ(got.token_types, want.token_types);
  EXPECT_EQ(got.pre, want.pre);
  EXPECT_EQ(got.bos_id, want.bos_id);
  EXPECT_EQ(got.eos_id, want.eos_id);
  EXPECT_EQ(got.unk_id, want.unk_id);
  EXPECT_EQ(got.pad_id, want.pad_id);
  EXPECT_EQ(got.add_bos, want.add_bos);
  EXPECT_EQ(got.add_space_prefix, want.add_space_prefix);
  const auto original = make_tokenizer(want);
  const auto restored = make_tokenizer(got);
  for (const std::string& text : samples)
    for (bool bos : {false, true}) {
      if (bos && want.bos_id < 0) continue;
      const std::vector<int32_t> ids = original->encode(text, bos);
      EXPECT_FALSE(ids.empty()) << text;
      EXPECT_EQ(restored->encode(text, bos), ids) << text;
      EXPECT_EQ(restored->decode(ids), original->decode(ids)) << text;
    }
}

TEST(FqModel, GgufTokenizerSurvivesTheRoundTrip) {
  test::TempDir dir;
  const Checkpoint checkpoint = load_checkpoint(test::fixture("llama_gqa/model-f32.gguf"));
  ASSERT_NE(checkpoint.tokenizer.kind, TokenizerSpec::Kind::none);
  expect_same_tokenizer(checkpoint, dir.file("gguf.fq"),
                        {"Hello world", "the cat sat on the mat", " 123 4567 !?", "caf\xc3\xa9 \xe2\x82\xac", "\xff\xfe"});
}

TEST(FqModel, Llama2cTokenizerSurvivesTheRoundTrip) {
  const std::string model_path = test::shared_path("models/stories260K/stories260K.bin");
  const std::string tokenizer_path = test::shared_path("models/stories260K/tok512.bin");
  if (!std::filesystem::exists(model_path) || !std::filesystem::exists(tokenizer_path))
    GTEST_SKIP() << "shared/models/stories260K missing";
  LoadOptions options;
  options.tokenizer_path = tokenizer_path;
  const Checkpoint checkpoint = load_checkpoint(model_path, options);
  ASSERT_EQ(checkpoint.tokenizer.kind, TokenizerSpec::Kind::sentencepiece_bpe);
  test::TempDir dir;
  expect_same_tokenizer(checkpoint, dir.file("stories.fq"),
                        {"Once upon a time, there was a little girl named Lily.", "She liked to play outside.",
                         "  two  spaces", "\xe4\xbd\xa0\xe5\xa5\xbd"});
}

TEST(FqModel, CheckpointWithoutTokenizerStaysWithout) {
  test::TempDir dir;
  const Checkpoint checkpoint = load_checkpoint(test::fixture("opt_preln"));
  ASSERT_EQ(checkpoint.tokenizer.kind, TokenizerSpec::Kind::none);
  quantize_and_save(checkpoint, recipe("fp"), dir.file("m.fq"));
  EXPECT_EQ(load_checkpoint(dir.file("m.fq")).tokenizer.kind, TokenizerSpec::Kind::none);
  EXPECT_FALSE(io::read_fq(dir.file("m.fq")).tensors.count("tokenizer.tokens.bytes"));
}

// --- corrupted and inconsistent files ---

// Everything a command does with a model file: load it, build the model and tokenizer, run a few tokens.
void load_and_run(const std::string& path) {
  const Checkpoint checkpoint = load_checkpoint(path);
  const Model model = Model::from_checkpoint(checkpoint, DType::f32);
  if (checkpoint.tokenizer.kind != TokenizerSpec::Kind::none) make_tokenizer(checkpoint.tokenizer)->encode("a cat", false);
  const std::vector<int32_t> tokens = {1, 2, 3};
  KVCache cache = model.new_cache(1, 3);
  model.forward(tokens.data(), 1, 3, cache);
}

// The fq::Error message of load_and_run(path), "" when it succeeds; any other exception fails the test.
std::string load_error(const std::string& path) {
  try {
    load_and_run(path);
  } catch (const Error& error) {
    return error.what();
  } catch (const std::exception& error) {
    ADD_FAILURE() << path << ": not an fq::Error: " << error.what();
    return error.what();
  }
  return "";
}

// A quantized .fq of the GGUF fixture (tokenizer, 8-bit and 4-bit layers), written once per test.
class CorruptFq : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("good.fq");
    quantize_and_save(load_checkpoint(test::fixture("llama_gqa/model-f32.gguf")), recipe("flatten-mixed"), path_);
    bytes_ = test::read_bytes(path_);
    ASSERT_GT(bytes_.size(), 24u);
    std::memcpy(&header_bytes_, bytes_.data() + 16, sizeof(header_bytes_));
    ASSERT_EQ(load_error(path_), "");
  }

  // The good file, read, changed by `edit` and written again as a valid container.
  std::string rewritten(const std::string& name,
                        const std::function<void(nlohmann::json&, std::map<std::string, Tensor>&)>& edit) {
    io::FqContents contents = io::read_fq(path_);
    edit(contents.header, contents.tensors);
    const std::string path = dir_.file(name);
    io::write_fq(path, contents.header, contents.tensors);
    return path;
  }

  // The good file with its JSON header (tensor table included) changed by `edit`; the tensor data is
  // kept as it is, moved to the new aligned start.
  std::string with_raw_header(const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
    auto align = [](size_t value) { return (value + 63) / 64 * 64; };
    nlohmann::json header = nlohmann::json::parse(bytes_.begin() + 24, bytes_.begin() + 24 + header_bytes_);
    edit(header);
    const std::string text = header.dump();
    const size_t old_start = align(24 + header_bytes_), new_start = align(24 + text.size());
    std::vector<uint8_t> out(new_start + (bytes_.size() - old_start), 0);
    const uint64_t length = text.size();
    std::memcpy(out.data(), bytes_.data(), 16);
    std::memcpy(out.data() + 16, &length, sizeof(length));
    std::memcpy(out.data() + 24, text.data(), text.size());
    std::memcpy(out.data() + new_start, bytes_.data() + old_start, bytes_.size() - old_start);
    const std::string path = dir_.file(name);
    test::write_bytes(path, out);
    return path;
  }

  using Edit = std::function<void(nlohmann::json&, std::map<std::string, Tensor>&)>;
  // Each edit of the good file fails to load with one line naming the file and the edit's expected text.
  void expect_one_line_errors(const std::vector<std::pair<std::string, Edit>>& edits) {
  for (size_t i = 0; i < edits.size(); ++i) {
    const std::string path = rewritten("edit" + std::to_string(i) + ".fq", edits[i].second);
    const std::string message = load_error(path);
    EXPECT_NE(message.find(edits[i].first), std::string::npos) << "edit " << i << ": " << message;
    EXPECT_NE(message.find(path), std::string::npos) << "edit " << i << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "edit " << i << ": " << message;
  }
  }

  // The prefix of one quantized layer with `bits`-bit weights.
  std::string layer_with_bits(int bits) const {
    const nlohmann::json layers = io::read_fq(path_).header.at("quantization");
    for (const auto& [prefix, entry] : layers.items())
      if (entry.at("weight_bits").get<int>() == bits) return prefix;
    ADD_FAILURE() << "no " << bits << "-bit layer";
    return "";
  }

  test::TempDir dir_;
  std::string path_;
  std::vector<uint8_t> bytes_;
  uint64_t header_bytes_ = 0;
};

TEST_F(CorruptFq, TruncationAtAnyOffsetIsRefused) {
  std::vector<size_t> cuts;
  for (size_t cut = 0; cut <= 64; ++cut) cuts.push_back(cut);  // preamble and the start of the header
  for (size_t cut = 24 + header_bytes_ - 8; cut < 24 + header_bytes_ + 72; ++cut) cuts.push_back(cut);
  for (size_t cut = 0; cut < bytes_.size(); cut += 997) cuts.push_back(cut);
  for (size_t back = 1; back <= 130; ++back) cuts.push_back(bytes_.size() - back);  // the last tensor and its padding
  const std::string path = dir_.file("cut.fq");
  for (size_t cut : cuts) {
    test::write_bytes(path, std::vector<uint8_t>(bytes_.begin(), bytes_.begin() + cut));
    const std::string message = load_error(path);
    EXPECT_NE(message, "") << "cut at " << cut;
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  std::vector<uint8_t> longer = bytes_;
  longer.push_back(0);
  test::write_bytes(path, longer);
  EXPECT_NE(load_error(path), "");
}

TEST_F(CorruptFq, RandomHeaderByteFlipsLoadOrFailCleanly) {
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<size_t> position(0, 24 + header_bytes_ - 1);
  std::uniform_int_distribution<int> mask(1, 255);
  const std::string path = dir_.file("flipped.fq");
  int refused = 0;
  const int trials = 400;
  for (int trial = 0; trial < trials; ++trial) {
    std::vector<uint8_t> corrupted = bytes_;
    const size_t at = position(rng);
    corrupted[at] ^= static_cast<uint8_t>(mask(rng));
    test::write_bytes(path, corrupted);
    const std::string message = load_error(path);
    EXPECT_EQ(message.find('\n'), std::string::npos) << "byte " << at << ": " << message;
    refused += !message.empty();
  }
  // Most header bytes are structure, names or sizes; a flipped digit of a float may still load.
  EXPECT_GT(refused, trials / 2);
}

TEST_F(CorruptFq, FlippedTensorDataFailsItsChecksum) {
  // Every tensor's first byte, flipped, is caught by that tensor's checksum.
  const std::string path = dir_.file("flipped.fq");
  const size_t data_start = (24 + header_bytes_ + 63) / 64 * 64;
  const nlohmann::json header = nlohmann::json::parse(bytes_.begin() + 24, bytes_.begin() + 24 + header_bytes_);
  for (const auto& [name, entry] : header.at("tensors").items()) {
    if (entry.at("bytes").get<uint64_t>() == 0) continue;
    std::vector<uint8_t> corrupted = bytes_;
    corrupted[data_start + entry.at("offset").get<size_t>()] ^= 0x10;
    test::write_bytes(path, corrupted);
    const std::string message = load_error(path);
    EXPECT_NE(message.find("'" + name + "'"), std::string::npos) << message;
    EXPECT_NE(message.find("checksum"), std::string::npos) << message;
  }
}

TEST_F(CorruptFq, TensorTableEntriesAreChecked) {
  EXPECT_EQ(load_error(with_raw_header("same.fq", [](nlohmann::json&) {})), "");
  using Edit = std::function<void(nlohmann::json&)>;
  const std::vector<std::pair<std::string, Edit>> edits = {
      // 2^59 f32 values need 2^64 bytes, which wraps to 0 in 64 bits.
      {"tokenizer.scores",
       [](nlohmann::json& header) {
         header["tensors"]["tokenizer.scores"]["shape"] = {int64_t{1} << 59};
         header["tensors"]["tokenizer.scores"]["bytes"] = 0;
         header["tensors"]["tokenizer.scores"]["crc32"] = 0;
       }},
      {"tokenizer.token_types",
       [](nlohmann::json& header) {
         header["tensors"]["tokenizer.token_types"]["shape"] = {int64_t{1} << 31, int64_t{1} << 31};
         header["tensors"]["tokenizer.token_types"]["bytes"] = 0;
         header["tensors"]["tokenizer.token_types"]["crc32"] = 0;
       }},
      {"model.norm.weight", [](nlohmann::json& header) { header["tensors"]["model.norm.weight"]["offset"] = -64; }},
      {"model.norm.weight", [](nlohmann::json& header) { header["tensors"]["model.norm.weight"]["offset"] = 1u << 31; }},
      {"model.norm.weight", [](nlohmann::json& header) { header["tensors"]["model.norm.weight"]["shape"] = {-1, -64}; }},
      {"model.norm.weight", [](nlohmann::json& header) { header["tensors"]["model.norm.weight"]["dtype"] = "q8_0"; }},
      {"model.norm.weight", [](nlohmann::json& header) { header["tensors"]["model.norm.weight"].erase("crc32"); }},
  };
  for (size_t i = 0; i < edits.size(); ++i) {
    const std::string path = with_raw_header("table" + std::to_string(i) + ".fq", edits[i].second);
    const std::string message = load_error(path);
    EXPECT_NE(message.find("'" + edits[i].first + "'"), std::string::npos) << "edit " << i << ": " << message;
    EXPECT_NE(message.find(path), std::string::npos) << "edit " << i << ": " << message;
  }
}

TEST_F(CorruptFq, InconsistentQuantizedLayersNameTheLayer) {
  const std::string eight = layer_with_bits(8), four = layer_with_bits(4);
  using Edit = std::function<void(nlohmann::json&, std::map<std::string, Tensor>&)>;
  const std::vector<std::pair<std::string, Edit>> edits = {
      {eight, [&](auto& header, auto&) { header["quantization"][eight]["weight_bits"] = 4; }},
      {four, [&](auto& header, auto&) { header["quantization"][four]["weight_bits"] = 8; }},
      {eight, [&](auto& header, auto&) { header["quantization"][eight]["weight_bits"] = 3; }},
      {eight, [&](auto& header, auto&) { header["quantization"][eight]["weight_bits"] = "8"; }},
      {eight, [&](auto& header, auto&) { header["quantization"][eight].erase("weight_bits"); }},
      {eight, [&](auto& header, auto&) { header["quantization"][eight] = 8; }},
      {eight, [&](auto& header, auto&) { header["quantization"][eight]["align"] = 0; }},
      {eight, [&](auto& header, auto&) { header["quantization"][eight]["activation"]["bits"] = 16; }},
      {eight, [&](auto& header, auto&) { header["quantization"][eight]["activation"]["step"] = -1.0; }},
      {eight, [&](auto& header, auto&) { header["quantization"][eight].erase("activation"); }},
      {eight, [&](auto&, auto& tensors) { tensors.erase(eight + ".copies"); }},
      {four, [&](auto&, auto& tensors) { tensors.erase(four + ".weight_codes"); }},
      {eight, [&](auto&, auto& tensors) { tensors.erase(eight + ".weight_scales"); }},
      {eight,
       [&](auto&, auto& tensors) {
         tensors[eight + ".copies"] = Tensor::from_floats(std::vector<float>(64, 1.f), {64});
       }},
      {eight,
       [&](auto&, auto& tensors) {
         Tensor copies = tensors[eight + ".copies"].clone();
         copies.template data<int32_t>()[0] = 0;
         tensors[eight + ".copies"] = copies;
       }},
      {eight,
       [&](auto&, auto& tensors) {
         Tensor copies = tensors[eight + ".copies"].clone();
         copies.template data<int32_t>()[0] += 200;  // more columns than the codes have
         tensors[eight + ".copies"] = copies;
       }},
      {eight,
       [&](auto&, auto& tensors) {
         tensors[eight + ".weight_scales"] = Tensor::from_floats({0.f}, {1});
       }},
      {eight,
       [&](auto&, auto& tensors) {
         tensors[eight + ".weight_scales"] = Tensor::from_floats({1.f, 2.f}, {2});
       }},
      {eight,
       [&](auto&, auto& tensors) {
         const Tensor& codes = tensors[eight + ".weight_codes"];
         tensors[eight + ".weight_codes"] = codes.slice(0, 0, codes.dim(0) - 1).contiguous();
       }},
  };
  expect_one_line_errors(edits);
}

// A file in fq quantize's default storage: int8 embedding rows, the tied head on its own in bf16.
class CorruptCompactFq : public CorruptFq {
 protected:
  void SetUp() override {
    path_ = dir_.file("compact.fq");
    quantize_and_save(load_checkpoint(test::fixture("opt_preln")), recipe("flatten-w8a8-stagger"), path_,
                      FloatStorage{});
    ASSERT_EQ(io::read_fq(path_).tensors.at(kCodes).dtype(), DType::i8);
    ASSERT_EQ(load_error(path_), "");
  }
  static constexpr const char* kCodes = "model.decoder.embed_tokens.weight";
  static constexpr const char* kScales = "model.decoder.embed_tokens.weight_scales";
};

TEST_F(CorruptCompactFq, BadEmbeddingScalesOrCodesNameTheTensor) {
  using Edit = std::function<void(nlohmann::json&, std::map<std::string, Tensor>&)>;
  auto set_scale = [](float value) -> Edit {
    return [value](auto&, auto& tensors) {
      Tensor scales = tensors[kScales].clone();
      scales.template data<float>()[7] = value;
      tensors[kScales] = scales;
    };
  };
  const std::vector<std::pair<std::string, Edit>> edits = {
      {kScales, [](auto&, auto& tensors) { tensors.erase(kScales); }},
      {kCodes, [](auto&, auto& tensors) { tensors[kScales] = tensors[kScales].slice(0, 0, kVocab - 1).contiguous(); }},
      {kCodes, [](auto&, auto& tensors) { tensors[kScales] = Tensor::zeros(DType::i32, {kVocab}); }},
      {kCodes, [](auto&, auto& tensors) { tensors[kScales] = tensors[kScales].reshape({kVocab / 2, 2}); }},
      {kCodes, set_scale(-1.f)},
      {kCodes, set_scale(std::nanf(""))},
      {kCodes, set_scale(std::numeric_limits<float>::infinity())},
      {kCodes,
       [](auto&, auto& tensors) {
         Tensor codes = tensors[kCodes].clone();
         codes.template data<int8_t>()[100] = -128;
         tensors[kCodes] = codes;
       }},
      {kCodes, [](auto&, auto& tensors) { tensors[kCodes] = Tensor::zeros(DType::i32, tensors[kCodes].shape()); }},
      {"lm_head.weight", [](auto&, auto& tensors) { tensors.erase("lm_head.weight"); }},
      {"lm_head.weight",
       [](auto&, auto& tensors) {
         tensors["lm_head.weight"] = Tensor::zeros(DType::i8, tensors["lm_head.weight"].shape());
       }},
  };
  expect_one_line_errors(edits);
}

TEST_F(CorruptFq, InconsistentTokenizerOrConfigIsRefused) {
  using Edit = std::function<void(nlohmann::json&, std::map<std::string, Tensor>&)>;
  const std::vector<Edit> edits = {
      [](auto& header, auto&) { header["tokenizer"]["kind"] = "wordpiece"; },
      [](auto& header, auto&) { header["tokenizer"].erase("bos_id"); },
      [](auto& header, auto&) { header["tokenizer"]["bos_id"] = 100000; },
      [](auto& header, auto&) { header["tokenizer"] = "byte_bpe"; },
      [](auto&, auto& tensors) { tensors.erase("tokenizer.merges.offsets"); },
      [](auto&, auto& tensors) {
        Tensor offsets = tensors["tokenizer.tokens.offsets"].clone();
        offsets.template data<int32_t>()[3] = 1 << 30;
        tensors["tokenizer.tokens.offsets"] = offsets;
      },
      [](auto&, auto& tensors) {
        Tensor offsets = tensors["tokenizer.tokens.offsets"].clone();
        offsets.template data<int32_t>()[0] = -4;
        tensors["tokenizer.tokens.offsets"] = offsets;
      },
      [](auto&, auto& tensors) {
        Tensor offsets = tensors["tokenizer.tokens.offsets"].clone();
        std::swap(offsets.template data<int32_t>()[5], offsets.template data<int32_t>()[9]);
        tensors["tokenizer.tokens.offsets"] = offsets;
      },
      [](auto&, auto& tensors) { tensors["tokenizer.token_types"] = Tensor::empty(DType::i32, {3}); },
      [](auto&, auto& tensors) { tensors["tokenizer.tokens.offsets"] = Tensor::empty(DType::i32, {0}); },
      [](auto& header, auto&) { header.erase("config"); },
      [](auto& header, auto&) { header["config"]["hidden_size"] = 48; },
      [](auto& header, auto&) { header["quantization"] = nlohmann::json::array(); },
      [](auto&, auto& tensors) { tensors.erase("model.norm.weight"); },
  };
  for (size_t i = 0; i < edits.size(); ++i) {
    const std::string path = rewritten("edit" + std::to_string(i) + ".fq", edits[i]);
    const std::string message = load_error(path);
    EXPECT_NE(message.find(path), std::string::npos) << "edit " << i << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "edit " << i << ": " << message;
  }
}

}  // namespace
}  // namespace fq
