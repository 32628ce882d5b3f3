// Zero-shot task scoring, KL-divergence and the bzip2 reader, checked against hand-computed values
// and against plain one-request-at-a-time forward passes.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "eval/bzip2.h"
#include "fq/error.h"
#include "fq/eval.h"
#include "fq/tasks.h"
#include "test_util.h"

namespace fq {
namespace {

namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  const std::vector<uint8_t> bytes = test::read_bytes(path);
  return std::string(bytes.begin(), bytes.end());
}

void write_text(const std::string& path, const std::string& text) {
  test::write_bytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}

std::string eval_fixture(const std::string& name) { return test::fixture("eval/" + name); }

// ---- bzip2 ----

TEST(Bzip2, DecodesWhatLibbz2Wrote) {
  EXPECT_EQ(eval::bzip2_decompress(read_text(eval_fixture("text.txt.bz2")), "text.txt.bz2"),
            read_text(eval_fixture("text.txt")));
  EXPECT_EQ(eval::bzip2_decompress(read_text(eval_fixture("two_streams.bz2")), "two"),
            "first stream\nsecond stream\n");
  EXPECT_EQ(eval::bzip2_decompress(read_text(eval_fixture("empty.bz2")), "empty"), "");
}

TEST(Bzip2, DecodesSeveralBlocks) {
  const std::string out = eval::bzip2_decompress(read_text(eval_fixture("multi_block.bz2")), "multi");
  ASSERT_EQ(out.size(), 997u * 260u);  // three 100k blocks of a repeated 997-byte pattern
  for (size_t i = 997; i < out.size(); ++i) ASSERT_EQ(out[i], out[i - 997]) << i;
}

TEST(Bzip2, TruncationAlwaysThrows) {
  const std::string data = read_text(eval_fixture("text.txt.bz2"));
  for (size_t size = 0; size < data.size(); ++size)
    EXPECT_THROW(eval::bzip2_decompress(std::string_view(data).substr(0, size), "cut"), Error) << size;
}

TEST(Bzip2, CorruptionThrowsOrChangesNothing) {
  const std::string data = read_text(eval_fixture("text.txt.bz2"));
  const std::string expected = read_text(eval_fixture("text.txt"));
  int thrown = 0;
  for (size_t byte = 0; byte < data.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string corrupted = data;
      corrupted[byte] = static_cast<char>(corrupted[byte] ^ (1 << bit));
      try {
        EXPECT_EQ(eval::bzip2_decompress(corrupted, "flip"), expected) << byte << ":" << bit;
      } catch (const Error&) {
        ++thrown;
      }
    }
  }
  EXPECT_GT(thrown, static_cast<int>(data.size()) * 8 * 9 / 10);  // only a few header bits are harmless
}

TEST(Bzip2, RejectsOtherData) {
  EXPECT_THROW(eval::bzip2_decompress("", "empty"), Error);
  EXPECT_THROW(eval::bzip2_decompress("BZh0 not really", "level"), Error);
  try {
    eval::bzip2_decompress("hello, world", "greeting.bz2");
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("greeting.bz2"), std::string::npos) << error.what();
  }
  std::string trailing = read_text(eval_fixture("empty.bz2")) + "junk";
  EXPECT_THROW(eval::bzip2_decompress(trailing, "trailing"), Error);
}

TEST(Bzip2, ReadsTheSharedHellaSwagFile) {
  const std::string path = test::shared_path("data/hellaswag_val.txt.bz2");
  if (!fs::exists(path)) GTEST_SKIP() << path << " is missing";
  const std::string text = eval::bzip2_decompress(read_text(path), path);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 60252);  // 10,042 items of 6 lines
  EXPECT_EQ(text.rfind("Roof shingle removal: A man is sitting on a roof. he\n3\n", 0), 0u);
}

// ---- statistics and KL-divergence ----

TEST(Statistics, MeanStderrUsesTheSampleDeviation) {
  // mean 0.75; squared deviations 3 * 0.0625 + 0.5625 = 0.75; / (n - 1) = 0.25; sd 0.5; / sqrt(4) = 0.25
  EXPECT_DOUBLE_EQ(mean_stderr({1, 0, 1, 1}), 0.25);
  EXPECT_DOUBLE_EQ(mean_stderr({1, 2, 3}), 1 / std::sqrt(3.0));
  EXPECT_TRUE(std::isnan(mean_stderr({1})));
}

TEST(Statistics, PercentileInterpolatesBetweenRanks) {
  EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4, 5}, 0.99), 4.96);  // rank 3.96
  EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4}, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(percentile({7}, 0.99), 7);
  EXPECT_DOUBLE_EQ(percentile({1, 2}, 1.0), 2);
  EXPECT_THROW(percentile({}, 0.5), Error);
}

std::vector<float> log_probabilities(std::vector<double> p, double shift) {
  std::vector<float> logits;
  for (double value : p) logits.push_back(static_cast<float>(std::log(value) + shift));
  return logits;
}

TEST(KLDivergence, ThreeTokenDistributionsByHand) {
  // P = (0.5, 0.3, 0.2), Q = (0.3, 0.5, 0.2): KL = 0.5 ln(5/3) + 0.3 ln(3/5) = 0.2 ln(5/3).
  // Logits are log-probabilities shifted by a constant, which softmax removes.
  const auto p = log_probabilities({0.5, 0.3, 0.2}, 3.0), q = log_probabilities({0.3, 0.5, 0.2}, -7.0);
  NextTokenComparison c = compare_next_token(p.data(), q.data(), 3, 2);
  EXPECT_NEAR(c.kl_divergence, 0.2 * std::log(5.0 / 3.0), 1e-7);
  EXPECT_FALSE(c.same_top_token);
  EXPECT_NEAR(c.base_nll, -std::log(0.2), 1e-6);
  EXPECT_NEAR(c.model_nll, -std::log(0.2), 1e-6);

  // Q = (0.4, 0.4, 0.2): KL = 0.5 ln(0.5/0.4) + 0.3 ln(0.3/0.4) = 0.025267...; Q's tie goes to the first token.
  const auto tie = log_probabilities({0.4, 0.4, 0.2}, 0.0);
  c = compare_next_token(p.data(), tie.data(), 3, 0);
  EXPECT_NEAR(c.kl_divergence, 0.5 * std::log(1.25) + 0.3 * std::log(0.75), 1e-7);
  EXPECT_TRUE(c.same_top_token);
  EXPECT_NEAR(c.model_nll, -std::log(0.4), 1e-6);

  c = compare_next_token(p.data(), p.data(), 3, 1);
  EXPECT_EQ(c.kl_divergence, 0.0);
  EXPECT_TRUE(c.same_top_token);
  EXPECT_THROW(compare_next_token(p.data(), q.data(), 3, 3), Error);
}

std::vector<int32_t> fixture_text_tokens(const Tokenizer& tokenizer) {
  std::string text;
  for (int i = 0; i < 30; ++i) text += "the theory of the thing is that the other thing then the end. ";
  return tokenizer.encode(text, false);
}

TEST(KLDivergence, AModelAgainstItselfAndItsBf16Copy) {
  const Checkpoint checkpoint = load_checkpoint(test::fixture("llama_gqa/model-f32.gguf"));
  const Model f32 = Model::from_checkpoint(checkpoint, DType::f32);
  const Model bf16 = Model::from_checkpoint(checkpoint, DType::bf16);
  const std::vector<int32_t> tokens = fixture_text_tokens(*make_tokenizer(checkpoint.tokenizer));
  PerplexityOptions options;
  options.context = 32;
  options.max_chunks = 5;
  options.batch = 2;

  const KLDivergenceResult same = kl_divergence(f32, f32, tokens, options);
  EXPECT_EQ(same.tokens, 5 * 31);
  EXPECT_EQ(same.mean, 0.0);
  EXPECT_EQ(same.maximum, 0.0);
  EXPECT_EQ(same.top_token_agreement, 1.0);
  EXPECT_DOUBLE_EQ(same.base.perplexity(), same.model.perplexity());
  EXPECT_NEAR(same.base.perplexity(), perplexity(f32, tokens, options).perplexity(), 1e-9);

  const KLDivergenceResult rounded = kl_divergence(f32, bf16, tokens, options);
  EXPECT_GT(rounded.mean, 0.0);
  EXPECT_LT(rounded.mean, 0.01);
  EXPECT_LE(rounded.median, rounded.p99);
  EXPECT_LE(rounded.p99, rounded.maximum);
  EXPECT_GT(rounded.top_token_agreement, 0.8);
  EXPECT_NEAR(rounded.model.perplexity(), perplexity(bf16, tokens, options).perplexity(), 1e-6);
}

TEST(KLDivergence, RefusesDifferentVocabularies) {
  const std::string other = test::shared_path("models/stories260K/stories260K.bin");
  if (!fs::exists(other)) GTEST_SKIP() << other << " is missing";
  const Model fixture = Model::from_checkpoint(load_checkpoint(test::fixture("llama_gqa")), DType::f32);
  LoadOptions load;
  load.tokenizer_path = test::shared_path("models/stories260K/tok512.bin");
  const Model stories = Model::from_checkpoint(load_checkpoint(other, load), DType::f32);
  EXPECT_THROW(kl_divergence(stories, fixture, std::vector<int32_t>(64, 5), {}), Error);
}

// ---- choosing and metrics ----

TEST(TaskScoring, ChoosesTheLikeliestChoiceFirstOnTies) {
  EXPECT_EQ(best_choice({-3, -1, -2}), 1u);
  EXPECT_EQ(best_choice({-2, -1, -1}), 1u);
  EXPECT_THROW(best_choice({}), Error);
}

TEST(TaskScoring, AccNormDividesByCharacters) {
  // -10/5 = -2 against -12/8 = -1.5: acc takes choice 0, acc_norm choice 1.
  EXPECT_EQ(best_choice({-10, -12}), 0u);
  EXPECT_EQ(best_normalized_choice({-10, -12}, {"abcde", "abcdefgh"}), 1u);
  // Characters, not bytes: "ééé" is 3 characters (6 bytes). -3.3/3 = -1.1 < -4/4 = -1.0, so choice 1;
  // dividing by bytes (-0.55) would have picked choice 0.
  EXPECT_EQ(character_length("ééé"), 3u);
  EXPECT_EQ(character_length("a€b"), 3u);
  EXPECT_EQ(best_normalized_choice({-3.3, -4.0}, {"ééé", "abcd"}), 1u);
  EXPECT_THROW(best_normalized_choice({-1, -2}, {"a", ""}), Error);
  EXPECT_THROW(best_normalized_choice({-1}, {"a", "b"}), Error);
}

Task two_choice_task(bool normalized) {
  Task task;
  task.name = "toy";
  task.length_normalized = normalized;
  const std::vector<std::pair<std::vector<std::string>, int>> items = {
      {{"ab", "abcdef"}, 0}, {{"abcdef", "ab"}, 1}, {{"a", "abcd"}, 1}, {{"abc", "abc"}, 0}};
  for (const auto& [choices, gold] : items) {
    TaskItem item;
    for (const std::string& choice : choices) item.requests.push_back({"ctx", " " + choice});
    item.choices = choices;
    item.gold = gold;
    task.items.push_back(item);
  }
  return task;
}

std::vector<LoglikelihoodScore> scores_of(const std::vector<double>& loglikelihoods) {
  std::vector<LoglikelihoodScore> scores;
  for (double value : loglikelihoods) scores.push_back({value, false});
  return scores;
}

TEST(TaskScoring, MultipleChoiceMetricsByHand) {
  // item: lls                        acc pick   acc_norm pick (ll / characters)
  // 0    {-2, -3}    gold 0          0 right    -1 vs -0.5   -> 1 wrong
  // 1    {-3, -2}    gold 1          1 right    -0.5 vs -1   -> 0 wrong
  // 2    {-1, -2}    gold 1          0 wrong    -1 vs -0.5   -> 1 right
  // 3    {-5, -5}    gold 0          0 right    tie          -> 0 right
  const std::vector<MetricValue> metrics =
      task_metrics(two_choice_task(true), scores_of({-2, -3, -3, -2, -1, -2, -5, -5}));
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_EQ(metrics[0].name, "acc");
  EXPECT_DOUBLE_EQ(metrics[0].value, 0.75);
  EXPECT_DOUBLE_EQ(metrics[0].standard_error, 0.25);
  EXPECT_EQ(metrics[1].name, "acc_norm");
  EXPECT_DOUBLE_EQ(metrics[1].value, 0.5);
  EXPECT_DOUBLE_EQ(metrics[1].standard_error, std::sqrt(1.0 / 3.0) / 2);  // sd of {0,0,1,1} is sqrt(1/3)

  EXPECT_EQ(task_metrics(two_choice_task(false), scores_of({-2, -3, -3, -2, -1, -2, -5, -5})).size(), 1u);
  EXPECT_THROW(task_metrics(two_choice_task(true), scores_of({-2, -3, -3})), Error);
  EXPECT_THROW(task_metrics(two_choice_task(true), scores_of(std::vector<double>(9, -1.0))), Error);
}

TEST(TaskScoring, LambadaPerplexityAndGreedyAccuracyByHand) {
  Task task;
  task.name = "lambada";
  task.type = TaskType::target_word;
  for (int i = 0; i < 3; ++i) task.items.push_back({{{"context", " word"}}, {}, 0});
  const std::vector<MetricValue> metrics = task_metrics(task, {{-1, true}, {-2, false}, {-3, true}});
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_EQ(metrics[0].name, "perplexity");
  EXPECT_NEAR(metrics[0].value, std::exp(2.0), 1e-12);                          // exp(-mean(-1, -2, -3))
  EXPECT_NEAR(metrics[0].standard_error, std::exp(2.0) / std::sqrt(3.0), 1e-12);  // ppl * sd 1 / sqrt 3
  EXPECT_EQ(metrics[1].name, "acc");
  EXPECT_DOUBLE_EQ(metrics[1].value, 2.0 / 3.0);
  EXPECT_NEAR(metrics[1].standard_error, 1.0 / 3.0, 1e-12);  // sd sqrt(1/3), / sqrt 3
}

// ---- task files ----

TEST(TaskText, HellaSwagPreprocessAsTheHarness) {
  // Expected values from lm_eval/tasks/hellaswag/utils.py preprocess() run in Python.
  EXPECT_EQ(hellaswag_preprocess("  A man [title] sits down.  He [step] waves. "), "A man. sits down. He waves.");
  EXPECT_EQ(hellaswag_preprocess("a [b [c] d] e"), "a d] e");
  EXPECT_EQ(hellaswag_preprocess("x [unclosed"), "x [unclosed");
  EXPECT_EQ(hellaswag_preprocess("a   b"), "a  b");
  EXPECT_EQ(hellaswag_preprocess("[header] How to x [title] Do y. [step] Z"), " How to x. Do y. Z");
  EXPECT_EQ(hellaswag_preprocess(""), "");
}

TEST(TaskText, HellaSwagContextCapitalizesCtxB) {
  EXPECT_EQ(hellaswag_context("Roof shingle removal: A man is sitting on a roof. he"),
            "Roof shingle removal: A man is sitting on a roof. He");
  EXPECT_EQ(hellaswag_context("Label: Sentence one. the MAN and Bob"), "Label: Sentence one. The man and bob");
  // WikiHow contexts end in whole sentences; fragments not starting with a lower-case letter stay.
  EXPECT_EQ(hellaswag_context("Health: How to rest. Lie down. Close your eyes."),
            "Health: How to rest. Lie down. Close your eyes.");
  EXPECT_EQ(hellaswag_context("Getting a piercing: 4 the guy cleans up. 5 the guy"),
            "Getting a piercing: 4 the guy cleans up. 5 the guy");
}

// A writable copy of the tiny task files (tests/fixtures/eval/tasks).
struct TaskFiles {
  test::TempDir dir;
  TaskFiles() { fs::copy(eval_fixture("tasks"), dir.path()); }
  std::string path() const { return dir.path().string(); }
};

void expect_request(const LoglikelihoodRequest& request, const std::string& context, const std::string& continuation) {
  EXPECT_EQ(request.context, context);
  EXPECT_EQ(request.continuation, continuation);
}

TEST(TaskFilesTest, BuildTheHarnessPrompts) {
  const std::string data = eval_fixture("tasks");
  const Task lambada = load_task("lambada", data);
  EXPECT_EQ(lambada.type, TaskType::target_word);
  ASSERT_EQ(lambada.items.size(), 2u);
  expect_request(lambada.items[0].requests.at(0), "He ate the", " cake");
  expect_request(lambada.items[1].requests.at(0), "She said\n\"hi", " there");

  const Task piqa = load_task("piqa", data);
  EXPECT_TRUE(piqa.length_normalized);
  ASSERT_EQ(piqa.items.size(), 2u);
  expect_request(piqa.items[0].requests.at(0), "Question: Open a jar\nAnswer:", " Twist the lid.");
  expect_request(piqa.items[0].requests.at(1), "Question: Open a jar\nAnswer:", " Eat the lid.");
  EXPECT_EQ(piqa.items[0].choices, (std::vector<std::string>{"Twist the lid.", "Eat the lid."}));
  EXPECT_EQ(piqa.items[0].gold, 0);
  EXPECT_EQ(piqa.items[1].gold, 1);

  const Task arc = load_task("arc_challenge", data);
  ASSERT_EQ(arc.items.size(), 2u);
  ASSERT_EQ(arc.items[0].requests.size(), 4u);
  expect_request(arc.items[0].requests[3], "Question: Sky color?\nAnswer:", " black");
  EXPECT_EQ(arc.items[0].gold, 1);
  EXPECT_EQ(arc.items[1].requests[0].context, "Question: Grass color?\nAnswer:");
  EXPECT_EQ(arc.items[1].gold, 2);
  EXPECT_EQ(load_task("arc_challenge", data, 1).items.size(), 1u);
  EXPECT_EQ(load_task("arc_easy", data, 5).items.size(), 1u);

  const Task winogrande = load_task("winogrande", data);
  EXPECT_FALSE(winogrande.length_normalized);
  ASSERT_EQ(winogrande.items.size(), 1u);
  expect_request(winogrande.items[0].requests.at(0), "Ann helped Bo so Ann", " said thanks.");
  expect_request(winogrande.items[0].requests.at(1), "Ann helped Bo so Bo", " said thanks.");
  EXPECT_EQ(winogrande.items[0].gold, 1);

  const Task hellaswag = load_task("hellaswag", data);
  ASSERT_EQ(hellaswag.items.size(), 2u);
  expect_request(hellaswag.items[0].requests.at(3), "Roof shingle removal: A man is sitting on a roof. He",
                 " starts pulling up roofing on a roof.");
  EXPECT_EQ(hellaswag.items[0].gold, 3);
  const TaskItem& wikihow = hellaswag.items[1];
  expect_request(wikihow.requests.at(0),
                 "Home and Garden: How to clean a sink. Fill the sink with hot water. Add a cup of vinegar.",
                 " Let it soak for minutes.");
  EXPECT_EQ(wikihow.choices.at(1), "Drain the sink. and rinse it.");
  EXPECT_EQ(wikihow.gold, 0);
}

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& error) {
    return error.what();
  }
  return "no error";
}

TEST(TaskFilesTest, BadFilesGiveErrorsNamingThem) {
  TaskFiles files;
  const std::string dir = files.path();
  EXPECT_NE(error_of([&] { load_task("mmlu", dir); }).find("unknown task"), std::string::npos);
  EXPECT_NE(error_of([&] { load_task("piqa", dir + "/nope"); }).find("nope"), std::string::npos);

  write_text(files.dir.file("piqa_valid-labels.lst"), "0\n");
  EXPECT_NE(error_of([&] { load_task("piqa", dir); }).find("1 labels for the 2 questions"), std::string::npos);
  write_text(files.dir.file("piqa_valid-labels.lst"), "0\n2\n");
  EXPECT_NE(error_of([&] { load_task("piqa", dir); }).find("piqa_valid-labels.lst:2"), std::string::npos);
  fs::remove(files.dir.file("piqa_valid-labels.lst"));
  EXPECT_NE(error_of([&] { load_task("piqa", dir); }).find("piqa_valid-labels.lst"), std::string::npos);

  write_text(files.dir.file("arc_easy.jsonl"), "{\"query\": \"Question: x\", \"choices\": [\"a\"], \"gold\": 0}\n");
  EXPECT_NE(error_of([&] { load_task("arc_easy", dir); }).find("arc_easy.jsonl:1: expected \"choices\""),
            std::string::npos);
  write_text(files.dir.file("arc_easy.jsonl"),
             "\n{\"query\": \"Question: x\", \"choices\": [\"a\", \"b\", \"c\", \"d\"], \"gold\": 4}\n");
  EXPECT_NE(error_of([&] { load_task("arc_easy", dir); }).find("arc_easy.jsonl:2: expected \"gold\""),
            std::string::npos);
  write_text(files.dir.file("arc_easy.jsonl"), "{\"query\": \"Question: x\", \"choices\": [\"a\", \"b\", \"c\", \"\"], "
                                               "\"gold\": 0}\n");
  EXPECT_NE(error_of([&] { load_task("arc_easy", dir); }).find("empty choice"), std::string::npos);
  write_text(files.dir.file("winogrande.jsonl"), "{\"context_options\": [\"a\", \"b\"], \"continuation\": ");
  EXPECT_NE(error_of([&] { load_task("winogrande", dir); }).find("winogrande.jsonl:1: expected a JSON object"),
            std::string::npos);
  write_text(files.dir.file("lambada_openai.jsonl"), "\n\n");
  EXPECT_NE(error_of([&] { load_task("lambada", dir); }).find("no rows"), std::string::npos);
  write_text(files.dir.file("lambada_openai.jsonl"), "{\"context\": \"a\", \"continuation\": 3}\n");
  EXPECT_NE(error_of([&] { load_task("lambada", dir); }).find("expected a string \"continuation\""),
            std::string::npos);

  for (const char* bad : {"short_hellaswag.bz2", "bad_gold_hellaswag.bz2", "text.txt"}) {
    fs::copy_file(eval_fixture(bad), files.dir.file("hellaswag_val.txt.bz2"), fs::copy_options::overwrite_existing);
    EXPECT_NE(error_of([&] { load_task("hellaswag", dir); }).find("hellaswag_val.txt.bz2"), std::string::npos)
        << bad;
  }
}

TEST(TaskFilesTest, ReadsEverySharedTask) {
  const std::string data = test::shared_path("data");
  if (!fs::exists(data + "/piqa_valid.jsonl")) GTEST_SKIP() << data << " is missing";
  const std::vector<std::pair<std::string, size_t>> sizes = {{"lambada", 5153},   {"piqa", 1838},
                                                             {"hellaswag", 10042}, {"arc_easy", 2376},
                                                             {"arc_challenge", 1172}, {"winogrande", 1267}};
  for (const auto& [name, size] : sizes) EXPECT_EQ(load_task(name, data).items.size(), size) << name;
}

// ---- tokenization and batched scoring on the tiny fixture model ----

struct FixtureModel {
  Checkpoint checkpoint = load_checkpoint(test::fixture("llama_gqa/model-f32.gguf"));
  Model model = Model::from_checkpoint(checkpoint, DType::f32);
  std::unique_ptr<Tokenizer> tokenizer = make_tokenizer(checkpoint.tokenizer);
};

TEST(Loglikelihood, TokenizesAsTheHarness) {
  FixtureModel fixture;
  const Tokenizer& tokenizer = *fixture.tokenizer;
  const TokenizedRequest moved = tokenize_request(tokenizer, {"the theory of ", "the end"});
  EXPECT_EQ(moved.context, tokenizer.encode("the theory of", false));  // trailing space moves on
  std::vector<int32_t> whole = moved.context;
  whole.insert(whole.end(), moved.continuation.begin(), moved.continuation.end());
  EXPECT_EQ(whole, tokenizer.encode("the theory of the end", false));
  EXPECT_EQ(tokenizer.decode(moved.continuation), " the end");

  EXPECT_THROW(tokenize_request(tokenizer, {"   ", "word"}), Error);
  EXPECT_THROW(tokenize_request(tokenizer, {"context", ""}), Error);
}

// The harness's computation, one request at a time: the whole sequence through the model, the
// continuation's log-probabilities summed.
LoglikelihoodScore score_alone(const FixtureModel& fixture, const LoglikelihoodRequest& request) {
  const TokenizedRequest tokens = tokenize_request(*fixture.tokenizer, request);
  std::vector<int32_t> whole = tokens.context;
  whole.insert(whole.end(), tokens.continuation.begin(), tokens.continuation.end());
  const size_t window = fixture.model.config().max_positions + 1;
  if (whole.size() > window) whole.erase(whole.begin(), whole.end() - window);
  const int64_t length = static_cast<int64_t>(whole.size()) - 1;
  KVCache cache = fixture.model.new_cache(1, length);
  const Tensor logits = fixture.model.forward(whole.data(), 1, length, cache);
  const int64_t vocab = fixture.model.config().vocab_size;
  LoglikelihoodScore score{0, true};
  for (size_t t = 0; t < tokens.continuation.size(); ++t) {
    const int64_t position = length - static_cast<int64_t>(tokens.continuation.size() - t);
    const float* row = logits.data<float>() + position * vocab;
    score.loglikelihood -= negative_log_likelihood(row, vocab, tokens.continuation[t]);
    score.greedy = score.greedy && std::max_element(row, row + vocab) - row == tokens.continuation[t];
  }
  return score;
}

TEST(Loglikelihood, BatchedScoresEqualOneAtATime) {
  FixtureModel fixture;
  std::string long_context;
  for (int i = 0; i < 40; ++i) long_context += "the other thing then ";  // beyond the 128 positions
  std::vector<LoglikelihoodRequest> requests = {
      {"the theory of the", " thing"},      {"the theory of the", " end."},  // shared context
      {"the theory of the", " other thing then the end"},
      {"the theory of the", "t"},  // one token: the shared part stops short of the context
      {"that", " the"},
      {long_context, " the end"},
      {"the end. the thing is", " that"},
      {"the end. the thing is", " then the other"},
  };
  // The fixture model is tiny and untrained; make sure greedy continuations occur too.
  const TokenizedRequest seed = tokenize_request(*fixture.tokenizer, {"the theory", " of"});
  KVCache cache = fixture.model.new_cache(1, static_cast<int64_t>(seed.context.size()));
  const Tensor last = fixture.model.forward(seed.context.data(), 1, static_cast<int64_t>(seed.context.size()), cache,
                                            true);
  const int64_t vocab = fixture.model.config().vocab_size;
  const int32_t top = static_cast<int32_t>(std::max_element(last.data<float>(), last.data<float>() + vocab) -
                                           last.data<float>());
  requests.push_back({"the theory", fixture.tokenizer->decode_token(top)});

  ASSERT_GT(tokenize_request(*fixture.tokenizer, requests[5]).context.size(), 130u);
  ASSERT_EQ(tokenize_request(*fixture.tokenizer, requests[3]).continuation.size(), 1u);

  std::vector<LoglikelihoodScore> expected;
  for (const LoglikelihoodRequest& request : requests) expected.push_back(score_alone(fixture, request));
  EXPECT_TRUE(expected.back().greedy);
  // The Model itself (choices share their context's forward pass) and a LogitsSource of it (as a GPU model
  // is read: every sequence whole).
  const LogitsSource source = logits_source(fixture.model);
  for (const bool through_source : {false, true}) {
    for (int64_t batch : {1, 3, 8}) {
      SCOPED_TRACE(::testing::Message() << "batch " << batch << (through_source ? ", LogitsSource" : ", Model"));
      ScoringOptions options;
      options.batch = batch;
      int64_t reported = 0;
      const auto progress = [&](int64_t done, int64_t total) {
        EXPECT_GT(done, reported);
        EXPECT_EQ(total, static_cast<int64_t>(requests.size()));
        reported = done;
      };
      const std::vector<LoglikelihoodScore> scores =
          through_source ? score_requests(source, *fixture.tokenizer, requests, options, progress)
                         : score_requests(fixture.model, *fixture.tokenizer, requests, options, progress);
      EXPECT_EQ(reported, static_cast<int64_t>(requests.size()));
      ASSERT_EQ(scores.size(), requests.size());
      for (size_t i = 0; i < requests.size(); ++i) {
        EXPECT_NEAR(scores[i].loglikelihood, expected[i].loglikelihood, 1e-4) << "request " << i;
        EXPECT_EQ(scores[i].greedy, expected[i].greedy) << "request " << i;
        EXPECT_LT(scores[i].loglikelihood, 0);
      }
    }
  }
  EXPECT_TRUE(score_requests(fixture.model, *fixture.tokenizer, {}, {}).empty());
  EXPECT_TRUE(score_requests(source, *fixture.tokenizer, {}, {}).empty());
}

TEST(Loglikelihood, EvaluatesATaskEndToEnd) {
  FixtureModel fixture;
  const Task piqa = load_task("piqa", eval_fixture("tasks"));
  const TaskResult result = evaluate_task(fixture.model, *fixture.tokenizer, piqa, {});
  EXPECT_EQ(result.items, 2);
  EXPECT_EQ(result.requests, 4);
  ASSERT_EQ(result.metrics.size(), 2u);
  std::vector<LoglikelihoodRequest> requests;
  for (const TaskItem& item : piqa.items) requests.insert(requests.end(), item.requests.begin(), item.requests.end());
  std::vector<LoglikelihoodScore> scores;
  for (const LoglikelihoodRequest& request : requests) scores.push_back(score_alone(fixture, request));
  const std::vector<MetricValue> expected = task_metrics(piqa, scores);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(result.metrics[i].name, expected[i].name);
    EXPECT_EQ(result.metrics[i].value, expected[i].value);
  }
}

}  // namespace
}  // namespace fq
