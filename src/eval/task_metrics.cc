// lm-evaluation-harness's metrics (ConfigurableTask.process_results and the mean / perplexity
// aggregations) over our scores.
#include <chrono>
#include <cmath>

#include "fq/eval.h"
#include "fq/tasks.h"

namespace fq {

namespace {
double mean(const std::vector<double>& values) {
  double sum = 0;
  for (double value : values) sum += value;
  return sum / static_cast<double>(values.size());
}

MetricValue mean_metric(const std::string& name, const std::vector<double>& values) {
  return {name, mean(values), mean_stderr(values)};
}
}  // namespace

size_t character_length(std::string_view utf8) {
  size_t count = 0;
  for (char byte : utf8) count += (static_cast<unsigned char>(byte) & 0xC0) != 0x80;
  return count;
}

size_t best_choice(const std::vector<double>& loglikelihoods) {
  check(!loglikelihoods.empty(), "an item without choices");
  size_t best = 0;
  for (size_t i = 1; i < loglikelihoods.size(); ++i)
    if (loglikelihoods[i] > loglikelihoods[best]) best = i;
  return best;
}

size_t best_normalized_choice(const std::vector<double>& loglikelihoods, const std::vector<std::string>& choices) {
  check(loglikelihoods.size() == choices.size(), "{} log-likelihoods for {} choices", loglikelihoods.size(),
        choices.size());
  std::vector<double> normalized;
  for (size_t i = 0; i < choices.size(); ++i) {
    const size_t length = character_length(choices[i]);
    check(length > 0, "choice {} is empty and cannot be length-normalized", i);
    normalized.push_back(loglikelihoods[i] / static_cast<double>(length));
  }
  return best_choice(normalized);
}

std::vector<MetricValue> task_metrics(const Task& task, const std::vector<LoglikelihoodScore>& scores) {
  check(!task.items.empty(), "{}: no items to score", task.name);
  std::vector<double> accuracy, normalized_accuracy, target_loglikelihood;
  size_t next = 0;
  for (const TaskItem& item : task.items) {
    check(next + item.requests.size() <= scores.size(), "{}: fewer scores ({}) than requests", task.name,
          scores.size());
    std::vector<double> loglikelihoods;
    for (size_t i = 0; i < item.requests.size(); ++i) loglikelihoods.push_back(scores[next + i].loglikelihood);
    if (task.type == TaskType::target_word) {
      check(item.requests.size() == 1, "{}: a target-word item needs exactly one request", task.name);
      accuracy.push_back(scores[next].greedy ? 1 : 0);
      target_loglikelihood.push_back(loglikelihoods[0]);
    } else {
      check(item.gold >= 0 && static_cast<size_t>(item.gold) < item.requests.size(),
            "{}: gold index {} outside the {} choices", task.name, item.gold, item.requests.size());
      accuracy.push_back(best_choice(loglikelihoods) == static_cast<size_t>(item.gold) ? 1 : 0);
      if (task.length_normalized)
        normalized_accuracy.push_back(
            best_normalized_choice(loglikelihoods, item.choices) == static_cast<size_t>(item.gold) ? 1 : 0);
    }
    next += item.requests.size();
  }
  check(next == scores.size(), "{}: {} scores for {} requests", task.name, scores.size(), next);

  if (task.type == TaskType::target_word) {
    const double perplexity = std::exp(-mean(target_loglikelihood));
    return {{"perplexity", perplexity, perplexity * mean_stderr(target_loglikelihood)},
            mean_metric("acc", accuracy)};
  }
  std::vector<MetricValue> metrics = {mean_metric("acc", accuracy)};
  if (task.length_normalized) metrics.push_back(mean_metric("acc_norm", normalized_accuracy));
  return metrics;
}

namespace {
// `score` over all the task's requests, then task_metrics.
template <typename Score>
TaskResult evaluate_with(const Score& score, const Task& task) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<LoglikelihoodRequest> requests;
  for (const TaskItem& item : task.items) requests.insert(requests.end(), item.requests.begin(), item.requests.end());
  TaskResult result;
  result.name = task.name;
  result.items = static_cast<int64_t>(task.items.size());
  result.requests = static_cast<int64_t>(requests.size());
  result.metrics = task_metrics(task, score(requests));
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}
}  // namespace

TaskResult evaluate_task(const Model& model, const Tokenizer& tokenizer, const Task& task,
                         const ScoringOptions& options, const std::function<void(int64_t, int64_t)>& progress) {
  return evaluate_with(
      [&](const auto& requests) { return score_requests(model, tokenizer, requests, options, progress); }, task);
}

TaskResult evaluate_task(const LogitsSource& model, const Tokenizer& tokenizer, const Task& task,
                         const ScoringOptions& options, const std::function<void(int64_t, int64_t)>& progress) {
  return evaluate_with(
      [&](const auto& requests) { return score_requests(model, tokenizer, requests, options, progress); }, task);
}

}  // namespace fq
