// The input side of a FlattenQuant Linear on the GPU: the flattened maximum of f16 activations, dynamic steps,
// flattening + quantizing to i8 codes (bit for bit as flatten_quantize_value), and the dequantizing epilogue after
// the int32 GEMM. All pointers are device pointers; every call queues kernels on the default stream and returns.
#pragma once

#include <cstdint>

#include "backends/cuda/device.h"
#include "backends/cuda/epilogue.h"
#include "fq/quant/flatten.h"

namespace fq::FQ_CUDA_NS {

// A FlattenPlan on the device, per flattened column c < flat_features: the source channel (-1 for padding),
// the copy index i, and n, the copies of the source channel (1 for padding).
struct DeviceFlattenPlan {
  const int32_t* source;
  const int32_t* copy_index;
  const int32_t* copies;
  int64_t in_features;
  int64_t flat_features;
};

// The device arrays of a plan; `view` points into them (and stays valid when the storage is moved).
struct DevicePlanStorage {
  DeviceBuffer source, copy_index, copies;
  DeviceFlattenPlan view;
};

// Throws when the plan is inconsistent or a channel has more than 2^24 - 1 copies (the kernels' integer range).
DevicePlanStorage upload_plan(const FlattenPlan& plan);

// A Linear's input as the flatten + quantize kernels read it: f16 x [rows, in_features], or, with `up`, the gated
// MLP's act(x) · up (x being the gate, both f16 [rows, in_features]), computed in f32 inside the kernels and never
// rounded to f16 (as the CPU's down projection sees it).
struct QuantizerInput {
  QuantizerInput(const __half* values) : x(values) {}  // NOLINT: implicit, an f16 tensor is the common input
  QuantizerInput(const __half* gate, const __half* up_values, Activation gate_activation)
      : x(gate), up(up_values), activation(gate_activation) {}
  const __half* x;
  const __half* up = nullptr;
  Activation activation = Activation::silu;
};

// max over channels j of |x_j| / n_j (float division; non-finite values left out, 0 when none) of x f16
// [rows, in_features]: per row into row_max_or_null [rows], and over the tensor into *tensor_max_or_null (zeroed
// and accumulated on the device, no host sync). At least one of the two.
void flattened_max(const QuantizerInput& x, int64_t rows, const DeviceFlattenPlan& plan, float* row_max_or_null,
                   float* tensor_max_or_null);

// steps[i] = quant::dynamic_step(maxima[i], qmax): maxima / qmax in double rounded once to float, at least the
// smallest normal float, 1 when the maximum is not positive.
void dynamic_steps(const float* maxima, int64_t count, int qmax, float* steps);

// codes i8 [rows, flat_features] of x f16 [rows, in_features]: column c gets copy i of
// flatten_quantize_value(x[source], step, n, qmax, stagger), padding columns 0. steps: one positive finite value,
// or one per row (step_per_row). qmax in [1, 127].
void flatten_quantize(const QuantizerInput& x, int64_t rows, const DeviceFlattenPlan& plan, int qmax, bool stagger,
                      const float* steps, bool step_per_row, int8_t* codes);

// The norm in front of a Linear, on rows of f32 values: RMSNorm (center false, bias null) or LayerNorm (center
// true, bias optional), as ops::norm. weight and bias are device arrays of the row width.
struct NormParameters {
  const float* weight;
  const float* bias;
  bool center;
  float eps;
};

// Whether norm_flatten_quantize takes rows of this width (it holds a normalized row in 48 KiB of shared memory).
bool norm_fusable(int64_t width);

// The norm fused with flatten_quantize: codes i8 [rows, flat_features] of norm(x) for x f32 [rows, in_features],
// the normalized values kept in f32 (as the CPU quantizes them; no f16 rounding, no normalized copy in memory).
// With static_step (one value) every row uses it; with static_step null each row's dynamic step
// (quant::dynamic_step of its flattened maximum) is computed in the kernel and written to row_steps [rows].
void norm_flatten_quantize(const float* x, int64_t rows, const NormParameters& norm, const DeviceFlattenPlan& plan,
                           int qmax, bool stagger, const float* static_step, float* row_steps, int8_t* codes);

// The epilogue of the int32 GEMM acc [rows, cols]: out = half(fmaf(float(acc), step_r · scale_c, bias_c)), with
// one step or one per row, one weight scale or one per column, and bias [cols] or null (0).
// With an epilogue: the activation applied to the f32 value, and with epilogue.residual the value added to it
// (out unused, may be null).
void rescale(const int32_t* acc, int64_t rows, int64_t cols, const float* steps, bool step_per_row,
             const float* weight_scales, bool scale_per_column, const float* bias, __half* out,
             const Epilogue& epilogue = {});

}  // namespace fq::FQ_CUDA_NS
