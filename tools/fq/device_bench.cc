#include "device_bench.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <random>

#include "fq/profile.h"

namespace fq::cli {

namespace {

double mebibytes(size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

// The best of `repeats` timings of `run` (which returns once the device is done), after one untimed warm-up.
template <typename Run>
double best_seconds(int repeats, const Run& run) {
  run();
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

struct Measured {
  double prefill_seconds = 0, decode_seconds_per_token = 0;
  size_t peak_bytes = 0;
  double profiled_seconds = 0;  // --profile: the profiled prefill, whose sections are below
  std::vector<profile::Section> sections;
};

// One prefill with the device drained around every section (DeviceScope), so each holds its own kernels.
void profile_prefill(GpuModel& model, const std::vector<int32_t>& tokens, int64_t batch, int64_t prompt,
                     int64_t capacity, Measured& out) {
  model.reset(batch, capacity);
  profile::reset();
  profile::enable(true);
  const auto start = std::chrono::steady_clock::now();
  model.forward_timed(tokens.data(), batch, prompt);
  out.profiled_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  profile::enable(false);
  out.sections = profile::report();
}

void print_profile(const Measured& m, const std::string& format, int64_t batch, int64_t prompt) {
  fmt::print("\nprefill profile, {}, batch {} x prompt {}: {:.2f} ms with every section drained\n\n", format, batch,
             prompt, 1e3 * m.profiled_seconds);
  fmt::print("| section | ms | share | calls |\n|---|---:|---:|---:|\n");
  for (const profile::Section& section : m.sections)
    fmt::print("| {} | {:.3f} | {:.1f}% | {} |\n", section.name, 1e3 * section.seconds,
               100 * section.seconds / m.profiled_seconds, section.calls);
  fmt::print("\n");
}

Measured measure(GpuModel& model, int64_t batch, int64_t prompt, const DeviceBenchRequest& request) {
  std::mt19937 random(7);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(model.config().vocab_size - 1));
  std::vector<int32_t> tokens(batch * prompt);
  for (int32_t& t : tokens) t = token(random);
  Measured out;
  model.reset(batch, prompt + request.decode);
  model.reset_peak_memory();
  out.prefill_seconds = best_seconds(request.repeats, [&] {
    model.reset(batch, prompt + request.decode);
    model.forward_timed(tokens.data(), batch, prompt);
  });
  if (request.decode > 0) {
    const std::vector<int32_t> next(tokens.begin(), tokens.begin() + batch);
    const double total = best_seconds(request.repeats, [&] {
      model.reset(batch, prompt + request.decode);
      model.forward_timed(tokens.data(), batch, prompt);
      for (int64_t step = 0; step < request.decode; ++step) model.forward_timed(next.data(), batch, 1);
    });
    out.decode_seconds_per_token = std::max(0.0, total - out.prefill_seconds) / static_cast<double>(request.decode);
  }
  out.peak_bytes = model.peak_memory();
  if (request.profile) profile_prefill(model, tokens, batch, prompt, prompt + request.decode, out);
  return out;
}

}  // namespace

void device_bench(const DeviceBenchRequest& request) {
  nlohmann::json runs = nlohmann::json::array();
  bool header = false;
  const auto bench_model = [&](GpuModel& model, const std::string& name, const std::string& format) {
    if (!header) {
      fmt::print("device: {}; decode: {} steps after the prompt; best of {} runs\n\n", model.device_name(),
                 request.decode, request.repeats);
      fmt::print("| model | format | batch x prompt | prefill ms | prefill tok/s | decode ms/token | weights MiB | "
                 "peak device MiB |\n|---|---|---|---:|---:|---:|---:|---:|\n");
      header = true;
    }
    for (int64_t batch : request.batches)
      for (int64_t prompt : request.prompts) {
        const Measured m = measure(model, batch, prompt, request);
        fmt::print("| {} | {} | {} x {} | {:.2f} | {:.0f} | {} | {:.1f} | {:.1f} |\n", name, format, batch, prompt,
                   1e3 * m.prefill_seconds, double(batch * prompt) / m.prefill_seconds,
                   request.decode > 0 ? fmt::format("{:.3f}", 1e3 * m.decode_seconds_per_token) : "—",
                   mebibytes(model.weight_bytes()), mebibytes(m.peak_bytes));
        std::fflush(stdout);
        nlohmann::json run = {{"model", name}, {"format", format}, {"batch", batch}, {"prompt", prompt},
                              {"prefill_ms", 1e3 * m.prefill_seconds},
                              {"decode_ms_per_token", 1e3 * m.decode_seconds_per_token},
                              {"weight_bytes", model.weight_bytes()}, {"peak_device_bytes", m.peak_bytes}};
        if (request.profile) {
          print_profile(m, format, batch, prompt);
          run["profiled_prefill_ms"] = 1e3 * m.profiled_seconds;
          for (const profile::Section& section : m.sections)
            run["sections"].push_back({{"name", section.name}, {"ms", 1e3 * section.seconds}, {"calls", section.calls}});
        }
        runs.push_back(std::move(run));
      }
  };

  std::string device_name;
  if (!request.model.path.empty()) {
    LoadedModel loaded = load_model(request.model, false);
    std::unique_ptr<GpuModel> model = upload_model(loaded.model, request.device);
    device_name = model->device_name();
    bench_model(*model, request.model.path, "as stored");
  } else {
    const ModelConfig config = preset_config(request.arch);
    for (const std::string& format : request.formats) {
      std::unique_ptr<GpuModel> model = random_gpu_model(config, parse_random_format(format), request.device);
      device_name = model->device_name();
      bench_model(*model, request.arch + " (random)", format);
    }
  }
  if (!request.json_path.empty()) {
    std::ofstream out(request.json_path);
    check(out.good(), "--json {}: cannot write the file", request.json_path);
    out << nlohmann::json{{"device", device_name}, {"decode_steps", request.decode}, {"repeats", request.repeats},
                          {"runs", runs}}.dump(2)
        << "\n";
  }
}

}  // namespace fq::cli
