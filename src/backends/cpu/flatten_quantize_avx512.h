// The AVX-512 body of FlattenQuantizer (quant/activation_quant.h): flatten + quantize of one activation row.
//
// A row is done in three passes over L1-resident data:
//  1. every input channel is quantized as if it had one copy (16 lanes at a time) into a byte scratch;
//  2. the few channels with n > 1 copies get, 8 at a time (gathered, exact in double), the code of their first
//     copies and the copy from which the code is one higher; then their copies are expanded 16 at a time (a
//     permute within 16 adjacent channels and a compare) into a second byte scratch, copies adjacent;
//  3. each 64-column block of the output is one two-source byte permute (vpermt2b) of a 64-byte window of
//     each scratch, padding columns zeroed by the mask, so the output is written with full 64-byte stores
//     however the flattened channels are spread.
// The rounding is flatten_quantize_value's: the codes equal FlattenQuantizer's reference loops bit for bit.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "fq/quant/flatten.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VBMI__)
#define FQ_FLATTEN_QUANTIZE_AVX512 1
#endif

namespace fq::cpu {

// A flatten plan compiled into the kernel's tables. Built from the copy counts alone (a channel's copies are
// adjacent columns, in channel order, then padding: FlattenPlan::from_copies).
struct FlattenProgram {
  struct Block {  // 64 output columns
    int64_t channel_base = 0;  // window of the channel scratch (pass 1) the block reads
    int64_t copy_base = 0;     // window of the copy scratch (pass 2)
    uint64_t keep = 0;         // columns that are not padding
    uint64_t store = 0;        // columns inside the row (all but a last partial block)
    alignas(64) std::array<uint8_t, 64> index{};  // per column: channel window position, or 64 + copy position
  };

  // Throws when the plan's sizes disagree.
  explicit FlattenProgram(const FlattenPlan& plan);

  int64_t in_features = 0;
  int64_t flat_features = 0;
  std::vector<uint16_t> single_copy;  // bit b of word w: channel 16 w + b has one copy
  // The channels with more than one copy, in channel order: input channel and n.
  std::vector<int32_t> flattened_source;
  std::vector<int32_t> flattened_copies;
  // Their copies, adjacent in the copy scratch (pass 2), padded to a multiple of 16: which flattened channel
  // (index into the lists above) and which copy of it. Padding repeats the last copy.
  std::vector<int32_t> copy_channel;
  std::vector<int32_t> copy_index;
  int64_t total_flattened_copies = 0;
  std::vector<Block> blocks;
};

#ifdef FQ_FLATTEN_QUANTIZE_AVX512
// max over channels of |x_j| / n_j, non-finite values left out (0 for none).
float flattened_row_max(const FlattenProgram& program, const float* row);
// codes [K'] of row [K] at inverse step `inverse_step` (= 1.f / step).
void flatten_quantize_row(const FlattenProgram& program, const float* row, float inverse_step, int qmax, bool stagger,
                          int8_t* codes);
#endif

}  // namespace fq::cpu
