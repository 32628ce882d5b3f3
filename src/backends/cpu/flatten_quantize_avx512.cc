#include "backends/cpu/flatten_quantize_avx512.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "fq/error.h"

#ifdef FQ_FLATTEN_QUANTIZE_AVX512
#include <immintrin.h>
// GCC 12 reports the deliberately undefined pass-through lanes inside its own AVX-512 intrinsics (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace fq::cpu {

FlattenProgram::FlattenProgram(const FlattenPlan& plan)
    : in_features(plan.in_features), flat_features(plan.flat_features()) {
  check(in_features >= 0 && static_cast<int64_t>(plan.copies.size()) == in_features,
        "flatten program: plan has {} copy counts for {} input features", plan.copies.size(), in_features);
  struct Column {
    bool flattened;
    int64_t position;  // in the channel scratch, or in the copy scratch when flattened
  };
  std::vector<Column> columns;
  single_copy.assign(static_cast<size_t>((in_features + 15) / 16), 0);
  for (int64_t j = 0; j < in_features; ++j) {
    const int32_t copies = plan.copies[j];
    check(copies >= 1, "flatten program: channel {} has {} copies, expected at least 1", j, copies);
    check(static_cast<int64_t>(columns.size()) + copies <= flat_features,
          "flatten program: the copies of {} channels do not fit {} flattened columns", j + 1, flat_features);
    if (copies == 1) {
      single_copy[j / 16] |= static_cast<uint16_t>(1u << (j % 16));
      columns.push_back({false, j});
      continue;
    }
    for (int32_t i = 0; i < copies; ++i) {
      columns.push_back({true, total_flattened_copies + i});
      copy_channel.push_back(static_cast<int32_t>(flattened_source.size()));
      copy_index.push_back(i);
    }
    flattened_source.push_back(static_cast<int32_t>(j));
    flattened_copies.push_back(copies);
    total_flattened_copies += copies;
  }
  while (copy_channel.size() % 16 != 0) {
    copy_channel.push_back(copy_channel.back());
    copy_index.push_back(copy_index.back());
  }
  const auto used = static_cast<int64_t>(columns.size());
  for (int64_t start = 0; start < flat_features; start += 64) {
    const int64_t end = std::min(start + 64, flat_features);
    Block block;
    // Each window starts at the first position the block uses: positions rise by at most one per column, so the
    // block's positions of either kind lie within 64 of it.
    bool channel_seen = false, copy_seen = false;
    for (int64_t c = start; c < std::min(end, used); ++c) {
      bool& seen = columns[c].flattened ? copy_seen : channel_seen;
      if (!seen) (columns[c].flattened ? block.copy_base : block.channel_base) = columns[c].position;
      seen = true;
    }
    for (int64_t c = start; c < end; ++c) {
      const uint64_t bit = uint64_t{1} << (c - start);
      block.store |= bit;
      if (c >= used) continue;
      block.keep |= bit;
      block.index[c - start] = static_cast<uint8_t>(columns[c].flattened ? 64 + columns[c].position - block.copy_base
                                                                          : columns[c].position - block.channel_base);
    }
    blocks.push_back(block);
  }
}

#ifdef FQ_FLATTEN_QUANTIZE_AVX512

namespace {

// Per-thread scratch for one row, each part with a tail so that every window load and whole-vector store stays
// inside: channel codes (pass 1), per flattened channel its low code and first high copy, copy codes (pass 2).
struct RowScratch {
  std::vector<int8_t> channel_codes;
  std::vector<int32_t> low_code;
  std::vector<int32_t> first_high;
  std::vector<int8_t> copy_codes;
};

RowScratch& scratch_for(const FlattenProgram& program) {
  thread_local RowScratch scratch;
  const auto grow = [](auto& buffer, int64_t size) {
    if (buffer.size() < static_cast<size_t>(size)) buffer.resize(static_cast<size_t>(size));
  };
  grow(scratch.channel_codes, program.in_features + 64);
  grow(scratch.low_code, static_cast<int64_t>(program.flattened_source.size()) + 16);
  grow(scratch.first_high, static_cast<int64_t>(program.flattened_source.size()) + 16);
  grow(scratch.copy_codes, static_cast<int64_t>(program.copy_channel.size()) + 64);
  return scratch;
}

// nearest-even(x * inverse_step) within ±qmax, NaN -> 0: clamped in float first, so vcvtps2dq never overflows.
inline __m512i quantize16(__m512 x, __m512 inverse_step, __m512 qmax) {
  const __m512 scaled = _mm512_mul_ps(x, inverse_step);
  const __mmask16 is_number = _mm512_cmp_ps_mask(scaled, scaled, _CMP_ORD_Q);
  const __m512 clamped = _mm512_min_ps(_mm512_max_ps(scaled, _mm512_sub_ps(_mm512_setzero_ps(), qmax)), qmax);
  return _mm512_maskz_cvtps_epi32(is_number, clamped);
}

// Pass 1: every channel as if it had one copy, 64 at a time. The four vectors of codes (within ±127) are packed
// with signed saturation, which interleaves them by 128-bit lane, and put back in order with one dword permute;
// the last block's loads are masked and its store may run into the scratch's tail.
void quantize_channels(const float* row, int64_t width, float inverse_step, int qmax, int8_t* out) {
  const __m512 inverse = _mm512_set1_ps(inverse_step), limit = _mm512_set1_ps(static_cast<float>(qmax));
  const __m512i in_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const auto load = [&](int64_t j) {
    const int64_t left = width - j;
    const auto lanes = static_cast<__mmask16>(left >= 16 ? 0xFFFF : left <= 0 ? 0 : (1u << left) - 1);
    return quantize16(_mm512_maskz_loadu_ps(lanes, row + j), inverse, limit);
  };
  for (int64_t j = 0; j < width; j += 64) {
    const __m512i low = _mm512_packs_epi32(load(j), load(j + 16));
    const __m512i high = _mm512_packs_epi32(load(j + 32), load(j + 48));
    _mm512_storeu_si512(out + j, _mm512_permutexvar_epi32(in_order, _mm512_packs_epi16(low, high)));
  }
}

// Pass 2a: each channel with n > 1 copies as flatten_quantize_value does it, 8 at a time, as a low code for its
// first copies and the copy from which the code is low + 1. Staggered: F = q n + r (0 <= r < n) gives copy i
// floor((F + i) / n), that is q below copy n - r and q + 1 from there; computed in double, where F (within
// ±n·qmax < 2^39), F / n rounded down and r are all exact. Plain: one code for all n copies.
void quantize_flattened(const FlattenProgram& program, const float* row, float inverse_step, int qmax, bool stagger,
                        int32_t* low_code, int32_t* first_high) {
  const auto count = static_cast<int64_t>(program.flattened_source.size());
  for (int64_t k = 0; k < count; k += 8) {
    const auto lanes = static_cast<__mmask8>(count - k >= 8 ? 0xFF : (1u << (count - k)) - 1);
    const __m256i source = _mm256_maskz_loadu_epi32(lanes, program.flattened_source.data() + k);
    const __m256i copies = _mm256_mask_loadu_epi32(_mm256_set1_epi32(1), lanes, program.flattened_copies.data() + k);
    const __m256 x = _mm256_mmask_i32gather_ps(_mm256_setzero_ps(), lanes, source, row, 4);
    const __m256 scaled = _mm256_mul_ps(x, _mm256_set1_ps(inverse_step));
    __m256i low, high_from;
    if (stagger) {
      const __m512d n = _mm512_cvtepi32_pd(copies), value = _mm512_cvtps_pd(scaled);
      const __m512d limit = _mm512_mul_pd(n, _mm512_set1_pd(qmax));
      const __m512d clamped = _mm512_min_pd(_mm512_max_pd(value, _mm512_sub_pd(_mm512_setzero_pd(), limit)), limit);
      const __m512d total = _mm512_maskz_roundscale_pd(_mm512_cmp_pd_mask(value, value, _CMP_ORD_Q), clamped,
                                                       _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
      const __m512d quotient = _mm512_roundscale_pd(_mm512_div_pd(total, n), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      const __m512d remainder = _mm512_fnmadd_pd(quotient, n, total);
      low = _mm512_cvtpd_epi32(quotient);
      high_from = _mm512_cvtpd_epi32(_mm512_sub_pd(n, remainder));
    } else {
      const __m256 limit = _mm256_set1_ps(static_cast<float>(qmax));
      const __m256 value = _mm256_div_ps(scaled, _mm256_cvtepi32_ps(copies));
      const __m256 clamped = _mm256_min_ps(_mm256_max_ps(value, _mm256_sub_ps(_mm256_setzero_ps(), limit)), limit);
      low = _mm256_maskz_cvtps_epi32(_mm256_cmp_ps_mask(value, value, _CMP_ORD_Q), clamped);
      high_from = copies;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(low_code + k), low);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(first_high + k), high_from);
  }
}

// Pass 2b: the copies, 16 at a time. 16 adjacent copies belong to at most 16 adjacent channels, so one permute
// of each per-channel list brings every copy its channel's values.
void expand_copies(const FlattenProgram& program, const int32_t* low_code, const int32_t* first_high, int8_t* out) {
  for (size_t p = 0; p < program.copy_channel.size(); p += 16) {
    const int32_t first_channel = program.copy_channel[p];
    const __m512i channel = _mm512_sub_epi32(_mm512_loadu_si512(program.copy_channel.data() + p),
                                             _mm512_set1_epi32(first_channel));
    const __m512i low = _mm512_permutexvar_epi32(channel, _mm512_loadu_si512(low_code + first_channel));
    const __m512i high_from = _mm512_permutexvar_epi32(channel, _mm512_loadu_si512(first_high + first_channel));
    const __mmask16 high = _mm512_cmpge_epi32_mask(_mm512_loadu_si512(program.copy_index.data() + p), high_from);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + p),
                     _mm512_cvtepi32_epi8(_mm512_mask_add_epi32(low, high, low, _mm512_set1_epi32(1))));
  }
}

// Pass 3: the output columns, 64 at a time.
void gather_columns(const FlattenProgram& program, const int8_t* channel_codes, const int8_t* copy_codes, int8_t* out) {
  for (const FlattenProgram::Block& block : program.blocks) {
    const __m512i index = _mm512_load_si512(block.index.data());
    const __m512i channels = _mm512_loadu_si512(channel_codes + block.channel_base);
    const __m512i copies = _mm512_loadu_si512(copy_codes + block.copy_base);
    const __m512i columns = _mm512_maskz_permutex2var_epi8(block.keep, channels, index, copies);
    if (~block.store == 0)
      _mm512_storeu_si512(out, columns);
    else
      _mm512_mask_storeu_epi8(out, block.store, columns);
    out += 64;
  }
}

}  // namespace

float flattened_row_max(const FlattenProgram& program, const float* row) {
  const __m512 infinity = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  __m512 largest = _mm512_setzero_ps();
  const int64_t width = program.in_features;
  for (int64_t j = 0; j < width; j += 16) {
    // Only single-copy channels (their |x| / 1 is |x|); the word's bits beyond the row are clear.
    const __mmask16 single = program.single_copy[j / 16];
    const __m512 magnitude = _mm512_abs_ps(_mm512_maskz_loadu_ps(single, row + j));
    const __mmask16 finite = _mm512_mask_cmp_ps_mask(single, magnitude, infinity, _CMP_LT_OQ);
    largest = _mm512_mask_max_ps(largest, finite, largest, magnitude);
  }
  // The flattened channels, 16 at a time: |x| / n in float, as the reference divides.
  const auto count = static_cast<int64_t>(program.flattened_source.size());
  for (int64_t k = 0; k < count; k += 16) {
    const auto lanes = static_cast<__mmask16>(count - k >= 16 ? 0xFFFF : (1u << (count - k)) - 1);
    const __m512i source = _mm512_maskz_loadu_epi32(lanes, program.flattened_source.data() + k);
    const __m512i copies = _mm512_mask_loadu_epi32(_mm512_set1_epi32(1), lanes, program.flattened_copies.data() + k);
    const __m512 x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, source, row, 4);
    const __m512 magnitude = _mm512_div_ps(_mm512_abs_ps(x), _mm512_cvtepi32_ps(copies));
    const __mmask16 finite = _mm512_mask_cmp_ps_mask(lanes, magnitude, infinity, _CMP_LT_OQ);
    largest = _mm512_mask_max_ps(largest, finite, largest, magnitude);
  }
  return _mm512_reduce_max_ps(largest);
}

void flatten_quantize_row(const FlattenProgram& program, const float* row, float inverse_step, int qmax, bool stagger,
                          int8_t* codes) {
  RowScratch& scratch = scratch_for(program);
  // Pass 1 first: it streams the row in order (what the prefetchers follow), so the gathers of pass 2 hit L1.
  quantize_channels(row, program.in_features, inverse_step, qmax, scratch.channel_codes.data());
  quantize_flattened(program, row, inverse_step, qmax, stagger, scratch.low_code.data(), scratch.first_high.data());
  expand_copies(program, scratch.low_code.data(), scratch.first_high.data(), scratch.copy_codes.data());
  gather_columns(program, scratch.channel_codes.data(), scratch.copy_codes.data(), codes);
}

#endif

}  // namespace fq::cpu
