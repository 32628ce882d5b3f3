// From a float Linear and its calibration statistics to a QuantizedLinear.
#include <algorithm>

#include "fq/quant/quantized_linear.h"

namespace fq {

std::unique_ptr<QuantizedLinear> quantize_linear(const Tensor& weight, const Tensor& bias, const SlotStatistics& stats,
                                                 const LinearQuantConfig& config,
                                                 std::span<const double> threshold_energy) {
  check(weight.dtype() == DType::f32 && weight.rank() == 2 && weight.dim(1) >= 1,
        "quantize_linear {}: expected an f32 [out, in] weight, got {} {}",
        stats.name, dtype_name(weight.dtype()), shape_str(weight.shape()));
  check(stats.in_features == weight.dim(1) && static_cast<int64_t>(stats.channel_max.size()) == weight.dim(1),
        "quantize_linear {}: statistics for {} inputs, the weight has {}", stats.name, stats.in_features, weight.dim(1));
  const int activation_max = quant_max(config.activation_bits);

  FlattenPlan plan;
  if (config.flatten) {
    check(threshold_energy.empty() || static_cast<int64_t>(threshold_energy.size()) == weight.dim(1),
          "quantize_linear {}: {} threshold energies for {} inputs", stats.name, threshold_energy.size(), weight.dim(1));
    const std::vector<double> own = threshold_energy.empty() ? weight_column_energy(weight) : std::vector<double>{};
    plan = choose_threshold(stats.channel_max, threshold_energy.empty() ? std::span<const double>(own) : threshold_energy,
                            activation_max, config.flattening).plan;
  } else {
    const float largest = *std::max_element(stats.channel_max.begin(), stats.channel_max.end());
    plan = plan_flatten(stats.channel_max, largest > 0 ? largest : 1.f, config.flattening.align);
  }

  // Clipping is judged by the error it causes at the output, so columns with large inputs weigh more.
  // (GPTQ weighs them by the Hessian's diagonal, the same sums of x_j².)
  const std::vector<double> importance = stats.rows_seen > 0 ? stats.channel_mean_square() : std::vector<double>{};
  QuantizedWeight weights;
  if (config.gptq) {
    check(stats.hessian.defined(), "quantize_linear {}: GPTQ needs the calibration Hessian (calibrate with hessian on)",
          stats.name);
    weights = gptq_quantize(weight, stats.hessian, config.weights, *config.gptq);
  } else {
    weights = quantize_weight(weight, config.weights, importance);
  }
  Tensor codes = flatten_weight(weights.codes, plan);
  if (weights.bits == 4) codes = pack_int4(codes);

  ActivationQuant activation;
  activation.bits = config.activation_bits;
  activation.dynamic = config.dynamic_activations || config.per_token_activations;
  activation.per_token = config.per_token_activations;
  activation.step = plan.threshold / activation_max;
  activation.stagger = config.flattening.stagger;
  return std::make_unique<QuantizedLinear>(std::move(plan), std::move(codes), weights.bits, std::move(weights.scales),
                                           activation, bias);
}

}  // namespace fq
