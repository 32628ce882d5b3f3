#include "quant/activation_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>

#include "fq/parallel.h"

namespace fq::quant {

namespace {

// Below this many rows starting the threads costs more than the rows (a decode step has one).
constexpr int64_t kParallelRows = 32;

// body(begin, end) over the rows: on the threads when there are many and the path is vectorized (the reference
// stays a plain loop). A template, so that the one-row calls of decoding build no std::function.
template <typename Body>
void for_rows(int64_t rows, FlattenQuantizer::Path path, const Body& body) {
  if (path == FlattenQuantizer::Path::vectorized && rows >= kParallelRows)
    parallel_for(rows, body);
  else
    body(int64_t{0}, rows);
}

}  // namespace

float dynamic_step(float flattened_max, int qmax) {
  if (!(flattened_max > 0)) return 1.f;
  return std::max(static_cast<float>(double(flattened_max) / qmax), std::numeric_limits<float>::min());
}

FlattenQuantizer::FlattenQuantizer(const FlattenPlan& plan, int qmax, bool stagger)
    : program_(plan), copies_(plan.copies), qmax_(qmax), stagger_(stagger) {
  check(qmax >= 1 && qmax <= 127, "flatten quantizer: qmax {} is outside [1, 127]", qmax);
}

bool FlattenQuantizer::vectorized_kernel() {
#ifdef FQ_FLATTEN_QUANTIZE_AVX512
  return true;
#else
  return false;
#endif
}

void FlattenQuantizer::check_rows(const float* x, int64_t rows, int64_t stride, const void* out) const {
  check(rows >= 0, "flatten quantizer: {} rows", rows);
  check(stride >= in_features(), "flatten quantizer: row stride {} is below the {} input features", stride,
        in_features());
  check(rows == 0 || (x != nullptr && out != nullptr), "flatten quantizer: null input or output for {} rows", rows);
}

float FlattenQuantizer::row_max(const float* row, Path path) const {
#ifdef FQ_FLATTEN_QUANTIZE_AVX512
  if (path == Path::vectorized) return cpu::flattened_row_max(program_, row);
#endif
  float largest = 0;
  for (int64_t j = 0; j < in_features(); ++j) {
    const float magnitude = std::abs(row[j]) / static_cast<float>(copies_[j]);
    if (magnitude < std::numeric_limits<float>::infinity()) largest = std::max(largest, magnitude);
  }
  return largest;
}

void FlattenQuantizer::quantize_row(const float* row, float step, int8_t* codes, Path path) const {
#ifdef FQ_FLATTEN_QUANTIZE_AVX512
  if (path == Path::vectorized) {
    cpu::flatten_quantize_row(program_, row, 1.f / step, qmax_, stagger_, codes);
    return;
  }
#endif
  std::vector<int32_t> channel_codes;
  int64_t column = 0;  // a channel's copies are adjacent columns, in channel order
  for (int64_t j = 0; j < in_features(); ++j) {
    channel_codes.resize(static_cast<size_t>(copies_[j]));
    flatten_quantize_value(row[j], step, copies_[j], qmax_, stagger_, channel_codes.data());
    for (int32_t code : channel_codes) codes[column++] = static_cast<int8_t>(code);
  }
  std::memset(codes + column, 0, static_cast<size_t>(flat_features() - column));
}

float FlattenQuantizer::flattened_max(const float* x, int64_t rows, int64_t stride, Path path) const {
  check_rows(x, rows, stride, x);
  float largest = 0;
  std::mutex mutex;
  for_rows(rows, path, [&](int64_t begin, int64_t end) {
    float chunk_largest = 0;
    for (int64_t r = begin; r < end; ++r) chunk_largest = std::max(chunk_largest, row_max(x + r * stride, path));
    std::lock_guard lock(mutex);
    largest = std::max(largest, chunk_largest);
  });
  return largest;
}

void FlattenQuantizer::quantize(const float* x, int64_t rows, int64_t stride, std::span<const float> steps,
                                int8_t* codes, Path path) const {
  check_rows(x, rows, stride, codes);
  check(steps.size() == 1 || static_cast<int64_t>(steps.size()) == rows,
        "flatten quantizer: {} steps for {} rows, expected 1 or {}", steps.size(), rows, rows);
  for (float step : steps)
    check(step > 0 && std::isfinite(step), "flatten quantizer: step {} is not positive and finite", step);
  for_rows(rows, path, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      quantize_row(x + r * stride, steps[steps.size() == 1 ? 0 : r], codes + r * flat_features(), path);
  });
}

void FlattenQuantizer::quantize_per_token(const float* x, int64_t rows, int64_t stride, float* steps, int8_t* codes,
                                          Path path) const {
  check_rows(x, rows, stride, codes);
  check(rows == 0 || steps != nullptr, "flatten quantizer: null steps for {} rows", rows);
  for_rows(rows, path, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = x + r * stride;
      steps[r] = dynamic_step(row_max(row, path), qmax_);
      quantize_row(row, steps[r], codes + r * flat_features(), path);
    }
  });
}

}  // namespace fq::quant
