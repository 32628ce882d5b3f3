// Vectorized loops for the non-GEMM part of a layer: exp-based ones (softmax, SiLU) within ~2 ulp of
// std::exp, and the row reductions of the norms in double. AVX-512 where the build has it, plain
// loops otherwise.
#pragma once

#include <cmath>
#include <cstdint>

#include "fq/dtype.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace fq::cpu {

#ifdef __AVX512F__
// e^x: x = n·ln2 + r with |r| <= ln2/2, e^r by its degree-6 Taylor polynomial (error < 2e-7), times 2^n.
inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f)), _mm512_set1_ps(-103.972084045410f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}
#endif

// The largest of x[0..count), count >= 1.
inline float max_value(const float* x, int64_t count) {
#ifdef __AVX512F__
  __m512 peaks = _mm512_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) peaks = _mm512_max_ps(peaks, _mm512_loadu_ps(x + i));
  const __mmask16 tail = static_cast<__mmask16>((1u << (count - i)) - 1);
  peaks = _mm512_mask_max_ps(peaks, tail, peaks, _mm512_maskz_loadu_ps(tail, x + i));
  return _mm512_reduce_max_ps(peaks);
#else
  float peak = x[0];
  for (int64_t i = 1; i < count; ++i) peak = peak < x[i] ? x[i] : peak;
  return peak;
#endif
}

#ifdef __AVX512F__
// The 16 floats of v as two vectors of 8 doubles.
inline void widen(__m512 v, __m512d& low, __m512d& high) {
  low = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  high = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
#endif

// Sum of x[0..count) in double.
inline double sum(const float* x, int64_t count) {
  int64_t i = 0;
  double total = 0;
#ifdef __AVX512F__
  __m512d low_sum = _mm512_setzero_pd(), high_sum = _mm512_setzero_pd();
  for (; i + 16 <= count; i += 16) {
    __m512d low, high;
    widen(_mm512_loadu_ps(x + i), low, high);
    low_sum = _mm512_add_pd(low_sum, low);
    high_sum = _mm512_add_pd(high_sum, high);
  }
  total = _mm512_reduce_add_pd(_mm512_add_pd(low_sum, high_sum));
#endif
  for (; i < count; ++i) total += x[i];
  return total;
}

// Sum of (x[i] - center)^2 in double, the difference taken in float.
inline double sum_of_squares(const float* x, int64_t count, float center) {
  int64_t i = 0;
  double total = 0;
#ifdef __AVX512F__
  __m512d low_sum = _mm512_setzero_pd(), high_sum = _mm512_setzero_pd();
  const __m512 center_v = _mm512_set1_ps(center);
  for (; i + 16 <= count; i += 16) {
    __m512d low, high;
    widen(_mm512_sub_ps(_mm512_loadu_ps(x + i), center_v), low, high);
    low_sum = _mm512_fmadd_pd(low, low, low_sum);
    high_sum = _mm512_fmadd_pd(high, high, high_sum);
  }
  total = _mm512_reduce_add_pd(_mm512_add_pd(low_sum, high_sum));
#endif
  for (; i < count; ++i) {
    const double difference = x[i] - center;
    total += difference * difference;
  }
  return total;
}

// out[i] = x[i] rounded to bf16 (nearest even), as uint16_t bits.
inline void to_bf16(const float* x, uint16_t* out, int64_t count) {
#if defined(__AVX512F__) && defined(__AVX512BF16__)
  for (int64_t i = 0; i < count; i += 16) {
    const __mmask16 lanes = count - i >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (count - i)) - 1);
    const __m256bh rounded = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(lanes, x + i));
    _mm256_mask_storeu_epi16(out + i, lanes, reinterpret_cast<const __m256i&>(rounded));
  }
#else
  for (int64_t i = 0; i < count; ++i) out[i] = f32_to_bf16(x[i]);
#endif
}

#ifdef __AVX512F__
inline void store_lanes(float* out, __mmask16 lanes, __m512 v) {
  if (lanes == 0xffff) _mm512_storeu_ps(out, v);  // full stores where possible: masked ones are slower on AMD
  else _mm512_mask_storeu_ps(out, lanes, v);
}
inline void store_lanes(uint16_t* out, __mmask16 lanes, __m512 v) {
#ifdef __AVX512BF16__
  const __m256bh rounded = _mm512_cvtneps_pbh(v);
  if (lanes == 0xffff) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), reinterpret_cast<const __m256i&>(rounded));
  else _mm256_mask_storeu_epi16(out, lanes, reinterpret_cast<const __m256i&>(rounded));
#else
  alignas(64) float values[16];
  _mm512_store_ps(values, v);
  for (int i = 0; i < 16; ++i)
    if (lanes >> i & 1) out[i] = f32_to_bf16(values[i]);
#endif
}
#endif

// out[i] = exp(x[i] * scale - shift), the argument taken with one rounding (fused multiply-subtract),
// stored as f32 (out may be x) or rounded to bf16 bits; returns the sum of the f32 results.
template <typename Out>
double exp_scaled_sum(const float* x, int64_t count, float scale, float shift, Out* out) {
#ifdef __AVX512F__
  __m512 total = _mm512_setzero_ps();
  const __m512 scale_v = _mm512_set1_ps(scale), shift_v = _mm512_set1_ps(shift);
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m512 v = exp512(_mm512_fmsub_ps(_mm512_loadu_ps(x + i), scale_v, shift_v));
    store_lanes(out + i, __mmask16(0xffff), v);
    total = _mm512_add_ps(total, v);
  }
  if (i < count) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (count - i)) - 1);
    const __m512 v = exp512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(tail, x + i), scale_v, shift_v));
    store_lanes(out + i, tail, v);
    total = _mm512_mask_add_ps(total, tail, total, v);
  }
  return _mm512_reduce_add_ps(total);
#else
  double sum = 0;
  for (int64_t i = 0; i < count; ++i) {
    const float v = std::exp(std::fma(x[i], scale, -shift));
    sum += v;
    if constexpr (sizeof(Out) == sizeof(float)) out[i] = v;
    else out[i] = f32_to_bf16(v);
  }
  return sum;
#endif
}

// In place: x[i] = exp(x[i] * scale - shift); returns the sum.
inline double exp_scaled_sum(float* x, int64_t count, float scale, float shift) {
  return exp_scaled_sum(x, count, scale, shift, x);
}

// gate[i] = silu(gate[i]) * up[i], silu(v) = v / (1 + e^-v).
inline void silu_mul(float* gate, const float* up, int64_t count) {
  int64_t i = 0;
#ifdef __AVX512F__
  const __m512 one = _mm512_set1_ps(1.f);
  for (; i + 16 <= count; i += 16) {
    __m512 v = _mm512_loadu_ps(gate + i);
    __m512 silu = _mm512_div_ps(v, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
    _mm512_storeu_ps(gate + i, _mm512_mul_ps(silu, _mm512_loadu_ps(up + i)));
  }
#endif
  for (; i < count; ++i) gate[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
}

}  // namespace fq::cpu
