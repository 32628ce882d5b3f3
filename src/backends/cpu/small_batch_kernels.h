// The inner loops of SmallBatchGemm: Rows activation rows against `count` weight rows (output i's
// row starts at weights + i·weight_stride, `bytes` bytes long), one int32 sum per row and output,
// with wraparound (the caller's corrections bring back the exact sum). AVX-512 VNNI (vpdpbusd:
// unsigned x signed bytes) where the build has it, plain loops otherwise; both give the same sums.
//
// int4: a weight byte holds two codes v (low nibble: the even element); (nibble ^ 8) = v + 8 is in
// 0..15, an unsigned byte for vpdpbusd, so the sum is Σ (v + 8)·x and the caller subtracts 8·Σx. The
// activations come split into their even and odd elements (`even`, `odd`).
// int8: the activations come as x + 128 (unsigned); the caller subtracts 128·Σ_k W[n, k].
// Activation rows are `activation_stride` bytes apart, zero padded to a multiple of kBlockBytes.
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define FQ_SMALL_BATCH_VNNI 1
#include <immintrin.h>
#endif

namespace fq::cpu::small_batch {

// Bytes of a weight row per step (one 512-bit register).
constexpr int64_t kBlockBytes = 64;
// Weight rows between the ones a tile reads and the ones it prefetches: streaming from DRAM (an LM
// head, a large MLP) the hardware prefetcher alone leaves int8 rows waiting on memory.
constexpr int64_t kPrefetchRows = 16;

#ifdef FQ_SMALL_BATCH_VNNI

// acc + the dot products of the unsigned bytes of u and the signed bytes of s, in groups of four
// (vpdpbusd). Inline asm with register operands: with the intrinsic GCC folds the activation loads
// into every vpdpbusd, reading each activation block once per output, and the loads become the
// bottleneck.
[[gnu::always_inline]] inline __m512i dpbusd(__m512i acc, __m512i u, __m512i s) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s));
  return acc;
}

// 16 int32 lanes as a GCC/Clang vector, for __builtin_shufflevector.
using Lanes = int32_t __attribute__((vector_size(64)));

// The sums of a and b (Outputs 2) or a, b, c and d (Outputs 4) in lanes 0..Outputs-1. In-lane
// shuffles first (cheap), then two across 128-bit lanes.
template <int Outputs>
[[gnu::always_inline]] inline Lanes sum_lanes(Lanes a, Lanes b, Lanes c, Lanes d) {
  // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] (the unpack of 32-bit elements).
  const Lanes ab = __builtin_shufflevector(a, b, 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29) +
                   __builtin_shufflevector(a, b, 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
  Lanes s;
  if constexpr (Outputs == 4) {
    const Lanes cd = __builtin_shufflevector(c, d, 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29) +
                     __builtin_shufflevector(c, d, 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
    // Per 128-bit lane: [a, b, c, d] (the unpack of 64-bit elements).
    s = __builtin_shufflevector(ab, cd, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
        __builtin_shufflevector(ab, cd, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
  } else {
    // Per 128-bit lane: [a, b, a, b].
    s = ab + __builtin_shufflevector(ab, ab, 2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15);
  }
  // Add the four 128-bit lanes: swap the 256-bit halves, then the 128-bit quarters.
  s += __builtin_shufflevector(s, s, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  return s + __builtin_shufflevector(s, s, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
}

// Runs the tiles of Outputs weight rows over `count` rows: block(acc, rows, i, mask) adds block i
// (kBlockBytes bytes) of the tile's rows to the accumulator acc[r][j] of activation row r and output
// j; whole blocks go unmasked, the last partial one with the mask of its bytes, so no byte past a row
// is read (prefetches stay within the `count` rows too). sums[r·sums_stride + i] gets output i's total; a tile past `count` repeats the last weight
// row and stores only the real outputs.
template <int Rows, int Outputs, typename Block>
[[gnu::always_inline]] inline void for_each_tile(const uint8_t* weights, int64_t weight_stride, int64_t count,
                                                 int64_t bytes, const Block& block, int32_t* sums,
                                                 int64_t sums_stride) {
  static_assert(Outputs == 2 || Outputs == 4);
  for (int64_t first = 0; first < count; first += Outputs) {
    const uint8_t *rows[Outputs], *ahead[Outputs];
#pragma GCC unroll 8
    for (int j = 0; j < Outputs; ++j) {
      rows[j] = weights + std::min<int64_t>(first + j, count - 1) * weight_stride;
      ahead[j] = weights + std::min<int64_t>(first + j + kPrefetchRows, count - 1) * weight_stride;
    }
    __m512i acc[Rows][Outputs];
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
      for (int j = 0; j < Outputs; ++j) acc[r][j] = _mm512_setzero_si512();
    int64_t i = 0;
    for (; i + kBlockBytes <= bytes; i += kBlockBytes) {
#pragma GCC unroll 8
      for (int j = 0; j < Outputs; ++j) _mm_prefetch(reinterpret_cast<const char*>(ahead[j] + i), _MM_HINT_T0);
      block(acc, rows, i, ~__mmask64{0});
    }
    if (i < bytes) block(acc, rows, i, (__mmask64{1} << (bytes - i)) - 1);
    const int outputs = static_cast<int>(std::min<int64_t>(Outputs, count - first));
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const auto lanes = [&](int j) { return reinterpret_cast<Lanes>(acc[r][j]); };
      const Lanes s = sum_lanes<Outputs>(lanes(0), lanes(1), lanes(Outputs - 2), lanes(Outputs - 1));
      _mm512_mask_storeu_epi32(sums + first + r * sums_stride, static_cast<__mmask16>((1u << outputs) - 1),
                               reinterpret_cast<__m512i>(s));
    }
  }
}

// Outputs per tile: the Rows x Outputs accumulators, the tile's weight registers (two per output for
// int4: low and high nibbles) and the activations must fit in the 32 vector registers.
constexpr int tile_outputs(int rows) { return rows <= 4 ? 4 : 2; }

// sums[r·sums_stride + i] = Σ_b (lo(w_i[b]) ^ 8)·even_r[b] + (hi(w_i[b]) ^ 8)·odd_r[b], b < bytes.
template <int Rows>
[[gnu::noinline]] void int4_sums(const uint8_t* weights, int64_t weight_stride, int64_t count, int64_t bytes,
                                 const int8_t* even, const int8_t* odd, int64_t activation_stride, int32_t* sums,
                                 int64_t sums_stride) {
  constexpr int kOutputs = tile_outputs(Rows);
  const __m512i low_nibble = _mm512_set1_epi8(0x0f), low_eight = _mm512_set1_epi8(0x08);
  const __m512i high_nibble = _mm512_set1_epi8(static_cast<char>(0xf0));
  const __m512i high_eight = _mm512_set1_epi8(static_cast<char>(0x80));
  constexpr int kAndXor = 0x6a;  // vpternlogd truth table of (a & b) ^ c
  // Masked-off bytes read as 0, so both their nibbles become 8, and meet zero activation padding.
  const auto block = [&](__m512i(&acc)[Rows][kOutputs], const uint8_t* const* rows, int64_t i, __mmask64 mask)
                         __attribute__((always_inline)) {
    __m512i low[kOutputs], high[kOutputs];
#pragma GCC unroll 8
    for (int j = 0; j < kOutputs; ++j) {
      const __m512i w = _mm512_maskz_loadu_epi8(mask, rows[j] + i);
      low[j] = _mm512_ternarylogic_epi32(w, low_nibble, low_eight, kAndXor);
      // ((w & 0xf0) ^ 0x80) >> 4 in 16-bit lanes: the bits shifted in from the next byte are zero.
      high[j] = _mm512_srli_epi16(_mm512_ternarylogic_epi32(w, high_nibble, high_eight, kAndXor), 4);
    }
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const __m512i x_even = _mm512_loadu_si512(even + r * activation_stride + i);
      const __m512i x_odd = _mm512_loadu_si512(odd + r * activation_stride + i);
#pragma GCC unroll 8
      for (int j = 0; j < kOutputs; ++j) {
        acc[r][j] = dpbusd(acc[r][j], low[j], x_even);
        acc[r][j] = dpbusd(acc[r][j], high[j], x_odd);
      }
    }
  };
  for_each_tile<Rows, kOutputs>(weights, weight_stride, count, bytes, block, sums, sums_stride);
}

// sums[r·sums_stride + i] = Σ_b shifted_r[b]·w_i[b], b < bytes.
template <int Rows>
[[gnu::noinline]] void int8_sums(const int8_t* weights, int64_t weight_stride, int64_t count, int64_t bytes,
                                 const uint8_t* shifted, int64_t activation_stride, int32_t* sums,
                                 int64_t sums_stride) {
  constexpr int kOutputs = tile_outputs(Rows);
  const auto block = [&](__m512i(&acc)[Rows][kOutputs], const uint8_t* const* rows, int64_t i, __mmask64 mask)
                         __attribute__((always_inline)) {
    __m512i w[kOutputs];
#pragma GCC unroll 8
    for (int j = 0; j < kOutputs; ++j) w[j] = _mm512_maskz_loadu_epi8(mask, rows[j] + i);
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const __m512i x = _mm512_loadu_si512(shifted + r * activation_stride + i);
#pragma GCC unroll 8
      for (int j = 0; j < kOutputs; ++j) acc[r][j] = dpbusd(acc[r][j], x, w[j]);
    }
  };
  for_each_tile<Rows, kOutputs>(reinterpret_cast<const uint8_t*>(weights), weight_stride, count, bytes, block, sums,
                                sums_stride);
}

#else

template <int Rows>
void int4_sums(const uint8_t* weights, int64_t weight_stride, int64_t count, int64_t bytes, const int8_t* even,
               const int8_t* odd, int64_t activation_stride, int32_t* sums, int64_t sums_stride) {
  for (int r = 0; r < Rows; ++r)
    for (int64_t i = 0; i < count; ++i) {
      const uint8_t* w = weights + i * weight_stride;
      const int8_t* x_even = even + r * activation_stride;
      const int8_t* x_odd = odd + r * activation_stride;
      uint32_t sum = 0;
      for (int64_t b = 0; b < bytes; ++b)
        sum += static_cast<uint32_t>(((w[b] & 0x0f) ^ 8) * x_even[b] + ((w[b] >> 4) ^ 8) * x_odd[b]);
      sums[r * sums_stride + i] = static_cast<int32_t>(sum);
    }
}

template <int Rows>
void int8_sums(const int8_t* weights, int64_t weight_stride, int64_t count, int64_t bytes, const uint8_t* shifted,
               int64_t activation_stride, int32_t* sums, int64_t sums_stride) {
  for (int r = 0; r < Rows; ++r)
    for (int64_t i = 0; i < count; ++i) {
      const int8_t* w = weights + i * weight_stride;
      const uint8_t* x = shifted + r * activation_stride;
      uint32_t sum = 0;
      for (int64_t b = 0; b < bytes; ++b) sum += static_cast<uint32_t>(x[b] * w[b]);
      sums[r * sums_stride + i] = static_cast<int32_t>(sum);
    }
}

#endif

}  // namespace fq::cpu::small_batch
