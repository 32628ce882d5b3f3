// One decoder graph for every supported architecture (OPT, LLaMA, Mistral, Qwen2). The
// architecture files only map a checkpoint onto it. Every Linear sits in a named slot, so the
// quantizer can replace it with a quantized one without the graph knowing.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "fq/checkpoint.h"
#include "fq/embedding.h"
#include "fq/linear.h"
#include "fq/tensor.h"

namespace fq {

enum class NormKind { layer_norm, rms_norm };
enum class Activation { relu, silu, gelu };

struct ModelConfig {
  std::string model_type;          // "opt", "llama", "mistral", "qwen2"
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_positions = 0;
  int64_t embed_dim = 0;           // token embedding width (OPT's word_embed_proj_dim)
  NormKind norm = NormKind::rms_norm;
  float norm_eps = 1e-5f;
  bool pre_norm = true;            // false: OPT-350m style post-LayerNorm blocks
  Activation activation = Activation::silu;
  bool gated_mlp = true;           // SwiGLU: down(act(gate(x)) * up(x))
  bool use_rope = true;            // else learned positions (OPT)
  double rope_theta = 10000.0;
  int64_t position_offset = 0;     // OPT's learned positions start at index 2
  int64_t sliding_window = 0;      // Mistral; 0: full attention. Longer contexts are refused.
  bool tied_embeddings = false;
  int32_t bos_token_id = -1;
  int32_t eos_token_id = -1;

  // Reads HF config.json keys; unknown architectures are refused by name.
  static ModelConfig from_hf(const nlohmann::json& config, const std::string& source);
  nlohmann::json to_json() const;
};

struct Norm {
  Tensor weight;  // [hidden] f32
  Tensor bias;    // [hidden] f32 (LayerNorm only)
};

struct DecoderLayer {
  Norm attn_norm;
  std::unique_ptr<Linear> q, k, v, o;
  Norm mlp_norm;
  std::unique_ptr<Linear> gate;  // null without a gated MLP
  std::unique_ptr<Linear> up;    // OPT: fc1
  std::unique_ptr<Linear> down;  // OPT: fc2
};

// A named place in the graph that holds a Linear, e.g. "layers.3.mlp.down".
struct LinearSlot {
  std::string name;
  std::string checkpoint_name;  // the HF prefix its weight was loaded from, e.g. "model.layers.3.mlp.down_proj"
  std::unique_ptr<Linear>* linear;
};

// Keys and values of every layer for `batch` sequences of up to `capacity` positions.
class KVCache {
 public:
  KVCache(const ModelConfig& config, int64_t batch, int64_t capacity);
  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  void clear() { length_ = 0; }
  // [batch, capacity, kv_heads, head_dim] f32 of one layer.
  Tensor& keys(int64_t layer) { return keys_[layer]; }
  Tensor& values(int64_t layer) { return values_[layer]; }
  void advance(int64_t steps) { length_ += steps; }

 private:
  int64_t batch_, capacity_, length_ = 0;
  std::vector<Tensor> keys_, values_;
};

class Model {
 public:
  // compute: f32 (the reference) or bf16 (Linear layers in bf16 on oneDNN/AMX, the rest f32).
  static Model from_checkpoint(const Checkpoint& checkpoint, DType compute);
  // The same, dropping each checkpoint tensor as soon as the graph holds its own form of it, so that
  // loading never holds the whole model twice.
  static Model from_checkpoint(Checkpoint&& checkpoint, DType compute);

  const ModelConfig& config() const { return config_; }
  DType compute_type() const { return compute_; }
  // The operands of attention's two products: f32 (the default, the reference) or bf16 (faster; the CLI
  // picks it with --dtype bf16). Softmax and accumulation stay f32 either way.
  void set_attention_bf16(bool on) { attention_bf16_ = on; }

  // Runs `batch` sequences of `seq` new tokens each (tokens: batch*seq ids, row-major) after the
  // cache's current length, appending their keys and values to the cache. Returns logits f32
  // [batch, seq, vocab], or [batch, 1, vocab] for the last position only when `last_only`.
  Tensor forward(const int32_t* tokens, int64_t batch, int64_t seq, KVCache& cache, bool last_only = false) const;
  KVCache new_cache(int64_t batch, int64_t capacity) const { return KVCache(config_, batch, capacity); }

  // Every Linear of the graph by name (layers.{i}.attn.{q,k,v,o}, layers.{i}.mlp.{gate,up,down},
  // project_in, project_out, lm_head).
  std::vector<LinearSlot> linears();

  // The graph, explicit.
  TokenEmbedding token_embedding;  // [vocab, embed_dim]: f32, bf16 or int8 rows (embedding.h)
  Tensor position_embedding;       // [positions + offset, hidden] f32, OPT only
  std::unique_ptr<Linear> project_in, project_out;
  std::vector<DecoderLayer> layers;
  Norm final_norm;                 // weight undefined when the architecture has none (OPT post-LN)
  std::unique_ptr<Linear> lm_head;

 private:
  void attention(const DecoderLayer& layer, int64_t index, const Tensor& input, int64_t batch, int64_t seq,
                 KVCache& cache, Tensor& output) const;
  void mlp(const DecoderLayer& layer, const Tensor& input, Tensor& output) const;

  ModelConfig config_;
  DType compute_ = DType::f32;
  bool attention_bf16_ = false;
};

}  // namespace fq
