// OPT (facebook/opt-*): learned positions offset by 2, LayerNorm, ReLU MLP, biases everywhere;
// pre-LN (opt-125m, 1.3b+) or post-LN with project_in/project_out (opt-350m).
#include <map>

#include "model/architectures.h"

namespace fq::model {

std::string opt_checkpoint_prefix(const std::string& role, int64_t layer) {
  static const std::map<std::string, std::string> names = {
      {"attn.q", "self_attn.q_proj"}, {"attn.k", "self_attn.k_proj"}, {"attn.v", "self_attn.v_proj"},
      {"attn.o", "self_attn.out_proj"}, {"mlp.up", "fc1"}, {"mlp.down", "fc2"}};
  if (role == "lm_head") return "lm_head";
  if (role == "project_in" || role == "project_out") return "model.decoder." + role;
  return "model.decoder.layers." + std::to_string(layer) + "." + names.at(role);
}

void build_opt(Checkpoint& checkpoint, const ModelConfig& c, DType compute, Model& model) {
  const std::string root = "model.decoder.";
  const int64_t hidden = c.hidden_size;
  model.token_embedding = load_embedding(checkpoint, root + "embed_tokens", {c.vocab_size, c.embed_dim}, compute);
  model.position_embedding =
      load_tensor(checkpoint, root + "embed_positions.weight", {c.max_positions + c.position_offset, hidden});
  if (c.embed_dim != hidden) {
    model.project_in = load_linear(checkpoint, root + "project_in", hidden, c.embed_dim, compute);
    model.project_out = load_linear(checkpoint, root + "project_out", c.embed_dim, hidden, compute);
  }
  auto layer_norm = [&](const std::string& prefix) {
    return Norm{load_tensor(checkpoint, prefix + ".weight", {hidden}), load_tensor(checkpoint, prefix + ".bias", {hidden})};
  };
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string prefix = root + "layers." + std::to_string(i) + ".";
    DecoderLayer layer;
    layer.attn_norm = layer_norm(prefix + "self_attn_layer_norm");
    layer.q = load_linear(checkpoint, prefix + "self_attn.q_proj", hidden, hidden, compute);
    layer.k = load_linear(checkpoint, prefix + "self_attn.k_proj", hidden, hidden, compute);
    layer.v = load_linear(checkpoint, prefix + "self_attn.v_proj", hidden, hidden, compute);
    layer.o = load_linear(checkpoint, prefix + "self_attn.out_proj", hidden, hidden, compute);
    layer.mlp_norm = layer_norm(prefix + "final_layer_norm");
    layer.up = load_linear(checkpoint, prefix + "fc1", c.intermediate_size, hidden, compute);
    layer.down = load_linear(checkpoint, prefix + "fc2", hidden, c.intermediate_size, compute);
    model.layers.push_back(std::move(layer));
  }
  // Post-LN OPT has no final LayerNorm (transformers drops it when do_layer_norm_before is false).
  if (checkpoint.has(root + "final_layer_norm.weight")) model.final_norm = layer_norm(root + "final_layer_norm");
  model.lm_head = load_head(checkpoint, c, model.token_embedding, compute);
}

void export_opt_tensors(const Model& model, std::map<std::string, Tensor>& tensors) {
  const std::string root = "model.decoder.";
  auto put_norm = [&](const std::string& prefix, const Norm& norm) {
    tensors[prefix + ".weight"] = norm.weight;
    tensors[prefix + ".bias"] = norm.bias;
  };
  export_embedding(model.token_embedding, root + "embed_tokens", tensors);
  tensors[root + "embed_positions.weight"] = model.position_embedding;
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const std::string prefix = root + "layers." + std::to_string(i) + ".";
    put_norm(prefix + "self_attn_layer_norm", model.layers[i].attn_norm);
    put_norm(prefix + "final_layer_norm", model.layers[i].mlp_norm);
  }
  if (model.final_norm.weight.defined()) put_norm(root + "final_layer_norm", model.final_norm);
}

}  // namespace fq::model
