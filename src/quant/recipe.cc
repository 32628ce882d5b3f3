#include "fq/quant/recipe.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "fq/quant/apply.h"
#include "fq/quant/mixed_precision.h"
#include "fq/quant/smooth.h"

namespace fq {

const std::vector<std::pair<std::string, std::string>>& recipe_names() {
  static const std::vector<std::pair<std::string, std::string>> names = {
      {"fp", "nothing quantized (the float reference, saved as .fq)"},
      {"naive-w8a8", "per-tensor INT8 weights and static per-tensor INT8 activations"},
      {"smoothquant-w8a8", "SmoothQuant (alpha) then per-tensor W8A8 with static scales"},
      {"pertoken-w8a8", "per-token dynamic INT8 activations, per-channel INT8 weights (the 8-bit ceiling)"},
      {"naive-w4a4", "per-tensor INT4 weights and activations"},
      {"flatten-w8a8", "FlattenQuant W8A8: flattened channels, plain rounding (the paper)"},
      {"flatten-w8a8-stagger", "FlattenQuant W8A8 with staggered flattening (ours)"},
      {"flatten-w4a8", "FlattenQuant, staggered, INT4 weights with INT8 activations (memory-bound decode)"},
      {"flatten-mixed", "FlattenQuant, staggered: W4A4 for the least sensitive layers up to --int4-share, W8A8 elsewhere"},
  };
  return names;
}

void check_recipe_name(const std::string& name) {
  const bool known = std::any_of(recipe_names().begin(), recipe_names().end(),
                                 [&](const auto& entry) { return entry.first == name; });
  if (known) return;
  std::string list;
  for (const auto& entry : recipe_names()) list += (list.empty() ? "" : ", ") + entry.first;
  fail("unknown recipe '{}' (expected one of: {})", name, list);
}

namespace {
LinearQuantConfig config_for(int bits, bool flatten, bool stagger, const RecipeOptions& options) {
  LinearQuantConfig config;
  config.weights.bits = bits;
  config.weights.granularity = options.per_channel_weights ? WeightScaleGranularity::per_output_channel
                                                           : WeightScaleGranularity::per_tensor;
  config.activation_bits = bits;
  config.dynamic_activations = options.dynamic_activations;
  config.flatten = flatten;
  config.flattening.budget = options.flatten_budget;
  config.flattening.stagger = stagger;
  if (bits == 4) config.flattening.budget = options.int4_flatten_budget;
  if (options.gptq) config.gptq = GptqOptions{};
  return config;
}
}  // namespace

nlohmann::json apply_recipe(Model& model, Calibration& calibration, const RecipeOptions& options,
                            const std::function<void(const std::string&)>& log) {
  const std::string& name = options.name;
  check_recipe_name(name);
  nlohmann::json report = {{"recipe", name}};
  if (name == "fp") return report;

  if (name == "smoothquant-w8a8" || options.smooth) {
    SmoothOptions smoothing;
    smoothing.alpha = options.alpha;
    SmoothReport smoothed = smooth_model(model, calibration, smoothing);
    report["smoothed"] = smoothed.smoothed;
    report["smooth_skipped"] = smoothed.skipped;
    if (log) log(fmt::format("smoothed {} layer inputs (alpha {})", smoothed.smoothed.size(), options.alpha));
  }

  const bool flatten = name.rfind("flatten", 0) == 0;
  const bool stagger = name == "flatten-w8a8-stagger" || name == "flatten-mixed" || name == "flatten-w4a8";
  const int bits = name == "naive-w4a4" ? 4 : 8;
  LinearQuantConfig wide = config_for(bits, flatten, stagger, options);
  if (name == "flatten-w4a8") wide.weights.bits = 4;
  if (name == "pertoken-w8a8") {
    wide.per_token_activations = true;
    wide.weights.granularity = WeightScaleGranularity::per_output_channel;
  }
  const LinearQuantConfig narrow = config_for(4, true, true, options);
  std::set<std::string> low_precision;
  if (name == "flatten-mixed") {
    std::vector<std::string> candidates;
    for (const LinearSlot& slot : model.linears())
      if (slot.name != "lm_head" || options.quantize_head) candidates.push_back(slot.name);
    if (log) log(fmt::format("measuring the 4-bit sensitivity of {} layers", candidates.size()));
    std::vector<LayerSensitivity> sensitivities = measure_sensitivity(model, calibration, narrow, candidates);
    // The target share counts each layer's own work, N·K, not its flattened width: flattening costs
    // differ between 4 and 8 bits and would move the target.
    for (LayerSensitivity& entry : sensitivities)
      for (const LinearSlot& slot : model.linears())
        if (slot.name == entry.name)
          entry.flops_per_token = (*slot.linear)->out_features() * (*slot.linear)->in_features();
    PrecisionPlan plan = plan_precision(sensitivities, options.int4_share);
    low_precision.insert(plan.low_precision.begin(), plan.low_precision.end());
    nlohmann::json sensitivity = nlohmann::json::object();
    for (const LayerSensitivity& entry : sensitivities) sensitivity[entry.name] = entry.relative_error;
    report["int4_sensitivity"] = sensitivity;
  }
  std::vector<QuantizedSlot> slots = quantize_model(model, calibration, [&](const std::string& slot)
                                                        -> std::optional<LinearQuantConfig> {
    if (slot == "lm_head" && !options.quantize_head) return std::nullopt;
    // flatten-w4a8 keeps a quantized head at 8 bits: a 4-bit head cost SmolLM2 +27% perplexity.
    if (slot == "lm_head" && name == "flatten-w4a8") return config_for(8, flatten, stagger, options);
    return low_precision.count(slot) ? narrow : wide;
  }, options.shared_input);

  // FLOP shares: a layer's multiply-adds per token are N·K' (its flattened width).
  double flops_total = 0, flops_int4 = 0, work_total = 0, work_int4 = 0, k_total = 0, k_flat = 0, k_channels = 0;
  nlohmann::json layers = nlohmann::json::array();
  for (const QuantizedSlot& slot : slots) {
    const bool four = low_precision.count(slot.name) != 0 || bits == 4;
    int64_t outputs = 0;
    std::string checkpoint_name;
    for (const LinearSlot& linear : model.linears())
      if (linear.name == slot.name) {
        outputs = (*linear.linear)->out_features();
        checkpoint_name = linear.checkpoint_name;
      }
    const double flops = double(outputs) * double(slot.flat_features);
    const double work = double(outputs) * double(slot.in_features);
    flops_total += flops;
    work_total += work;
    if (four) {
      flops_int4 += flops;
      work_int4 += work;
    }
    k_total += double(slot.in_features);
    k_flat += double(slot.flat_features);
    k_channels += double(slot.in_features) * (1.0 + slot.channel_growth);
    layers.push_back({{"name", slot.name},
                      {"checkpoint_name", checkpoint_name},
                      {"kind", slot.kind},
                      {"bits", four ? 4 : 8},
                      {"threshold", slot.threshold},
                      {"in_features", slot.in_features},
                      {"flat_features", slot.flat_features},
                      {"growth", slot.growth},
                      {"channel_growth", slot.channel_growth},
                      {"out_features", outputs}});
  }
  report["layers"] = layers;
  // Share of the model's linear-layer FLOPs (N·K) run in 4 bits, and of the executed ones (N·K').
  report["int4_flop_share"] = work_total > 0 ? work_int4 / work_total : 0.0;
  report["int4_executed_share"] = flops_total > 0 ? flops_int4 / flops_total : 0.0;
  report["k_growth"] = k_total > 0 ? k_flat / k_total - 1.0 : 0.0;  // padded, as the GEMM sees it
  report["channel_growth"] = k_total > 0 ? k_channels / k_total - 1.0 : 0.0;
  if (log)
    log(fmt::format("quantized {} layers; {:.2f}% of linear FLOPs in 4 bits; K grew {:.2f}% by flattening, "
                    "{:.2f}% with padding to 64",
                    slots.size(), 100.0 * report["int4_flop_share"].get<double>(),
                    100.0 * report["channel_growth"].get<double>(), 100.0 * report["k_growth"].get<double>()));
  return report;
}

}  // namespace fq
