// The token embedding table in one of three storage formats: f32, bf16, or int8 rows with one f32
// scale per row (symmetric: scale = max |row| / 127, code = round(value / scale)). Looking a token
// up converts its row to f32; the table itself never is.
#pragma once

#include <cstdint>

#include "fq/tensor.h"

namespace fq {

class TokenEmbedding {
 public:
  TokenEmbedding() = default;
  // A float table [vocab, width]: f32 or bf16, kept as it is (no copy when contiguous).
  explicit TokenEmbedding(Tensor table);
  // Quantized rows: codes i8 [vocab, width] within ±127 and scales f32 [vocab], finite and >= 0.
  // Everything is checked; a bad argument throws fq::Error.
  TokenEmbedding(Tensor codes, Tensor scales);

  // The table stored as `format`: f32, bf16 or i8 (quantized rows). Returns this table when it
  // already has that format; quantized rows convert back to float as their codes times their scale.
  TokenEmbedding converted(DType format) const;

  bool defined() const { return table_.defined(); }
  DType dtype() const { return table_.dtype(); }  // f32, bf16 or i8
  int64_t vocab_size() const { return table_.dim(0); }
  int64_t width() const { return table_.dim(1); }
  // [vocab, width]: the float values, or the int8 codes.
  const Tensor& table() const { return table_; }
  // f32 [vocab] for i8 tables; undefined otherwise.
  const Tensor& scales() const { return scales_; }
  // Bytes held by the table and its scales.
  size_t nbytes() const;

  // Row `id` as f32 into out[0, width). `id` must be in [0, vocab).
  void lookup(int64_t id, float* out) const;

 private:
  Tensor table_;
  Tensor scales_;
};

}  // namespace fq
