// Conversion of GGUF tensor data (ggml's float and block-quantized formats) to f32, with the
// arithmetic of ggml's dequantize_row_* in ggml-quants.c, so values match llama.cpp and the
// python gguf package bit for bit.
#pragma once

#include <cstdint>
#include <vector>

#include "fq/dtype.h"

namespace fq::io::gguf {

// F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K and Q6_K.
bool can_dequantize(uint32_t type);

// One tensor's conversion: `rows` rows of `row_length` elements, stored back to back at `src`,
// into `dst` as `dst_type` values (f32, or bf16 rounded from the f32 values). `type` must pass
// can_dequantize and `row_length` be a multiple of its block size (File::open checks both the
// block size and that the bytes are in the file).
struct DequantizeJob {
  uint32_t type;
  const uint8_t* src;
  int64_t rows;
  int64_t row_length;
  void* dst;
  DType dst_type = DType::f32;
};

// Runs every job in one parallel pass over all their rows: a pass per tensor would pay the
// threads' hand-off hundreds of times, which dominates on a busy machine.
void dequantize(const std::vector<DequantizeJob>& jobs);

}  // namespace fq::io::gguf
