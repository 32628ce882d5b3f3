// fq bench: prefill and decode speed of a model on random tokens, per compute type, over a sweep of
// batch sizes and prompt lengths, with the process's memory and (--profile) where the prefill time goes.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <sstream>

#include "backends/cpu/dnnl_context.h"
#include "common.h"
#include "device_bench.h"
#include "fq/parallel.h"
#include "fq/profile.h"

namespace fq::cli {

namespace {
constexpr int64_t kMaxBatch = 4096;
constexpr int64_t kMaxPrompt = int64_t{1} << 20;

struct BenchOptions {
  ModelOptions model;
  std::string dtypes = "f32,bf16";
  std::string batches = "1";
  std::string prompts = "512";
  int64_t decode = 32;
  int repeats = 3;
  bool profile = false;
  std::string json_path;
  std::string device = "cpu";
  bool random_weights = false;
  std::string arch;
  std::string formats = "fp16,w8a8,mixed";
};

// One line of the table: a compute type at one batch x prompt.
struct BenchRow {
  std::string dtype;
  int64_t batch = 0, prompt = 0;
  double prefill_seconds = 0, decode_seconds = 0;  // the best of the timed runs
  int64_t resident_after_load = 0, peak_resident = 0;  // bytes
  double profiled_prefill_seconds = 0;  // mean over the timed runs (--profile)
  std::vector<profile::Section> sections;  // per prefill run: seconds and calls divided by the runs
};

// The Linear layers of a model by kind, most common first; the lm_head is named apart.
struct LinearKinds {
  std::vector<std::pair<std::string, int64_t>> body;
  std::string head;
  std::string summary() const {
    std::string text;
    for (const auto& [kind, count] : body) text += fmt::format("{}{} x{}", text.empty() ? "" : " + ", kind, count);
    return head.empty() ? text : fmt::format("{}{}{} head", text, text.empty() ? "" : " + ", head);
  }
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream list(text);
  for (std::string item; std::getline(list, item, ',');) items.push_back(item);
  if (!text.empty() && text.back() == ',') items.emplace_back();
  return items;
}

std::vector<int64_t> parse_sizes(const std::string& text, const char* flag, int64_t max) {
  std::vector<int64_t> sizes;
  for (const std::string& item : split_commas(text)) {
    int64_t value = 0;
    const auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), value);
    check(!item.empty() && error == std::errc() && end == item.data() + item.size() && value >= 1 && value <= max,
          "{} {}: '{}' is not a whole number from 1 to {} (expected a comma-separated list such as 1,4)", flag, text,
          item, max);
    sizes.push_back(value);
  }
  check(!sizes.empty(), "{}: the list is empty (expected a comma-separated list such as 1,4)", flag);
  return sizes;
}

std::vector<std::string> parse_dtypes(const std::string& text) {
  std::vector<std::string> dtypes = split_commas(text);
  check(!dtypes.empty(), "--dtypes: the list is empty (expected f32, bf16 or f32,bf16)");
  for (const std::string& item : dtypes)
    check(item == "f32" || item == "bf16", "--dtypes {}: '{}' is not a compute type (expected f32 or bf16)", text, item);
  return dtypes;
}

int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t total_pages = 0, resident_pages = 0;
  check(static_cast<bool>(statm >> total_pages >> resident_pages),
        "/proc/self/statm: cannot read the resident set size (expected two page counts)");
  return resident_pages * sysconf(_SC_PAGESIZE);
}

// The process's peak resident set size so far (Linux reports ru_maxrss in KiB).
int64_t peak_resident_bytes() {
  rusage usage{};
  check(getrusage(RUSAGE_SELF, &usage) == 0, "getrusage failed: cannot read the peak resident set size");
  return int64_t{usage.ru_maxrss} * 1024;
}

// The per-layer K growth of a quantized Linear ("K x1.12") is left out so that the layers group.
LinearKinds linear_kinds(Model& model) {
  static const std::regex k_growth(R"(,?\s*K x[0-9.]+)");
  std::map<std::string, int64_t> counts;
  LinearKinds kinds;
  for (const LinearSlot& slot : model.linears()) {
    const std::string kind = std::regex_replace((*slot.linear)->kind(), k_growth, "");
    if (slot.name == "lm_head")
      kinds.head = kind;
    else
      ++counts[kind];
  }
  kinds.body.assign(counts.begin(), counts.end());
  std::stable_sort(kinds.body.begin(), kinds.body.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return kinds;
}

BenchRow bench_row(const Model& model, const BenchOptions& options, const std::string& dtype, int64_t batch,
                   int64_t prompt) {
  BenchRow row;
  row.dtype = dtype;
  row.batch = batch;
  row.prompt = prompt;
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(model.config().vocab_size) - 1);
  std::vector<int32_t> tokens(batch * prompt);
  for (int32_t& id : tokens) id = token(rng);
  std::vector<int32_t> next(batch, 1);
  KVCache cache = model.new_cache(batch, prompt + std::max<int64_t>(options.decode, 1));
  // Warm-up (primitive creation for both shapes, page faults), then the best of `repeats` runs.
  model.forward(tokens.data(), batch, prompt, cache, true);
  model.forward(next.data(), batch, 1, cache, true);
  row.prefill_seconds = row.decode_seconds = 1e30;
  double profiled = 0;
  profile::reset();
  for (int run = 0; run < options.repeats; ++run) {
    cache.clear();
    profile::enable(options.profile);
    auto start = std::chrono::steady_clock::now();
    model.forward(tokens.data(), batch, prompt, cache, true);
    const double prefill = seconds_since(start);
    profile::enable(false);
    row.prefill_seconds = std::min(row.prefill_seconds, prefill);
    profiled += prefill;
    start = std::chrono::steady_clock::now();
    for (int64_t step = 0; step < options.decode; ++step) model.forward(next.data(), batch, 1, cache, true);
    row.decode_seconds = std::min(row.decode_seconds, seconds_since(start));
  }
  if (options.profile) {
    row.profiled_prefill_seconds = profiled / options.repeats;
    row.sections = profile::report();
    for (profile::Section& section : row.sections) {
      section.seconds /= options.repeats;
      section.calls /= options.repeats;
    }
  }
  row.peak_resident = peak_resident_bytes();
  return row;
}

double prefill_rate(const BenchRow& row) { return row.batch * row.prompt / row.prefill_seconds; }
double decode_rate(const BenchRow& row, int64_t steps) { return row.batch * steps / row.decode_seconds; }
double mebibytes(int64_t bytes) { return bytes / (1024.0 * 1024.0); }

void print_profile(const BenchRow& row) {
  const double total = row.profiled_prefill_seconds;
  fmt::print("\nprefill profile, {} compute, batch {} x prompt {}: {:.2f} ms per prefill (mean of the timed runs)\n\n",
             row.dtype, row.batch, row.prompt, 1e3 * total);
  fmt::print("| section | ms per prefill | share of prefill | calls per prefill |\n|---|---:|---:|---:|\n");
  double timed = 0;
  for (const profile::Section& section : row.sections) {
    fmt::print("| {} | {:.3f} | {:.1f}% | {} |\n", section.name, 1e3 * section.seconds, 100 * section.seconds / total,
               section.calls);
    timed += section.seconds;
  }
  fmt::print("| (outside the sections) | {:.3f} | {:.1f}% | |\n", 1e3 * (total - timed), 100 * (total - timed) / total);
}

nlohmann::json row_json(const BenchRow& row, const LinearKinds& kinds, int64_t decode_steps) {
  nlohmann::json linears = nlohmann::json::array();
  for (const auto& [kind, count] : kinds.body) linears.push_back({{"kind", kind}, {"count", count}});
  nlohmann::json result = {
      {"compute", row.dtype},
      {"linear_kinds", kinds.summary()},
      {"linears", linears},
      {"lm_head", kinds.head},
      {"batch", row.batch},
      {"prompt", row.prompt},
      {"prefill_seconds", row.prefill_seconds},
      {"prefill_tokens_per_second", prefill_rate(row)},
      {"decode_seconds", decode_steps > 0 ? nlohmann::json(row.decode_seconds) : nlohmann::json()},
      {"decode_tokens_per_second", decode_steps > 0 ? nlohmann::json(decode_rate(row, decode_steps)) : nlohmann::json()},
      {"rss_after_load_bytes", row.resident_after_load},
      {"peak_rss_bytes", row.peak_resident},
  };
  if (row.profiled_prefill_seconds > 0) {  // --profile
    nlohmann::json sections = nlohmann::json::array();
    for (const profile::Section& section : row.sections)
      sections.push_back({{"name", section.name},
                          {"seconds", section.seconds},
                          {"share", section.seconds / row.profiled_prefill_seconds},
                          {"calls", section.calls}});
    result["profile"] = {{"prefill_seconds", row.profiled_prefill_seconds}, {"sections", sections}};
  }
  return result;
}

void write_json(const std::string& path, const nlohmann::json& document) {
  std::ofstream out(path);
  check(out.is_open(), "--json {}: cannot create the file", path);
  out << document.dump(2) << '\n';
  out.close();
  check(!out.fail(), "--json {}: writing failed", path);
}

void bench(BenchOptions options) {
  const std::vector<std::string> dtypes = parse_dtypes(options.dtypes);
  const std::vector<int64_t> batches = parse_sizes(options.batches, "--batch", kMaxBatch);
  const std::vector<int64_t> prompts = parse_sizes(options.prompts, "--prompt", kMaxPrompt);
  nlohmann::json runs = nlohmann::json::array();
  std::vector<BenchRow> rows;
  bool header = false;
  for (const std::string& dtype : dtypes) {
    options.model.dtype = dtype;
    LoadedModel loaded = load_model(options.model, false);
    const int64_t resident_after_load = resident_bytes();
    const LinearKinds kinds = linear_kinds(loaded.model);
    if (!header) {
      fmt::print("oneDNN ISA: {}, threads: {}, decode: {} steps after the prompt, best of {} runs\n\n",
                 cpu::isa_name(), num_threads(), options.decode, options.repeats);
      fmt::print("| model | Linear kinds | compute | batch x prompt | prefill tok/s | decode tok/s | "
                 "RSS after load (MiB) | peak RSS (MiB) |\n|---|---|---|---|---:|---:|---:|---:|\n");
      header = true;
    }
    for (int64_t batch : batches)
      for (int64_t prompt : prompts) {
        BenchRow row = bench_row(loaded.model, options, dtype, batch, prompt);
        row.resident_after_load = resident_after_load;
        fmt::print("| {} | {} | {} | {} x {} | {:.1f} | {} | {:.1f} | {:.1f} |\n", options.model.path,
                   kinds.summary(), dtype, batch, prompt, prefill_rate(row),
                   options.decode > 0 ? fmt::format("{:.1f}", decode_rate(row, options.decode)) : "—",
                   mebibytes(row.resident_after_load), mebibytes(row.peak_resident));
        std::fflush(stdout);
        runs.push_back(row_json(row, kinds, options.decode));
        rows.push_back(std::move(row));
      }
  }
  if (options.profile)
    for (const BenchRow& row : rows) print_profile(row);
  if (!options.json_path.empty())
    write_json(options.json_path, {{"model", options.model.path},
                                   {"isa", cpu::isa_name()},
                                   {"threads", num_threads()},
                                   {"decode_steps", options.decode},
                                   {"repeats", options.repeats},
                                   {"runs", runs}});
}
}  // namespace

void add_bench_command(CLI::App& app) {
  auto options = std::make_shared<BenchOptions>();
  auto* command = app.add_subcommand(
      "bench", "Measure prefill and decode tokens/s on random tokens, memory, and where the prefill time goes");
  options->model.add_to(*command, false);
  command->add_option("--dtypes", options->dtypes,
                      "Comma-separated compute types to compare (for an .fq model: of the Linear layers that stay "
                      "float); --dtype picks one")
      ->capture_default_str();
  command->add_option("--batch", options->batches, "Sequences per batch, comma-separated to sweep (e.g. 1,4)")
      ->capture_default_str();
  command->add_option("--prompt", options->prompts, "Prompt lengths in tokens, comma-separated to sweep (e.g. 128,512)")
      ->capture_default_str();
  command->add_option("--decode", options->decode, "Decode steps after the prompt")
      ->check(CLI::Range(int64_t{0}, kMaxPrompt))
      ->capture_default_str();
  command->add_option("--repeats", options->repeats, "Timed runs (the best is reported)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  command->add_flag("--profile", options->profile,
                    "Time the sections of each prefill (GEMMs, attention, norms, quantization) and print the shares");
  command->add_option("--json", options->json_path, "Also write every result to this JSON file");
  command->add_option("--device", options->device,
                      "cpu, cuda (an NVIDIA GPU: prefill ms, decode ms/token, peak GPU memory) or cuda-emulated "
                      "(the GPU code path on the CPU emulator: for checking, very slow)")
      ->check(CLI::IsMember({"cpu", "cuda", "cuda-emulated"}))
      ->capture_default_str();
  CLI::Option* random = command->add_flag(
      "--random-weights", options->random_weights,
      "With --device cuda: no checkpoint; random weights of --arch's shapes, generated on the GPU");
  command->add_option("--arch", options->arch, "Shapes for --random-weights: opt-6.7b, opt-13b or llama-2-7b")
      ->check(CLI::IsMember({"opt-6.7b", "opt-13b", "llama-2-7b"}));
  command->add_option("--formats", options->formats,
                      "Formats for --random-weights, comma-separated: fp16, w8a8, w4a8, mixed (W4A4 for "
                      "half of the Linear FLOPs, as flatten-mixed: the MLP input projections and some down "
                      "projections; the rest W8A8), fp8 (e4m3, sm_89+)")
      ->capture_default_str();
  CLI::Option* dtype = command->get_option("--dtype");
  CLI::Option* dtypes = command->get_option("--dtypes");
  CLI::Option* model = command->get_option("--model");
  dtype->excludes(dtypes);
  random->excludes(model);
  command->callback([options, dtype, model, random] {
    BenchOptions chosen = *options;
    if (dtype->count() > 0) chosen.dtypes = chosen.model.dtype;
    check(model->count() > 0 || random->count() > 0, "fq bench: give a model (-m) or --random-weights --arch NAME");
    check(random->count() == 0 || (chosen.device != "cpu" && !chosen.arch.empty()),
          "--random-weights needs --device cuda (or cuda-emulated) and --arch");
    if (chosen.device == "cpu") return bench(chosen);
    DeviceBenchRequest request;
    request.device = parse_device(chosen.device);
    request.model = chosen.model;
    request.arch = chosen.arch;
    request.formats = split_commas(chosen.formats);
    request.batches = parse_sizes(chosen.batches, "--batch", kMaxBatch);
    request.prompts = parse_sizes(chosen.prompts, "--prompt", kMaxPrompt);
    request.decode = chosen.decode;
    request.repeats = chosen.repeats;
    request.profile = chosen.profile;
    request.json_path = chosen.json_path;
    for (const std::string& format : request.formats) parse_random_format(format);
    device_bench(request);
  });
}

}  // namespace fq::cli
