// fq quantize: calibrate a float model, apply a recipe (smooth, flatten, quantize), save an .fq file.
#include <fmt/format.h>

#include <fstream>
#include <optional>
#include <sstream>

#include "common.h"
#include "fq/progress.h"
#include "fq/quant/recipe.h"
#include "fq/quant/serialize.h"

namespace fq::cli {

namespace {
struct QuantizeOptions {
  ModelOptions model;
  std::string calibration_file;
  int64_t samples = 128;
  int64_t seq = 512;
  std::string output;
  RecipeOptions recipe;
  // Unset: f32 for the fp recipe (the float reference), else int8 rows / bf16.
  std::optional<int> embedding_bits;
  std::optional<std::string> float_dtype;

  FloatStorage storage() const {
    const bool reference = recipe.name == "fp";
    const int bits = embedding_bits.value_or(reference ? 32 : 8);
    const std::string linears = float_dtype.value_or(reference ? "f32" : "bf16");
    return {bits == 8 ? DType::i8 : bits == 16 ? DType::bf16 : DType::f32,
            linears == "bf16" ? DType::bf16 : DType::f32};
  }
};

// Calibration text: a plain text file, or a .jsonl file whose string fields of each line are joined
// (e.g. LAMBADA's context + continuation).
std::string read_calibration_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "{}: cannot open the calibration file", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (path.size() < 6 || path.substr(path.size() - 6) != ".jsonl") return buffer.str();
  std::string text, line;
  int64_t number = 0;
  while (std::getline(buffer, line)) {
    ++number;
    if (line.empty()) continue;
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      fail("{}:{}: not a JSON line", path, number);
    }
    std::string joined;
    for (const auto& [key, value] : row.items())
      if (value.is_string()) joined += (joined.empty() ? "" : " ") + value.get<std::string>();
    text += joined + "\n\n";
  }
  return text;
}

// What the recipe leaves in float, for `fq inspect`.
std::string kept_float(const RecipeOptions& recipe, const FloatStorage& storage) {
  const bool int8_embedding = storage.embedding == DType::i8;
  if (recipe.name == "fp")
    return int8_embedding ? "everything but the token embedding" : "everything (float reference)";
  return std::string(int8_embedding ? "" : "embeddings, ") + "norms, attention matmuls" +
         (recipe.quantize_head ? "" : ", lm_head");
}

void quantize(QuantizeOptions options) {
  check(options.model.dtype == "f32", "--dtype: quantization calibrates in f32 (got {})", options.model.dtype);
  check_recipe_name(options.recipe.name);  // before the slow part
  LoadOptions load_options;
  load_options.tokenizer_path = options.model.tokenizer;
  Checkpoint checkpoint = load_checkpoint(options.model.path, load_options);
  check(checkpoint.quantization.empty(), "{}: already quantized (start from a float checkpoint)", options.model.path);
  check(checkpoint.tokenizer.kind != TokenizerSpec::Kind::none, "{}: no tokenizer to read the calibration text with",
        options.model.path);
  Model model = Model::from_checkpoint(checkpoint, DType::f32);
  auto tokenizer = make_tokenizer(checkpoint.tokenizer);

  const std::string text = read_calibration_text(options.calibration_file);
  std::vector<int32_t> tokens = tokenizer->encode(text, false);
  const int64_t seq = std::min(options.seq, model.config().max_positions);
  const int64_t available = static_cast<int64_t>(tokens.size()) / seq;
  check(available > 0, "{}: {} tokens, fewer than one calibration window of {}", options.calibration_file,
        tokens.size(), seq);
  const int64_t count = std::min(options.samples, available);
  std::vector<std::vector<int32_t>> windows;
  for (int64_t i = 0; i < count; ++i) {  // spread over the whole text
    const int64_t start = i * available / count * seq;
    windows.emplace_back(tokens.begin() + start, tokens.begin() + start + seq);
  }
  fmt::print(stderr, "calibration: {} windows of {} tokens from {}\n", count, seq, options.calibration_file);
  Calibration calibration;
  {
    ProgressBar bar("calibrate", count, "windows");
    CalibrationOptions calibration_options;
    calibration_options.hessian = options.recipe.gptq;
    calibration = calibrate(model, windows, calibration_options, [&](int64_t done, int64_t) { bar.update(done); });
  }
  nlohmann::json report = apply_recipe(model, calibration, options.recipe,
                                       [](const std::string& line) { fmt::print(stderr, "{}\n", line); });
  const FloatStorage storage = options.storage();
  convert_float_storage(model, storage);
  nlohmann::json recipe = {{"name", options.recipe.name},
                           {"alpha", options.recipe.alpha},
                           {"smooth", options.recipe.smooth},
                           {"flatten_budget", options.recipe.flatten_budget},
                           {"int4_share", options.recipe.int4_share},
                           {"int4_flatten_budget", options.recipe.int4_flatten_budget},
                           {"gptq", options.recipe.gptq},
                           {"activation_scale", options.recipe.dynamic_activations ? "dynamic" : "static"},
                           {"weight_scale", options.recipe.per_channel_weights ? "channel" : "tensor"},
                           {"quantize_head", options.recipe.quantize_head},
                           {"shared_input", options.recipe.shared_input},
                           {"embedding", dtype_name(storage.embedding)},
                           {"float_linears", dtype_name(storage.linears)},
                           {"calibration", {{"file", options.calibration_file}, {"windows", count}, {"seq", seq}}},
                           {"kept_float", kept_float(options.recipe, storage)}};
  nlohmann::json channel_max = nlohmann::json::object();
  for (const SlotStatistics& slot : calibration.slots) channel_max[slot.name] = slot.channel_max;
  report["channel_max"] = channel_max;
  save_fq(options.output, model, {checkpoint.config, checkpoint.tokenizer, recipe, report});
  fmt::print("wrote {} ({})\n", options.output, options.recipe.name);
}
}  // namespace

void add_quantize_command(CLI::App& app) {
  auto options = std::make_shared<QuantizeOptions>();
  std::string recipes = "Recipe:";
  for (const auto& [name, description] : recipe_names()) recipes += "\n  " + name + ": " + description;
  auto* command = app.add_subcommand("quantize", "Calibrate a float model, flatten and quantize it, save an .fq file");
  options->model.add_to(*command);
  command->add_option("--calib", options->calibration_file,
                      "Calibration text (plain text, or .jsonl whose string fields are joined); use a different "
                      "corpus from the evaluation text")
      ->required();
  command->add_option("--samples", options->samples, "Calibration windows")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}))
      ->capture_default_str();
  command->add_option("--seq", options->seq, "Tokens per calibration window")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20))
      ->capture_default_str();
  command->add_option("-o,--output", options->output, "Output .fq file")->required();
  command->add_option("--recipe", options->recipe.name, recipes)->capture_default_str();
  command->add_option("--alpha", options->recipe.alpha, "SmoothQuant migration strength")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command->add_flag("--smooth", options->recipe.smooth, "Smooth before flattening (flatten-* recipes)");
  command->add_option("--flatten-budget", options->recipe.flatten_budget,
                      "Largest allowed growth of each layer's K from flattening (0.10 = 10%)")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  command->add_option("--int4-share", options->recipe.int4_share,
                      "flatten-mixed: target share of linear-layer FLOPs in 4 bits")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command->add_option_function<std::string>(
             "--act-scale",
             [options](const std::string& mode) { options->recipe.dynamic_activations = mode == "dynamic"; },
             "Activation scale: static (from calibration, the fast default) or dynamic (per tensor at run time)")
      ->check(CLI::IsMember({"static", "dynamic"}));
  command->add_option_function<std::string>(
             "--weight-scale",
             [options](const std::string& mode) { options->recipe.per_channel_weights = mode == "channel"; },
             "Weight scale: tensor (the paper, default) or channel (per output channel)")
      ->check(CLI::IsMember({"tensor", "channel"}));
  command->add_option("--int4-flatten-budget", options->recipe.int4_flatten_budget,
                      "K growth allowed for the 4-bit layers (they need a smaller threshold)")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  command->add_flag("--gptq", options->recipe.gptq, "GPTQ for the weights (calibration also collects X^T X)");
  command->add_flag("--quantize-head", options->recipe.quantize_head, "Quantize lm_head too (default: keep it float)");
  command->add_flag("!--separate-thresholds", options->recipe.shared_input,
                    "Choose every Linear's flattening threshold alone; by default q/k/v and gate/up share one "
                    "(chosen for their summed weights), so their common input is flattened and quantized once");
  command->add_option("--embedding-bits", options->embedding_bits,
                      "Token embedding storage: 8 (int8 rows, one scale each), 16 (bf16) or 32 (f32); default 8, "
                      "32 for the fp recipe")
      ->check(CLI::IsMember({8, 16, 32}));
  command->add_option("--float-dtype", options->float_dtype,
                      "Weights of the Linears left float (lm_head unless --quantize-head): bf16 (computes in bf16) "
                      "or f32; default bf16, f32 for the fp recipe")
      ->check(CLI::IsMember({"f32", "bf16"}));
  command->callback([options] { quantize(*options); });
}

}  // namespace fq::cli
