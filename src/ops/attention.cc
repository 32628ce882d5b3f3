#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/tiled_attention.h"
#include "backends/cpu/vector_math.h"
#include "fq/parallel.h"
#include "fq/profile.h"
#include "ops/ops.h"

namespace fq::ops {

namespace {

// One query and no grouped heads (an MHA decode step): plain loops over the cache, parallel over
// heads. They read each key and value once, as the tiled kernel's packing would, and skip its copy;
// with more query rows per kv head the kernel's shared packed copy and blocked products win. Keys
// are the outer loop so that each thread streams its part of every cache row in order.
void attention_one_query(const float* q, const float* keys, const float* values, float* out, int64_t start,
                         int64_t heads, int64_t head_dim) {
  const int64_t width = heads * head_dim, visible = start + 1;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  parallel_for(heads, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> buffer;
    const int64_t count = end - begin;
    if (static_cast<int64_t>(buffer.size()) < count * (visible + 1)) buffer.resize(count * (visible + 1));
    float* scores = buffer.data();  // [count][visible]
    float* inverse_sums = scores + count * visible;
    for (int64_t s = 0; s < visible; ++s)
      for (int64_t h = begin; h < end; ++h) {
        const float* query = q + h * head_dim;
        const float* key = keys + s * width + h * head_dim;
        float dot = 0.f;
#pragma omp simd reduction(+ : dot)
        for (int64_t d = 0; d < head_dim; ++d) dot += query[d] * key[d];
        scores[(h - begin) * visible + s] = dot;
      }
    for (int64_t h = 0; h < count; ++h) {
      float* row = scores + h * visible;
      const float peak = cpu::max_value(row, visible);
      inverse_sums[h] = static_cast<float>(1.0 / cpu::exp_scaled_sum(row, visible, scale, peak * scale));
    }
    std::fill(out + begin * head_dim, out + end * head_dim, 0.f);
    for (int64_t s = 0; s < visible; ++s)
      for (int64_t h = begin; h < end; ++h) {
        const float weight = scores[(h - begin) * visible + s] * inverse_sums[h - begin];
        const float* value = values + s * width + h * head_dim;
        float* result = out + h * head_dim;
#pragma omp simd
        for (int64_t d = 0; d < head_dim; ++d) result[d] += weight * value[d];
      }
  });
}
}  // namespace

void attention(const float* q, const float* keys, const float* values, float* out, int64_t seq, int64_t start,
               int64_t heads, int64_t kv_heads, int64_t head_dim, AttentionPrecision precision) {
  profile::Scope scope("attention");
  check(seq > 0 && start >= 0 && head_dim > 0 && kv_heads > 0 && heads % kv_heads == 0,
        "attention: {} queries after {} cached, {} heads over {} kv heads of {}", seq, start, heads, kv_heads,
        head_dim);
  if (seq == 1 && heads == kv_heads) {
    attention_one_query(q, keys, values, out, start, heads, head_dim);
    return;
  }
  cpu::tiled_attention(q, keys, values, out, seq, start, heads, kv_heads, head_dim,
                       precision == AttentionPrecision::bf16);
}

}  // namespace fq::ops
