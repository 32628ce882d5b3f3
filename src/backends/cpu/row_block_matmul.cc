#include "backends/cpu/row_block_matmul.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "fq/dtype.h"

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#endif

namespace fq::cpu {

namespace {
constexpr int kLanes = 16;      // columns per vector (one 32-bit unit each)
constexpr int kMaxVectors = 4;  // a block spans up to 64 columns of C
constexpr int kMaxRows = 6;     // 6 x 4 accumulators leave registers for B and the broadcast

template <typename Element>
using Kernel = void (*)(const Element* const* a, int64_t depth_units, const Element* b, int64_t b_stride,
                        int64_t columns, float* const* c, bool accumulate);

// How one depth unit of A is broadcast and multiplied into the sums; kAvailable where the build has
// the instructions.
template <typename Element>
struct VectorUnit {
  static constexpr bool kAvailable = false;
};
#if defined(__AVX512F__) && defined(__AVX512BW__)
template <>
struct VectorUnit<float> {
  static constexpr bool kAvailable = true;
  static __m512 broadcast(const float* a) { return _mm512_set1_ps(*a); }
  static __m512 multiply_add(__m512 sum, __m512 a, __m512 b) { return _mm512_fmadd_ps(a, b, sum); }
};
#if defined(__AVX512BF16__)
template <>
struct VectorUnit<uint16_t> {
  static constexpr bool kAvailable = true;
  static __m512 broadcast(const uint16_t* a) {
    int32_t pair;
    std::memcpy(&pair, a, sizeof(pair));
    return _mm512_castsi512_ps(_mm512_set1_epi32(pair));
  }
  static __m512 multiply_add(__m512 sum, __m512 a, __m512 b) {
    return _mm512_dpbf16_ps(sum, reinterpret_cast<__m512bh&>(a), reinterpret_cast<__m512bh&>(b));
  }
};
#endif
#endif

inline float to_float(float value) { return value; }
inline float to_float(uint16_t value) { return bf16_to_f32(value); }

// C block [Rows, columns] with columns in (16 * (Vectors - 1), 16 * Vectors].
template <int Rows, int Vectors, typename Element>
void block(const Element* const* a, int64_t depth_units, const Element* b, int64_t b_stride, int64_t columns,
           float* const* c, bool accumulate) {
  constexpr int64_t unit = kUnit<Element>;
#if defined(__AVX512F__) && defined(__AVX512BW__)
  if constexpr (VectorUnit<Element>::kAvailable) {
    using Unit = VectorUnit<Element>;
    // Only the last vector can be partial.
    const __mmask16 last = static_cast<__mmask16>((1u << (columns - kLanes * (Vectors - 1))) - 1);
    auto mask = [&](int v) { return v == Vectors - 1 ? last : __mmask16(0xffff); };
    __m512 sum[Rows][Vectors];
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < Vectors; ++v)
        sum[r][v] = accumulate ? _mm512_maskz_loadu_ps(mask(v), c[r] + kLanes * v) : _mm512_setzero_ps();
    const Element* rows[Rows];
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) rows[r] = a[r];
    for (int64_t k = 0; k < depth_units; ++k, b += b_stride) {
      __m512 column[Vectors];
#pragma GCC unroll 4
      for (int v = 0; v < Vectors; ++v) column[v] = _mm512_maskz_loadu_ps(mask(v), b + kLanes * unit * v);
#pragma GCC unroll 8
      for (int r = 0; r < Rows; ++r) {
        const __m512 x = Unit::broadcast(rows[r] + k * unit);
#pragma GCC unroll 4
        for (int v = 0; v < Vectors; ++v) sum[r][v] = Unit::multiply_add(sum[r][v], x, column[v]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < Vectors; ++v) _mm512_mask_storeu_ps(c[r] + kLanes * v, mask(v), sum[r][v]);
    return;
  }
#endif
  float sum[Rows][kLanes * Vectors] = {};
  for (int64_t k = 0; k < depth_units; ++k, b += b_stride)
    for (int r = 0; r < Rows; ++r)
      for (int64_t u = 0; u < unit; ++u) {
        const float x = to_float(a[r][k * unit + u]);
        for (int64_t j = 0; j < columns; ++j) sum[r][j] += x * to_float(b[j * unit + u]);
      }
  for (int r = 0; r < Rows; ++r)
    for (int64_t j = 0; j < columns; ++j) c[r][j] = accumulate ? c[r][j] + sum[r][j] : sum[r][j];
}

template <typename Element, int Vectors, int... RowsMinusOne>
constexpr std::array<Kernel<Element>, kMaxRows> kernels_with(std::integer_sequence<int, RowsMinusOne...>) {
  return {&block<RowsMinusOne + 1, Vectors, Element>...};
}
// kernels<Element>[vectors - 1][rows - 1]
template <typename Element, int... VectorsMinusOne>
constexpr std::array<std::array<Kernel<Element>, kMaxRows>, kMaxVectors> all_kernels(
    std::integer_sequence<int, VectorsMinusOne...>) {
  return {kernels_with<Element, VectorsMinusOne + 1>(std::make_integer_sequence<int, kMaxRows>())...};
}
template <typename Element>
constexpr auto kernels = all_kernels<Element>(std::make_integer_sequence<int, kMaxVectors>());
}  // namespace

template <typename Element>
void multiply_rows(int64_t rows, const Element* const* a, int64_t depth_units, const Element* b, int64_t b_stride,
                   int64_t columns, float* const* c, bool accumulate) {
  float* shifted_c[kMaxRows];
  for (int64_t first_row = 0; first_row < rows; first_row += kMaxRows) {
    const int64_t block_rows = std::min<int64_t>(kMaxRows, rows - first_row);
    for (int64_t first_column = 0; first_column < columns; first_column += kLanes * kMaxVectors) {
      const int64_t block_columns = std::min<int64_t>(kLanes * kMaxVectors, columns - first_column);
      for (int64_t r = 0; r < block_rows; ++r) shifted_c[r] = c[first_row + r] + first_column;
      const int64_t vectors = (block_columns + kLanes - 1) / kLanes;
      kernels<Element>[vectors - 1][block_rows - 1](a + first_row, depth_units, b + first_column * kUnit<Element>,
                                                    b_stride, block_columns, shifted_c, accumulate);
    }
  }
}

template void multiply_rows<float>(int64_t, const float* const*, int64_t, const float*, int64_t, int64_t, float* const*,
                                   bool);
template void multiply_rows<uint16_t>(int64_t, const uint16_t* const*, int64_t, const uint16_t*, int64_t, int64_t,
                                      float* const*, bool);

}  // namespace fq::cpu
