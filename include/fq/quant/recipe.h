// The named recipes `fq quantize --recipe` offers: FlattenQuant and the baselines it is compared
// with, all through the same calibration and the same QuantizedLinear.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

#include "fq/model.h"
#include "fq/quant/calibrate.h"

namespace fq {

struct RecipeOptions {
  std::string name = "flatten-w8a8";
  float alpha = 0.5f;            // SmoothQuant migration strength
  bool smooth = false;           // smoothing before flattening (the smoothquant recipe always smooths)
  double flatten_budget = 0.10;  // allowed K growth per layer
  double int4_share = 0.5;       // flatten-mixed: target share of linear FLOPs in 4 bits
  double int4_flatten_budget = 1.0;  // K growth allowed for 4-bit layers (4 bits need a smaller T)
  bool gptq = false;                 // GPTQ weights (calibrate with the Hessian)
  bool dynamic_activations = false;
  bool per_channel_weights = false;  // default per tensor, as the paper
  bool quantize_head = false;        // lm_head stays float unless asked
  bool shared_input = true;          // q/k/v and gate/up share one threshold, so their input is quantized once
};

// Every recipe name with a one-line description, for --help and errors.
const std::vector<std::pair<std::string, std::string>>& recipe_names();
// Throws naming `name` and listing every recipe unless it is one of recipe_names().
void check_recipe_name(const std::string& name);

// Applies the recipe to `model` (float Linears in every slot) using `calibration` from this model.
// Returns the per-layer report stored in the .fq header (bits, T, K, K', growth, int4 share, ...).
nlohmann::json apply_recipe(Model& model, Calibration& calibration, const RecipeOptions& options,
                            const std::function<void(const std::string&)>& log = {});

}  // namespace fq
