#include "backends/cuda/autotune.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "backends/cuda/device.h"
#include "fq/error.h"

namespace fq::FQ_CUDA_NS {

namespace {

#ifdef FQ_CUDA_EMULATE
constexpr Tuning kDefaultTuning = Tuning::off;
#else
constexpr Tuning kDefaultTuning = Tuning::on;
#endif

Tuning tuning_from_environment() {
  const char* value = std::getenv("FQ_CUDA_TUNE");
  if (!value || !*value) return kDefaultTuning;
  if (std::strcmp(value, "0") == 0) return Tuning::off;
  if (std::strcmp(value, "1") == 0) return Tuning::on;
  if (std::strcmp(value, "verbose") == 0) return Tuning::verbose;
  fail("FQ_CUDA_TUNE={} (expected 0, 1 or verbose)", value);
}

struct State {
  std::optional<Tuning> mode;
  std::map<std::string, size_t> chosen;
  size_t timed = 0;
};

// Recursive: a candidate may itself tune (the library path's GEMM chooses its algorithm on its first call).
std::recursive_mutex& state_mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}
State& state() {
  static State instance;
  return instance;
}

// Seconds per run of candidate i: one untimed run (first-call setup, nested tuning, caches), then enough runs
// to fill about a millisecond, at most 20, between two drains of the queue.
double seconds_per_run(const std::function<void(size_t)>& run, size_t i) {
  using Clock = std::chrono::steady_clock;
  synchronize();
  run(i);
  synchronize();
  auto start = Clock::now();
  run(i);
  synchronize();
  const double once = std::chrono::duration<double>(Clock::now() - start).count();
  const int repeats = static_cast<int>(std::clamp(1e-3 / std::max(once, 1e-7), 1.0, 20.0));
  start = Clock::now();
  for (int r = 0; r < repeats; ++r) run(i);
  synchronize();
  return std::chrono::duration<double>(Clock::now() - start).count() / repeats;
}

}  // namespace

Tuning tuning() {
  std::lock_guard lock(state_mutex());
  State& s = state();
  if (!s.mode) s.mode = tuning_from_environment();
  return *s.mode;
}

void set_tuning(Tuning mode) {
  std::lock_guard lock(state_mutex());
  state().mode = mode;
}

size_t tuned_choices() {
  std::lock_guard lock(state_mutex());
  return state().timed;
}

void forget_tuned_choices() {
  std::lock_guard lock(state_mutex());
  state().chosen.clear();
}

size_t fastest(const std::string& key, std::span<const std::string> names, const std::function<void(size_t)>& run) {
  check(!names.empty(), "fastest({}): no candidates", key);
  const Tuning mode = tuning();
  if (mode == Tuning::off || names.size() == 1) return 0;
  std::lock_guard lock(state_mutex());
  State& s = state();
  if (auto found = s.chosen.find(key); found != s.chosen.end()) return found->second;

  std::vector<double> seconds(names.size(), std::numeric_limits<double>::infinity());
  std::optional<Error> first_failure;
  for (size_t i = 0; i < names.size(); ++i) {
    try {
      seconds[i] = seconds_per_run(run, i);
    } catch (const Error& failure) {
      if (!first_failure) first_failure = failure;
    }
  }
  const size_t best = static_cast<size_t>(std::min_element(seconds.begin(), seconds.end()) - seconds.begin());
  if (seconds[best] == std::numeric_limits<double>::infinity()) throw *first_failure;
  if (mode == Tuning::verbose) {
    std::string report;
    for (size_t i = 0; i < names.size(); ++i)
      report += fmt::format("{}{} {}", i ? ", " : "", names[i],
                            std::isinf(seconds[i]) ? std::string("failed") : fmt::format("{:.1f} us", 1e6 * seconds[i]));
    fmt::print(stderr, "fq tune: {}: {} -> {}\n", key, report, names[best]);
  }
  ++s.timed;
  return s.chosen.emplace(key, best).first->second;
}

}  // namespace fq::FQ_CUDA_NS
