// Warp-level matrix multiply-accumulate (mma.sync, sm_80 and later) for the kernels of src/backends/cuda:
// D[16×8] = A[16×K] · B[K×8] + C, A row-major and B column-major: in int32 with K = 32 int8 codes
// (mma_s8_m16n8k32) or 64 int4 codes (mma_s4_m16n8k64), or in f32 with K = 16 f16 values
// (mma_f16_m16n8k16). All 32 lanes of a warp call it together, each holding its fragments in the layouts
// of the PTX ISA ("Matrix Fragments for mma.m16n8k16 / m16n8k32 / m16n8k64"). With group = lane / 4,
// tig = lane % 4 and E = 32 / bits elements per 32-bit register (the lowest k in the lowest bits):
//   a[0..3]: rows group, group + 8, group, group + 8; k = E·tig .. E·tig + E-1 for a[0..1],
//            4E + E·tig .. for a[2..3]
//   b[0..1]: column group; k = E·tig .. and 4E + E·tig ..
//   c/d[0..3]: (group, 2·tig), (group, 2·tig + 1), (group + 8, 2·tig), (group + 8, 2·tig + 1)
// Integer sums wrap in int32 as the instruction's do; callers keep K small enough that they cannot.
//
// The emulated twin rebuilds A and B from the 32 lanes' fragments with these layouts. mma_test.cc
// checks the integer instructions (on a GPU) and their emulation with one test against plain loops; the
// f16 one is checked through the prefill attention kernel against the CPU (attention_test.cc).
#pragma once

#include <cmath>
#include <cstdint>

#include "backends/cuda/portable.h"

namespace fq::FQ_CUDA_NS {

#if !FQ_CUDA_EMULATED

__device__ __forceinline__ void mma_s8_m16n8k32(int32_t d[4], const uint32_t a[4], const uint32_t b[2],
                                                const int32_t c[4]) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(c[0]), "r"(c[1]), "r"(c[2]),
        "r"(c[3]));
}

// Native on sm_80/sm_86/sm_89; Hopper runs it emulated (slowly).
__device__ __forceinline__ void mma_s4_m16n8k64(int32_t d[4], const uint32_t a[4], const uint32_t b[2],
                                                const int32_t c[4]) {
  asm("mma.sync.aligned.m16n8k64.row.col.s32.s4.s4.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(c[0]), "r"(c[1]), "r"(c[2]),
        "r"(c[3]));
}

// d = a · b + c with A and B f16 (two per register, the lower k in the low half) and f32 sums.
__device__ __forceinline__ void mma_f16_m16n8k16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}

#else

namespace mma_emulation {

// Where the fragment layouts above put element (row, k) of A and (k, column) of B: the lane, its word
// (a[0..3] are words 0..3, b[0..1] words 4..5) and the element's position in the word.
struct Place {
  int lane, word, position;
};
template <int kPerRegister>
Place a_place(int row, int k) {
  constexpr int kHalfDepth = 4 * kPerRegister;  // k of a[0..1]; a[2..3] hold the rest
  return {row % 8 * 4 + k % kHalfDepth / kPerRegister, row / 8 + 2 * (k / kHalfDepth), k % kPerRegister};
}
template <int kPerRegister>
Place b_place(int column, int k) {
  constexpr int kHalfDepth = 4 * kPerRegister;
  return {column * 4 + k % kHalfDepth / kPerRegister, 4 + k / kHalfDepth, k % kPerRegister};
}

// d = a · b + c over the warp: each lane publishes its fragments, then computes its own four elements of d
// (whose layout is c's) from everyone's, element(word, position) reading one operand.
template <int kPerRegister, typename Accumulator, typename Element, typename Add>
void mma(Accumulator d[4], const uint32_t a[4], const uint32_t b[2], const Accumulator c[4], Element element, Add add) {
  const uint32_t mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
  const uint32_t* all = emulator::publish(mine, 6);
  auto operand = [&](const Place& place) {
    return element(all[place.lane * emulator::kExchangeWords + place.word], place.position);
  };
  const int group = static_cast<int>(emulator::lane()) / 4, tig = static_cast<int>(emulator::lane()) % 4;
  Accumulator out[4];
  for (int i = 0; i < 4; ++i) {
    const int row = group + 8 * (i / 2), column = 2 * tig + i % 2;
    Accumulator sum = c[i];  // the lane's own C element is (row, column): the same layout
    for (int k = 0; k < 8 * kPerRegister; ++k)
      sum = add(sum, operand(a_place<kPerRegister>(row, k)), operand(b_place<kPerRegister>(column, k)));
    out[i] = sum;
  }
  emulator::release_exchange();
  for (int i = 0; i < 4; ++i) d[i] = out[i];  // after reading c: d may be c
}

// Code `position` (0 = lowest bits) of a register holding 32 / kBits signed codes.
template <int kBits>
int32_t code_in(uint32_t word, int position) {
  return static_cast<int32_t>(word << (32 - kBits * (position + 1))) >> (32 - kBits);
}

template <int kBits>
void integer_mma(int32_t d[4], const uint32_t a[4], const uint32_t b[2], const int32_t c[4]) {
  mma<32 / kBits>(d, a, b, c, code_in<kBits>, [](int32_t sum, int32_t x, int32_t y) {
    return static_cast<int32_t>(static_cast<uint32_t>(sum) + static_cast<uint32_t>(x * y));  // wraps as the GPU's
  });
}

}  // namespace mma_emulation

inline void mma_s8_m16n8k32(int32_t d[4], const uint32_t a[4], const uint32_t b[2], const int32_t c[4]) {
  mma_emulation::integer_mma<8>(d, a, b, c);
}
inline void mma_s4_m16n8k64(int32_t d[4], const uint32_t a[4], const uint32_t b[2], const int32_t c[4]) {
  mma_emulation::integer_mma<4>(d, a, b, c);
}
// The products of f16 values are exact in f32; the GPU adds them in its own order and precision, the
// emulation in k order in f32 (so the two agree to rounding, not bit for bit).
inline void mma_f16_m16n8k16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  mma_emulation::mma<2>(
      d, a, b, c, [](uint32_t word, int position) { return f16_to_f32(static_cast<uint16_t>(word >> (16 * position))); },
      [](float sum, float x, float y) { return std::fma(x, y, sum); });
}

#endif

}  // namespace fq::FQ_CUDA_NS
