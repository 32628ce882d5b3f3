// Flatten plans and the float and per-value forms of flattening.
#include "fq/quant/flatten.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "fq/parallel.h"

namespace fq {

namespace {

constexpr int64_t kMaxFlatFeatures = std::numeric_limits<int32_t>::max();

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

int64_t floor_divide(int64_t numerator, int64_t denominator) {
  int64_t quotient = numerator / denominator;
  if (numerator % denominator != 0 && numerator < 0) --quotient;
  return quotient;
}

template <typename T>
void repeat_columns(const T* in, int64_t rows, int64_t width, const FlattenPlan& plan, T* out) {
  const int64_t flat = plan.flat_features();
  parallel_for(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t c = 0; c < flat; ++c) {
        const int32_t source = plan.source[c];
        out[r * flat + c] = source < 0 ? T(0) : in[r * width + source];
      }
  });
}

}  // namespace

int32_t copies_for(float channel_max, float threshold) {
  const double m = channel_max, t = threshold;
  if (!(m > t)) return 1;
  check(m / t < double(kMaxFlatFeatures), "flatten: channel maximum {} needs more than 2^31 copies at threshold {}",
        channel_max, threshold);
  double n = std::ceil(m / t);  // the division may round either way; the loops settle n exactly
  while (n > 1 && (n - 1) * t >= m) --n;
  while (n * t < m) ++n;
  return static_cast<int32_t>(n);
}

FlattenPlan FlattenPlan::from_copies(std::vector<int32_t> copies, float threshold, int64_t align) {
  check(align >= 1 && align <= 4096, "flatten plan: alignment {} is outside [1, 4096]", align);
  int64_t total = 0;
  for (size_t j = 0; j < copies.size(); ++j) {
    check(copies[j] >= 1, "flatten plan: channel {} has {} copies, expected at least 1", j, copies[j]);
    total += copies[j];
    check(total <= kMaxFlatFeatures, "flatten plan: more than 2^31 flattened columns");
  }
  const int64_t flat = round_up(total, align);
  check(flat <= kMaxFlatFeatures, "flatten plan: more than 2^31 flattened columns");
  FlattenPlan plan;
  plan.in_features = static_cast<int64_t>(copies.size());
  plan.align = align;
  plan.threshold = threshold;
  plan.source.assign(flat, -1);
  plan.copy_index.assign(flat, 0);
  int64_t column = 0;
  for (size_t j = 0; j < copies.size(); ++j)
    for (int32_t i = 0; i < copies[j]; ++i, ++column) {
      plan.source[column] = static_cast<int32_t>(j);
      plan.copy_index[column] = i;
    }
  plan.copies = std::move(copies);
  return plan;
}

int64_t FlattenPlan::total_copies() const {
  int64_t total = 0;
  for (int32_t n : copies) total += n;
  return total;
}

int64_t FlattenPlan::padded_in_features() const { return round_up(in_features, align); }

double FlattenPlan::growth() const {
  const int64_t base = padded_in_features();
  return base ? double(flat_features()) / double(base) - 1.0 : 0.0;
}

double FlattenPlan::channel_growth() const {
  return in_features ? double(total_copies()) / double(in_features) - 1.0 : 0.0;
}

bool FlattenPlan::within_budget(double budget) const {
  const auto allowed = static_cast<int64_t>(std::floor((1.0 + budget) * double(in_features) * (1 + 1e-12)));
  return total_copies() <= std::max(allowed, padded_in_features());
}

FlattenPlan plan_flatten(std::span<const float> channel_max, float threshold, int64_t align) {
  check(threshold > 0 && std::isfinite(threshold), "flatten: threshold must be positive and finite, got {}", threshold);
  std::vector<int32_t> copies(channel_max.size());
  for (size_t j = 0; j < channel_max.size(); ++j) {
    check(channel_max[j] >= 0 && std::isfinite(channel_max[j]),
          "flatten: channel {} maximum {} is not a finite non-negative number", j, channel_max[j]);
    copies[j] = copies_for(channel_max[j], threshold);
  }
  return FlattenPlan::from_copies(std::move(copies), threshold, align);
}

Tensor flatten_weight(const Tensor& weight, const FlattenPlan& plan) {
  check(weight.rank() == 2 && weight.dim(1) == plan.in_features, "flatten_weight: weight {} does not have {} input columns",
        shape_str(weight.shape()), plan.in_features);
  const Tensor w = weight.contiguous();
  const int64_t rows = w.dim(0);
  Tensor out = Tensor::empty(w.dtype(), {rows, plan.flat_features()});
  if (w.dtype() == DType::f32)
    repeat_columns(w.data<float>(), rows, plan.in_features, plan, out.data<float>());
  else if (w.dtype() == DType::i8)
    repeat_columns(w.data<int8_t>(), rows, plan.in_features, plan, out.data<int8_t>());
  else
    fail("flatten_weight: weight must be f32 or i8 codes, got {}", dtype_name(w.dtype()));
  return out;
}

Tensor flatten_activations(const Tensor& x, const FlattenPlan& plan) {
  check(x.dtype() == DType::f32 && x.rank() == 2 && x.dim(1) == plan.in_features,
        "flatten_activations: expected f32 [rows, {}], got {} {}", plan.in_features, dtype_name(x.dtype()),
        shape_str(x.shape()));
  const Tensor in = x.contiguous();
  const int64_t rows = in.dim(0), width = plan.in_features, flat = plan.flat_features();
  Tensor out = Tensor::empty(DType::f32, {rows, flat});
  const float* src = in.data<float>();
  float* dst = out.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < flat; ++c) {
      const int32_t source = plan.source[c];
      dst[r * flat + c] = source < 0 ? 0.f : src[r * width + source] / float(plan.copies[source]);
    }
  return out;
}

void stagger_codes(int64_t total, int32_t copies, int32_t* out) {
  check(copies >= 1, "stagger_codes: {} copies, expected at least 1", copies);
  for (int32_t i = 0; i < copies; ++i) out[i] = static_cast<int32_t>(floor_divide(total + i, copies));
}

void flatten_quantize_value(float x, float step, int32_t copies, int qmax, bool stagger, int32_t* out) {
  check(copies >= 1, "flatten_quantize_value: {} copies, expected at least 1", copies);
  const float inverse_step = 1.f / step;
  const float scaled = x * inverse_step;
  if (stagger) {
    stagger_codes(nearest_even_saturate(scaled, int64_t{copies} * qmax), copies, out);
  } else {
    const auto code = static_cast<int32_t>(nearest_even_saturate(scaled / static_cast<float>(copies), qmax));
    for (int32_t i = 0; i < copies; ++i) out[i] = code;
  }
}

}  // namespace fq
