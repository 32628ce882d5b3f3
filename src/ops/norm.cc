#include <cmath>

#include "backends/cpu/parallel_threshold.h"
#include "backends/cpu/vector_math.h"
#include "fq/profile.h"
#include "ops/ops.h"

namespace fq::ops {

void norm(const Tensor& x, Tensor& out, const Norm& norm, NormKind kind, float eps) {
  profile::Scope scope("norm");
  check(x.rank() == 2 && x.dtype() == DType::f32 && x.is_contiguous(),
        "norm: input must be contiguous f32 [rows, hidden], got {}", shape_str(x.shape()));
  check(out.shape() == x.shape() && out.dtype() == DType::f32 && out.is_contiguous(),
        "norm: output has shape {}, expected f32 {}", shape_str(out.shape()), shape_str(x.shape()));
  const int64_t rows = x.dim(0), width = x.dim(1);
  check(norm.weight.numel() == width, "norm weight has {} values, expected {}", norm.weight.numel(), width);
  check(!norm.bias.defined() || norm.bias.numel() == width, "norm bias has {} values, expected {}", norm.bias.numel(),
        width);
  const float* in = x.data<float>();
  float* result = out.data<float>();
  const float* weight = norm.weight.data<float>();
  const float* bias = norm.bias.defined() ? norm.bias.data<float>() : nullptr;
  cpu::maybe_parallel_for(rows * width >= cpu::kParallelFloats, rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = in + r * width;
      float* dst = result + r * width;
      // RMSNorm is LayerNorm without centering and bias.
      const float mean = kind == NormKind::rms_norm ? 0.f : static_cast<float>(cpu::sum(row, width) / width);
      const float scale = 1.0f / std::sqrt(static_cast<float>(cpu::sum_of_squares(row, width, mean) / width) + eps);
      if (kind == NormKind::layer_norm && bias) {
        for (int64_t i = 0; i < width; ++i) dst[i] = (row[i] - mean) * scale * weight[i] + bias[i];
      } else {
        for (int64_t i = 0; i < width; ++i) dst[i] = (row[i] - mean) * scale * weight[i];
      }
    }
  });
}

void norm(Tensor& x, const Norm& weights, NormKind kind, float eps) { norm(x, x, weights, kind, eps); }

void add(Tensor& x, const Tensor& y) {
  check(x.numel() == y.numel(), "add: shapes {} and {} differ", shape_str(x.shape()), shape_str(y.shape()));
  check(x.dtype() == DType::f32 && y.dtype() == DType::f32 && x.is_contiguous() && y.is_contiguous(),
        "add: both operands must be contiguous f32");
  float* dst = x.data<float>();
  const float* src = y.data<float>();
  cpu::maybe_parallel_for(x.numel() >= cpu::kParallelFloats, x.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dst[i] += src[i];
  });
}

}  // namespace fq::ops
