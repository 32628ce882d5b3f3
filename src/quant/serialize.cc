#include "fq/quant/serialize.h"

#include <cstring>

#include "fq/quant/quantized_linear.h"
#include "io/fq_file.h"
#include "io/fq_tokenizer.h"
#include "model/architectures.h"

namespace fq {

namespace {
Tensor int32_tensor(const std::vector<int32_t>& values) {
  Tensor out = Tensor::empty(DType::i32, {static_cast<int64_t>(values.size())});
  std::memcpy(out.raw(), values.data(), values.size() * sizeof(int32_t));
  return out;
}

void store_quantized(const QuantizedLinear& linear, const std::string& prefix, nlohmann::json& layers,
                     std::map<std::string, Tensor>& tensors) {
  const ActivationQuant& activation = linear.activation();
  layers[prefix] = {{"weight_bits", linear.weight_bits()},
                    {"threshold", linear.plan().threshold},
                    {"align", linear.plan().align},
                    {"activation",
                     {{"bits", activation.bits},
                      {"dynamic", activation.dynamic},
                      {"per_token", activation.per_token},
                      {"step", activation.step},
                      {"stagger", activation.stagger}}}};
  tensors[prefix + ".copies"] = int32_tensor(linear.plan().copies);
  tensors[prefix + ".weight_codes"] = linear.weight_codes();
  const std::vector<float>& scales = linear.weight_scales();
  tensors[prefix + ".weight_scales"] = Tensor::from_floats(scales, {static_cast<int64_t>(scales.size())});
  if (linear.bias().defined()) tensors[prefix + ".bias"] = linear.bias();
}

// A tied float head equal to the embedding table (same format, same values) is rebuilt from it on load.
bool equals_embedding_table(const Tensor& weight, const TokenEmbedding& embedding) {
  const Tensor& table = embedding.table();
  return weight.dtype() == table.dtype() && weight.shape() == table.shape() &&
         std::memcmp(weight.raw(), table.raw(), table.nbytes()) == 0;
}

template <typename T>
T field(const nlohmann::json& entry, const char* key, const std::string& source, const std::string& prefix) {
  try {
    return entry.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("{}: quantized layer '{}' has no valid '{}'", source, prefix, key);
  }
}
}  // namespace

void convert_float_storage(Model& model, const FloatStorage& storage) {
  check(storage.linears == DType::f32 || storage.linears == DType::bf16,
        "float Linears can be stored as f32 or bf16, not {}", dtype_name(storage.linears));
  model.token_embedding = model.token_embedding.converted(storage.embedding);
  const bool tied = model.config().tied_embeddings;
  for (const LinearSlot& slot : model.linears()) {
    const auto* dense = dynamic_cast<const FloatLinear*>(slot.linear->get());
    if (!dense) continue;
    const Tensor weight = dense->weight();
    if (slot.name == "lm_head" && tied && model.token_embedding.dtype() == storage.linears)
      *slot.linear = std::make_unique<FloatLinear>(model.token_embedding.table(), Tensor(), storage.linears);
    else if (weight.dtype() != storage.linears)
      *slot.linear = std::make_unique<FloatLinear>(weight, dense->bias(), storage.linears);
  }
}

void save_fq(const std::string& path, Model& model, const FqMetadata& metadata) {
  std::map<std::string, Tensor> tensors;
  if (model.config().model_type == "opt")
    model::export_opt_tensors(model, tensors);
  else
    model::export_llama_tensors(model, tensors);
  nlohmann::json layers = nlohmann::json::object();
  for (const LinearSlot& slot : model.linears()) {
    const Linear& linear = **slot.linear;
    if (const auto* quantized = dynamic_cast<const QuantizedLinear*>(&linear)) {
      store_quantized(*quantized, slot.checkpoint_name, layers, tensors);
    } else if (const auto* dense = dynamic_cast<const FloatLinear*>(&linear)) {
      const Tensor weight = dense->weight();
      const bool tied_head = slot.name == "lm_head" && model.config().tied_embeddings;
      if (tied_head && equals_embedding_table(weight, model.token_embedding)) continue;
      tensors[slot.checkpoint_name + ".weight"] = weight;
      if (dense->bias().defined()) tensors[slot.checkpoint_name + ".bias"] = dense->bias();
    } else {
      fail("{}: layer '{}' ({}) cannot be saved", path, slot.name, linear.kind());
    }
  }
  nlohmann::json header = {{"producer", "fq 0.1.0"},
                           {"config", metadata.config},
                           {"recipe", metadata.recipe},
                           {"report", metadata.report},
                           {"quantization", layers}};
  io::store_tokenizer(metadata.tokenizer, header, tensors);
  io::write_fq(path, std::move(header), tensors);
}

std::unique_ptr<Linear> load_quantized_linear(const Checkpoint& checkpoint, const std::string& prefix) {
  const std::string& source = checkpoint.source;
  const nlohmann::json& entry = checkpoint.quantization.at(prefix);
  const Tensor& copies = checkpoint.tensor(prefix + ".copies");
  check(copies.dtype() == DType::i32 && copies.rank() == 1, "{}: '{}.copies' must be 1-D i32", source, prefix);
  std::vector<int32_t> counts(copies.data<int32_t>(), copies.data<int32_t>() + copies.numel());
  const float threshold = field<float>(entry, "threshold", source, prefix);
  const int64_t align = field<int64_t>(entry, "align", source, prefix);
  const int weight_bits = field<int>(entry, "weight_bits", source, prefix);
  const Tensor& scales = checkpoint.tensor(prefix + ".weight_scales");
  check(scales.dtype() == DType::f32 && scales.rank() == 1, "{}: '{}.weight_scales' must be 1-D f32", source, prefix);
  const nlohmann::json activation_entry = field<nlohmann::json>(entry, "activation", source, prefix);
  ActivationQuant activation;
  activation.bits = field<int>(activation_entry, "bits", source, prefix);
  activation.dynamic = field<bool>(activation_entry, "dynamic", source, prefix);
  activation.per_token = activation_entry.contains("per_token") && field<bool>(activation_entry, "per_token", source, prefix);
  activation.step = field<float>(activation_entry, "step", source, prefix);
  activation.stagger = field<bool>(activation_entry, "stagger", source, prefix);
  Tensor bias = checkpoint.has(prefix + ".bias") ? checkpoint.tensor(prefix + ".bias") : Tensor();
  const Tensor& codes = checkpoint.tensor(prefix + ".weight_codes");
  try {
    return std::make_unique<QuantizedLinear>(
        FlattenPlan::from_copies(std::move(counts), threshold, align), codes, weight_bits,
        std::vector<float>(scales.data<float>(), scales.data<float>() + scales.numel()), activation, bias);
  } catch (const Error& error) {
    fail("{}: layer '{}': {}", source, prefix, error.what());
  }
}

}  // namespace fq
