// Swapping a model's float Linears for quantized ones.
#include "fq/quant/apply.h"

#include <algorithm>
#include <map>

namespace fq {

namespace {
// The group of slots reading the same input as `slot`: "layers.3.attn.qkv" for layers.3.attn.{q,k,v},
// "layers.3.mlp.gate_up" for layers.3.mlp.{gate,up}; empty for the others.
std::string input_group(const std::string& slot) {
  const size_t dot = slot.rfind('.');
  if (dot == std::string::npos) return "";
  const std::string prefix = slot.substr(0, dot), last = slot.substr(dot + 1);
  auto ends_with = [&](const std::string& tail) {
    return prefix.size() >= tail.size() && prefix.compare(prefix.size() - tail.size(), tail.size(), tail) == 0;
  };
  if (ends_with(".attn") && (last == "q" || last == "k" || last == "v")) return prefix + ".qkv";
  if (ends_with(".mlp") && (last == "gate" || last == "up")) return prefix + ".gate_up";
  return "";
}
}  // namespace

FloatWeights float_weights(const Linear& linear, const std::string& slot) {
  const auto* float_linear = dynamic_cast<const FloatLinear*>(&linear);
  check(float_linear != nullptr, "slot {} holds a {} Linear, expected a float one", slot, linear.kind());
  // Copies: the stored weight may be a read-only mapping of the checkpoint file.
  FloatWeights weights{float_linear->weight().to(DType::f32).clone(), Tensor()};
  if (float_linear->bias().defined()) weights.bias = float_linear->bias().clone();
  return weights;
}

std::vector<QuantizedSlot> quantize_model(
    Model& model, const Calibration& calibration,
    const std::function<std::optional<LinearQuantConfig>(const std::string& name)>& config_for, bool shared_input) {
  struct Job {
    LinearSlot slot;
    LinearQuantConfig config;
    const SlotStatistics* stats;
  };
  std::vector<Job> jobs;
  for (const LinearSlot& slot : model.linears())
    if (std::optional<LinearQuantConfig> config = config_for(slot.name)) {
      check(dynamic_cast<const FloatLinear*>(slot.linear->get()) != nullptr,
            "quantize_model: slot {} holds a {} Linear, expected a float one", slot.name, (*slot.linear)->kind());
      jobs.push_back({slot, *config, &calibration.at(slot.name)});
    }
  std::vector<FloatWeights> weights;
  for (const Job& job : jobs) weights.push_back(float_weights(**job.slot.linear, job.slot.name));
  std::vector<std::vector<double>> threshold_energy(jobs.size());
  std::map<std::string, std::vector<size_t>> groups;
  for (size_t i = 0; i < jobs.size(); ++i)
    if (std::string group = input_group(jobs[i].slot.name); shared_input && !group.empty())
      groups[group].push_back(i);
  for (const auto& [group, members] : groups) {
    const Job& lead = jobs[members[0]];
    const bool alike = members.size() > 1 && std::all_of(members.begin(), members.end(), [&](size_t i) {
      const LinearQuantConfig &a = jobs[i].config, &b = lead.config;
      return a.activation_bits == b.activation_bits && a.flatten == b.flatten &&
             a.flattening.budget == b.flattening.budget && a.flattening.align == b.flattening.align &&
             a.flattening.stagger == b.flattening.stagger && jobs[i].stats->channel_max == lead.stats->channel_max;
    });
    if (!alike) continue;
    std::vector<double> sum(static_cast<size_t>(weights[members[0]].weight.dim(1)), 0.0);
    for (size_t i : members) {
      const std::vector<double> energy = weight_column_energy(weights[i].weight);
      for (size_t j = 0; j < sum.size(); ++j) sum[j] += energy[j];
    }
    for (size_t i : members) threshold_energy[i] = sum;
  }
  // Everything is built before any slot changes, so a failure leaves the model as it was.
  std::vector<std::unique_ptr<QuantizedLinear>> built;
  for (size_t i = 0; i < jobs.size(); ++i)
    built.push_back(quantize_linear(weights[i].weight, weights[i].bias, *jobs[i].stats, jobs[i].config,
                                    threshold_energy[i]));
  std::vector<QuantizedSlot> report;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const QuantizedLinear& linear = *built[i];
    const FlattenPlan& plan = linear.plan();
    report.push_back({jobs[i].slot.name, linear.kind(), plan.threshold, plan.in_features, plan.flat_features(),
                      plan.growth(), plan.channel_growth()});
    *jobs[i].slot.linear = std::move(built[i]);
  }
  return report;
}

}  // namespace fq
