// A Linear layer as the model graph sees it: y = x · Wᵀ + b. The float version here and the
// quantized versions (later) are drop-in replacements for each other.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "fq/tensor.h"

namespace fq {

class Linear {
 public:
  virtual ~Linear() = default;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // x: f32 [rows, in]; y: preallocated contiguous f32 [rows, out].
  virtual void forward(const Tensor& x, Tensor& y) const = 0;
  // Short description of the numeric format, e.g. "f32", "bf16".
  virtual std::string kind() const = 0;
};

// A float Linear computing in f32 or bf16 (oneDNN). weight: [out, in] (any float dtype); bias: [out] or undefined.
class FloatLinear : public Linear {
 public:
  FloatLinear(const Tensor& weight, const Tensor& bias, DType compute);
  ~FloatLinear() override;
  int64_t in_features() const override;
  int64_t out_features() const override;
  void forward(const Tensor& x, Tensor& y) const override;
  std::string kind() const override;
  // The weight in the compute type ([out, in], f32 or bf16; reordered back from the GEMM's blocked
  // layout, so not for the hot path) and the f32 bias (may be undefined).
  Tensor weight() const;
  const Tensor& bias() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ys[i] = linears[i](x) for Linears that read the same input (q/k/v, gate/up). Quantized ones whose input
// quantization is identical (the quantizer makes it so for such groups) flatten and quantize x once.
// Each ys[i] is allocated f32 [rows, out_i].
void forward_same_input(std::span<const Linear* const> linears, const Tensor& x, std::span<Tensor> ys);

}  // namespace fq
