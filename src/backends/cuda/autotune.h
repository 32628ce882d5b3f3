// Run-time choice among interchangeable ways to compute one result (cuBLASLt's candidate algorithms for a
// shape; cuBLASLt's int8 GEMM plus the rescale kernel against our fused integer GEMM): on the first call with a
// given key every candidate runs and is timed, and the fastest is remembered for that key. What wins depends on
// the GPU, the shape and the library version, so it is measured where it runs rather than fixed in the code.
//
// Candidates must write the same outputs and must not read what they write, so that running each of them in
// turn leaves the same result as running one. A candidate that throws fq::Error is left out of the choice.
#pragma once

#include <functional>
#include <span>
#include <string>

#include "backends/cuda/portable.h"

namespace fq::FQ_CUDA_NS {

enum class Tuning {
  off,      // always the first candidate
  on,       // time the candidates once per key
  verbose,  // on, and each choice printed to stderr with the candidates' times
};

// Initially from the environment variable FQ_CUDA_TUNE (0, 1 or verbose); by default on with a GPU and off on
// the emulator, whose timings say nothing about a GPU.
Tuning tuning();
void set_tuning(Tuning mode);

// The index of the fastest of names.size() candidates for `key`; run(i) launches candidate i.
size_t fastest(const std::string& key, std::span<const std::string> names, const std::function<void(size_t)>& run);

// For tests: how many choices have been timed since the process started, and forgetting the remembered ones.
size_t tuned_choices();
void forget_tuned_choices();

}  // namespace fq::FQ_CUDA_NS
