// Causal grouped-query attention on the CPU for everything but a single ungrouped query: prefill,
// chunked prefill after a cache, and decode steps of models with grouped kv heads.
#pragma once

#include <cstdint>

namespace fq::cpu {

// Layouts as ops::attention: q [seq, heads*head_dim] at positions start..start+seq-1, keys/values
// [>= start+seq, kv_heads, head_dim], out [seq, heads*head_dim]. A job takes the query rows of one kv
// head's group at a few consecutive positions: scores against that head's keys (packed once per
// thread and head), a softmax over exactly the visible keys in f32, then P·V.
// With bf16_operands the two products round their operands (q, k, v and the probabilities) to bf16
// and run on AVX512-BF16 with f32 sums: ~1.5x faster, ~3e-3 relative error for unit-scale inputs
// (more with large logits); otherwise everything is f32 (~3e-7).
void tiled_attention(const float* q, const float* keys, const float* values, float* out, int64_t seq, int64_t start,
                     int64_t heads, int64_t kv_heads, int64_t head_dim, bool bf16_operands);

}  // namespace fq::cpu
