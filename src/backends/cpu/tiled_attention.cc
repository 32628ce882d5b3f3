#include "backends/cpu/tiled_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/attention_packing.h"
#include "backends/cpu/parallel_threshold.h"
#include "backends/cpu/row_block_matmul.h"
#include "backends/cpu/vector_math.h"

namespace fq::cpu {

namespace {
constexpr int64_t kTileFloats = 3072;   // a job's queries (group heads x positions x head_dim): 12 KiB of f32
constexpr int64_t kChunkFloats = 8192;  // keys per P·V pass x head_dim: a 32 KiB slice of f32 V stays in L1

int64_t round_up(int64_t value, int64_t step) { return (value + step - 1) / step * step; }

// Scratch that lives as long as its thread and only grows: no allocation once warm.
template <typename T>
T* scratch(std::vector<T>& buffer, int64_t count) {
  if (static_cast<int64_t>(buffer.size()) < count) buffer.resize(static_cast<size_t>(count));
  return buffer.data();
}

// Where a job's probabilities go: over the f32 scores themselves, or into their own bf16 rows.
float* scores_or_own(float* scores, std::vector<float>&, int64_t) { return scores; }
uint16_t* scores_or_own(float*, std::vector<uint16_t>& own, int64_t count) { return scratch(own, count); }

void convert(const float* in, float* out, int64_t count) {
  if (in != out) std::copy_n(in, count, out);
}
void convert(const float* in, uint16_t* out, int64_t count) { to_bf16(in, out, count); }

struct Shape {
  int64_t seq, start, group, head_dim, width, kv_width, total;
};

// One kv head's keys and values packed (attention_packing.h) by the thread that uses them and kept
// for its next jobs on that head. The private contiguous copy also keeps the products clear of the
// L1/L2 set conflicts that a cache row stride of kv_heads * head_dim floats (a multiple of 4 KiB in
// large models) causes.
template <typename Element>
struct PackedHead {
  int64_t head = -1;
  std::vector<Element> keys, values;
};

template <typename Element>
void pack_head(const Shape& s, const float* keys, const float* values, int64_t g, PackedHead<Element>& packed) {
  pack_keys(keys + g * s.head_dim, s.total, s.kv_width, s.head_dim,
            scratch(packed.keys, packed_keys_size<Element>(s.total, s.head_dim)));
  pack_values(values + g * s.head_dim, s.total, s.kv_width, s.head_dim,
              scratch(packed.values, packed_values_size<Element>(s.total, s.head_dim)));
  packed.head = g;
}

// A job's queries (copied together: rows of q a power of two apart would fight over L1 sets), its
// f32 scores, bf16 probabilities (f32 ones overwrite the scores), and row pointers into them and out.
template <typename Element>
struct TileBuffers {
  std::vector<Element> queries, probabilities;
  std::vector<float> scores, inverse_sums;
  std::vector<const Element*> query_rows, shifted_probabilities;
  std::vector<float*> score_rows, shifted_scores, out_rows;
};

// One job: kv head g with its group's queries at positions first..first+count-1. Row r is
// position first + r / group of head g * group + r % group, so visible lengths grow with r.
template <typename Element>
void attend_tile(const Shape& s, const float* q, const PackedHead<Element>& head, float* out, int64_t first,
                 int64_t count, TileBuffers<Element>& buffers) {
  constexpr int64_t unit = kUnit<Element>;
  const int64_t g = head.head, rows = count * s.group, last_visible = s.start + first + count;
  const int64_t depth_units = (s.head_dim + unit - 1) / unit, query_stride = depth_units * unit;
  // One vector more than the panels, so that score rows never lie a multiple of 4 KiB apart.
  const int64_t stride = round_up(last_visible, kKeyPanel) + 16;
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  Element* queries = scratch(buffers.queries, rows * query_stride);
  float* scores = scratch(buffers.scores, rows * stride);
  Element* probabilities = scores_or_own(scores, buffers.probabilities, rows * stride);
  float* inverse_sums = scratch(buffers.inverse_sums, rows);
  const Element** query_rows = scratch(buffers.query_rows, rows);
  const Element** shifted_probabilities = scratch(buffers.shifted_probabilities, rows);
  float** score_rows = scratch(buffers.score_rows, rows);
  float** shifted_scores = scratch(buffers.shifted_scores, rows);
  float** out_rows = scratch(buffers.out_rows, rows);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t offset = (first + r / s.group) * s.width + (g * s.group + r % s.group) * s.head_dim;
    Element* query = queries + r * query_stride;
    convert(q + offset, query, s.head_dim);
    std::fill(query + s.head_dim, query + query_stride, Element{0});
    query_rows[r] = query;
    out_rows[r] = out + offset;
    score_rows[r] = scores + r * stride;
  }
  auto visible = [&](int64_t r) { return s.start + first + r / s.group + 1; };
  // The first row that sees key `key`; the rows after it see it too.
  auto first_row_seeing = [&](int64_t key) { return s.group * std::max<int64_t>(0, key - s.start - first); };

  const int64_t panel_size = depth_units * kKeyPanel * unit;
  for (int64_t key = 0; key < last_visible; key += kKeyPanel) {
    const int64_t r0 = first_row_seeing(key), columns = std::min(kKeyPanel, round_up(last_visible - key, 16));
    for (int64_t r = r0; r < rows; ++r) shifted_scores[r] = score_rows[r] + key;
    multiply_rows(rows - r0, query_rows + r0, depth_units, head.keys.data() + key / kKeyPanel * panel_size,
                  kKeyPanel * unit, columns, shifted_scores + r0, false);
  }
  const int64_t padded_visible = round_up(last_visible, unit);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = score_rows[r];
    Element* probability = probabilities + r * stride;
    const int64_t seen = visible(r);
    const float peak = max_value(row, seen);
    inverse_sums[r] = static_cast<float>(1.0 / exp_scaled_sum(row, seen, scale, peak * scale, probability));
    std::fill(probability + seen, probability + padded_visible, Element{0});
  }
  const int64_t chunk = std::max<int64_t>(16, kChunkFloats / s.head_dim) / 2 * 2;  // whole bf16 pairs
  for (int64_t key = 0; key < last_visible; key += chunk) {
    const int64_t r0 = first_row_seeing(key), depth_keys = std::min(chunk, last_visible - key);
    for (int64_t r = r0; r < rows; ++r) shifted_probabilities[r] = probabilities + r * stride + key;
    multiply_rows(rows - r0, shifted_probabilities + r0, (depth_keys + unit - 1) / unit,
                  head.values.data() + key / unit * s.head_dim * unit, s.head_dim * unit, s.head_dim, out_rows + r0,
                  key > 0);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < s.head_dim; ++d) out_rows[r][d] *= inverse_sums[r];
}

template <typename Element>
void attend(const float* q, const float* keys, const float* values, float* out, int64_t seq, int64_t start,
            int64_t heads, int64_t kv_heads, int64_t head_dim) {
  const int64_t total = start + seq, group = heads / kv_heads;
  const Shape shape{seq, start, group, head_dim, heads * head_dim, kv_heads * head_dim, total};
  const int64_t positions = std::max<int64_t>(1, kTileFloats / (group * head_dim));
  const int64_t tiles = (seq + positions - 1) / positions;
  // Jobs run head by head, so a thread packs each head it meets once and finds it in L2 after.
  const bool parallel = seq * heads * total * head_dim >= kParallelMultiplyAdds;
  maybe_parallel_for(parallel, kv_heads * tiles, [&](int64_t begin, int64_t end) {
    thread_local TileBuffers<Element> buffers;
    thread_local PackedHead<Element> packed;
    packed.head = -1;  // the cache changed since the last call
    for (int64_t job = begin; job < end; ++job) {
      const int64_t g = job / tiles, order = job % tiles;
      // Pair cheap early tiles with costly late ones so that equal job ranges carry equal work.
      const int64_t tile = order % 2 == 0 ? order / 2 : tiles - 1 - order / 2, first = tile * positions;
      if (packed.head != g) pack_head(shape, keys, values, g, packed);
      attend_tile(shape, q, packed, out, first, std::min(positions, seq - first), buffers);
    }
  });
}
}  // namespace

void tiled_attention(const float* q, const float* keys, const float* values, float* out, int64_t seq, int64_t start,
                     int64_t heads, int64_t kv_heads, int64_t head_dim, bool bf16_operands) {
  if (bf16_operands) {
    attend<uint16_t>(q, keys, values, out, seq, start, heads, kv_heads, head_dim);
  } else {
    attend<float>(q, keys, values, out, seq, start, heads, kv_heads, head_dim);
  }
}

}  // namespace fq::cpu
