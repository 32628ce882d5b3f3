// fq bench run as a user would: the batch x prompt sweep, --json, --profile, memory and its errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "test_util.h"

namespace fq {
namespace {

using test::run_fq;

bool one_line_error(const std::string& output) {
  return output.rfind("fq: error: ", 0) == 0 && output.find('\n') == output.size() - 1;
}

// The fixture has 2 layers of 7 Linears and its own lm_head.
const std::string kModel = test::fixture("llama_gqa");
constexpr int kLayers = 2;

std::string bench(const std::string& flags) { return "bench -m " + kModel + " --decode 2 --repeats 1 " + flags; }

std::vector<std::string> table_rows(const std::string& output) {
  std::vector<std::string> rows;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("| " + kModel + " |", 0) == 0) rows.push_back(line);
  return rows;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

TEST(BenchCli, SweepsEveryBatchAndPromptCombination) {
  auto result = run_fq(bench("--dtypes f32 --batch 1,2 --prompt 4,8"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto rows = table_rows(result.output);
  ASSERT_EQ(rows.size(), 4u) << result.output;
  const char* shapes[] = {"| 1 x 4 |", "| 1 x 8 |", "| 2 x 4 |", "| 2 x 8 |"};
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_NE(rows[i].find(shapes[i]), std::string::npos) << rows[i];
    EXPECT_NE(rows[i].find("| f32 x14 + f32 head | f32 |"), std::string::npos) << rows[i];
  }
  EXPECT_NE(result.output.find("oneDNN ISA: "), std::string::npos) << result.output;
}

TEST(BenchCli, JsonHoldsEveryRunWithMemory) {
  test::TempDir dir;
  auto result = run_fq(bench("--batch 1,3 --prompt 5 --json " + dir.file("bench.json")));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const nlohmann::json document = read_json(dir.file("bench.json"));
  EXPECT_EQ(document.at("model"), kModel);
  EXPECT_FALSE(document.at("isa").get<std::string>().empty());
  EXPECT_GE(document.at("threads").get<int>(), 1);
  EXPECT_EQ(document.at("decode_steps"), 2);
  const nlohmann::json& runs = document.at("runs");
  ASSERT_EQ(runs.size(), 4u);  // f32 and bf16 (the default --dtypes) x batch 1, 3
  std::set<std::pair<std::string, int64_t>> seen;
  for (const nlohmann::json& run : runs) {
    const std::string compute = run.at("compute");
    seen.emplace(compute, run.at("batch").get<int64_t>());
    EXPECT_EQ(run.at("prompt"), 5);
    EXPECT_EQ(run.at("linear_kinds"), compute + " x14 + " + compute + " head");
    ASSERT_EQ(run.at("linears").size(), 1u);
    EXPECT_EQ(run.at("linears")[0].at("count"), 14);
    EXPECT_EQ(run.at("lm_head"), compute);
    const double prefill = run.at("prefill_tokens_per_second");
    EXPECT_NEAR(prefill, run.at("batch").get<double>() * 5 / run.at("prefill_seconds").get<double>(), 1e-6 * prefill);
    EXPECT_GT(run.at("decode_tokens_per_second").get<double>(), 0);
    const int64_t resident = run.at("rss_after_load_bytes"), peak = run.at("peak_rss_bytes");
    EXPECT_GT(resident, 1 << 20);
    // The kernel updates the high-water mark lazily (per mm counter batches), so it may trail /proc by a page or few.
    EXPECT_GE(peak, resident - (1 << 20));
    EXPECT_FALSE(run.contains("profile"));
  }
  EXPECT_EQ(seen, (std::set<std::pair<std::string, int64_t>>{{"f32", 1}, {"f32", 3}, {"bf16", 1}, {"bf16", 3}}));
}

TEST(BenchCli, ProfileCountsTheSectionsOfAPrefill) {
  test::TempDir dir;
  const int batch = 2;
  auto result = run_fq(bench("--dtype f32 --batch 2 --prompt 6 --profile --json " + dir.file("bench.json")));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("prefill profile, f32 compute, batch 2 x prompt 6"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("| (outside the sections) |"), std::string::npos) << result.output;
  const nlohmann::json document = read_json(dir.file("bench.json"));
  const nlohmann::json& runs = document.at("runs");
  ASSERT_EQ(runs.size(), 1u);
  const nlohmann::json& profile = runs[0].at("profile");
  const double total = profile.at("prefill_seconds");
  EXPECT_GT(total, 0);
  std::map<std::string, int64_t> calls;
  double shares = 0;
  for (const nlohmann::json& section : profile.at("sections")) {
    calls[section.at("name")] = section.at("calls");
    EXPECT_GT(section.at("seconds").get<double>(), 0);
    EXPECT_NEAR(section.at("share").get<double>(), section.at("seconds").get<double>() / total, 1e-9);
    shares += section.at("share").get<double>();
    EXPECT_NE(result.output.find("| " + section.at("name").get<std::string>() + " |"), std::string::npos);
  }
  EXPECT_LE(shares, 1.0 + 1e-9);
  // Per prefill: every Linear once (the head on the last position only), two norms per layer plus the
  // final one, attention once per sequence and layer.
  EXPECT_EQ(calls, (std::map<std::string, int64_t>{{"float gemm", 7 * kLayers + 1},
                                                   {"norm", 2 * kLayers + 1},
                                                   {"attention", batch * kLayers}}));
}

TEST(BenchCli, DtypePicksOneComputeTypeAndExcludesDtypes) {
  auto result = run_fq(bench("--dtype bf16 --prompt 4"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto rows = table_rows(result.output);
  ASSERT_EQ(rows.size(), 1u) << result.output;
  EXPECT_NE(rows[0].find("| bf16 x14 + bf16 head | bf16 |"), std::string::npos) << rows[0];
  EXPECT_NE(run_fq(bench("--dtype bf16 --dtypes f32 --prompt 4")).exit_code, 0);
}

TEST(BenchCli, QuantizedModelListsItsLinearKinds) {
  test::TempDir dir;
  std::string text;
  for (int i = 0; i < 20; ++i) text += "The little cat sat on the mat and looked at the big red house " + std::to_string(i) + ".\n";
  test::write_bytes(dir.file("calibration.txt"), std::vector<uint8_t>(text.begin(), text.end()));
  auto quantized = run_fq("quantize -m " + test::fixture("llama_gqa/model-f32.gguf") + " --calib " +
                          dir.file("calibration.txt") + " --samples 2 --seq 16 --recipe flatten-w8a8-stagger -o " +
                          dir.file("model.fq"));
  ASSERT_EQ(quantized.exit_code, 0) << quantized.output;
  auto result = run_fq("bench -m " + dir.file("model.fq") + " --dtype bf16 --prompt 4 --decode 1 --repeats 1 --json " +
                       dir.file("bench.json"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const nlohmann::json document = read_json(dir.file("bench.json"));
  const nlohmann::json& run = document.at("runs").at(0);
  const std::string kinds = run.at("linear_kinds");
  // One group for the 14 quantized layers (their per-layer K growth left out), the float head apart.
  EXPECT_EQ(kinds.rfind("w8a8 static", 0), 0u) << kinds;
  EXPECT_NE(kinds.find(" x14 + "), std::string::npos) << kinds;
  EXPECT_EQ(kinds.find("K x"), std::string::npos) << kinds;
  ASSERT_EQ(run.at("linears").size(), 1u) << kinds;
  EXPECT_EQ(run.at("linears")[0].at("count"), 14);
  EXPECT_EQ(kinds.substr(kinds.size() - 5), " head");
}

TEST(BenchCli, BadListsGiveOneLineErrors) {
  for (const std::string flags : {"--batch 0,x", "--batch 1,x", "--batch 1,,2", "--batch 4,", "--batch ''",
                                   "--prompt 8,-1", "--prompt 99999999999999999999", "--batch 5000"}) {
    auto result = run_fq(bench(flags));
    EXPECT_EQ(result.exit_code, 1) << flags << ": " << result.output;
    EXPECT_TRUE(one_line_error(result.output)) << flags << ": " << result.output;
    EXPECT_NE(result.output.find(flags.substr(0, flags.find(' '))), std::string::npos) << result.output;
  }
  auto dtypes = run_fq(bench("--dtypes f32,f8"));
  EXPECT_EQ(dtypes.exit_code, 1);
  EXPECT_TRUE(one_line_error(dtypes.output)) << dtypes.output;
  EXPECT_NE(dtypes.output.find("'f8'"), std::string::npos) << dtypes.output;
}

TEST(BenchCli, UnwritableJsonGivesOneLineError) {
  auto result = run_fq(bench("--dtype f32 --prompt 4 --json /nonexistent/dir/bench.json"));
  EXPECT_EQ(result.exit_code, 1);
  // The table comes first; the error is the last line.
  const std::string last = result.output.substr(result.output.rfind("fq: error: "));
  EXPECT_TRUE(one_line_error(last)) << result.output;
  EXPECT_NE(last.find("/nonexistent/dir/bench.json"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace fq
