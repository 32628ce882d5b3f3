// The shapes of well-known checkpoints (their HF config.json values), for random-weight benchmarks.
#include "fq/error.h"
#include "fq/gpu.h"

namespace fq {

ModelConfig preset_config(std::string_view name) {
  nlohmann::json config;
  if (name == "opt-6.7b" || name == "opt-13b") {
    const bool big = name == "opt-13b";
    config = {{"model_type", "opt"},           {"hidden_size", big ? 5120 : 4096},
              {"num_hidden_layers", big ? 40 : 32}, {"num_attention_heads", big ? 40 : 32},
              {"ffn_dim", big ? 20480 : 16384}, {"vocab_size", 50272},
              {"max_position_embeddings", 2048}, {"do_layer_norm_before", true},
              {"activation_function", "relu"}, {"word_embed_proj_dim", big ? 5120 : 4096}};
  } else if (name == "llama-2-7b") {
    config = {{"model_type", "llama"},          {"hidden_size", 4096},
              {"num_hidden_layers", 32},        {"num_attention_heads", 32},
              {"num_key_value_heads", 32},      {"intermediate_size", 11008},
              {"vocab_size", 32000},            {"max_position_embeddings", 4096},
              {"rms_norm_eps", 1e-5},           {"hidden_act", "silu"},
              {"tie_word_embeddings", false}};
  } else {
    fail("--arch: unknown model shape '{}' (expected opt-6.7b, opt-13b or llama-2-7b)", name);
  }
  return ModelConfig::from_hf(config, std::string(name));
}

}  // namespace fq
