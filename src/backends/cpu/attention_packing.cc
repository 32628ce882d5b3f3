#include "backends/cpu/attention_packing.h"

#include <algorithm>
#include <type_traits>

#include "fq/dtype.h"

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#endif

namespace fq::cpu {

namespace {
constexpr int kLanes = 16;

#if defined(__AVX512F__) && defined(__AVX512BW__)
// Where the build can also round to bf16 in vectors.
template <typename Element>
constexpr bool kVectorPacking = std::is_same_v<Element, float>;
#if defined(__AVX512BF16__)
template <>
constexpr bool kVectorPacking<uint16_t> = true;
#endif

__mmask16 first_lanes(int64_t count) {
  return count >= kLanes ? __mmask16(0xffff) : static_cast<__mmask16>((1u << std::max<int64_t>(count, 0)) - 1);
}

// 16 depth units starting at unit `first_unit` of one cache row (zero past head_dim), as 32-bit lanes.
template <typename Element>
__m512 load_units(const float* row, int64_t first_unit, int64_t head_dim) {
  if constexpr (std::is_same_v<Element, float>) {
    return _mm512_maskz_loadu_ps(first_lanes(head_dim - first_unit), row + first_unit);
  } else {
    const int64_t first = 2 * first_unit;
    const __m512 low = _mm512_maskz_loadu_ps(first_lanes(head_dim - first), row + first);
    const __m512 high = _mm512_maskz_loadu_ps(first_lanes(head_dim - first - kLanes), row + first + kLanes);
    const __m512bh pairs = _mm512_cvtne2ps_pbh(high, low);
    return reinterpret_cast<const __m512&>(pairs);
  }
}

// r[k] becomes column k of the 16 x 16 matrix of 32-bit lanes whose rows r holds.
void transpose(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
  }
  for (int half = 0; half < 16; half += 8)
    for (int i = 0; i < 4; ++i) {
      t[half + i] = _mm512_shuffle_f32x4(r[half + i], r[half + i + 4], 0x88);
      t[half + i + 4] = _mm512_shuffle_f32x4(r[half + i], r[half + i + 4], 0xdd);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}
#endif

inline void convert(float value, float& out) { out = value; }
inline void convert(float value, uint16_t& out) { out = f32_to_bf16(value); }
}  // namespace

template <typename Element>
void pack_keys(const float* keys, int64_t count, int64_t row_stride, int64_t head_dim, Element* panels) {
  constexpr int64_t unit = kUnit<Element>;
  const int64_t depth_units = (head_dim + unit - 1) / unit, panel_size = depth_units * kKeyPanel * unit;
  const int64_t panel_count = (count + kKeyPanel - 1) / kKeyPanel;
#if defined(__AVX512F__) && defined(__AVX512BW__)
  if constexpr (kVectorPacking<Element>) {
    // 16 keys x 16 depth units at a time, each unit a 32-bit lane (an f32 or a bf16 pair).
    for (int64_t first_key = 0; first_key < panel_count * kKeyPanel; first_key += kLanes) {
      Element* panel = panels + first_key / kKeyPanel * panel_size + first_key % kKeyPanel * unit;
      for (int64_t first_unit = 0; first_unit < depth_units; first_unit += kLanes) {
        __m512 block[16];
        for (int i = 0; i < kLanes; ++i)
          block[i] = first_key + i < count
                         ? load_units<Element>(keys + (first_key + i) * row_stride, first_unit, head_dim)
                         : _mm512_setzero_ps();
        transpose(block);
        for (int64_t u = 0; u < std::min<int64_t>(kLanes, depth_units - first_unit); ++u)
          _mm512_storeu_ps(panel + (first_unit + u) * kKeyPanel * unit, block[u]);
      }
    }
    return;
  }
#endif
  std::fill(panels, panels + panel_count * panel_size, Element{0});
  for (int64_t key = 0; key < count; ++key) {
    Element* column = panels + key / kKeyPanel * panel_size + key % kKeyPanel * unit;
    for (int64_t d = 0; d < head_dim; ++d)
      convert(keys[key * row_stride + d], column[d / unit * kKeyPanel * unit + d % unit]);
  }
}

template <typename Element>
void pack_values(const float* values, int64_t count, int64_t row_stride, int64_t head_dim, Element* packed) {
  constexpr int64_t unit = kUnit<Element>;
  const int64_t key_units = (count + unit - 1) / unit;
  if constexpr (std::is_same_v<Element, float>) {
    for (int64_t key = 0; key < count; ++key) std::copy_n(values + key * row_stride, head_dim, packed + key * head_dim);
  } else {
#if defined(__AVX512F__) && defined(__AVX512BW__)
    if constexpr (kVectorPacking<Element>) {
      // Interleave the bf16 values of keys 2u and 2u + 1: lanes 0..15 of one, 16..31 of the other.
      const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                                  22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
      for (int64_t pair = 0; pair < key_units; ++pair) {
        const float* even = values + 2 * pair * row_stride;
        const bool has_odd = 2 * pair + 1 < count;
        for (int64_t first = 0; first < head_dim; first += kLanes) {
          const __mmask16 lanes = first_lanes(head_dim - first);
          const __m512 low = _mm512_maskz_loadu_ps(lanes, even + first);
          const __m512 high = has_odd ? _mm512_maskz_loadu_ps(lanes, even + row_stride + first) : _mm512_setzero_ps();
          const __m512bh both = _mm512_cvtne2ps_pbh(high, low);
          const __m512i pairs = _mm512_permutexvar_epi16(interleave, reinterpret_cast<const __m512i&>(both));
          _mm512_mask_storeu_epi32(packed + (pair * head_dim + first) * unit, lanes, pairs);
        }
      }
      return;
    }
#endif
    std::fill(packed, packed + key_units * head_dim * unit, Element{0});
    for (int64_t key = 0; key < count; ++key)
      for (int64_t d = 0; d < head_dim; ++d)
        convert(values[key * row_stride + d], packed[(key / unit * head_dim + d) * unit + key % unit]);
  }
}

template void pack_keys<float>(const float*, int64_t, int64_t, int64_t, float*);
template void pack_keys<uint16_t>(const float*, int64_t, int64_t, int64_t, uint16_t*);
template void pack_values<float>(const float*, int64_t, int64_t, int64_t, float*);
template void pack_values<uint16_t>(const float*, int64_t, int64_t, int64_t, uint16_t*);

}  // namespace fq::cpu
