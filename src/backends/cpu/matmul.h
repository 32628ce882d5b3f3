// oneDNN matmuls for float Linear layers and attention.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>

#include "backends/cpu/dnnl_context.h"
#include "fq/tensor.h"

namespace fq::cpu {

// y[M, N] = x[M, K] · Wᵀ (+ bias) with W given [N, K] (HF Linear layout) in f32 or bf16.
// For bf16 weights the activations are converted to bf16 first (AMX/AVX512-BF16), accumulation and
// output stay f32. The weights are reordered once into oneDNN's blocked layout (the plain copy is not
// kept); primitives are created once per M and cached.
class LinearMatmul {
 public:
  LinearMatmul(Tensor weight, Tensor bias);
  void run(const Tensor& x, Tensor& y) const;
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  DType dtype() const { return dtype_; }
  // The weights back in plain [N, K] (a reorder; for saving and quantizing, not the hot path).
  Tensor weight() const;
  const Tensor& bias() const { return bias_; }

 private:
  const dnnl::matmul& primitive(int64_t rows) const;

  int64_t in_, out_;
  DType dtype_;
  dnnl::memory blocked_;
  Tensor bias_;  // [N] f32 or undefined
  mutable std::mutex mutex_;
  mutable std::map<int64_t, dnnl::matmul> primitives_;
};

// Batched strided matmul C[b] = A[b] · B[b] for f32 operands described by dims and element strides
// (any batch rank; a batch dim of size 1 in B broadcasts). Used by attention.
struct StridedOperand {
  float* data;
  dnnl::memory::dims dims;
  dnnl::memory::dims strides;
};
void batched_matmul(const StridedOperand& a, const StridedOperand& b, const StridedOperand& c);

}  // namespace fq::cpu
