// Linear layers on the device: the FP16 one (cuBLASLt) and the FlattenQuant one (flatten + quantize
// kernel, integer GEMM, rescale epilogue). Inputs and outputs are f16 [rows, features].
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "backends/cuda/device.h"
#include "backends/cuda/epilogue.h"
#include "backends/cuda/flatten_quantize.h"
#include "fq/linear.h"
#include "fq/quant/quantized_linear.h"

namespace fq::FQ_CUDA_NS {

// Scratch that every Linear of a model reuses, grown on demand.
struct LinearWorkspace {
  DeviceBuffer codes, packed_codes, accumulators, maxima, steps;
  // The steps the codes were quantized with: a static step's own buffer, or `steps`.
  const float* code_steps = nullptr;
  static void reserve(DeviceBuffer& buffer, size_t bytes) {
    if (buffer.bytes() < bytes) buffer = DeviceBuffer(bytes);
  }
};

class DeviceLinear {
 public:
  virtual ~DeviceLinear() = default;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  virtual size_t weight_bytes() const = 0;
  // y f16 [rows, out] = epilogue(x f16 [rows, in] · Wᵀ + b): the activation applied, and with epilogue.residual
  // the result added to that f32 [rows, out] instead (y is then scratch the Linear may or may not write).
  // Quantized Linears fuse the epilogue into their GEMM; the others run it as separate kernels.
  virtual void forward(const __half* x, int64_t rows, __half* y, LinearWorkspace& workspace,
                       const Epilogue& epilogue) const = 0;
};

class HalfLinear final : public DeviceLinear {
 public:
  // weight f16 [out, in] and bias f16 [out] (empty: none; cuBLASLt's bias epilogue reads the output type),
  // on the device already.
  HalfLinear(std::shared_ptr<const DeviceBuffer> weight, DeviceBuffer bias, int64_t out, int64_t in);
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  size_t weight_bytes() const override { return weight_->bytes() + bias_.bytes(); }
  void forward(const __half* x, int64_t rows, __half* y, LinearWorkspace& workspace,
               const Epilogue& epilogue) const override;

 private:
  std::shared_ptr<const DeviceBuffer> weight_;
  DeviceBuffer bias_;
  int64_t out_, in_;
};

// FP8 e4m3 with per-tensor scales (Hopper's and Ada's 8-bit floating-point tensor cores): the input is
// quantized to e4m3 at a static scale, the product runs in cuBLASLt with both scales and the bias fused.
// Outlier channels need no flattening here: e4m3 keeps a relative precision over its whole range.
class Fp8Linear final : public DeviceLinear {
 public:
  // weights: e4m3 bytes [out, in] on the device; value = byte · weight_scale; inputs x are quantized as x / input_scale.
  Fp8Linear(DeviceBuffer weights, float weight_scale, float input_scale, DeviceBuffer bias, int64_t out, int64_t in);
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  size_t weight_bytes() const override { return weights_.bytes() + bias_.bytes(); }
  void forward(const __half* x, int64_t rows, __half* y, LinearWorkspace& workspace,
               const Epilogue& epilogue) const override;

 private:
  DeviceBuffer weights_, scales_, bias_;  // scales_: {input_scale, weight_scale}
  int64_t out_, in_;
};

// What the device needs of a quantized Linear; made from a QuantizedLinear, or at random for benchmarks.
struct QuantizedWeights {
  FlattenPlan plan;               // flat width a multiple of 64 (the integer GEMMs' k step)
  ActivationQuant activation;
  int weight_bits = 8;            // 8: i8 [out, K'], 4: packed int4 [out, K']
  int64_t out_features = 0;
  DeviceBuffer weights;
  std::vector<float> weight_scales;  // 1 or out_features
  std::vector<float> bias;           // empty or out_features
};

// How a Linear with 4-bit weights and 4-bit activations multiplies: the weights unpacked to int8 inside the
// W4A8 kernel (any GPU, and the fast way on Hopper, whose s4 mma is emulated), or both operands packed for the
// native s4 mma of sm_80/sm_89.
enum class Int4Product { unpack_to_int8, native_s4 };
// native_s4 on compute capability 8.0 to 8.9, else unpack_to_int8 (the emulator included).
Int4Product preferred_int4_product();

// How a Linear with 8-bit weights multiplies: cuBLASLt's int8 GEMM into int32 then the rescale kernel (which
// writes and re-reads an int32 [rows, out]), or our integer GEMM with the rescale fused (int_gemm.h); `fastest`
// times both on each shape's first call (autotune.h) and keeps the faster.
enum class Int8Product { fastest, cublaslt, fused };

class QuantizedDeviceLinear final : public DeviceLinear {
 public:
  explicit QuantizedDeviceLinear(QuantizedWeights weights, Int4Product int4_product = preferred_int4_product(),
                                 Int8Product int8_product = Int8Product::fastest);
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  size_t weight_bytes() const override;
  void forward(const __half* x, int64_t rows, __half* y, LinearWorkspace& workspace,
               const Epilogue& epilogue) const override;

  // The two halves of forward(), so Linears reading one input (q/k/v, gate/up) with the same input
  // quantization flatten and quantize it once: codes into workspace.codes, their steps at workspace.code_steps.
  // x may be the gated MLP's act(gate) · up (QuantizerInput), computed inside the quantization.
  void quantize(const QuantizerInput& x, int64_t rows, LinearWorkspace& workspace) const;
  // quantize(norm(x)) in one kernel, from the f32 residual stream x [rows, in] (the normalized values are never
  // rounded to f16, as on the CPU). False, with nothing done, where that does not fit one pass: per-tensor dynamic
  // steps (the whole tensor's maximum comes before any code) or rows too wide (norm_fusable).
  bool quantize_normed(const float* x, int64_t rows, const NormParameters& norm, LinearWorkspace& workspace) const;
  void multiply(int64_t rows, __half* y, LinearWorkspace& workspace, const Epilogue& epilogue) const;
  bool per_row_steps() const { return activation_.per_token; }

 private:
  DevicePlanStorage plan_;
  int64_t in_, flat_, out_;
  ActivationQuant activation_;
  int qmax_;
  int weight_bits_;
  DeviceBuffer weights_, static_step_, weight_scales_, bias_;
  bool per_column_scales_;
  bool native_s4_;  // 4-bit weights and activations on the native s4 mma
  Int8Product int8_product_;

  void multiply_int8(Int8Product product, int64_t rows, __half* y, LinearWorkspace& workspace,
                     const Epilogue& epilogue) const;
};

// f16 copy of f32 values.
DeviceBuffer upload_halves(const std::vector<float>& values);

// The device copy of a host Linear: FloatLinear -> HalfLinear, QuantizedLinear -> QuantizedDeviceLinear.
std::unique_ptr<DeviceLinear> upload_linear(const Linear& linear);
// The quantized weights of a QuantizedLinear, with its flat width padded to a multiple of 64.
QuantizedWeights quantized_weights(const QuantizedLinear& linear);

// ys[i] = linears[i](x) with `epilogue`, quantizing x once for the quantized ones that share_input says read the
// same codes.
void forward_same_input(std::span<const DeviceLinear* const> linears, bool share_input, const __half* x, int64_t rows,
                        std::span<__half* const> ys, LinearWorkspace& workspace, const Epilogue& epilogue = {});

// ys[i] = linears[i](norm(x)) with `epilogue`, x f32 [rows, in]: quantized Linears that read one quantization
// (share_input, or a single Linear) get the norm fused into their flatten + quantize; otherwise norm(x) is written
// to `normed` (f16 [rows, in]) and read from there.
void forward_normed(std::span<const DeviceLinear* const> linears, bool share_input, const float* x, int64_t rows,
                    const NormParameters& norm, __half* normed, std::span<__half* const> ys, LinearWorkspace& workspace,
                    const Epilogue& epilogue = {});

}  // namespace fq::FQ_CUDA_NS
