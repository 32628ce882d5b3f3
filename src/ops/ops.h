// The float ops of the decoder graph on the CPU (f32, parallel over rows). Each has a plain
// reference in ops/reference.h that the tests compare against.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "fq/model.h"
#include "fq/tensor.h"

namespace fq::ops {

// In place over rows of x [rows, hidden]: LayerNorm (weight, bias) or RMSNorm (weight).
void norm(Tensor& x, const Norm& norm, NormKind kind, float eps);
// out = norm(x) without touching x.
void norm(const Tensor& x, Tensor& out, const Norm& norm, NormKind kind, float eps);

// cos and sin of every (position, frequency) angle of RoPE, [positions, head_dim / 2] each, as HF computes them
// (inverse frequencies in double rounded to f32, angles and their cos/sin in f32).
struct RotationTable {
  int64_t positions = 0;
  std::vector<float> cosines, sines;
};
// The table for (head_dim, theta) covering at least `positions`, built once and shared (rope() and the CUDA
// backend's RoPE read it).
std::shared_ptr<const RotationTable> rotation_table(int64_t positions, int64_t head_dim, double theta);

// HF half-split rotary embedding, in place, on x [batch*seq, heads*head_dim]; row b*seq+t has
// position start + t.
void rope(Tensor& x, int64_t seq, int64_t heads, int64_t head_dim, int64_t start, double theta);

// x = act(x) in place; for the gated MLP, gate = act(gate) * up.
void activate(Tensor& x, Activation activation);
void gated_activate(Tensor& gate, const Tensor& up, Activation activation);

// x += y elementwise.
void add(Tensor& x, const Tensor& y);

// Operands of attention's two products (softmax and accumulation stay f32): f32, or bf16 on
// AVX512-BF16 (about 1.5x faster in prefill, ~3e-3 relative error instead of ~1e-6). A single query
// without grouped heads (an MHA decode step) always runs in f32.
enum class AttentionPrecision { f32, bf16 };

// Causal multi-head attention with grouped KV heads for one batch element:
// q [seq, heads*head_dim] of positions start..start+seq-1, keys/values [>= start+seq, kv_heads, head_dim]
// (the cache, already holding these positions); out [seq, heads*head_dim].
void attention(const float* q, const float* keys, const float* values, float* out, int64_t seq, int64_t start,
               int64_t heads, int64_t kv_heads, int64_t head_dim,
               AttentionPrecision precision = AttentionPrecision::f32);

}  // namespace fq::ops
