// A CPU emulator of the CUDA execution model, for the kernels of src/backends/cuda (written in the
// subset that portable.h describes). Every CUDA thread of a block runs as its own fiber with its own stack
// and registers, so __syncthreads, warp shuffles and the mma.sync fragment exchange behave as on the GPU:
// a thread reads what another wrote only after a barrier, a wrong lane index reads the wrong lane's value,
// and threads waiting at barriers the others never reach are reported as a deadlock. (What it cannot show:
// races between threads that skip a needed barrier, since fibers switch only at barriers.) Blocks run one
// after another, which is why static __shared__ arrays can be plain statics. Dynamic shared memory is
// poisoned (0xff bytes: NaN as f32/f16, -1 as integers) before every block.
//
// Meant for tests; the emulated backend (runtime_emulated.cc) uses it to run whole small models on the CPU
// through the GPU code path.
#pragma once

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "fq/dtype.h"
#include "fq/error.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// CUDA's vector types (alignment as in vector_types.h).
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(8) int2 { int x, y; };
struct alignas(4) char4 { signed char x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline char4 make_char4(signed char x, signed char y, signed char z, signed char w) { return {x, y, z, w}; }

struct __half {
  uint16_t bits;
};
inline float __half2float(__half h) { return fq::f16_to_f32(h.bits); }
inline __half __float2half_rn(float f) { return {fq::f32_to_f16(f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline unsigned short __half_as_ushort(__half h) { return h.bits; }

using cudaStream_t = struct EmulatedStream*;

namespace fq::cuda_emu::emulator {

inline constexpr int kExchangeWords = 16;
inline constexpr size_t kStackBytes = 128 * 1024;

// A barrier among the threads of a block or of a warp. Threads that have returned stop counting.
struct Barrier {
  unsigned live = 0, arrived = 0, generation = 0;
};

// What the threads of the running block share.
struct Block {
  dim3 grid, block, index;
  unsigned threads = 0;
  Barrier barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<uint32_t> exchange;  // kExchangeWords per thread, for shuffles and mma fragments
  std::vector<unsigned char> shared;
};

struct ThreadState {
  Block* block = nullptr;
  dim3 thread;
  unsigned linear = 0;  // x + y·bx + z·bx·by, the order that makes warps
};

// The CUDA threads of a block are fibers on the calling thread, switched only at barriers: cheap enough for
// whole small models, and deterministic. The switch saves callee-saved registers and the stack pointer
// (emulator_switch_emulated.cc, x86-64), without ucontext's signal-mask system calls.
extern "C" void fq_emulator_switch(void** save_stack, void* load_stack);
extern "C" void fq_emulator_fiber_start();

struct Fiber {
  void* stack_pointer = nullptr;
  ThreadState state;
  bool done = false;
  const Barrier* waiting_on = nullptr;  // resumed only once this barrier's generation moves on
  unsigned waiting_generation = 0;
};
struct Scheduler {
  void* main_stack_pointer = nullptr;
  std::vector<Fiber> fibers;
  std::vector<std::unique_ptr<char[]>> stacks;  // kept for the next block and launch
  unsigned running = 0;
  uint64_t arrivals = 0;  // barrier arrivals and thread exits so far: progress, for deadlock detection
  const void* body = nullptr;
  void (*invoke)(const void*) = nullptr;
};
inline thread_local Scheduler scheduler;
inline thread_local ThreadState current;

inline unsigned lane() { return current.linear % 32; }
inline unsigned warp() { return current.linear / 32; }
inline void* dynamic_shared() { return current.block->shared.data(); }

inline void wait(Barrier& barrier) {
  ++scheduler.arrivals;
  const unsigned generation = barrier.generation;
  if (++barrier.arrived == barrier.live) {
    barrier.arrived = 0;
    ++barrier.generation;
    return;
  }
  Fiber& fiber = scheduler.fibers[scheduler.running];
  fiber.waiting_on = &barrier;
  fiber.waiting_generation = generation;
  fq_emulator_switch(&fiber.stack_pointer, scheduler.main_stack_pointer);
}

// A returning thread leaves its barriers; one that all the others were waiting for releases them.
inline void leave(Barrier& barrier) {
  --barrier.live;
  if (barrier.live > 0 && barrier.arrived == barrier.live) {
    barrier.arrived = 0;
    ++barrier.generation;
  }
}

inline void sync_block() { wait(current.block->barrier); }
inline void sync_warp() { wait(current.block->warp_barriers[warp()]); }

// Publishes `count` words of this lane and returns a pointer to the warp's 32 × kExchangeWords words;
// call release_exchange() once the words are read.
inline const uint32_t* publish(const uint32_t* words, int count) {
  Block& b = *current.block;
  std::memcpy(&b.exchange[current.linear * kExchangeWords], words, count * sizeof(uint32_t));
  sync_warp();
  return &b.exchange[warp() * 32 * kExchangeWords];
}
inline void release_exchange() { sync_warp(); }

template <typename T>
T shuffle_from(T value, unsigned source_lane) {
  static_assert(sizeof(T) <= kExchangeWords * 4 && std::is_trivially_copyable_v<T>);
  uint32_t words[kExchangeWords] = {};
  std::memcpy(words, &value, sizeof(T));
  const uint32_t* all = publish(words, (sizeof(T) + 3) / 4);
  T out;
  std::memcpy(&out, all + (source_lane % 32) * kExchangeWords, sizeof(T));
  release_exchange();
  return out;
}

// Where every fiber starts (called by fq_emulator_fiber_start, emulator_switch_emulated.cc): runs the kernel
// body, leaves the barriers, and switches back to the scheduler for good.
extern "C" [[noreturn]] void fq_emulator_fiber_main();

// A fresh stack that fq_emulator_switch "returns" into fq_emulator_fiber_start: six zeroed callee-saved
// registers and the saved MXCSR/x87 control words of the caller below the start address.
inline void* fresh_stack(char* base, size_t bytes) {
  auto top = reinterpret_cast<uintptr_t>(base + bytes) & ~uintptr_t{15};
  auto* slots = reinterpret_cast<uint64_t*>(top) - 10;
  std::memset(slots, 0, 10 * sizeof(uint64_t));
  uint32_t control[2];
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(control[0]), "=m"(control[1]));
  std::memcpy(&slots[0], control, sizeof(control));
  slots[7] = reinterpret_cast<uint64_t>(&fq_emulator_fiber_start);  // after r15..rbp: the return address
  return slots;
}

// Runs one block: every thread from its start, switching at barriers, until all have returned.
inline void run_block(Block& block) {
  Scheduler& s = scheduler;
  s.fibers.resize(block.threads);
  while (s.stacks.size() < block.threads) s.stacks.push_back(std::make_unique<char[]>(kStackBytes));
  for (unsigned t = 0; t < block.threads; ++t) {
    Fiber& fiber = s.fibers[t];
    fiber.done = false;
    fiber.waiting_on = nullptr;
    fiber.state = {&block, dim3(t % block.block.x, t / block.block.x % block.block.y, t / (block.block.x * block.block.y)),
                   t};
    fiber.stack_pointer = fresh_stack(s.stacks[t].get(), kStackBytes);
  }
  for (unsigned remaining = block.threads; remaining > 0;) {
    const uint64_t arrivals_before = s.arrivals;
    for (unsigned t = 0; t < block.threads; ++t) {
      Fiber& fiber = s.fibers[t];
      if (fiber.done || (fiber.waiting_on && fiber.waiting_on->generation == fiber.waiting_generation)) continue;
      fiber.waiting_on = nullptr;
      s.running = t;
      current = fiber.state;
      fq_emulator_switch(&s.main_stack_pointer, fiber.stack_pointer);
      if (fiber.done) --remaining;
    }
    check(remaining == 0 || s.arrivals != arrivals_before,
          "emulated kernel deadlock in block ({}, {}, {}): threads wait at barriers the others never reach",
          block.index.x, block.index.y, block.index.z);
  }
}

// Runs kernel(arguments...) over the grid, block after block.
class Launch {
 public:
  Launch(dim3 grid, dim3 block, size_t shared_bytes) : grid_(grid), block_(block), shared_bytes_(shared_bytes) {}

  template <typename... Params>
  auto run(void (*kernel)(Params...)) const {
    return [*this, kernel](auto&&... arguments) {
      const std::tuple<std::decay_t<Params>...> bound(std::forward<decltype(arguments)>(arguments)...);
      const auto body = [&] { std::apply(kernel, bound); };
      launch(&body, [](const void* f) { (*static_cast<decltype(&body)>(f))(); });
    };
  }

 private:
  void launch(const void* body, void (*invoke)(const void*)) const {
    const unsigned threads = block_.x * block_.y * block_.z;
    check(threads >= 1 && threads <= 1024, "emulated launch: {} threads per block (expected 1..1024)", threads);
    check(grid_.x >= 1 && grid_.y >= 1 && grid_.z >= 1, "emulated launch: an empty grid");
    check(shared_bytes_ <= 227 * 1024, "emulated launch: {} bytes of dynamic shared memory (at most 227 KiB)",
          shared_bytes_);
    scheduler.body = body;
    scheduler.invoke = invoke;
    Block block;
    block.grid = grid_;
    block.block = block_;
    block.threads = threads;
    block.exchange.assign(size_t{threads} * kExchangeWords, 0);
    for (unsigned z = 0; z < grid_.z; ++z)
      for (unsigned y = 0; y < grid_.y; ++y)
        for (unsigned x = 0; x < grid_.x; ++x) {
          block.index = dim3(x, y, z);
          block.barrier = {threads, 0, 0};
          block.warp_barriers.clear();
          for (unsigned first = 0; first < threads; first += 32) block.warp_barriers.push_back({std::min(32u, threads - first), 0, 0});
          block.shared.assign(shared_bytes_, 0xff);
          run_block(block);
        }
    current = {};
  }

  dim3 grid_, block_;
  size_t shared_bytes_;
};

}  // namespace fq::cuda_emu::emulator

#define threadIdx (::fq::cuda_emu::emulator::current.thread)
#define blockIdx (::fq::cuda_emu::emulator::current.block->index)
#define blockDim (::fq::cuda_emu::emulator::current.block->block)
#define gridDim (::fq::cuda_emu::emulator::current.block->grid)

inline void __syncthreads() { fq::cuda_emu::emulator::sync_block(); }
inline void __syncwarp(unsigned = 0xffffffffu) { fq::cuda_emu::emulator::sync_warp(); }

template <typename T>
T __shfl_sync(unsigned, T value, int source, int width = 32) {
  const unsigned lane = fq::cuda_emu::emulator::lane();
  return fq::cuda_emu::emulator::shuffle_from(value, (lane & ~unsigned(width - 1)) + unsigned(source) % unsigned(width));
}
template <typename T>
T __shfl_xor_sync(unsigned, T value, int mask, int width = 32) {
  const unsigned lane = fq::cuda_emu::emulator::lane();
  const unsigned source = lane ^ unsigned(mask);
  // As on the GPU, a source outside the lane's segment of `width` returns the lane's own value.
  const bool inside = source / unsigned(width) == lane / unsigned(width);
  return fq::cuda_emu::emulator::shuffle_from(value, inside ? source : lane);
}
template <typename T>
T __shfl_down_sync(unsigned, T value, unsigned delta, int width = 32) {
  const unsigned lane = fq::cuda_emu::emulator::lane();
  const unsigned source = lane + delta;
  const bool inside = source / unsigned(width) == lane / unsigned(width);
  return fq::cuda_emu::emulator::shuffle_from(value, inside ? source : lane);
}
inline unsigned __ballot_sync(unsigned, int predicate) {
  const uint32_t mine = predicate ? 1u : 0u;
  const uint32_t* all = fq::cuda_emu::emulator::publish(&mine, 1);
  unsigned out = 0;
  for (unsigned l = 0; l < 32; ++l)
    if (all[l * fq::cuda_emu::emulator::kExchangeWords]) out |= 1u << l;
  fq::cuda_emu::emulator::release_exchange();
  return out;
}

template <typename T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}
namespace fq::cuda_emu::emulator {
// Stores `value` while `replaces(old, value)`; returns the old value, as CUDA's atomics do.
template <typename T, typename Replaces>
T atomic_replace_if(T* address, T value, Replaces replaces) {
  std::atomic_ref<T> ref(*address);
  T old = ref.load();
  while (replaces(old, value) && !ref.compare_exchange_weak(old, value)) {
  }
  return old;
}
}  // namespace fq::cuda_emu::emulator
template <typename T>
T atomicMax(T* address, T value) {
  return fq::cuda_emu::emulator::atomic_replace_if(address, value, [](T old, T v) { return old < v; });
}
template <typename T>
T atomicMin(T* address, T value) {
  return fq::cuda_emu::emulator::atomic_replace_if(address, value, [](T old, T v) { return v < old; });
}
template <typename T>
T atomicCAS(T* address, T expected, T desired) {
  std::atomic_ref<T>(*address).compare_exchange_strong(expected, desired);
  return expected;
}

template <typename T>
T __ldg(const T* p) {
  return *p;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
// IEEE round-to-nearest float operations (never contracted or approximated on the GPU, even under fast math).
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __saturatef(float x) { return std::fmin(std::fmax(x, 0.0f), 1.0f); }
inline int __float2int_rn(float x) { return static_cast<int>(std::nearbyint(x)); }
inline int __popc(unsigned x) { return std::popcount(x); }
// Byte i of the result is byte (s >> 4i) & 7 of the eight bytes of y:x (x the low four), as PRMT.
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const uint64_t bytes = uint64_t{y} << 32 | x;
  unsigned out = 0;
  for (unsigned i = 0; i < 4; ++i) out |= unsigned(bytes >> (8 * ((s >> (4 * i)) & 7)) & 0xffu) << (8 * i);
  return out;
}
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline int max(int a, int b) { return a > b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline float max(float a, float b) { return std::fmax(a, b); }
inline float min(float a, float b) { return std::fmin(a, b); }
