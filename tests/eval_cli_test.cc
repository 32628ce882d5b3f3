// fq eval and fq ppl --kl-base, run as a user would.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "test_util.h"

namespace fq {
namespace {

namespace fs = std::filesystem;
using test::run_fq;

const std::string kAllTasks = "lambada,piqa,hellaswag,arc_easy,arc_challenge,winogrande";

bool one_line_error(const std::string& output) {
  return output.rfind("fq: error: ", 0) == 0 && output.find('\n') == output.size() - 1;
}

std::string tiny_model() { return test::fixture("llama_gqa/model-f32.gguf"); }
std::string smollm2() { return test::fixture("../../models/SmolLM2-135M-Instruct.Q4_1.gguf"); }

// The number after `label` in `output` (e.g. "mean " -> 0.0123), NaN when absent.
double number_after(const std::string& output, const std::string& label) {
  std::smatch match;
  if (!std::regex_search(output, match, std::regex(label + "([0-9.]+)"))) return NAN;
  return std::stod(match[1]);
}

std::string write_text_file(const test::TempDir& dir) {
  std::string text;
  for (int i = 0; i < 30; ++i) text += "the theory of the thing is that the other thing then the end. ";
  test::write_bytes(dir.file("text.txt"), std::vector<uint8_t>(text.begin(), text.end()));
  return dir.file("text.txt");
}

TEST(EvalCli, HelpNamesTheOptions) {
  EXPECT_NE(run_fq("--help").output.find("eval"), std::string::npos);
  auto help = run_fq("eval --help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* option : {"--tasks", "--limit", "--json", "--data", "--batch", "--dtype", "--device", kAllTasks.c_str()})
    EXPECT_NE(help.output.find(option), std::string::npos) << option;
  auto ppl = run_fq("ppl --help");
  EXPECT_NE(ppl.output.find("--kl-base"), std::string::npos);
  EXPECT_NE(ppl.output.find("--kl-base-dtype"), std::string::npos);
}

TEST(EvalCli, RunsEveryTaskAndWritesTableAndJson) {
  test::TempDir dir;
  auto result = run_fq("eval -m " + tiny_model() + " --data " + test::fixture("eval/tasks") + " --tasks " + kAllTasks +
                       " --limit 2 --batch 3 --json " + dir.file("results.json"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("| task | n | metric | value | stderr |"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("| piqa | 2 | acc | "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("| lambada | 2 | perplexity | "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("| winogrande | 1 | acc | "), std::string::npos) << result.output;

  const std::vector<uint8_t> bytes = test::read_bytes(dir.file("results.json"));
  const nlohmann::json json = nlohmann::json::parse(bytes.begin(), bytes.end());
  EXPECT_EQ(json["model"], tiny_model());
  EXPECT_EQ(json["dtype"], "f32");
  EXPECT_EQ(json["limit"], 2);
  const std::map<std::string, int> items = {{"lambada", 2},  {"piqa", 2},          {"hellaswag", 2},
                                            {"arc_easy", 1}, {"arc_challenge", 2}, {"winogrande", 1}};
  ASSERT_EQ(json["tasks"].size(), items.size());
  for (const auto& [name, n] : items) {
    const nlohmann::json& task = json["tasks"][name];
    EXPECT_EQ(task["n"], n) << name;
    const double acc = task["metrics"]["acc"];
    EXPECT_TRUE(acc >= 0 && acc <= 1) << name;
    EXPECT_EQ(task["metrics"]["acc_stderr"].is_null(), n == 1) << name;  // no sample deviation of one value
    EXPECT_EQ(task["metrics"].contains("acc_norm"), name != "lambada" && name != "winogrande") << name;
  }
  EXPECT_GT(json["tasks"]["lambada"]["metrics"]["perplexity"].get<double>(), 1.0);
  EXPECT_EQ(json["tasks"]["hellaswag"]["requests"], 8);
}

TEST(EvalCli, BadTasksAndDataFail) {
  auto unknown = run_fq("eval -m " + tiny_model() + " --tasks piqa,mmlu");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.output.find("mmlu"), std::string::npos) << unknown.output;
  EXPECT_NE(run_fq("eval -m " + tiny_model()).exit_code, 0);  // --tasks is required

  auto missing = run_fq("eval -m " + tiny_model() + " --tasks piqa --data /nonexistent/data");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(one_line_error(missing.output)) << missing.output;
  EXPECT_NE(missing.output.find("/nonexistent/data"), std::string::npos);

  test::TempDir dir;
  fs::copy(test::fixture("eval/tasks"), dir.path());
  fs::remove(dir.file("winogrande.jsonl"));
  auto partial = run_fq("eval -m " + tiny_model() + " --tasks piqa,winogrande --data " + dir.path().string());
  EXPECT_EQ(partial.exit_code, 1);
  EXPECT_TRUE(one_line_error(partial.output)) << partial.output;  // found before any scoring
  EXPECT_NE(partial.output.find("winogrande.jsonl"), std::string::npos);
}

TEST(EvalCli, KlDivergenceAgainstABaseModel) {
  test::TempDir dir;
  const std::string text = write_text_file(dir);
  const std::string common =
      "ppl -m " + tiny_model() + " -f " + text + " --ctx 32 --chunks 3 --kl-base " + tiny_model();
  auto same = run_fq(common);
  ASSERT_EQ(same.exit_code, 0) << same.output;
  EXPECT_EQ(number_after(same.output, "from the base: mean "), 0.0) << same.output;
  EXPECT_EQ(number_after(same.output, "same top token: "), 100.0) << same.output;
  EXPECT_NE(same.output.find("over 93 predicted tokens (3 windows of 32)"), std::string::npos) << same.output;

  auto rounded = run_fq(common + " --dtype bf16 --kl-base-dtype f32");
  ASSERT_EQ(rounded.exit_code, 0) << rounded.output;
  const double mean = number_after(rounded.output, "from the base: mean ");
  EXPECT_GT(mean, 0.0) << rounded.output;
  EXPECT_LT(mean, 0.01) << rounded.output;
  EXPECT_GE(number_after(rounded.output, "99th percentile "), number_after(rounded.output, "median "));

  EXPECT_NE(run_fq(common + " --kl-base-dtype f16").exit_code, 0);
  auto missing = run_fq("ppl -m " + tiny_model() + " -f " + text + " --ctx 32 --kl-base /nonexistent/base.gguf");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(one_line_error(missing.output)) << missing.output;
}

TEST(EvalCli, KlDivergenceRefusesAnotherVocabulary) {
  const std::string other = test::shared_path("models/stories260K/stories260K.bin");
  if (!fs::exists(other)) GTEST_SKIP() << other << " is missing";
  test::TempDir dir;
  auto result = run_fq("ppl -m " + tiny_model() + " -f " + write_text_file(dir) + " --ctx 32 --kl-base " + other);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(one_line_error(result.output)) << result.output;
  EXPECT_NE(result.output.find("vocabulary"), std::string::npos) << result.output;
}

TEST(EvalCli, SmolLM2RunsTheSharedTasks) {
  const std::string data = test::shared_path("data");
  if (!fs::exists(smollm2()) || !fs::exists(data + "/piqa_valid.jsonl")) GTEST_SKIP() << "model or data missing";
  auto result = run_fq("eval -m " + smollm2() + " --dtype bf16 --data " + data + " --tasks " + kAllTasks +
                       " --limit 2");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const char* row : {"| lambada | 2 | perplexity |", "| hellaswag | 2 | acc |", "| arc_challenge | 2 | acc |"})
    EXPECT_NE(result.output.find(row), std::string::npos) << row;
}

TEST(EvalCli, SmolLM2Bf16StaysCloseToF32) {
  const std::string wikitext = test::shared_path("data/wikitext2-test.raw");
  if (!fs::exists(smollm2()) || !fs::exists(wikitext)) GTEST_SKIP() << "model or data missing";
  auto result = run_fq("ppl -m " + smollm2() + " --dtype bf16 --kl-base " + smollm2() + " -f " + wikitext +
                       " --ctx 128 --chunks 2");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_LT(number_after(result.output, "from the base: mean "), 0.05) << result.output;
  EXPECT_GT(number_after(result.output, "same top token: "), 90.0) << result.output;
}

}  // namespace
}  // namespace fq
