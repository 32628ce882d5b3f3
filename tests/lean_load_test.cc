// Loading without second copies: GGUF matrices converted straight to bf16 for a bf16 model, a model
// build that consumes its checkpoint, .fq tensors read into memory of their own, and released file
// pages that views read back. Each must give exactly what the plain path gives.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "fq/checkpoint.h"
#include "fq/model.h"
#include "fq/quant/serialize.h"
#include "io/mapped_file.h"
#include "test_util.h"

namespace fq {
namespace {

std::vector<float> logits_of(const Model& model) {
  std::vector<int32_t> tokens;
  for (int32_t t = 0; t < 16; ++t) tokens.push_back((t * 29 + 3) % static_cast<int32_t>(model.config().vocab_size));
  KVCache cache = model.new_cache(1, static_cast<int64_t>(tokens.size()));
  const Tensor logits = model.forward(tokens.data(), 1, static_cast<int64_t>(tokens.size()), cache);
  return std::vector<float>(logits.data<float>(), logits.data<float>() + logits.numel());
}

Checkpoint load_for(const std::string& path, DType compute) {
  LoadOptions options;
  options.compute = compute;
  return load_checkpoint(path, options);
}

class GgufBf16 : public ::testing::TestWithParam<std::string> {};

// Matrices come out of the reader as the bf16 rounding of what the f32 load gives; 1-D tensors stay f32.
TEST_P(GgufBf16, MatricesAreTheRoundedF32Values) {
  const std::string path = test::fixture(GetParam());
  const Checkpoint wide = load_for(path, DType::f32);
  const Checkpoint narrow = load_for(path, DType::bf16);
  ASSERT_EQ(narrow.tensors.size(), wide.tensors.size());
  int64_t matrices = 0;
  for (const auto& [name, reference] : wide.tensors) {
    const Tensor& tensor = narrow.tensor(name);
    ASSERT_EQ(tensor.shape(), reference.shape()) << name;
    ASSERT_EQ(reference.dtype(), DType::f32) << name;
    if (reference.rank() < 2) {
      ASSERT_EQ(tensor.dtype(), DType::f32) << name;
      EXPECT_EQ(std::memcmp(tensor.raw(), reference.raw(), reference.nbytes()), 0) << name;
      continue;
    }
    ++matrices;
    ASSERT_EQ(tensor.dtype(), DType::bf16) << name;
    const Tensor rounded = reference.to(DType::bf16);
    EXPECT_EQ(std::memcmp(tensor.raw(), rounded.raw(), rounded.nbytes()), 0) << name;
  }
  EXPECT_GT(matrices, 0);
}

// A bf16 model built from the bf16 load is the one built from the f32 load, bit for bit.
TEST_P(GgufBf16, ModelIsTheSameAsFromTheF32Load) {
  const std::string path = test::fixture(GetParam());
  const std::vector<float> want = logits_of(Model::from_checkpoint(load_for(path, DType::f32), DType::bf16));
  EXPECT_EQ(logits_of(Model::from_checkpoint(load_for(path, DType::bf16), DType::bf16)), want);
}

// tiny_llama: Q4_0, Q4_1, Q8_0, F16 blocks and interleaved rotary rows; llama_gqa: all F32.
INSTANTIATE_TEST_SUITE_P(Fixtures, GgufBf16,
                         ::testing::Values("gguf/tiny_llama.gguf", "llama_gqa/model-f32.gguf",
                                           "llama_gqa/model-q8_0.gguf"));

TEST(LeanLoad, ConsumingBuildMatchesAndTheLvalueBuildLeavesTheCheckpointWhole) {
  for (const char* fixture : {"llama_gqa", "opt_preln", "gguf/tiny_llama.gguf"}) {
    SCOPED_TRACE(fixture);
    const Checkpoint checkpoint = load_checkpoint(test::fixture(fixture));
    const size_t tensors = checkpoint.tensors.size();
    for (DType compute : {DType::f32, DType::bf16}) {
      const std::vector<float> from_copy = logits_of(Model::from_checkpoint(checkpoint, compute));
      EXPECT_EQ(checkpoint.tensors.size(), tensors);
      EXPECT_EQ(logits_of(Model::from_checkpoint(load_checkpoint(test::fixture(fixture)), compute)), from_copy);
    }
  }
}

// An .fq checkpoint owns its tensors: the file can be overwritten or cut short once it is loaded (a
// mapping of it would fault).
TEST(LeanLoad, FqTensorsDoNotDependOnTheFile) {
  test::TempDir dir;
  const std::string path = dir.file("m.fq");
  const Checkpoint source = load_checkpoint(test::fixture("llama_gqa"));
  Model model = Model::from_checkpoint(source, DType::f32);
  convert_float_storage(model, {});
  save_fq(path, model, {source.config, source.tokenizer, {{"name", "fp"}}, {{"recipe", "fp"}}});
  Checkpoint checkpoint = load_checkpoint(path);
  std::filesystem::resize_file(path, 0);
  EXPECT_EQ(logits_of(Model::from_checkpoint(std::move(checkpoint), DType::f32)), logits_of(model));
}

TEST(LeanLoad, ReleasedPagesReadBackTheSameBytes) {
  const std::string path = test::fixture("llama_gqa/model-f32.gguf");
  const auto file = io::MappedFile::open(path);
  const std::vector<uint8_t> before(file->data(), file->data() + file->size());
  file->release_pages(100, 5000);
  file->release_pages(0, file->size());
  EXPECT_EQ(std::memcmp(file->data(), before.data(), before.size()), 0);
  file->release_pages(file->size(), 0);
  EXPECT_THROW(file->release_pages(1, file->size()), Error);
  EXPECT_THROW(file->release_pages(file->size() + 1, 0), Error);
}

}  // namespace
}  // namespace fq
