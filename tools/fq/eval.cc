// fq eval: zero-shot tasks (LAMBADA, PIQA, HellaSwag, ARC, WinoGrande) scored as
// lm-evaluation-harness scores them; a markdown table on stdout, optionally JSON.
#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>

#include "common.h"
#include "fq/progress.h"
#include "fq/tasks.h"

namespace fq::cli {

namespace {
struct EvalOptions {
  ModelOptions model;
  std::vector<std::string> tasks;
  std::string data_dir = "../shared/data";
  int64_t limit = 0;
  std::string json_path;
  ScoringOptions scoring;
  std::string device = "cpu";
};

std::string format_value(double value) { return std::isnan(value) ? "n/a" : fmt::format("{:.4f}", value); }

void print_table(const std::vector<TaskResult>& results) {
  fmt::print("| task | n | metric | value | stderr |\n|---|---:|---|---:|---:|\n");
  for (const TaskResult& result : results) {
    for (size_t i = 0; i < result.metrics.size(); ++i) {
      const MetricValue& metric = result.metrics[i];
      fmt::print("| {} | {} | {} | {} | {} |\n", i == 0 ? result.name : "", i == 0 ? std::to_string(result.items) : "",
                 metric.name, format_value(metric.value), format_value(metric.standard_error));
    }
  }
}

nlohmann::json number_or_null(double value) { return std::isnan(value) ? nlohmann::json() : nlohmann::json(value); }

void write_json(const EvalOptions& options, const std::vector<TaskResult>& results) {
  nlohmann::json tasks = nlohmann::json::object();
  for (const TaskResult& result : results) {
    nlohmann::json metrics = nlohmann::json::object();
    for (const MetricValue& metric : result.metrics) {
      metrics[metric.name] = number_or_null(metric.value);
      metrics[metric.name + "_stderr"] = number_or_null(metric.standard_error);
    }
    tasks[result.name] = {{"n", result.items}, {"requests", result.requests}, {"seconds", result.seconds},
                          {"metrics", metrics}};
  }
  const nlohmann::json document = {{"model", options.model.path},
                                   {"dtype", options.model.dtype},
                                   {"device", options.device},
                                   {"limit", options.limit > 0 ? nlohmann::json(options.limit) : nlohmann::json()},
                                   {"batch", options.scoring.batch},
                                   {"tasks", tasks}};
  std::ofstream out(options.json_path);
  check(out.good(), "{}: cannot write the JSON results", options.json_path);
  out << document.dump(2) << "\n";
  check(out.good(), "{}: error while writing the JSON results", options.json_path);
}

void run_eval(const EvalOptions& options) {
  std::vector<Task> tasks;  // all read first, so a missing file fails before hours of scoring
  for (const std::string& name : options.tasks) tasks.push_back(load_task(name, options.data_dir, options.limit));
  LoadedModel loaded = load_model(options.model, true);
  // On the CPU the choices of an item share their context's forward pass; a device runs every sequence whole.
  const std::optional<LogitsSource> device =
      options.device == "cpu" ? std::nullopt : std::optional(on_device(loaded.model, options.device));
  std::vector<TaskResult> results;
  for (const Task& task : tasks) {
    int64_t requests = 0;
    for (const TaskItem& item : task.items) requests += static_cast<int64_t>(item.requests.size());
    ProgressBar bar(task.name, requests, "requests");
    const auto progress = [&](int64_t done, int64_t) { bar.update(done); };
    results.push_back(device ? evaluate_task(*device, *loaded.tokenizer, task, options.scoring, progress)
                             : evaluate_task(loaded.model, *loaded.tokenizer, task, options.scoring, progress));
    bar.finish();
    fmt::print(stderr, "{}: {} items, {} requests in {:.1f} s\n", task.name, results.back().items, requests,
               results.back().seconds);
  }
  print_table(results);
  if (!options.json_path.empty()) write_json(options, results);
}
}  // namespace

void add_eval_command(CLI::App& app) {
  auto options = std::make_shared<EvalOptions>();
  auto* command = app.add_subcommand(
      "eval", "Zero-shot accuracy as lm-evaluation-harness scores it: log-likelihood of each choice given the "
              "context; acc, acc_norm (length-normalized), and LAMBADA's greedy accuracy and perplexity");
  options->model.add_to(*command);
  command->add_option("--tasks", options->tasks, fmt::format("Comma-separated tasks: {}", fmt::join(task_names(), ",")))
      ->delimiter(',')
      ->check(CLI::IsMember(task_names()))
      ->required();
  command->add_option("--data", options->data_dir, "Directory with the task files (see ../shared/README.md)")
      ->capture_default_str();
  command->add_option("--limit", options->limit, "Evaluate only the first N items of each task (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_option("--batch", options->scoring.batch, "Sequences per forward pass")
      ->check(CLI::Range(int64_t{1}, int64_t{1024}))
      ->capture_default_str();
  command->add_option("--json", options->json_path, "Also write the results as JSON to this file");
  add_device_option(*command, options->device);
  command->callback([options] { run_eval(*options); });
}

}  // namespace fq::cli
