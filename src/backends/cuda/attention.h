// Attention of the CUDA backend: the per-layer KV cache (keys and values, __half
// [batch, capacity, kv_heads, head_dim]) and causal grouped-query attention over it.
// All pointers are device pointers; work is queued on the default stream.
#pragma once

#include <cstdint>

#include "backends/cuda/portable.h"

namespace fq::FQ_CUDA_NS {

// Copies k and v rows b·seq+t (row_stride elements apart, each kv_heads·head_dim wide: the k and v of a
// fused qkv output are column slices of one buffer) to cache position start+t of batch element b.
void append_kv(const __half* k, const __half* v, int64_t batch, int64_t seq, int64_t start, int64_t kv_heads,
               int64_t head_dim, int64_t row_stride, __half* keys, __half* values, int64_t capacity);

// Causal grouped-query attention with scale 1/sqrt(head_dim): query row b·seq+t (q_row_stride elements
// apart, head h at column h·head_dim), at position start+t, attends to cache positions 0..start+t of batch
// element b through kv head h / (heads / kv_heads). out: [batch·seq, heads·head_dim], contiguous.
// Softmax and accumulation in f32; head_dim even and at most 128; q_row_stride even.
// Prefill (seq > 4) runs a flash-attention kernel over shared-memory tiles of queries × keys; decode
// (seq <= 4) splits the keys across warps and blocks, and the blocks' partial softmaxes are combined
// in a scratch buffer that the calling thread keeps for its next calls (counted by memory_in_use).
void attention(const __half* q, int64_t q_row_stride, const __half* keys, const __half* values, __half* out,
               int64_t batch, int64_t seq, int64_t start, int64_t capacity, int64_t heads, int64_t kv_heads,
               int64_t head_dim);

}  // namespace fq::FQ_CUDA_NS
