// oneDNN s8 x s8 GEMMs: the integer core of a quantized Linear on AMX / AVX512-VNNI / AVX2-VNNI.
// The int32 sums are exact (the tests compare them with the plain reference bit for bit).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <span>
#include <vector>

#include "backends/cpu/dnnl_context.h"
#include "fq/tensor.h"

namespace fq::cpu {

// Weights reordered once into oneDNN's blocked layout (the plain copy is not kept), primitives
// created once per row count. With a static output scale the rescale and bias run fused in the
// GEMM's epilogue: y = acc · scale[n] + bias[n], written as f32.
class Int8Matmul {
 public:
  // weights: i8 [N, K]. output_scales: empty (accumulate() only), 1 or N values (step · weight scale);
  // bias: f32 [N] or undefined.
  Int8Matmul(const Tensor& weights, std::vector<float> output_scales, const Tensor& bias);

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  bool has_epilogue() const { return !output_scales_.empty(); }
  // y[rows, N] (f32) = (codes[rows, K] · Wᵀ) · scale + bias. Needs output scales.
  void run(const int8_t* codes, int64_t rows, float* y) const;
  // acc[rows, N] = codes[rows, K] · Wᵀ, exact int32.
  void accumulate(const int8_t* codes, int64_t rows, int32_t* acc) const;
  // The weights back in plain i8 [N, K] (a reorder; for saving and inspection, not the hot path).
  Tensor weights() const;
  // Bytes the blocked weights occupy.
  int64_t weight_bytes() const { return static_cast<int64_t>(blocked_.get_desc().get_size()); }
  // The oneDNN implementation chosen for `rows` rows, e.g. "brg:avx512_core_vnni".
  std::string implementation(int64_t rows) const;

 private:
  struct Primitives {
    dnnl::matmul fused, plain;
    std::string fused_name, plain_name;
  };
  const Primitives& primitives(int64_t rows) const;

  int64_t in_, out_;
  std::vector<float> output_scales_;  // one per output (the epilogue's [1, N] operand), or empty
  Tensor bias_;
  dnnl::memory blocked_;
  mutable std::mutex mutex_;
  mutable std::map<int64_t, Primitives> cache_;
};

// acc (row stride acc_stride) = codes[rows, K] · Wᵀ for plain i8 weights W [N, K] given per call (used for
// 4-bit weights, unpacked to int8 a slice of rows at a time). Primitives are cached by shape.
void int8_matmul_plain(const int8_t* codes, int64_t rows, int64_t k, const int8_t* weights, int64_t n, int32_t* acc,
                       int64_t acc_stride);

// y[r, n] = acc[r, n] · steps[r or 0] · weight_scales[n or 0] + bias[n] (bias may be null), in float.
void rescale_rows(const int32_t* acc, int64_t rows, int64_t n, std::span<const float> steps,
                  std::span<const float> weight_scales, const float* bias, float* y);

// One line on which instruction set the integer GEMMs run, printed to stderr the first time it is called.
void log_int8_isa_once(const std::string& implementation);

}  // namespace fq::cpu
