// Zero-shot tasks scored as lm-evaluation-harness scores them: the log-likelihood of each
// continuation given its context, summed over the continuation's tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "fq/eval.h"
#include "fq/model.h"
#include "fq/tokenizer.h"

namespace fq {

// Score `continuation` after `context`.
struct LoglikelihoodRequest {
  std::string context, continuation;
};

struct LoglikelihoodScore {
  double loglikelihood = 0;  // natural log, summed over the continuation's tokens
  bool greedy = false;       // every continuation token is the model's most likely next token
};

enum class TaskType {
  multiple_choice,  // one request per choice; acc: the most likely choice is the gold one
  target_word,      // LAMBADA: one request; acc: the target is the greedy continuation; perplexity of the target
};

struct TaskItem {
  std::vector<LoglikelihoodRequest> requests;  // one per choice (target_word: the one target)
  std::vector<std::string> choices;            // the choice texts acc_norm divides by (length_normalized tasks)
  int gold = 0;
};

struct Task {
  std::string name;
  TaskType type = TaskType::multiple_choice;
  bool length_normalized = false;  // the harness also reports acc_norm
  std::vector<TaskItem> items;
};

// The tasks load_task() knows: lambada (OpenAI), piqa, hellaswag, arc_easy, arc_challenge, winogrande.
const std::vector<std::string>& task_names();

// Reads a task from `data_dir` (file formats in ../shared/README.md) with the harness's prompts:
//   lambada     context, " " + target word                    acc (greedy), perplexity
//   piqa        "Question: {goal}\nAnswer:", " {sol}"         acc, acc_norm
//   hellaswag   "{activity}: {ctx_a} {Ctx_b}", " {ending}"    acc, acc_norm (texts cleaned by hellaswag_preprocess)
//   arc_*       "Question: {question}\nAnswer:", " {choice}"  acc, acc_norm
//   winogrande  sentence up to the blank with each option, " {rest of the sentence}" (partial scoring), acc
// `limit` > 0 keeps the first `limit` items. Missing or malformed files throw fq::Error.
Task load_task(const std::string& name, const std::string& data_dir, int64_t limit = 0);

// The harness's HellaSwag clean-up: strip, " [title]" -> ". ", drop "[...]" tags, "  " -> " ".
std::string hellaswag_preprocess(std::string_view text);
// A context line of our HellaSwag file, "{activity}: {ctx_a} {ctx_b}", as the harness builds it: ctx_b
// capitalized (Python's str.capitalize), then hellaswag_preprocess.
std::string hellaswag_context(std::string_view line);

// The tokens of a request as the harness forms them: the context's trailing whitespace moves to
// the continuation; context = encode(context), continuation = encode(context + continuation)
// past the context's token count (so a token merged across the boundary counts as continuation).
// BOS only where the tokenizer adds one.
struct TokenizedRequest {
  std::vector<int32_t> context, continuation;
};
TokenizedRequest tokenize_request(const Tokenizer& tokenizer, const LoglikelihoodRequest& request);

struct ScoringOptions {
  int64_t batch = 8;  // sequences per forward pass, right-padded to the longest
};

// Scores every request. Sequences are sorted by length and run `batch` at a time, right-padded:
// causal attention keeps the padding from changing the positions before it. Sequences longer than
// the model's positions lose tokens from the left, as in the harness. `progress(done, total)` is
// called after each forward pass.
std::vector<LoglikelihoodScore> score_requests(const Model& model, const Tokenizer& tokenizer,
                                               const std::vector<LoglikelihoodRequest>& requests,
                                               const ScoringOptions& options,
                                               const std::function<void(int64_t, int64_t)>& progress = {});
// The same on a model elsewhere (a GPU): every batch runs as fresh sequences, so the choices of an item do
// not share their context's forward pass as they do on a CPU Model.
std::vector<LoglikelihoodScore> score_requests(const LogitsSource& model, const Tokenizer& tokenizer,
                                               const std::vector<LoglikelihoodRequest>& requests,
                                               const ScoringOptions& options,
                                               const std::function<void(int64_t, int64_t)>& progress = {});

// numpy.argmax: the first index of the largest log-likelihood.
size_t best_choice(const std::vector<double>& loglikelihoods);
// acc_norm's choice: argmax of loglikelihood / len(choice), len counting Unicode characters as
// Python does, without the leading space the request adds.
size_t best_normalized_choice(const std::vector<double>& loglikelihoods, const std::vector<std::string>& choices);
// Python's len() of UTF-8 text: the number of code points (bytes that do not continue a character).
size_t character_length(std::string_view utf8);

struct MetricValue {
  std::string name;
  double value = 0;
  double standard_error = 0;  // NaN for fewer than two items
};

// The harness's metrics from the scores of every item's requests, in order. multiple_choice: acc
// (and acc_norm), standard error of the mean. target_word: perplexity = exp(-mean loglikelihood of
// the target), with the delta-method error perplexity * SE(mean loglikelihood) where the harness
// bootstraps, and acc.
std::vector<MetricValue> task_metrics(const Task& task, const std::vector<LoglikelihoodScore>& scores);

struct TaskResult {
  std::string name;
  int64_t items = 0, requests = 0;
  std::vector<MetricValue> metrics;
  double seconds = 0;
};

// score_requests over all the task's requests, then task_metrics.
TaskResult evaluate_task(const Model& model, const Tokenizer& tokenizer, const Task& task,
                         const ScoringOptions& options, const std::function<void(int64_t, int64_t)>& progress = {});
TaskResult evaluate_task(const LogitsSource& model, const Tokenizer& tokenizer, const Task& task,
                         const ScoringOptions& options, const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace fq
