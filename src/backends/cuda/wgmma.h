// Hopper's warpgroup matrix multiply (wgmma, sm_90a) and the asynchronous copies that feed it, for the
// integer GEMM of int_gemm.cu, with emulated twins for the CPU emulator (emulator.h).
//
// wgmma_s8_m64n256k32: the 128 threads of a warpgroup (4 consecutive warps, the first a multiple of 4)
// add A[64×32] · B[256×32]ᵀ to a 64×256 int32 tile; A and B are int8, K-major, in shared memory,
// described by a SharedOperand. Operand layout ("no swizzle" canonical layout of the PTX ISA): a core
// matrix is 8 rows × 16 bytes stored as 128 contiguous bytes (row r at byte 16·r); the core matrix
// holding rows 8i.. and bytes 16j.. of the operand starts at start + i·stride + j·leading.
// Accumulator layout: warp w of the warpgroup holds rows 16w .. 16w + 15; with group = lane / 4 and
// tig = lane % 4, d[4c + e] is row 16w + group + 8·(e / 2), column 8c + 2·tig + e % 2 (the m16n8 layout
// of mma.h, once per 8 columns).
//
// The multiply runs asynchronously: wgmma_fence() before the first one (and after the accumulators were
// touched by other code), wgmma_commit() to close a group, wgmma_wait<N>() until at most N groups are
// pending; only then may the accumulators be read or their shared memory overwritten. Shared memory
// written by ordinary stores or cp.async must be published to the tensor cores with fence_proxy_async()
// in each writing thread before the barrier that precedes the wgmma.
//
// Emulated, a copy or multiply completes when it is issued, which is one legal order of the real ones;
// what the emulation cannot show is a missing wait or fence.
#pragma once

#include <cstdint>

#include "backends/cuda/portable.h"

namespace fq::FQ_CUDA_NS {

// Where an operand tile lies in shared memory (the matrix descriptor's fields, in bytes).
struct SharedOperand {
  uint32_t start;    // shared-memory address of the first core matrix (shared_address)
  uint32_t leading;  // from one core matrix to the next along K
  uint32_t stride;   // from one core matrix to the next along M (A) or N (B)
};

// The 64-bit matrix descriptor: start, leading and stride offsets in 16-byte units in bits 0-13, 16-29
// and 32-45; base offset (bits 49-51) and swizzle mode (bits 62-63) zero: no swizzle.
__device__ __forceinline__ uint64_t matrix_descriptor(const SharedOperand& operand) {
  auto field = [](uint32_t bytes) { return uint64_t{(bytes >> 4) & 0x3fffu}; };
  return field(operand.start) | field(operand.leading) << 16 | field(operand.stride) << 32;
}

#if !FQ_CUDA_EMULATED

__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

// Copies 16 bytes from global to shared memory asynchronously, or writes 16 zero bytes when !fill.
// Both addresses 16-byte aligned; `source` must be a valid address even when not read.
__device__ __forceinline__ void cp_async_16(void* destination, const void* source, bool fill) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(destination)), "l"(source),
               "r"(fill ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// Keeps the compiler from moving reads or writes of the accumulators across the asynchronous multiply:
// call after wgmma_wait, before the accumulators are read.
__device__ __forceinline__ void wgmma_settle(int32_t (&d)[128]) {
#pragma unroll
  for (int i = 0; i < 128; ++i) asm volatile("" : "+r"(d[i])::"memory");
}

#define FQ_WGMMA_ACC8(i)                                                                                     \
  "+r"(d[i]), "+r"(d[i + 1]), "+r"(d[i + 2]), "+r"(d[i + 3]), "+r"(d[i + 4]), "+r"(d[i + 5]), "+r"(d[i + 6]), \
      "+r"(d[i + 7])
#define FQ_WGMMA_ACC32(i) FQ_WGMMA_ACC8(i), FQ_WGMMA_ACC8(i + 8), FQ_WGMMA_ACC8(i + 16), FQ_WGMMA_ACC8(i + 24)

// d += A · Bᵀ (see the top of the file). Only sm_90a has the instruction; callers compile it for that
// target alone (FQ_WGMMA_COMPILED).
__device__ __forceinline__ void wgmma_s8_m64n256k32(int32_t (&d)[128], const SharedOperand& a, const SharedOperand& b) {
  asm volatile(
      "{\n.reg .pred accumulate;\nsetp.ne.b32 accumulate, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
      "}, %128, %129, accumulate;\n}\n"
      : FQ_WGMMA_ACC32(0), FQ_WGMMA_ACC32(32), FQ_WGMMA_ACC32(64), FQ_WGMMA_ACC32(96)
      : "l"(matrix_descriptor(a)), "l"(matrix_descriptor(b)), "r"(1)
      : "memory");
}

#undef FQ_WGMMA_ACC32
#undef FQ_WGMMA_ACC8

// Whether this compilation pass can emit wgmma: the sm_90a device pass (and the emulator).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FQ_WGMMA_COMPILED 1
#else
#define FQ_WGMMA_COMPILED 0
#endif

#else  // emulated

#define FQ_WGMMA_COMPILED 1

// Emulated shared-memory addresses are offsets into the block's dynamic shared memory.
inline uint32_t shared_address(const void* pointer) {
  const auto* base = static_cast<const unsigned char*>(emulator::dynamic_shared());
  const auto offset = static_cast<const unsigned char*>(pointer) - base;
  check(offset >= 0 && static_cast<size_t>(offset) < emulator::current.block->shared.size(),
        "emulated shared_address: the pointer is not in the block's dynamic shared memory");
  return static_cast<uint32_t>(offset);
}

inline void cp_async_16(void* destination, const void* source, bool fill) {
  check(reinterpret_cast<uintptr_t>(destination) % 16 == 0 && reinterpret_cast<uintptr_t>(source) % 16 == 0,
        "emulated cp.async: addresses must be 16-byte aligned");
  shared_address(destination);  // checks that it is shared memory
  if (fill) {
    std::memcpy(destination, source, 16);
  } else {
    std::memset(destination, 0, 16);
  }
}
inline void cp_async_commit() {}
template <int kPending>
void cp_async_wait() {}
inline void fence_proxy_async() {}
inline void wgmma_fence() {}
inline void wgmma_commit() {}
template <int kPending>
void wgmma_wait() {}
inline void wgmma_settle(int32_t (&)[128]) {}

// The operand a descriptor describes, read back as the tensor cores read it (so that the emulation checks
// matrix_descriptor too).
inline SharedOperand described_operand(uint64_t descriptor, int rows) {
  check((descriptor >> 49 & 7) == 0 && (descriptor >> 62) == 0,
        "emulated wgmma: only the no-swizzle layout with base offset 0 is emulated");
  auto field = [descriptor](int bit) { return static_cast<uint32_t>(descriptor >> bit & 0x3fffu) << 4; };
  const SharedOperand operand{field(0), field(16), field(32)};
  const size_t last = size_t{operand.start} + size_t(rows / 8 - 1) * operand.stride + operand.leading + 128;
  check(last <= emulator::current.block->shared.size(),
        "emulated wgmma: an operand reaches past the block's shared memory");
  return operand;
}

inline void wgmma_s8_m64n256k32(int32_t (&d)[128], const SharedOperand& a, const SharedOperand& b) {
  const auto* shared = reinterpret_cast<const int8_t*>(emulator::current.block->shared.data());
  const SharedOperand a_read = described_operand(matrix_descriptor(a), 64);
  const SharedOperand b_read = described_operand(matrix_descriptor(b), 256);
  auto code = [shared](const SharedOperand& operand, int row, int k) {
    return int32_t{shared[operand.start + (row / 8) * operand.stride + (k / 16) * operand.leading + (row % 8) * 16 +
                          k % 16]};
  };
  const int warp = static_cast<int>(emulator::warp() % 4), lane = static_cast<int>(emulator::lane());
  const int group = lane / 4, tig = lane % 4;
  for (int i = 0; i < 128; ++i) {
    const int row = 16 * warp + group + 8 * (i % 4 / 2), column = 8 * (i / 4) + 2 * tig + i % 2;
    uint32_t sum = static_cast<uint32_t>(d[i]);
    for (int k = 0; k < 32; ++k)
      sum += static_cast<uint32_t>(code(a_read, row, k) * code(b_read, column, k));  // wraps, as the GPU's
    d[i] = static_cast<int32_t>(sum);
  }
}

#endif

}  // namespace fq::FQ_CUDA_NS
