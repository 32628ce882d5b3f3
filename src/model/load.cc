#include "model/architectures.h"

#include "fq/quant/serialize.h"

namespace fq::model {

namespace {
// An .fq file's float weights stored in bf16 compute in bf16 whatever `compute` is: the quantizer chose
// that format for them (fq quantize --float-dtype), and widening them would double their memory.
DType float_compute(const Checkpoint& checkpoint, const Tensor& weight, DType compute) {
  return checkpoint.format == "fq" && weight.dtype() == DType::bf16 ? DType::bf16 : compute;
}

// Drops every tensor named `prefix`.* (one layer's weight, bias, codes, scales) from the checkpoint.
void release_prefix(Checkpoint& checkpoint, const std::string& prefix) {
  const std::string start = prefix + ".";
  auto it = checkpoint.tensors.lower_bound(start);
  while (it != checkpoint.tensors.end() && it->first.compare(0, start.size(), start) == 0)
    it = checkpoint.tensors.erase(it);
}
}  // namespace

Tensor load_tensor(Checkpoint& checkpoint, const std::string& name, const Shape& shape) {
  const Tensor& tensor = checkpoint.tensor(name);
  check(tensor.shape() == shape, "{}: tensor '{}' has shape {}, expected {}", checkpoint.source, name,
        shape_str(tensor.shape()), shape_str(shape));
  Tensor out = tensor.to(DType::f32).contiguous();
  checkpoint.tensors.erase(name);
  return out;
}

TokenEmbedding load_embedding(Checkpoint& checkpoint, const std::string& prefix, const Shape& shape, DType compute) {
  const std::string name = prefix + ".weight";
  const Tensor& table = checkpoint.tensor(name);
  check(table.shape() == shape, "{}: tensor '{}' has shape {}, expected {}", checkpoint.source, name,
        shape_str(table.shape()), shape_str(shape));
  const Tensor scales = table.dtype() == DType::i8 ? checkpoint.tensor(prefix + ".weight_scales") : Tensor();
  TokenEmbedding embedding;
  try {
    const bool narrow = table.dtype() == DType::bf16 || compute == DType::bf16;
    embedding = table.dtype() == DType::i8 ? TokenEmbedding(table, scales)
                                           : TokenEmbedding(table.to(narrow ? DType::bf16 : DType::f32));
  } catch (const Error& error) {
    fail("{}: tensor '{}': {}", checkpoint.source, name, error.what());
  }
  release_prefix(checkpoint, prefix);
  return embedding;
}

void export_embedding(const TokenEmbedding& embedding, const std::string& prefix,
                      std::map<std::string, Tensor>& tensors) {
  tensors[prefix + ".weight"] = embedding.table();
  if (embedding.scales().defined()) tensors[prefix + ".weight_scales"] = embedding.scales();
}

std::unique_ptr<Linear> load_linear(Checkpoint& checkpoint, const std::string& prefix, int64_t out, int64_t in,
                                    DType compute, bool require_bias) {
  std::unique_ptr<Linear> linear;
  if (checkpoint.quantization.contains(prefix)) {
    linear = load_quantized_linear(checkpoint, prefix);
    check(linear->out_features() == out && linear->in_features() == in,
          "{}: quantized layer '{}' is [{}, {}], expected [{}, {}]", checkpoint.source, prefix, linear->out_features(),
          linear->in_features(), out, in);
  } else {
    const Tensor& weight = checkpoint.tensor(prefix + ".weight");
    check(weight.shape() == Shape{out, in}, "{}: tensor '{}.weight' has shape {}, expected {}", checkpoint.source,
          prefix, shape_str(weight.shape()), shape_str({out, in}));
    check(weight.dtype() == DType::f32 || weight.dtype() == DType::bf16 || weight.dtype() == DType::f16,
          "{}: tensor '{}.weight' is {}, expected f32, bf16 or f16", checkpoint.source, prefix,
          dtype_name(weight.dtype()));
    Tensor bias;
    if (require_bias || checkpoint.has(prefix + ".bias")) bias = load_tensor(checkpoint, prefix + ".bias", {out});
    linear = std::make_unique<FloatLinear>(weight, bias, float_compute(checkpoint, weight, compute));
  }
  release_prefix(checkpoint, prefix);
  return linear;
}

std::unique_ptr<Linear> load_head(Checkpoint& checkpoint, const ModelConfig& config, const TokenEmbedding& embedding,
                                  DType compute) {
  const bool own_weight = checkpoint.format == "fq" && checkpoint.has("lm_head.weight");
  if (!config.tied_embeddings || own_weight || checkpoint.quantization.contains("lm_head"))
    return load_linear(checkpoint, "lm_head", config.vocab_size, config.embed_dim, compute);
  check(embedding.dtype() != DType::i8,
        "{}: the tied lm_head needs 'lm_head.weight': the embedding is stored as int8 rows", checkpoint.source);
  const Tensor& table = embedding.table();
  return std::make_unique<FloatLinear>(table, Tensor(), float_compute(checkpoint, table, compute));
}

}  // namespace fq::model

namespace fq {

Model Model::from_checkpoint(const Checkpoint& checkpoint, DType compute) {
  // Tensors are shared handles: building from a copy of the table leaves the caller's checkpoint whole.
  Checkpoint parts;
  parts.source = checkpoint.source;
  parts.format = checkpoint.format;
  parts.config = checkpoint.config;
  parts.tensors = checkpoint.tensors;
  parts.quantization = checkpoint.quantization;
  return from_checkpoint(std::move(parts), compute);
}

Model Model::from_checkpoint(Checkpoint&& checkpoint, DType compute) {
  Model model;
  model.config_ = ModelConfig::from_hf(checkpoint.config, checkpoint.source);
  model.compute_ = compute;
  if (model.config_.model_type == "opt")
    model::build_opt(checkpoint, model.config_, compute, model);
  else
    model::build_llama(checkpoint, model.config_, compute, model);
  return model;
}

std::vector<LinearSlot> Model::linears() {
  std::vector<LinearSlot> slots;
  auto checkpoint_prefix = config_.model_type == "opt" ? model::opt_checkpoint_prefix : model::llama_checkpoint_prefix;
  auto add = [&](const std::string& role, int64_t layer, std::unique_ptr<Linear>& linear) {
    if (!linear) return;
    std::string name = layer >= 0 ? "layers." + std::to_string(layer) + "." + role : role;
    slots.push_back({std::move(name), checkpoint_prefix(role, layer), &linear});
  };
  add("project_in", -1, project_in);
  for (size_t i = 0; i < layers.size(); ++i) {
    DecoderLayer& layer = layers[i];
    const auto index = static_cast<int64_t>(i);
    add("attn.q", index, layer.q);
    add("attn.k", index, layer.k);
    add("attn.v", index, layer.v);
    add("attn.o", index, layer.o);
    add("mlp.gate", index, layer.gate);
    add("mlp.up", index, layer.up);
    add("mlp.down", index, layer.down);
  }
  add("project_out", -1, project_out);
  add("lm_head", -1, lm_head);
  return slots;
}

}  // namespace fq
