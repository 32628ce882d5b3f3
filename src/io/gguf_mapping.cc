#include "io/gguf_mapping.h"

#include <charconv>
#include <cstring>
#include <map>

#include "fq/error.h"

namespace fq::io::gguf {

namespace {

const TensorInfo* find_tensor(const File& file, std::string_view name) {
  for (const TensorInfo& tensor : file.tensors())
    if (tensor.name == name) return &tensor;
  return nullptr;
}

int64_t required_positive_int(const File& file, const std::string& key) {
  std::optional<int64_t> value = file.get_int(key);
  if (!value) fail("{}: GGUF metadata key '{}' is missing", file.path(), key);
  if (*value <= 0) fail("{}: GGUF metadata key '{}' is {} (expected a positive integer)", file.path(), key, *value);
  return *value;
}

double required_float(const File& file, const std::string& key) {
  std::optional<double> value = file.get_float(key);
  if (!value) fail("{}: GGUF metadata key '{}' is missing", file.path(), key);
  return *value;
}

// The per-layer tensors, GGUF suffix -> HF suffix.
const std::map<std::string_view, std::string_view>& layer_names() {
  static const std::map<std::string_view, std::string_view> kNames = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.bias", "self_attn.v_proj.bias"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  return kNames;
}

}  // namespace

Architecture read_architecture(const File& file) {
  std::optional<std::string> name = file.get_string("general.architecture");
  if (!name) fail("{}: GGUF metadata key 'general.architecture' is missing", file.path());
  if (*name == "llama" || *name == "mistral") return {*name, true};
  if (*name == "qwen2") return {*name, false};
  fail("{}: GGUF architecture '{}' is not supported (expected llama, mistral or qwen2)", file.path(), *name);
}

nlohmann::json hf_config(const File& file, const Architecture& architecture) {
  const std::string prefix = architecture.name + ".";
  // Rope scaling changes the rotary frequencies; refusing beats silently wrong outputs.
  if (auto scaling = file.get_string(prefix + "rope.scaling.type"); scaling && *scaling != "none")
    fail("{}: GGUF rope scaling '{}' is not supported", file.path(), *scaling);

  int64_t heads = required_positive_int(file, prefix + "attention.head_count");
  int64_t kv_heads = file.get_int(prefix + "attention.head_count_kv").value_or(heads);
  if (kv_heads <= 0 || heads % kv_heads != 0)
    fail("{}: GGUF {}attention.head_count_kv is {} (expected a positive divisor of {} heads)", file.path(), prefix,
         kv_heads, heads);

  nlohmann::json config = {
      {"model_type", architecture.name},
      {"hidden_act", "silu"},
      {"hidden_size", required_positive_int(file, prefix + "embedding_length")},
      {"intermediate_size", required_positive_int(file, prefix + "feed_forward_length")},
      {"num_hidden_layers", required_positive_int(file, prefix + "block_count")},
      {"num_attention_heads", heads},
      {"num_key_value_heads", kv_heads},
      {"rms_norm_eps", required_float(file, prefix + "attention.layer_norm_rms_epsilon")},
      {"rope_theta", file.get_float(prefix + "rope.freq_base").value_or(10000.0)},
      {"max_position_embeddings", required_positive_int(file, prefix + "context_length")},
      {"tie_word_embeddings", find_tensor(file, "output.weight") == nullptr},
  };
  if (file.get_int(prefix + "attention.key_length"))
    config["head_dim"] = required_positive_int(file, prefix + "attention.key_length");

  if (auto vocab = file.get_int(prefix + "vocab_size")) {
    config["vocab_size"] = required_positive_int(file, prefix + "vocab_size");
  } else if (auto tokens = file.get_strings("tokenizer.ggml.tokens")) {
    config["vocab_size"] = tokens->size();
  } else if (const TensorInfo* embedding = find_tensor(file, "token_embd.weight");
             embedding && embedding->ne.size() == 2) {
    config["vocab_size"] = embedding->ne[1];
  } else {
    fail("{}: GGUF file gives no vocabulary size ({}vocab_size, tokenizer.ggml.tokens or token_embd.weight)",
         file.path(), prefix);
  }
  if (auto bos = file.get_int("tokenizer.ggml.bos_token_id")) config["bos_token_id"] = *bos;
  if (auto eos = file.get_int("tokenizer.ggml.eos_token_id")) config["eos_token_id"] = *eos;
  return config;
}

std::string hf_tensor_name(const File& file, const std::string& gguf_name, int64_t layers) {
  if (gguf_name == "token_embd.weight") return "model.embed_tokens.weight";
  if (gguf_name == "output_norm.weight") return "model.norm.weight";
  if (gguf_name == "output.weight") return "lm_head.weight";
  if (gguf_name == "rope_freqs.weight")
    fail("{}: GGUF tensor 'rope_freqs.weight' (rope frequency scaling) is not supported", file.path());

  constexpr std::string_view kBlock = "blk.";
  if (gguf_name.starts_with(kBlock)) {
    const char* begin = gguf_name.data() + kBlock.size();
    const char* end = gguf_name.data() + gguf_name.size();
    int64_t layer = -1;
    auto [after, error] = std::from_chars(begin, end, layer);
    if (error == std::errc() && after != begin && after < end && *after == '.') {
      auto it = layer_names().find(std::string_view(after + 1, end));
      if (it != layer_names().end()) {
        if (layer < 0 || layer >= layers)
          fail("{}: GGUF tensor '{}' is in layer {}, but the model has {} layers", file.path(), gguf_name, layer,
               layers);
        return fmt::format("model.layers.{}.{}", layer, it->second);
      }
    }
  }
  fail("{}: GGUF tensor '{}' is not part of the LLaMA-family layout fq reads", file.path(), gguf_name);
}

Tensor unpermute_rotary_rows(const Tensor& weight, int64_t heads) {
  const int64_t rows = weight.rank() > 0 ? weight.dim(0) : 0;
  const DType type = weight.dtype();
  check((type == DType::f32 || type == DType::bf16 || type == DType::f16) && heads > 0 && rows % heads == 0 &&
            (rows / heads) % 2 == 0,
        "cannot undo the rotary permutation of a {} tensor of shape {} with {} heads (need a float type and an even "
        "head size)",
        dtype_name(type), shape_str(weight.shape()), heads);
  const int64_t head_dim = rows / heads;
  const int64_t half = head_dim / 2;
  const size_t row_bytes = dtype_bytes(type, weight.numel() / rows);
  Tensor source = weight.contiguous();
  Tensor out = Tensor::empty(type, weight.shape());
  const auto* gguf_rows = static_cast<const uint8_t*>(source.raw());
  auto* hf_rows = static_cast<uint8_t*>(out.raw());
  for (int64_t head = 0; head < heads; ++head)
    for (int64_t j = 0; j < half; ++j)
      for (int64_t pair = 0; pair < 2; ++pair) {
        int64_t gguf_row = head * head_dim + 2 * j + pair;
        int64_t hf_row = head * head_dim + pair * half + j;
        std::memcpy(hf_rows + hf_row * row_bytes, gguf_rows + gguf_row * row_bytes, row_bytes);
      }
  return out;
}

}  // namespace fq::io::gguf
