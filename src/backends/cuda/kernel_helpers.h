// What the elementwise kernels (elementwise.cu, flatten_quantize.cu) share: packs of N elements moved as one
// aligned access, warp and block reductions, and launch sizes.
#pragma once

#include <algorithm>
#include <cstdint>

#include "backends/cuda/device.h"
#include "fq/error.h"

namespace fq::FQ_CUDA_NS {

// N elements of T (N a power of two) that load and store as one access of up to 16 bytes (wider packs as
// several 16-byte accesses).
template <typename T, int N>
struct alignas(sizeof(T) * N < 16 ? sizeof(T) * N : 16) Pack {
  T v[N];
};

template <int N, typename T>
__device__ __forceinline__ Pack<T, N> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, N>*>(p);
}
template <int N, typename T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, N>& pack) {
  *reinterpret_cast<Pack<T, N>*>(p) = pack;
}
// Whether p may be accessed as Pack<T, N> (callers pass device pointers that may be offset into a buffer).
template <int N, typename T>
bool pack_aligned(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % alignof(Pack<T, N>) == 0;
}

struct SumOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <typename Op>
__device__ __forceinline__ float warp_reduce(float value, Op op) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// The reduction of `value` over the block (blockDim.x a multiple of 32), returned to every thread. `identity`
// fills the lanes beyond the block's warps.
template <typename Op>
__device__ float block_reduce(float value, Op op, float identity) {
  __shared__ float warp_results[32];
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  value = warp_reduce(value, op);
  if (lane == 0) warp_results[warp] = value;
  __syncthreads();
  // Every warp reduces the partial results itself, so no second barrier is needed to broadcast the total.
  value = warp_reduce(lane < blockDim.x / 32 ? warp_results[lane] : identity, op);
  __syncthreads();  // before a later call overwrites warp_results
  return value;
}

// A norm's row statistics, as ops::norm: mean (0 unless `center`, LayerNorm) and scale = rsqrt(mean((x - mean)²)
// + eps), over row [width] (width a multiple of N, row N-aligned), by the whole block. The normalized value of
// x_c is then (x_c - mean) · scale · weight_c (+ bias_c).
struct NormStatistics {
  float mean, scale;
  // The normalized values of row[c, c + N) (bias may be null).
  template <int N>
  __device__ __forceinline__ Pack<float, N> normalized(const float* row, int64_t c, const float* weight,
                                                       const float* bias) const {
    const Pack<float, N> value = load_pack<N>(row + c), gain = load_pack<N>(weight + c);
    Pack<float, N> offset{};
    if (bias) offset = load_pack<N>(bias + c);
    Pack<float, N> out;
#pragma unroll
    for (int k = 0; k < N; ++k) out.v[k] = (value.v[k] - mean) * scale * gain.v[k] + offset.v[k];
    return out;
  }
};
template <int N>
__device__ NormStatistics norm_statistics(const float* row, int64_t width, bool center, float eps) {
  const int64_t first = int64_t{threadIdx.x} * N, stride = int64_t{blockDim.x} * N;
  float mean = 0.f;
  if (center) {
    float sum = 0.f;
    for (int64_t c = first; c < width; c += stride) {
      const Pack<float, N> value = load_pack<N>(row + c);
#pragma unroll
      for (int k = 0; k < N; ++k) sum += value.v[k];
    }
    mean = block_reduce(sum, SumOp{}, 0.f) / static_cast<float>(width);
  }
  float squares = 0.f;
  for (int64_t c = first; c < width; c += stride) {
    const Pack<float, N> value = load_pack<N>(row + c);
#pragma unroll
    for (int k = 0; k < N; ++k) squares += (value.v[k] - mean) * (value.v[k] - mean);
  }
  return {mean, rsqrtf(block_reduce(squares, SumOp{}, 0.f) / static_cast<float>(width) + eps)};
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Threads for a block that walks `items` once: whole warps, at least one, at most `limit`.
inline unsigned block_threads(int64_t items, unsigned limit) {
  return static_cast<unsigned>(std::clamp<int64_t>(ceil_div(items, 32) * 32, 32, limit));
}

// A grid of one block per row (at most 2^31 - 1 rows).
inline unsigned row_blocks(int64_t rows) {
  check(rows > 0 && rows <= 0x7fffffff, "cuda: {} rows for a grid of one block per row", rows);
  return static_cast<unsigned>(rows);
}

// The blocks of `threads` that fill every multiprocessor of the device (2048 resident threads each on sm_80 and
// sm_90): enough for grid-stride loops to reach full bandwidth. The emulator reports no multiprocessors, which
// makes its grids small and their stride loops run several rounds.
inline int64_t resident_blocks(unsigned threads) {
  static const int multiprocessors = std::max(device_info().multiprocessors, 1);
  return std::max<int64_t>(int64_t{multiprocessors} * 2048 / threads, 1);
}

}  // namespace fq::FQ_CUDA_NS
