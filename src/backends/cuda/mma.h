// Warp-level integer matrix multiply-accumulate (mma.sync, sm_80 and later) for the kernels of
// src/backends/cuda: D[16×8] = A[16×K] · B[K×8] + C in int32, A row-major and B column-major, K = 32
// int8 codes (mma_s8_m16n8k32) or 64 int4 codes (mma_s4_m16n8k64). All 32 lanes of a warp call it
// together, each holding its fragments in the layouts of the PTX ISA ("Matrix Fragments for
// mma.m16n8k32 / mma.m16n8k64"). With group = lane / 4, tig = lane % 4 and E = 32 / bits codes per
// 32-bit register (the lowest k in the lowest bits):
//   a[0..3]: rows group, group + 8, group, group + 8; k = E·tig .. E·tig + E-1 for a[0..1],
//            4E + E·tig .. for a[2..3]
//   b[0..1]: column group; k = E·tig .. and 4E + E·tig ..
//   c/d[0..3]: (group, 2·tig), (group, 2·tig + 1), (group + 8, 2·tig), (group + 8, 2·tig + 1)
// The sums wrap in int32 as the instruction's do; callers keep K small enough that they cannot.
//
// The emulated twin rebuilds A and B from the 32 lanes' fragments with these layouts. mma_test.cc
// checks the instruction (on a GPU) and the emulation with one test against plain loops.
#pragma once

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

#else

namespace mma_emulation {

// Code `position` (0 = lowest bits) of a register holding 32 / kBits signed codes.
template <int kBits>
int32_t code_in(uint32_t word, int position) {
  return static_cast<int32_t>(word << (32 - kBits * (position + 1))) >> (32 - kBits);
}

template <int kBits>
void mma(int32_t d[4], const uint32_t a[4], const uint32_t b[2], const int32_t c[4]) {
  constexpr int kPerRegister = 32 / kBits;
  constexpr int kHalfDepth = 4 * kPerRegister;  // k of a[0..1] and b[0]; a[2..3] and b[1] hold the rest
  const uint32_t mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
  const uint32_t* all = emulator::publish(mine, 6);
  // Register `reg` of lane `source` (a[0..3] are words 0..3, b[0..1] words 4..5), code of depth k.
  auto operand = [all](int source, int reg, int k) {
    return code_in<kBits>(all[source * emulator::kExchangeWords + reg], k % kPerRegister);
  };
  const int group = static_cast<int>(emulator::lane()) / 4, tig = static_cast<int>(emulator::lane()) % 4;
  int32_t out[4];
  for (int i = 0; i < 4; ++i) {
    const int row = group + 8 * (i / 2), column = 2 * tig + i % 2;
    uint32_t sum = static_cast<uint32_t>(c[i]);  // the lane's own C element is (row, column): the same layout
    for (int k = 0; k < 2 * kHalfDepth; ++k) {
      const int source_tig = k % kHalfDepth / kPerRegister, upper = k / kHalfDepth;
      const int32_t a_code = operand(row % 8 * 4 + source_tig, row / 8 + 2 * upper, k);
      const int32_t b_code = operand(column * 4 + source_tig, 4 + upper, k);
      sum += static_cast<uint32_t>(a_code * b_code);  // wraps as the instruction does
    }
    out[i] = static_cast<int32_t>(sum);
  }
  emulator::release_exchange();
  for (int i = 0; i < 4; ++i) d[i] = out[i];  // after reading c: d may be c
}

}  // namespace mma_emulation

inline void mma_s8_m16n8k32(int32_t d[4], const uint32_t a[4], const uint32_t b[2], const int32_t c[4]) {
  mma_emulation::mma<8>(d, a, b, c);
}
inline void mma_s4_m16n8k64(int32_t d[4], const uint32_t a[4], const uint32_t b[2], const int32_t c[4]) {
  mma_emulation::mma<4>(d, a, b, c);
}

#endif

}  // namespace fq::FQ_CUDA_NS
