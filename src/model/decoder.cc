// The forward pass of the shared decoder graph.
#include <cstring>

#include "fq/model.h"
#include "fq/parallel.h"
#include "ops/ops.h"

namespace fq {

namespace {
Tensor run_linear(const Linear& linear, const Tensor& x) {
  Tensor y = Tensor::empty(DType::f32, {x.dim(0), linear.out_features()});
  linear.forward(x, y);
  return y;
}
}  // namespace

void Model::attention(const DecoderLayer& layer, int64_t index, const Tensor& input, int64_t batch, int64_t seq,
                      KVCache& cache, Tensor& output) const {
  const ModelConfig& c = config_;
  const int64_t start = cache.length(), kv_width = c.num_kv_heads * c.head_dim;
  const Linear* projections[] = {layer.q.get(), layer.k.get(), layer.v.get()};
  Tensor qkv[3];
  forward_same_input(projections, input, qkv);
  Tensor &q = qkv[0], &k = qkv[1], &v = qkv[2];
  if (c.use_rope) {
    ops::rope(q, seq, c.num_heads, c.head_dim, start, c.rope_theta);
    ops::rope(k, seq, c.num_kv_heads, c.head_dim, start, c.rope_theta);
  }
  Tensor& keys = cache.keys(index);
  Tensor& values = cache.values(index);
  const int64_t capacity = cache.capacity();
  Tensor mixed = Tensor::empty(DType::f32, {batch * seq, c.num_heads * c.head_dim});
  for (int64_t b = 0; b < batch; ++b) {
    float* key_rows = keys.data<float>() + b * capacity * kv_width;
    float* value_rows = values.data<float>() + b * capacity * kv_width;
    std::memcpy(key_rows + start * kv_width, k.data<float>() + b * seq * kv_width, seq * kv_width * sizeof(float));
    std::memcpy(value_rows + start * kv_width, v.data<float>() + b * seq * kv_width, seq * kv_width * sizeof(float));
    const int64_t q_width = c.num_heads * c.head_dim;
    ops::attention(q.data<float>() + b * seq * q_width, key_rows, value_rows, mixed.data<float>() + b * seq * q_width,
                   seq, start, c.num_heads, c.num_kv_heads, c.head_dim,
                   attention_bf16_ ? ops::AttentionPrecision::bf16 : ops::AttentionPrecision::f32);
  }
  layer.o->forward(mixed, output);
}

void Model::mlp(const DecoderLayer& layer, const Tensor& input, Tensor& output) const {
  Tensor hidden;
  if (layer.gate) {
    const Linear* projections[] = {layer.gate.get(), layer.up.get()};
    Tensor gate_up[2];
    forward_same_input(projections, input, gate_up);
    ops::gated_activate(gate_up[0], gate_up[1], config_.activation);
    hidden = gate_up[0];
  } else {
    hidden = run_linear(*layer.up, input);
    ops::activate(hidden, config_.activation);
  }
  layer.down->forward(hidden, output);
}

Tensor Model::forward(const int32_t* tokens, int64_t batch, int64_t seq, KVCache& cache, bool last_only) const {
  const ModelConfig& c = config_;
  const int64_t start = cache.length(), rows = batch * seq;
  check(batch == cache.batch(), "forward: batch {} does not match the KV cache's batch {}", batch, cache.batch());
  check(seq > 0 && start + seq <= cache.capacity(), "forward: {} + {} positions exceed the KV cache capacity {}", start,
        seq, cache.capacity());
  check(start + seq <= c.max_positions || c.use_rope,
        "forward: position {} is beyond the model's {} learned positions", start + seq - 1, c.max_positions);
  check(c.sliding_window == 0 || start + seq <= c.sliding_window,
        "forward: {} positions exceed the {}-token sliding window (only full attention inside the window is "
        "implemented)", start + seq, c.sliding_window);

  Tensor x = Tensor::empty(DType::f32, {rows, c.embed_dim});
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t id = tokens[r];
    check(id >= 0 && id < c.vocab_size, "token id {} is outside the vocabulary [0, {})", id, c.vocab_size);
    token_embedding.lookup(id, x.data<float>() + r * c.embed_dim);
  }
  if (project_in) x = run_linear(*project_in, x);
  if (position_embedding.defined()) {
    float* data = x.data<float>();
    const float* table = position_embedding.data<float>();
    for (int64_t r = 0; r < rows; ++r) {
      const float* position = table + (start + r % seq + c.position_offset) * c.hidden_size;
      for (int64_t i = 0; i < c.hidden_size; ++i) data[r * c.hidden_size + i] += position[i];
    }
  }

  Tensor normed = Tensor::empty(DType::f32, {rows, c.hidden_size});
  Tensor branch = Tensor::empty(DType::f32, {rows, c.hidden_size});
  for (size_t i = 0; i < layers.size(); ++i) {
    const DecoderLayer& layer = layers[i];
    if (c.pre_norm) {
      ops::norm(x, normed, layer.attn_norm, c.norm, c.norm_eps);
      attention(layer, static_cast<int64_t>(i), normed, batch, seq, cache, branch);
      ops::add(x, branch);
      ops::norm(x, normed, layer.mlp_norm, c.norm, c.norm_eps);
      mlp(layer, normed, branch);
      ops::add(x, branch);
    } else {
      attention(layer, static_cast<int64_t>(i), x, batch, seq, cache, branch);
      ops::add(x, branch);
      ops::norm(x, layer.attn_norm, c.norm, c.norm_eps);
      mlp(layer, x, branch);
      ops::add(x, branch);
      ops::norm(x, layer.mlp_norm, c.norm, c.norm_eps);
    }
  }
  cache.advance(seq);

  if (last_only) {
    Tensor last = Tensor::empty(DType::f32, {batch, c.hidden_size});
    for (int64_t b = 0; b < batch; ++b)
      std::memcpy(last.data<float>() + b * c.hidden_size, x.data<float>() + ((b + 1) * seq - 1) * c.hidden_size,
                  c.hidden_size * sizeof(float));
    x = last;
  }
  if (final_norm.weight.defined()) ops::norm(x, final_norm, c.norm, c.norm_eps);
  if (project_out) x = run_linear(*project_out, x);
  Tensor logits = run_linear(*lm_head, x);
  return logits.reshape({batch, last_only ? 1 : seq, c.vocab_size});
}

}  // namespace fq
