// The products inside attention: C rows (=|+=) A rows · B with f32 results, every row of A and C
// reached through its own pointer (query rows of a group of heads lie at two different strides).
// Operands are f32, or bf16 (uint16_t bits) multiplied pairwise with AVX512-BF16 (vdpbf16ps, twice
// the multiply-adds of f32 per instruction). Register-blocked AVX-512 kernels hold a block of C in
// registers for the whole depth; plain loops otherwise.
#pragma once

#include <cstdint>

namespace fq::cpu {

// Elements per 32-bit depth unit: the depth is walked a unit at a time (1 f32, a pair of bf16).
template <typename Element>
inline constexpr int64_t kUnit = 4 / sizeof(Element);

// For r < rows, j < columns: c[r][j] (= or +=) sum over units k < depth_units, u < kUnit of
// a[r][k * kUnit + u] * b[k * b_stride + j * kUnit + u]. That is, B is row-major over depth units
// with each column's unit stored together (for bf16: the two depth entries of column j side by side).
// `accumulate` adds to c instead of overwriting it. Element is float or uint16_t (bf16).
template <typename Element>
void multiply_rows(int64_t rows, const Element* const* a, int64_t depth_units, const Element* b, int64_t b_stride,
                   int64_t columns, float* const* c, bool accumulate);

}  // namespace fq::cpu
