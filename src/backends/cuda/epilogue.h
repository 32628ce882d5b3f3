// What a quantized Linear's rescale does after value = sum · step · scale + bias, inside the GEMM's epilogue:
// an optional activation (OPT's fc1: ReLU), and where the value goes: f16 output, or added in f32 to the
// residual stream (the o and down projections), which saves writing and re-reading the branch.
#pragma once

#include <cmath>

#include "backends/cuda/portable.h"
#include "fq/model.h"

namespace fq::FQ_CUDA_NS {

struct Epilogue {
  bool activate = false;
  Activation activation = Activation::relu;
  float* residual = nullptr;  // [rows, n] f32: residual += value, and the f16 output is not written
};

// As ops::activate (src/ops/activation.cc): relu maps NaN to 0; gelu is the exact (erf) one.
template <Activation kActivation>
__device__ __forceinline__ float activation_value(float x) {
  if constexpr (kActivation == Activation::relu)
    return x > 0.f ? x : 0.f;
  else if constexpr (kActivation == Activation::silu)
    return x / (1.f + __expf(-x));
  else
    return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
}

__device__ __forceinline__ float activation_of(Activation activation, float x) {
  switch (activation) {
    case Activation::relu:
      return activation_value<Activation::relu>(x);
    case Activation::silu:
      return activation_value<Activation::silu>(x);
    default:
      return activation_value<Activation::gelu>(x);
  }
}

__device__ __forceinline__ float apply_activation(const Epilogue& epilogue, float x) {
  return epilogue.activate ? activation_of(epilogue.activation, x) : x;
}

}  // namespace fq::FQ_CUDA_NS
