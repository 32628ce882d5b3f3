// Flattening and quantizing activations row by row: the input side of QuantizedLinear.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backends/cpu/flatten_quantize_avx512.h"
#include "fq/quant/flatten.h"

namespace fq::quant {

// The step of dynamic quantization for a flattened maximum: flattened_max / qmax (divided in double, rounded once
// to float), at least the smallest normal float so that 1 / step stays finite; 1 when the maximum is 0.
float dynamic_step(float flattened_max, int qmax);

// Flattens activation rows by a plan and quantizes them, each value rounded as flatten_quantize_value() does.
// Built once per layer. Inputs are f32 rows `stride` floats apart; codes are i8 [rows, K'], contiguous, padding
// columns 0. NaN inputs give code 0, ±inf saturate. Many rows are spread over the threads; few run on the caller's.
class FlattenQuantizer {
 public:
  // vectorized: the AVX-512 kernel where this build has one (vectorized_kernel()), else the reference.
  // reference: plain scalar loops over flatten_quantize_value(), one thread; the kernel equals them bit for bit.
  enum class Path { vectorized, reference };

  // qmax in [1, 127]. Throws when the plan's sizes disagree.
  FlattenQuantizer(const FlattenPlan& plan, int qmax, bool stagger);

  static bool vectorized_kernel();
  int64_t in_features() const { return program_.in_features; }
  int64_t flat_features() const { return program_.flat_features; }

  // max over rows and channels of |x_j| / n_j (in float), non-finite values left out; 0 when there are none.
  float flattened_max(const float* x, int64_t rows, int64_t stride, Path path = Path::vectorized) const;
  // steps: one (per tensor) or one per row, each positive and finite.
  void quantize(const float* x, int64_t rows, int64_t stride, std::span<const float> steps, int8_t* codes,
                Path path = Path::vectorized) const;
  // Dynamic per-token: steps[r] = dynamic_step(flattened max of row r), and row r is quantized at it while it is
  // in cache (one pass over the input).
  void quantize_per_token(const float* x, int64_t rows, int64_t stride, float* steps, int8_t* codes,
                          Path path = Path::vectorized) const;

 private:
  void check_rows(const float* x, int64_t rows, int64_t stride, const void* out) const;
  float row_max(const float* row, Path path) const;
  void quantize_row(const float* row, float step, int8_t* codes, Path path) const;

  cpu::FlattenProgram program_;
  std::vector<int32_t> copies_;  // n_j, for the reference
  int qmax_;
  bool stagger_;
};

}  // namespace fq::quant
