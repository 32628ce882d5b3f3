// Flattening (FlattenQuant, Zhang et al. 2024): an input channel whose largest magnitude m_j exceeds
// a threshold T is split into n_j = ceil(m_j / T) copies, each carrying x_j / n_j, while the matching
// weight column is repeated n_j times unchanged. X·Wᵀ stays the same, but every flattened value is
// within ±T, so one per-tensor step T / qmax fits the whole activation.
//
// Staggered flattening (ours): copy i of n is rounded with an offset of (i - (n-1)/2) / n steps. With
// round half up, Hermite's identity sum_i floor(y + i/n) = floor(n·y) makes the n codes sum to exactly
// round(x / step): the channel keeps the precision of one code at step `step` over the range n·T,
// instead of n codes at the coarser step n·step. Equivalently (and how it is computed, in integers):
// with F = round(x / step), copy i gets floor((F + i) / n), which sums to F whichever way F was rounded
// (the kernels round to nearest even, see flatten_quantize_value).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "fq/tensor.h"

namespace fq {

struct FlattenPlan {
  int64_t in_features = 0;          // K
  int64_t align = 64;               // the flattened width is padded with zero columns to a multiple of this
  float threshold = 0;              // T
  std::vector<int32_t> copies;      // n_j >= 1 for each input channel, [K]
  std::vector<int32_t> source;      // input channel of each flattened column, -1 for padding, [K']
  std::vector<int32_t> copy_index;  // i in [0, n_source) of each flattened column (0 for padding), [K']

  // Builds the columns from the copy counts: channel j's copies are adjacent, in channel order,
  // then zero padding. Throws on counts < 1, align < 1 or a width beyond int32.
  static FlattenPlan from_copies(std::vector<int32_t> copies, float threshold, int64_t align);

  int64_t flat_features() const { return static_cast<int64_t>(source.size()); }  // K' (padded)
  int64_t total_copies() const;                                                   // sum of n_j
  // The width a Linear of this K has anyway (K padded to `align`).
  int64_t padded_in_features() const;
  // The cost of flattening in the GEMM: K' / padded K - 1. Copies that only fill padding are free.
  double growth() const;
  // The paper's K growth, before padding: sum_j n_j / K - 1.
  double channel_growth() const;
  // Whether the flattened channels fit a growth budget: sum_j n_j <= (1 + budget) K, or within the
  // padding K has anyway.
  bool within_budget(double budget) const;
};

// The smallest n >= 1 with n·T >= m, evaluated in double, so a channel exactly at a multiple k·T gets k
// copies (and one exactly at T, or all zero, keeps one). Throws when n would exceed 2^31.
int32_t copies_for(float channel_max, float threshold);
// n_j = copies_for(m_j, T) for every channel.
FlattenPlan plan_flatten(std::span<const float> channel_max, float threshold, int64_t align = 64);

// W f32 or i8 [N, K] -> [N, K']: column j repeated n_j times (not divided), padding columns zero.
Tensor flatten_weight(const Tensor& weight, const FlattenPlan& plan);
// x f32 [M, K] -> f32 [M, K']: each copy of channel j carries x_j / n_j, padding columns zero.
Tensor flatten_activations(const Tensor& x, const FlattenPlan& plan);

// Splits the code `total` of a channel into `copies` codes floor((total + i) / copies), i = 0..copies-1.
// They differ by at most one and sum to `total` exactly.
void stagger_codes(int64_t total, int32_t copies, int32_t* out);

// v rounded to the nearest integer, ties to even (as vcvtps2dq and std::nearbyint do in the default mode),
// within ±limit: NaN gives 0 and ±inf saturate. Clamped in float before converting, so never undefined.
inline int64_t nearest_even_saturate(float v, int64_t limit) {
  if (std::isnan(v)) return 0;
  const float bound = static_cast<float>(limit);  // may round up; the integer clamp settles it
  const auto rounded = static_cast<int64_t>(std::nearbyint(std::clamp(v, -bound, bound)));
  return std::clamp(rounded, -limit, limit);
}

// The `copies` codes of one channel value x at quantization step `step`, computed in float as the vector
// kernels do (FlattenQuantizer): scaled = x · (1.f / step), then
//  staggered: F = nearest_even_saturate(scaled, copies·qmax), split with stagger_codes: copy i gets
//             floor((F + i) / copies), each within ±qmax, and they sum to F exactly;
//  plain:     every copy gets nearest_even_saturate(scaled / copies (in float), qmax).
// NaN gives zeros; ±inf (and anything beyond the range) saturates.
void flatten_quantize_value(float x, float step, int32_t copies, int qmax, bool stagger, int32_t* out);

struct FlattenOptions {
  double budget = 0.10;  // FlattenPlan::within_budget
  int64_t align = 64;
  bool stagger = true;   // which rounding noise the threshold search models
};

struct ThresholdChoice {
  FlattenPlan plan;       // plan.threshold is the chosen T
  double expected_error;  // modelled squared output error per token (see choose_threshold)
};

// Chooses T for one layer. Every candidate T = m_j / k (the points where some n_j changes) whose plan
// fits the budget is scored by the expected squared output error of rounding, per token:
//   sum_j weight_energy[j] · step_j² / 12,  step_j = T / qmax (staggered) or n_j · T / qmax (plain),
// where weight_energy[j] = sum_n W[n, j]² (what a unit error in x_j costs at the output). No channel
// clips: every n_j covers m_j. T = max m_j (no flattening) is always a candidate.
ThresholdChoice choose_threshold(std::span<const float> channel_max, std::span<const double> weight_energy, int qmax,
                                 const FlattenOptions& options);

// sum_n W[n, j]² for every input column j of W f32 [N, K].
std::vector<double> weight_column_energy(const Tensor& weight);

}  // namespace fq
