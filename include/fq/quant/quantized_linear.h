// A quantized Linear, a drop-in replacement for FloatLinear: the input is flattened and quantized
// to integer codes with one per-tensor step, multiplied with integer weight codes in an int8 x int8
// -> int32 GEMM, and rescaled by step · weight scale, plus the f32 bias.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fq/linear.h"
#include "fq/quant/calibrate.h"
#include "fq/quant/flatten.h"
#include "fq/quant/gptq.h"
#include "fq/quant/quantize.h"

namespace fq {

namespace cpu {
class Int8Matmul;
class SmallBatchGemm;
}
namespace quant {
class FlattenQuantizer;
}

struct ActivationQuant {
  int bits = 8;          // 8 or 4; codes are held in int8 either way
  bool dynamic = false;  // step = max_j(max_rows |x_j| / n_j) / qmax of each call, else `step`
  float step = 0;        // the static step (T / qmax); unused when dynamic
  bool stagger = true;   // staggered or plain flattening (flatten.h)
  bool per_token = false;  // with dynamic: one step per row (the per-token baseline; still one integer GEMM)
};

class QuantizedLinear : public Linear {
 public:
  // weight_codes: i8 [N, K'] or packed i4 [N, K'] (K' = plan.flat_features()), codes within
  // ±quant_max(weight_bits); weight_scales: 1 or N positive values; bias: f32 [N] or undefined.
  // Everything is checked; a bad argument throws fq::Error.
  QuantizedLinear(FlattenPlan plan, Tensor weight_codes, int weight_bits, std::vector<float> weight_scales,
                  ActivationQuant activation, Tensor bias);

  int64_t in_features() const override { return plan_.in_features; }
  int64_t out_features() const override { return out_features_; }
  // The integer path.
  void forward(const Tensor& x, Tensor& y) const override;
  // e.g. "w8a8 static, K x1.12, staggered".
  std::string kind() const override;

  // Fake quantization, the reference for forward(): the same codes, dequantized, multiplied in double.
  void forward_simulated(const Tensor& x, Tensor& y) const;

  // The two integer stages of forward(). quantize_input: x f32 [M, K] -> codes i8 [M, K'] and the step
  // used. accumulate: codes i8 [M, K'] -> int32 [M, N] sums of code products, on oneDNN (equal to
  // the plain reference quant::int_gemm, which the tests check).
  Tensor quantize_input(const Tensor& x, float& step) const;
  // The same with one step per row (per-token activations; per-tensor modes repeat one step).
  Tensor quantize_input_rows(const Tensor& x, std::vector<float>& steps) const;
  Tensor accumulate(const Tensor& codes) const;

  // Whether `other` flattens and quantizes its input exactly as this one does (same plan and activation
  // quantization), so one set of codes serves both.
  bool shares_input_quantization(const QuantizedLinear& other) const;
  // forward() from codes already made by quantize_into() of a Linear that shares this one's input quantization.
  void forward_codes(const int8_t* codes, int64_t rows, std::span<const float> steps, Tensor& y) const;
  // Codes of x into `codes` ([rows, K']) and the step of each row (one value when per tensor).
  void quantize_into(const Tensor& x, int8_t* codes, std::vector<float>& steps) const;

  const FlattenPlan& plan() const { return plan_; }
  // i8 or packed i4 [N, K'] (8-bit codes are held in the GEMM's blocked layout: this reorders them back).
  Tensor weight_codes() const;
  int weight_bits() const { return weight_bits_; }
  const std::vector<float>& weight_scales() const { return weight_scales_; }
  const ActivationQuant& activation() const { return activation_; }
  const Tensor& bias() const { return bias_; }

 private:
  friend void forward_same_input(std::span<const Linear* const>, const Tensor&, std::span<Tensor>);
  void check_io(const Tensor& x, const Tensor& y) const;
  void check_input(const Tensor& x) const;
  double weight_scale(int64_t row) const { return weight_scales_.size() == 1 ? weight_scales_[0] : weight_scales_[row]; }
  void accumulate_into(const int8_t* codes, int64_t rows, int32_t* acc) const;

  FlattenPlan plan_;
  int64_t out_features_ = 0;
  std::shared_ptr<const quant::FlattenQuantizer> quantizer_;
  // 8-bit weights: oneDNN's s8 GEMM owns them (blocked layout), with the rescale fused when the step is static.
  std::shared_ptr<const cpu::Int8Matmul> matmul_;
  // 4-bit weights: packed two per byte, the only copy (small batches read them directly, larger ones
  // unpack a slice of rows at a time for the int8 GEMM).
  Tensor packed_weights_;
  std::shared_ptr<const cpu::SmallBatchGemm> small_batch_;
  int weight_bits_;
  std::vector<float> weight_scales_;
  ActivationQuant activation_;
  Tensor bias_;
};

// How to quantize one Linear.
struct LinearQuantConfig {
  WeightQuantOptions weights;
  std::optional<GptqOptions> gptq;  // set: GPTQ weight codes (needs the calibration Hessian), else round to nearest
  int activation_bits = 8;
  bool dynamic_activations = false;
  bool per_token_activations = false;  // implies dynamic
  bool flatten = true;          // false: plain per-tensor quantization, T = max_j m_j
  FlattenOptions flattening;    // budget, alignment and stagger (stagger also applies when not flattening,
                                // where every n_j = 1 and it changes nothing)
};

// Builds the QuantizedLinear of weight f32 [N, K] (+ bias) from its input's calibration statistics:
// the threshold from the channel maxima and the weight column energies, weights quantized (clipping
// weighted by the calibrated mean of x_j²; GPTQ when configured) and then flattened, the static step
// T / qmax.
// threshold_energy: the weight column energies the threshold is chosen for; empty: this weight's own.
// Linears that read one input pass the sum over all of them, and so get the same plan.
std::unique_ptr<QuantizedLinear> quantize_linear(const Tensor& weight, const Tensor& bias, const SlotStatistics& stats,
                                                 const LinearQuantConfig& config,
                                                 std::span<const double> threshold_energy = {});

}  // namespace fq
