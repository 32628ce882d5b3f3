// One kv head's cached keys and values copied into the layouts the attention products read
// (multiply_rows in row_block_matmul.h), as f32 or bf16. Both are zero-padded, so the products never
// read past the cache. AVX-512 transposes/interleaves where the build has them, plain loops otherwise.
#pragma once

#include <cstdint>

#include "backends/cpu/row_block_matmul.h"

namespace fq::cpu {

// Keys per transposed panel: the score columns one product block computes.
inline constexpr int64_t kKeyPanel = 64;

// Elements of `count` keys packed by pack_keys, and of `count` values packed by pack_values.
template <typename Element>
int64_t packed_keys_size(int64_t count, int64_t head_dim) {
  const int64_t panels = (count + kKeyPanel - 1) / kKeyPanel,
                depth_units = (head_dim + kUnit<Element> - 1) / kUnit<Element>;
  return panels * depth_units * kKeyPanel * kUnit<Element>;
}
template <typename Element>
int64_t packed_values_size(int64_t count, int64_t head_dim) {
  return (count + kUnit<Element> - 1) / kUnit<Element> * head_dim * kUnit<Element>;
}

// keys: `count` rows of head_dim floats, `row_stride` floats apart. Writes Kᵀ in panels of kKeyPanel
// keys, [panel][depth unit][key in panel][unit]: each depth unit of a panel is one B row of the
// scores product.
template <typename Element>
void pack_keys(const float* keys, int64_t count, int64_t row_stride, int64_t head_dim, Element* panels);

// values: as keys. Writes [key unit][head_dim][unit]: the B rows of the P·V product (for bf16, the
// values of two consecutive keys side by side).
template <typename Element>
void pack_values(const float* values, int64_t count, int64_t row_stride, int64_t head_dim, Element* packed);

}  // namespace fq::cpu
