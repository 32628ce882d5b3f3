// The CLI's --device flag: the GPU code path (on the CPU emulator here) gives the CPU's perplexity on the
// real stories260K model, and asking for a GPU that is not there is a one-line error.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "test_util.h"

namespace fq {
namespace {

using test::run_fq;

double perplexity_in(const std::string& output) {
  std::smatch match;
  const std::regex pattern(R"(perplexity ([0-9.]+) over)");
  if (!std::regex_search(output, match, pattern)) return -1;
  return std::stod(match[1]);
}

bool one_line_error(const std::string& output) {
  return output.rfind("fq: error: ", 0) == 0 && output.find('\n') == output.size() - 1;
}

TEST(GpuCli, EmulatedDevicePerplexityMatchesTheCpu) {
  const std::string model = test::shared_path("models/stories260K/stories260K.bin");
  const std::string tokenizer = test::shared_path("models/stories260K/tok512.bin");
  const std::string text = test::shared_path("data/wikitext2-test.raw");
  if (!std::filesystem::exists(model) || !std::filesystem::exists(text)) GTEST_SKIP() << "../shared is missing";
  const std::string common = "ppl -m " + model + " --tokenizer " + tokenizer + " -f " + text + " --ctx 32 --chunks 2";
  const auto cpu = run_fq(common + " --device cpu");
  const auto emulated = run_fq(common + " --device cuda-emulated");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.output;
  ASSERT_EQ(emulated.exit_code, 0) << emulated.output;
  EXPECT_NE(emulated.output.find("running on CPU emulator"), std::string::npos) << emulated.output;
  const double expected = perplexity_in(cpu.output), got = perplexity_in(emulated.output);
  ASSERT_GT(expected, 1) << cpu.output;
  // f16 activations and KV cache against the f32 CPU graph.
  EXPECT_NEAR(got / expected, 1.0, 5e-3) << cpu.output << emulated.output;
}

TEST(GpuCli, EmulatedDeviceGeneratesTheCpuStory) {
  const std::string model = test::shared_path("models/stories260K/stories260K.bin");
  const std::string tokenizer = test::shared_path("models/stories260K/tok512.bin");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << model << " is missing";
  const auto result = run_fq("generate -m " + model + " --tokenizer " + tokenizer + " -n 24 --device cuda-emulated");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output.rfind("Once upon a time, there was a little girl named Lily. She loved to play", 0), 0u)
      << result.output;
}

TEST(GpuCli, EmulatedDeviceEvalMatchesTheCpu) {
  const std::string common = "eval -m " + test::fixture("llama_gqa/model-f32.gguf") + " --data " +
                             test::fixture("eval/tasks") + " --tasks lambada,piqa,hellaswag --limit 2 --json ";
  test::TempDir dir;
  const auto cpu = run_fq(common + dir.file("cpu.json") + " --device cpu");
  const auto emulated = run_fq(common + dir.file("emulated.json") + " --device cuda-emulated");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.output;
  ASSERT_EQ(emulated.exit_code, 0) << emulated.output;
  EXPECT_NE(emulated.output.find("running on CPU emulator"), std::string::npos) << emulated.output;
  const auto read_json = [&](const std::string& name) {
    const std::vector<uint8_t> bytes = test::read_bytes(dir.file(name));
    return nlohmann::json::parse(bytes.begin(), bytes.end());
  };
  const nlohmann::json expected = read_json("cpu.json"), got = read_json("emulated.json");
  EXPECT_EQ(got["device"], "cuda-emulated");
  // The device runs each choice whole in f16 activations, the CPU shares the context in f32: the same
  // choices win, and LAMBADA's perplexity agrees to f16 rounding.
  for (const char* task : {"lambada", "piqa", "hellaswag"}) {
    SCOPED_TRACE(task);
    EXPECT_EQ(got["tasks"][task]["metrics"]["acc"], expected["tasks"][task]["metrics"]["acc"]);
    EXPECT_EQ(got["tasks"][task]["requests"], expected["tasks"][task]["requests"]);
  }
  const double cpu_ppl = expected["tasks"]["lambada"]["metrics"]["perplexity"];
  const double device_ppl = got["tasks"]["lambada"]["metrics"]["perplexity"];
  EXPECT_NEAR(device_ppl / cpu_ppl, 1.0, 5e-3);
}

TEST(GpuCli, MissingGpuOrBadDeviceIsAOneLineError) {
  const std::string model = test::fixture("llama_gqa/model-f32.gguf");
  const auto bad = run_fq("bench -m " + model + " --device tpu");
  EXPECT_NE(bad.exit_code, 0);
  const auto random_on_cpu = run_fq("bench --random-weights --arch opt-13b");
  EXPECT_EQ(random_on_cpu.exit_code, 1);
  EXPECT_TRUE(one_line_error(random_on_cpu.output)) << random_on_cpu.output;
  const auto neither = run_fq("bench --device cuda");
  EXPECT_EQ(neither.exit_code, 1);
  EXPECT_TRUE(one_line_error(neither.output)) << neither.output;
  const auto bad_format = run_fq("bench --device cuda-emulated --random-weights --arch opt-13b --formats int2");
  EXPECT_EQ(bad_format.exit_code, 1);
  EXPECT_NE(bad_format.output.find("int2"), std::string::npos) << bad_format.output;

  const auto cuda = run_fq("bench -m " + model + " --device cuda --prompt 8 --decode 2 --repeats 1");
  if (cuda.exit_code == 0) GTEST_SKIP() << "a GPU is present: " << cuda.output;
  EXPECT_EQ(cuda.exit_code, 1);
  EXPECT_TRUE(one_line_error(cuda.output)) << cuda.output;
  EXPECT_NE(cuda.output.find("--device cuda"), std::string::npos) << cuda.output;
}

}  // namespace
}  // namespace fq
