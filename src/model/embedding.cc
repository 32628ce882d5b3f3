#include "fq/embedding.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "fq/parallel.h"

namespace fq {

namespace {
constexpr int kCodeMax = 127;

void check_table_shape(const Tensor& table) {
  check(table.rank() == 2, "token embedding: table has shape {}, expected [vocab, width]", shape_str(table.shape()));
}

// Symmetric absmax quantization of one row; an all-zero row gets scale 0 and zero codes. A row holding
// a value that is not finite gets a NaN scale (and zero codes) for the caller to refuse.
float quantize_row(const float* values, int64_t width, int8_t* codes) {
  float largest = 0;
  bool finite = true;
  for (int64_t i = 0; i < width; ++i) {
    finite = finite && std::isfinite(values[i]);
    largest = std::max(largest, std::abs(values[i]));
  }
  const float scale = finite ? largest / kCodeMax : std::nanf("");
  for (int64_t i = 0; i < width; ++i)
    codes[i] = scale > 0 ? static_cast<int8_t>(std::clamp(std::lround(values[i] / scale), -long{kCodeMax},
                                                          long{kCodeMax}))
                         : int8_t{0};
  return scale;
}
}  // namespace

TokenEmbedding::TokenEmbedding(Tensor table) : table_(table.contiguous()) {
  check_table_shape(table_);
  check(table_.dtype() == DType::f32 || table_.dtype() == DType::bf16,
        "token embedding: a float table must be f32 or bf16, got {}", dtype_name(table_.dtype()));
}

TokenEmbedding::TokenEmbedding(Tensor codes, Tensor scales) : table_(codes.contiguous()), scales_(scales.contiguous()) {
  check_table_shape(table_);
  check(table_.dtype() == DType::i8, "token embedding: quantized rows must be i8 codes, got {}",
        dtype_name(table_.dtype()));
  check(scales_.dtype() == DType::f32 && scales_.rank() == 1 && scales_.dim(0) == table_.dim(0),
        "token embedding: row scales are {} {}, expected f32 [{}]", dtype_name(scales_.dtype()),
        shape_str(scales_.shape()), table_.dim(0));
  const float* scale = scales_.data<float>();
  for (int64_t row = 0; row < scales_.numel(); ++row)
    check(std::isfinite(scale[row]) && scale[row] >= 0,
          "token embedding: row {} has scale {}, expected finite and >= 0", row, scale[row]);
  const int8_t* code = table_.data<int8_t>();
  for (int64_t i = 0; i < table_.numel(); ++i)
    check(code[i] >= -kCodeMax, "token embedding: code {} at element {} is outside ±{}", code[i], i, kCodeMax);
}

size_t TokenEmbedding::nbytes() const {
  return (table_.defined() ? table_.nbytes() : 0) + (scales_.defined() ? scales_.nbytes() : 0);
}

void TokenEmbedding::lookup(int64_t id, float* out) const {
  const int64_t columns = width();
  switch (dtype()) {
    case DType::f32:
      std::memcpy(out, table_.data<float>() + id * columns, static_cast<size_t>(columns) * sizeof(float));
      return;
    case DType::bf16:
      convert_bf16_to_f32(table_.data<uint16_t>() + id * columns, out, columns);
      return;
    case DType::i8: {
      const int8_t* codes = table_.data<int8_t>() + id * columns;
      const float scale = scales_.data<float>()[id];
      for (int64_t i = 0; i < columns; ++i) out[i] = static_cast<float>(codes[i]) * scale;
      return;
    }
    default:
      fail("token embedding: no lookup for {} tables", dtype_name(dtype()));
  }
}

TokenEmbedding TokenEmbedding::converted(DType format) const {
  check(format == DType::f32 || format == DType::bf16 || format == DType::i8,
        "token embedding: cannot store the table as {} (expected f32, bf16 or i8)", dtype_name(format));
  if (format == dtype()) return *this;
  if (dtype() != DType::i8 && format != DType::i8) return TokenEmbedding(table_.to(format));
  const int64_t rows = vocab_size(), columns = width();
  if (format != DType::i8) {
    Tensor values = Tensor::empty(DType::f32, {rows, columns});
    parallel_for(rows, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) lookup(row, values.data<float>() + row * columns);
    });
    return TokenEmbedding(values.to(format));
  }
  Tensor codes = Tensor::empty(DType::i8, {rows, columns});
  Tensor scales = Tensor::empty(DType::f32, {rows});
  parallel_for(rows, [&](int64_t begin, int64_t end) {
    std::vector<float> row_values(static_cast<size_t>(columns));  // one row at a time: no f32 copy of a bf16 table
    for (int64_t row = begin; row < end; ++row) {
      lookup(row, row_values.data());
      scales.data<float>()[row] = quantize_row(row_values.data(), columns, codes.data<int8_t>() + row * columns);
    }
  });
  for (int64_t row = 0; row < rows; ++row)  // checked here: the parallel body must not throw
    check(std::isfinite(scales.data<float>()[row]), "token embedding: row {} holds a value that is not finite", row);
  return TokenEmbedding(codes, scales);
}

}  // namespace fq
