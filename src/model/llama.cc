// LLaMA family (LLaMA 1-3, SmolLM, Mistral, Qwen2): RMSNorm, rotary positions (half-split, the
// readers convert other conventions), grouped-query attention, SwiGLU; Qwen2 adds q/k/v biases.
#include <map>

#include "model/architectures.h"

namespace fq::model {

std::string llama_checkpoint_prefix(const std::string& role, int64_t layer) {
  static const std::map<std::string, std::string> names = {
      {"attn.q", "self_attn.q_proj"}, {"attn.k", "self_attn.k_proj"}, {"attn.v", "self_attn.v_proj"},
      {"attn.o", "self_attn.o_proj"}, {"mlp.gate", "mlp.gate_proj"}, {"mlp.up", "mlp.up_proj"},
      {"mlp.down", "mlp.down_proj"}};
  if (role == "lm_head") return "lm_head";
  return "model.layers." + std::to_string(layer) + "." + names.at(role);
}

void build_llama(Checkpoint& checkpoint, const ModelConfig& c, DType compute, Model& model) {
  const int64_t hidden = c.hidden_size, q_width = c.num_heads * c.head_dim, kv_width = c.num_kv_heads * c.head_dim;
  const bool qkv_bias = c.model_type == "qwen2";
  model.token_embedding = load_embedding(checkpoint, "model.embed_tokens", {c.vocab_size, hidden}, compute);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    DecoderLayer layer;
    layer.attn_norm.weight = load_tensor(checkpoint, prefix + "input_layernorm.weight", {hidden});
    layer.q = load_linear(checkpoint, prefix + "self_attn.q_proj", q_width, hidden, compute, qkv_bias);
    layer.k = load_linear(checkpoint, prefix + "self_attn.k_proj", kv_width, hidden, compute, qkv_bias);
    layer.v = load_linear(checkpoint, prefix + "self_attn.v_proj", kv_width, hidden, compute, qkv_bias);
    layer.o = load_linear(checkpoint, prefix + "self_attn.o_proj", hidden, q_width, compute);
    layer.mlp_norm.weight = load_tensor(checkpoint, prefix + "post_attention_layernorm.weight", {hidden});
    layer.gate = load_linear(checkpoint, prefix + "mlp.gate_proj", c.intermediate_size, hidden, compute);
    layer.up = load_linear(checkpoint, prefix + "mlp.up_proj", c.intermediate_size, hidden, compute);
    layer.down = load_linear(checkpoint, prefix + "mlp.down_proj", hidden, c.intermediate_size, compute);
    model.layers.push_back(std::move(layer));
  }
  model.final_norm.weight = load_tensor(checkpoint, "model.norm.weight", {hidden});
  model.lm_head = load_head(checkpoint, c, model.token_embedding, compute);
}

void export_llama_tensors(const Model& model, std::map<std::string, Tensor>& tensors) {
  export_embedding(model.token_embedding, "model.embed_tokens", tensors);
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    tensors[prefix + "input_layernorm.weight"] = model.layers[i].attn_norm.weight;
    tensors[prefix + "post_attention_layernorm.weight"] = model.layers[i].mlp_norm.weight;
  }
  tensors["model.norm.weight"] = model.final_norm.weight;
}

}  // namespace fq::model
