// The token embedding's storage formats (f32, bf16, int8 rows with a scale each): exact lookups,
// rounding within each format's bound, checked construction, and whole models whose logits stay
// those of the f32-embedding model within that rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>

#include "fq/checkpoint.h"
#include "fq/embedding.h"
#include "fq/model.h"
#include "fq/quant/serialize.h"
#include "test_util.h"

namespace fq {
namespace {

// Gaussian rows with widely different magnitudes, one all-zero row (index 2).
Tensor sample_table(int64_t rows, int64_t width) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> values(static_cast<size_t>(rows * width));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < width; ++i)
      values[r * width + i] = r == 2 ? 0.f : normal(rng) * std::pow(10.f, static_cast<float>(r % 5) - 2.f);
  return Tensor::from_floats(values, {rows, width});
}

std::vector<float> row_of(const TokenEmbedding& embedding, int64_t id) {
  std::vector<float> row(static_cast<size_t>(embedding.width()));
  embedding.lookup(id, row.data());
  return row;
}

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST(TokenEmbedding, Float32LookupIsTheRow) {
  const Tensor table = sample_table(6, 40);
  const TokenEmbedding embedding(table);
  EXPECT_EQ(embedding.dtype(), DType::f32);
  EXPECT_EQ(embedding.vocab_size(), 6);
  EXPECT_EQ(embedding.width(), 40);
  EXPECT_EQ(embedding.table().raw(), table.raw()) << "a contiguous table is kept, not copied";
  for (int64_t r = 0; r < 6; ++r) {
    const float* row = table.data<float>() + r * 40;
    EXPECT_EQ(row_of(embedding, r), std::vector<float>(row, row + 40));
  }
}

TEST(TokenEmbedding, Bf16RowsAreTheRoundedValues) {
  const Tensor table = sample_table(6, 40);
  const TokenEmbedding embedding = TokenEmbedding(table).converted(DType::bf16);
  EXPECT_EQ(embedding.dtype(), DType::bf16);
  EXPECT_EQ(embedding.nbytes(), 6u * 40u * 2u);
  for (int64_t r = 0; r < 6; ++r) {
    const std::vector<float> row = row_of(embedding, r);
    for (int64_t i = 0; i < 40; ++i) {
      const float value = table.data<float>()[r * 40 + i];
      ASSERT_EQ(row[i], bf16_to_f32(f32_to_bf16(value))) << r << "," << i;
      ASSERT_LE(std::abs(row[i] - value), std::abs(value) / 256) << "bf16 keeps 8 significant bits";
    }
  }
  // Back to f32 is exact.
  EXPECT_EQ(row_of(embedding.converted(DType::f32), 3), row_of(embedding, 3));
}

TEST(TokenEmbedding, Int8RowsKeepEachValueWithinHalfAStep) {
  const Tensor table = sample_table(10, 64);
  const TokenEmbedding embedding = TokenEmbedding(table).converted(DType::i8);
  ASSERT_EQ(embedding.dtype(), DType::i8);
  ASSERT_EQ(embedding.scales().shape(), (Shape{10}));
  EXPECT_EQ(embedding.nbytes(), 10u * 64u + 10u * 4u);
  for (int64_t r = 0; r < 10; ++r) {
    const float* values = table.data<float>() + r * 64;
    float largest = 0;
    for (int64_t i = 0; i < 64; ++i) largest = std::max(largest, std::abs(values[i]));
    const float scale = embedding.scales().data<float>()[r];
    EXPECT_EQ(scale, largest / 127) << "row " << r;
    const std::vector<float> row = row_of(embedding, r);
    const int8_t* codes = embedding.table().data<int8_t>() + r * 64;
    for (int64_t i = 0; i < 64; ++i) {
      ASSERT_EQ(row[i], static_cast<float>(codes[i]) * scale) << r << "," << i;
      ASSERT_LE(std::abs(row[i] - values[i]), scale / 2 * (1 + 1e-5f)) << r << "," << i;
    }
  }
  EXPECT_EQ(row_of(embedding, 2), std::vector<float>(64, 0.f)) << "an all-zero row stays zero";
  // Converting back gives exactly the dequantized rows; converting again to i8 changes nothing.
  const TokenEmbedding restored = embedding.converted(DType::f32);
  for (int64_t r = 0; r < 10; ++r) EXPECT_EQ(row_of(restored, r), row_of(embedding, r));
  const TokenEmbedding again = restored.converted(DType::i8);
  EXPECT_EQ(std::memcmp(again.table().raw(), embedding.table().raw(), embedding.table().nbytes()), 0);
  for (int64_t r = 0; r < 10; ++r)
    EXPECT_NEAR(again.scales().data<float>()[r], embedding.scales().data<float>()[r],
                1e-6f * embedding.scales().data<float>()[r]);
  EXPECT_EQ(embedding.converted(DType::i8).table().raw(), embedding.table().raw()) << "same format: no copy";
}

TEST(TokenEmbedding, QuantizingFromBf16UsesTheBf16Values) {
  const TokenEmbedding bf16 = TokenEmbedding(sample_table(5, 32)).converted(DType::bf16);
  const TokenEmbedding from_bf16 = bf16.converted(DType::i8);
  const TokenEmbedding from_f32 = bf16.converted(DType::f32).converted(DType::i8);
  EXPECT_EQ(std::memcmp(from_bf16.table().raw(), from_f32.table().raw(), from_f32.table().nbytes()), 0);
  EXPECT_EQ(std::memcmp(from_bf16.scales().raw(), from_f32.scales().raw(), from_f32.scales().nbytes()), 0);
}

TEST(TokenEmbedding, BadTablesAndScalesAreRefused) {
  const TokenEmbedding good = TokenEmbedding(sample_table(4, 8)).converted(DType::i8);
  const Tensor codes = good.table(), scales = good.scales();
  auto with_scale = [&](float value) {
    Tensor changed = scales.clone();
    changed.data<float>()[1] = value;
    return changed;
  };
  Tensor low_code = codes.clone();
  low_code.data<int8_t>()[5] = -128;
  const std::vector<std::pair<std::string, std::function<void()>>> cases = {
      {"scales are", [&] { TokenEmbedding(codes, Tensor::from_floats({1.f, 1.f, 1.f}, {3})); }},
      {"scales are", [&] { TokenEmbedding(codes, Tensor::zeros(DType::i32, {4})); }},
      {"scales are", [&] { TokenEmbedding(codes, Tensor()); }},
      {"row 1 has scale", [&] { TokenEmbedding(codes, with_scale(-0.5f)); }},
      {"row 1 has scale", [&] { TokenEmbedding(codes, with_scale(std::nanf(""))); }},
      {"row 1 has scale", [&] { TokenEmbedding(codes, with_scale(std::numeric_limits<float>::infinity())); }},
      {"outside", [&] { TokenEmbedding(low_code, scales); }},
      {"i8 codes", [&] { TokenEmbedding(sample_table(4, 8), scales); }},
      {"f32 or bf16", [&] { TokenEmbedding(Tensor::zeros(DType::i32, {4, 8})); }},
      {"[vocab, width]", [&] { TokenEmbedding(Tensor::zeros(DType::f32, {32})); }},
      {"cannot store", [&] { good.converted(DType::i4); }},
  };
  for (const auto& [expected, body] : cases) {
    const std::string message = error_of(body);
    EXPECT_NE(message.find("token embedding"), std::string::npos) << message;
    EXPECT_NE(message.find(expected), std::string::npos) << message;
  }
  Tensor infinite = sample_table(4, 8);
  infinite.data<float>()[3 * 8 + 2] = std::numeric_limits<float>::infinity();
  const std::string message = error_of([&] { TokenEmbedding(infinite).converted(DType::i8); });
  EXPECT_NE(message.find("row 3"), std::string::npos) << message;
}

// --- whole models ---

std::vector<float> logits_of(const Model& model) {
  std::vector<int32_t> tokens;
  for (int32_t t = 0; t < 20; ++t) tokens.push_back((t * 37 + 11) % 320);
  KVCache cache = model.new_cache(1, static_cast<int64_t>(tokens.size()));
  const Tensor logits = model.forward(tokens.data(), 1, static_cast<int64_t>(tokens.size()), cache);
  return std::vector<float>(logits.data<float>(), logits.data<float>() + logits.numel());
}

float largest_magnitude(const std::vector<float>& values) {
  float largest = 0;
  for (float v : values) largest = std::max(largest, std::abs(v));
  return largest;
}

float largest_difference(const std::vector<float>& a, const std::vector<float>& b) {
  float largest = 0;
  for (size_t i = 0; i < a.size(); ++i) largest = std::max(largest, std::abs(a[i] - b[i]));
  return largest;
}

class EmbeddingModel : public ::testing::TestWithParam<std::string> {};

// A compact embedding computes exactly what the f32 model computes from the rounded table, and stays
// within the rounding's reach of the f32-embedding model's logits.
TEST_P(EmbeddingModel, LogitsAreTheF32ModelsWithinTheFormatsRounding) {
  const Checkpoint checkpoint = load_checkpoint(test::fixture(GetParam()));
  const Model reference = Model::from_checkpoint(checkpoint, DType::f32);
  const std::vector<float> want = logits_of(reference);
  const float range = largest_magnitude(want);
  // bf16 keeps 8 significant bits (relative error 2^-9), int8 rows 1/254 of each row's largest value.
  for (const auto& [format, tolerance] : {std::pair{DType::bf16, 0.01f}, std::pair{DType::i8, 0.03f}}) {
    SCOPED_TRACE(std::string(dtype_name(format)));
    Model compact = Model::from_checkpoint(checkpoint, DType::f32);
    compact.token_embedding = compact.token_embedding.converted(format);
    Model rounded = Model::from_checkpoint(checkpoint, DType::f32);
    rounded.token_embedding = compact.token_embedding.converted(DType::f32);
    const std::vector<float> got = logits_of(compact);
    EXPECT_EQ(got, logits_of(rounded)) << "lookups are exact";
    const float difference = largest_difference(got, want);
    EXPECT_GT(difference, 0.f) << "the table was really rounded";
    EXPECT_LT(difference, tolerance * range);
  }
}

// A model run in bf16 keeps a float checkpoint's embedding in bf16, in f32 otherwise; an embedding
// already stored in bf16 (or int8) stays so.
TEST_P(EmbeddingModel, ComputeTypeChoosesTheFloatTable) {
  const Checkpoint checkpoint = load_checkpoint(test::fixture(GetParam()));
  EXPECT_EQ(Model::from_checkpoint(checkpoint, DType::f32).token_embedding.dtype(), DType::f32);
  EXPECT_EQ(Model::from_checkpoint(checkpoint, DType::bf16).token_embedding.dtype(), DType::bf16);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, EmbeddingModel, ::testing::Values("llama_gqa", "opt_preln", "qwen2_bias"));

TEST(EmbeddingModel, ConvertingTheFloatStorageKeepsTheTiedHeadRight) {
  const Checkpoint checkpoint = load_checkpoint(test::fixture("opt_preln"));
  ASSERT_TRUE(ModelConfig::from_hf(checkpoint.config, "opt_preln").tied_embeddings);
  const std::vector<float> want = logits_of(Model::from_checkpoint(checkpoint, DType::f32));
  // int8 embedding, f32 head: the head keeps the exact f32 weights, so only the lookup changes.
  Model int8_embedding = Model::from_checkpoint(checkpoint, DType::f32);
  convert_float_storage(int8_embedding, {DType::i8, DType::f32});
  EXPECT_EQ(int8_embedding.token_embedding.dtype(), DType::i8);
  EXPECT_EQ(int8_embedding.lm_head->kind(), "f32");
  EXPECT_LT(largest_difference(logits_of(int8_embedding), want), 0.03f * largest_magnitude(want));
  // bf16 for both: the head is the bf16 table.
  Model bf16 = Model::from_checkpoint(checkpoint, DType::f32);
  convert_float_storage(bf16, {DType::bf16, DType::bf16});
  EXPECT_EQ(bf16.token_embedding.dtype(), DType::bf16);
  EXPECT_EQ(bf16.lm_head->kind(), "bf16");
  EXPECT_EQ(logits_of(bf16), logits_of(Model::from_checkpoint(checkpoint, DType::bf16)))
      << "the same as a model run in bf16";
  EXPECT_THROW(convert_float_storage(bf16, {DType::i8, DType::i8}), Error);
}

}  // namespace
}  // namespace fq
