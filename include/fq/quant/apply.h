// Replacing a model's float Linears with QuantizedLinears.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "fq/model.h"
#include "fq/quant/calibrate.h"
#include "fq/quant/quantized_linear.h"

namespace fq {

struct QuantizedSlot {
  std::string name;
  std::string kind;           // QuantizedLinear::kind()
  float threshold = 0;        // the flattening threshold T
  int64_t in_features = 0;    // K
  int64_t flat_features = 0;  // K'
  double growth = 0;          // FlattenPlan::growth() (padded)
  double channel_growth = 0;  // FlattenPlan::channel_growth() (before padding)
};

// For every slot for which `config_for(name)` gives a config, replaces its FloatLinear by
// quantize_linear() of its weights and the slot's calibration statistics. Slots without a config stay
// as they are. Throws (before changing anything) when a chosen slot is not a FloatLinear or has no statistics.
// With shared_input, slots that read one input (q/k/v, gate/up) and have the same activation settings
// get one threshold, chosen for their summed weight column energies, so the runtime quantizes that
// input once for all of them.
std::vector<QuantizedSlot> quantize_model(
    Model& model, const Calibration& calibration,
    const std::function<std::optional<LinearQuantConfig>(const std::string& name)>& config_for,
    bool shared_input = true);

// The f32 weight [out, in] and bias (may be undefined) of a FloatLinear; throws naming `slot` otherwise.
struct FloatWeights {
  Tensor weight, bias;
};
FloatWeights float_weights(const Linear& linear, const std::string& slot);

}  // namespace fq
