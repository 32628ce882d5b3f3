// Opt-in wall-time counters by section ("float gemm", "attention", ...), for `fq bench --profile`.
// Off by default; a Scope then costs one relaxed atomic load. Sections are timed on the thread that
// calls the op (the main thread: ops parallelize inside themselves), so nested sections overlap.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace fq::profile {

namespace detail {
inline std::atomic<bool> enabled{false};
void add(const char* section, double seconds);
}  // namespace detail

struct Section {
  std::string name;
  double seconds = 0;  // wall time summed over calls
  int64_t calls = 0;
};

void enable(bool on);
inline bool enabled() { return detail::enabled.load(std::memory_order_relaxed); }

// Every section timed since the last reset(), the slowest first.
std::vector<Section> report();
void reset();

// Adds the wall time of its lifetime to `section` (a string literal) when profiling was on at its start.
class Scope {
 public:
  explicit Scope(const char* section) : section_(enabled() ? section : nullptr) {
    if (section_) start_ = std::chrono::steady_clock::now();
  }
  ~Scope() {
    if (section_)
      detail::add(section_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const char* section_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace fq::profile
