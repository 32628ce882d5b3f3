#include <cmath>

#include "backends/cpu/parallel_threshold.h"
#include "backends/cpu/vector_math.h"
#include "ops/ops.h"

namespace fq::ops {

namespace {
// x[i] = act(x[i]) * (up ? up[i] : 1) for i < count.
void apply(float* x, const float* up, int64_t count, Activation activation) {
  switch (activation) {
    case Activation::silu:
      if (up) {
        cpu::silu_mul(x, up, count);
      } else {
        for (int64_t i = 0; i < count; ++i) x[i] = x[i] / (1.f + std::exp(-x[i]));
      }
      return;
    case Activation::relu:
      for (int64_t i = 0; i < count; ++i) x[i] = (x[i] > 0.f ? x[i] : 0.f) * (up ? up[i] : 1.f);
      return;
    case Activation::gelu:
      for (int64_t i = 0; i < count; ++i)
        x[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * 0.70710678118654752f)) * (up ? up[i] : 1.f);
      return;
  }
}
}  // namespace

void activate(Tensor& x, Activation activation) {
  check(x.dtype() == DType::f32 && x.is_contiguous(), "activation: input must be contiguous f32");
  float* data = x.data<float>();
  cpu::maybe_parallel_for(x.numel() >= cpu::kParallelFloats, x.numel(),
                          [&](int64_t begin, int64_t end) { apply(data + begin, nullptr, end - begin, activation); });
}

void gated_activate(Tensor& gate, const Tensor& up, Activation activation) {
  check(gate.numel() == up.numel(), "gated activation: shapes {} and {} differ", shape_str(gate.shape()),
        shape_str(up.shape()));
  check(gate.dtype() == DType::f32 && up.dtype() == DType::f32 && gate.is_contiguous() && up.is_contiguous(),
        "gated activation: both operands must be contiguous f32");
  float* g = gate.data<float>();
  const float* u = up.data<float>();
  cpu::maybe_parallel_for(gate.numel() >= cpu::kParallelFloats, gate.numel(),
                          [&](int64_t begin, int64_t end) { apply(g + begin, u + begin, end - begin, activation); });
}

}  // namespace fq::ops
