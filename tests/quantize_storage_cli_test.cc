// fq quantize --embedding-bits / --float-dtype: what the file stores for the parts that stay float,
// their defaults (compact, but the float reference for the fp recipe), and bad values.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "io/fq_file.h"
#include "test_util.h"

namespace fq {
namespace {

using test::run_fq;

class QuantizeStorageCli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string text;
    for (int i = 0; i < 8; ++i)
      text += "The little cat sat on the mat and looked at the big red house " + std::to_string(i) + ".\n";
    test::write_bytes(dir_.file("calibration.txt"), std::vector<uint8_t>(text.begin(), text.end()));
  }

  // Runs fq quantize with `options` and returns the file it wrote (failing the test if it did not).
  io::FqContents quantize(const std::string& options) {
    const std::string output = dir_.file("out.fq");
    const auto result = run_fq("quantize -m " + test::fixture("llama_gqa/model-f32.gguf") + " --calib " +
                               dir_.file("calibration.txt") + " --samples 2 --seq 16 -o " + output + " " + options);
    EXPECT_EQ(result.exit_code, 0) << result.output;
    return io::read_fq(output);
  }

  test::TempDir dir_;
};

void expect_storage(const io::FqContents& file, DType embedding, DType head, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(file.tensors.at("model.embed_tokens.weight").dtype(), embedding);
  EXPECT_EQ(file.tensors.count("model.embed_tokens.weight_scales"), embedding == DType::i8 ? 1u : 0u);
  EXPECT_EQ(file.tensors.at("lm_head.weight").dtype(), head);
  EXPECT_EQ(file.header.at("recipe").at("embedding"), dtype_name(embedding));
  EXPECT_EQ(file.header.at("recipe").at("float_linears"), dtype_name(head));
}

TEST_F(QuantizeStorageCli, DefaultsAreInt8EmbeddingAndBf16Head) {
  const io::FqContents file = quantize("--recipe flatten-w8a8-stagger");
  expect_storage(file, DType::i8, DType::bf16, "defaults");
  EXPECT_EQ(file.header.at("recipe").at("kept_float"), "norms, attention matmuls, lm_head");
  const auto run = run_fq("generate -m " + dir_.file("out.fq") + " -n 2 -p \"the cat\"");
  EXPECT_EQ(run.exit_code, 0) << run.output;
}

TEST_F(QuantizeStorageCli, OptionsChooseTheFormats) {
  expect_storage(quantize("--recipe flatten-w8a8-stagger --embedding-bits 16 --float-dtype f32"), DType::bf16,
                 DType::f32, "16 / f32");
  expect_storage(quantize("--recipe naive-w8a8 --embedding-bits 32"), DType::f32, DType::bf16, "32 / default");
}

TEST_F(QuantizeStorageCli, TheFloatReferenceStaysF32UnlessAsked) {
  const io::FqContents reference = quantize("--recipe fp");
  expect_storage(reference, DType::f32, DType::f32, "fp defaults");
  EXPECT_EQ(reference.tensors.at("model.layers.0.mlp.down_proj.weight").dtype(), DType::f32);
  const io::FqContents compact = quantize("--recipe fp --embedding-bits 8 --float-dtype bf16");
  expect_storage(compact, DType::i8, DType::bf16, "fp compact");
  EXPECT_EQ(compact.tensors.at("model.layers.0.mlp.down_proj.weight").dtype(), DType::bf16);
}

// Refused while parsing the command line, as CLI11 refuses any bad value: the option named first.
TEST_F(QuantizeStorageCli, BadValuesAreRefusedByName) {
  for (const std::string option : {"--embedding-bits 4", "--embedding-bits x", "--float-dtype f16"}) {
    const auto result = run_fq("quantize -m " + test::fixture("llama_gqa/model-f32.gguf") + " --calib " +
                               dir_.file("calibration.txt") + " -o " + dir_.file("bad.fq") + " " + option);
    EXPECT_NE(result.exit_code, 0) << option;
    EXPECT_EQ(result.output.rfind(option.substr(0, option.find(' ')), 0), 0u) << result.output;
    EXPECT_FALSE(std::filesystem::exists(dir_.file("bad.fq"))) << option;
  }
}

}  // namespace
}  // namespace fq
