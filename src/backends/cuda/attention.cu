// The attention kernels of the CUDA backend (attention.h): KV cache appends, flash-attention prefill
// kernels (on the f16 tensor cores for head_dim 64 and 128, else FMA over shared-memory tiles) and a
// split-key decode kernel with the step that combines its partial softmaxes.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <initializer_list>

#include "backends/cuda/attention.h"
#include "backends/cuda/device.h"
#include "backends/cuda/mma.h"
#include "fq/error.h"

namespace fq::FQ_CUDA_NS {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kMaxHeadDim = 128;
constexpr int kWarps = 4;  // per block of both attention kernels
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;  // softmax runs in base 2: exp(x) = exp2(x·log2 e)

// Prefill: a block takes kPrefillQueries queries of one head, kPrefillRowsPerWarp per warp, against tiles
// of 32 keys (lane j scores key j); a lane accumulates output dimensions lane + 32·i.
constexpr int kPrefillRowsPerWarp = 8;
constexpr int kPrefillQueries = kWarps * kPrefillRowsPerWarp;
constexpr int kPrefillKeys = 32;
constexpr int kDimsPerLane = kMaxHeadDim / 32;
constexpr int kMaxDecodeQueries = 4;  // above this many queries per sequence, the prefill kernel runs

// Decode: each lane group loads and scores this many keys per step (independent loads in flight).
constexpr int kDecodeKeysPerStep = 4;
// Keys are split across blocks until about two waves of an H100's 132 SMs are busy, but never below this
// many keys per block.
constexpr int64_t kDecodeTargetBlocks = 264;
constexpr int64_t kMinKeysPerSplit = 64;

// kElems consecutive halves moved as one 16-, 4- or 2-byte access.
template <int kElems>
struct HalfVector;
template <>
struct HalfVector<8> {
  using type = uint4;
};
template <>
struct HalfVector<2> {
  using type = unsigned;
};
template <>
struct HalfVector<1> {
  using type = __half;
};
template <int kElems>
using HalfVectorT = typename HalfVector<kElems>::type;

template <int kElems>
__device__ __forceinline__ HalfVectorT<kElems> load_vector(const __half* source) {
  return *reinterpret_cast<const HalfVectorT<kElems>*>(source);
}

template <int kElems>
__device__ __forceinline__ void unpack(const HalfVectorT<kElems>& vector, float* out, float scale = 1.0f) {
  __half halves[kElems];
  memcpy(halves, &vector, sizeof vector);
#pragma unroll
  for (int e = 0; e < kElems; ++e) out[e] = __half2float(halves[e]) * scale;
}

__device__ __forceinline__ float warp_max(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) value = fmaxf(value, __shfl_xor_sync(kFullMask, value, offset));
  return value;
}

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(kFullMask, value, offset);
  return value;
}

template <int kElems>
__global__ void append_kv_kernel(const __half* k, const __half* v, int64_t rows, int64_t seq, int64_t start,
                                 int64_t width, int64_t row_stride, __half* keys, __half* values, int64_t capacity) {
  using Vector = HalfVectorT<kElems>;
  const int64_t vectors_per_row = width / kElems, total = rows * vectors_per_row;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / vectors_per_row, column = i % vectors_per_row * kElems;
    const int64_t source = row * row_stride + column;
    const int64_t destination = (row / seq * capacity + start + row % seq) * width + column;
    *reinterpret_cast<Vector*>(keys + destination) = load_vector<kElems>(k + source);
    *reinterpret_cast<Vector*>(values + destination) = load_vector<kElems>(v + source);
  }
}

// Grid (query tiles, heads, batch). Online softmax over key tiles up to the tile's last query; never more
// than a 32 × 32 block of scores at a time. q_scale = log2(e)/sqrt(head_dim).
template <int kElems>
__global__ void __launch_bounds__(kThreads)
    prefill_attention_kernel(const __half* q, int64_t q_row_stride, const __half* keys, const __half* values,
                             __half* out, int seq, int start, int64_t capacity, int heads, int kv_heads, int head_dim,
                             float q_scale) {
  using Vector = HalfVectorT<kElems>;
  // Queries pre-scaled, rows padded to 4 floats for float4 reads. Keys in f32 with an odd row stride, so
  // that the 32 lanes reading one dimension of 32 keys hit 32 banks. Values stay f16 (shared memory).
  __align__(16) __shared__ float query_tile[kPrefillQueries * kMaxHeadDim];
  __shared__ float key_tile[kPrefillKeys * (kMaxHeadDim + 1)];
  __align__(16) __shared__ __half value_tile[kPrefillKeys * kMaxHeadDim];
  __align__(16) __shared__ float probability_tile[kWarps][kPrefillRowsPerWarp][kPrefillKeys];

  const int thread = threadIdx.x, warp = thread / 32, lane = thread % 32;
  // The last query tiles (the longest, causally) go first.
  const int first_query = (int(gridDim.x) - 1 - int(blockIdx.x)) * kPrefillQueries;
  const int h = blockIdx.y, b = blockIdx.z, g = h / (heads / kv_heads);
  const int query_stride = (head_dim + 3) & ~3, key_stride = head_dim + 1, chunks = head_dim / kElems;

  for (int i = thread; i < kPrefillQueries * chunks; i += kThreads) {
    const int r = i / chunks, d = i % chunks * kElems;
    float* destination = query_tile + r * query_stride + d;
    if (first_query + r < seq)
      unpack<kElems>(
          load_vector<kElems>(q + (int64_t(b) * seq + first_query + r) * q_row_stride + int64_t(h) * head_dim + d),
          destination, q_scale);
    else
      for (int e = 0; e < kElems; ++e) destination[e] = 0.0f;
  }

  // Every position any query of the tile sees; the keys past it in the last key tile read as zeros.
  const int kv_length = start + min(seq, first_query + kPrefillQueries);
  const int64_t kv_row = int64_t(kv_heads) * head_dim;
  const int64_t kv_offset = (int64_t(b) * capacity * kv_heads + g) * head_dim;
  const int first_row = warp * kPrefillRowsPerWarp;

  float running_max[kPrefillRowsPerWarp], lane_sum[kPrefillRowsPerWarp];  // lane_sum: this lane's keys only
  float accumulator[kPrefillRowsPerWarp][kDimsPerLane];
#pragma unroll
  for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
    running_max[r] = -INFINITY;
    lane_sum[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) accumulator[r][i] = 0.0f;
  }

  for (int first_key = 0; first_key < kv_length; first_key += kPrefillKeys) {
    __syncthreads();  // the previous key tile is consumed (the first time: the query tile is written)
    for (int i = thread; i < kPrefillKeys * chunks; i += kThreads) {
      const int j = i / chunks, d = i % chunks * kElems;
      Vector key{}, value{};
      if (first_key + j < kv_length) {
        const int64_t offset = kv_offset + int64_t(first_key + j) * kv_row + d;
        key = load_vector<kElems>(keys + offset);
        value = load_vector<kElems>(values + offset);
      }
      unpack<kElems>(key, key_tile + j * key_stride + d);
      *reinterpret_cast<Vector*>(value_tile + j * head_dim + d) = value;
    }
    __syncthreads();

    // Scores of this warp's rows against key `lane`.
    float score[kPrefillRowsPerWarp] = {};
    const float* key_row = key_tile + lane * key_stride;
    int d = 0;
    for (; d + 4 <= head_dim; d += 4) {
      const float k0 = key_row[d], k1 = key_row[d + 1], k2 = key_row[d + 2], k3 = key_row[d + 3];
#pragma unroll
      for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
        const float4 query = *reinterpret_cast<const float4*>(query_tile + (first_row + r) * query_stride + d);
        score[r] += query.x * k0 + query.y * k1 + query.z * k2 + query.w * k3;
      }
    }
    if (d < head_dim) {  // head_dim ≡ 2 (mod 4)
      const float k0 = key_row[d], k1 = key_row[d + 1];
#pragma unroll
      for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
        const float2 query = *reinterpret_cast<const float2*>(query_tile + (first_row + r) * query_stride + d);
        score[r] += query.x * k0 + query.y * k1;
      }
    }

    const int key_position = first_key + lane;
#pragma unroll
    for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
      const int query_position = start + first_query + first_row + r;
      const float masked = key_position <= query_position ? score[r] : -INFINITY;
      // Finite: every row sees key 0 in its first tile.
      const float new_max = fmaxf(running_max[r], warp_max(masked));
      const float correction = exp2f(running_max[r] - new_max);
      const float probability = exp2f(masked - new_max);
      lane_sum[r] = lane_sum[r] * correction + probability;
      running_max[r] = new_max;
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) accumulator[r][i] *= correction;
      probability_tile[warp][r][lane] = probability;
    }
    __syncwarp();

    for (int j = 0; j < kPrefillKeys; j += 4) {
      float value[4][kDimsPerLane];
#pragma unroll
      for (int jj = 0; jj < 4; ++jj)
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) {
          const int dim = lane + 32 * i;
          value[jj][i] = dim < head_dim ? __half2float(value_tile[(j + jj) * head_dim + dim]) : 0.0f;
        }
#pragma unroll
      for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
        const float4 p = *reinterpret_cast<const float4*>(&probability_tile[warp][r][j]);
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i)
          accumulator[r][i] += p.x * value[0][i] + p.y * value[1][i] + p.z * value[2][i] + p.w * value[3][i];
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kPrefillRowsPerWarp; ++r) {
    const float total = warp_sum(lane_sum[r]);
    const int row = first_query + first_row + r;
    if (row >= seq) continue;
    __half* destination = out + (int64_t(b) * seq + row) * heads * head_dim + int64_t(h) * head_dim;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i)
      if (lane + 32 * i < head_dim) destination[lane + 32 * i] = __float2half_rn(accumulator[r][i] / total);
  }
}

// Prefill on the tensor cores (mma.sync m16n8k16, f16 in, f32 sums), for head_dim 64 and 128: a block
// takes 64 queries of one head, 16 per warp, against tiles of 64 keys; scores, probabilities and the
// output stay in the mma's registers (the scores' accumulator layout is the probabilities' A-fragment
// layout, as in FlashAttention-2).
//
// Fragments come from shared memory in 16-byte loads, using that a sum over k does not depend on the
// order of k as long as A and B agree on it (as int_gemm.cu does):
// - scores: lane (group, tig) takes dims 32c + 8·tig .. + 7 of its query rows and of key group; words
//   0-1 feed the mma of dims-chunk 2c, words 2-3 that of 2c + 1;
// - values: stored transposed ([dim][key]) with the keys of a tile permuted so that the keys
//   8t + 2·tig + {0, 1} (t = 0..7) that lane tig's probabilities hold lie together: key 8t + 2·tig + e
//   at column 16·tig + 2t + e.
constexpr int kMmaRowsPerWarp = 16;
constexpr int kMmaQueries = kWarps * kMmaRowsPerWarp;
constexpr int kMmaKeys = 64;

__device__ __forceinline__ int permuted_key(int key) { return key % 8 / 2 * 16 + key / 8 * 2 + key % 2; }

__device__ __forceinline__ uint32_t pack_halves(float low, float high) {
  return uint32_t{__half_as_ushort(__float2half_rn(low))} | uint32_t{__half_as_ushort(__float2half_rn(high))} << 16;
}

template <int kHeadDim>
__global__ void __launch_bounds__(kThreads)
    prefill_attention_mma_kernel(const __half* q, int64_t q_row_stride, const __half* keys, const __half* values,
                                 __half* out, int seq, int start, int64_t capacity, int heads, int kv_heads,
                                 float q_scale) {
  static_assert(kHeadDim % 32 == 0 && kHeadDim <= kMaxHeadDim);
  constexpr int kChunks = kHeadDim / 32;  // 32-dim chunks: one 16-byte load per lane and row
  // Row strides padded so that the 8 lanes of a quarter warp (two rows × 64 bytes of keys, or eight rows ×
  // 16 bytes of values) hit distinct banks: key rows ≡ 64 bytes (mod 128), value rows ≡ 16.
  constexpr int kKeyStride = kHeadDim + 32, kValueStride = kMmaKeys + 8;
  __align__(16) __shared__ __half key_tile[kMmaKeys * kKeyStride];
  __align__(16) __shared__ __half value_tile[kHeadDim * kValueStride];  // transposed, keys permuted

  const int thread = threadIdx.x, warp = thread / 32, lane = thread % 32, group = lane / 4, tig = lane % 4;
  const int first_query = (int(gridDim.x) - 1 - int(blockIdx.x)) * kMmaQueries;  // the longest tiles first
  const int h = blockIdx.y, b = blockIdx.z, g = h / (heads / kv_heads);
  const int rows[2] = {first_query + warp * kMmaRowsPerWarp + group, first_query + warp * kMmaRowsPerWarp + group + 8};

  uint4 query[2][kChunks];  // rows group and group + 8 (zeros past seq)
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int c = 0; c < kChunks; ++c)
      query[r][c] = rows[r] < seq ? load_vector<8>(q + (int64_t(b) * seq + rows[r]) * q_row_stride +
                                                    int64_t(h) * kHeadDim + 32 * c + 8 * tig)
                                  : uint4{0, 0, 0, 0};

  const int kv_length = start + min(seq, first_query + kMmaQueries);
  const int64_t kv_row = int64_t(kv_heads) * kHeadDim;
  const int64_t kv_offset = (int64_t(b) * capacity * kv_heads + g) * kHeadDim;
  const int last_position = start + first_query + warp * kMmaRowsPerWarp + kMmaRowsPerWarp - 1;  // of this warp

  float output[kHeadDim / 8][4] = {};
  float running_max[2] = {-INFINITY, -INFINITY}, lane_sum[2] = {0.0f, 0.0f};  // lane_sum: this lane's keys only
  for (int first_key = 0; first_key < kv_length; first_key += kMmaKeys) {
    __syncthreads();  // the previous tiles are consumed
    for (int i = thread; i < kMmaKeys * kHeadDim / 8; i += kThreads) {
      // Keys: consecutive threads along a row (coalesced). Values: consecutive threads down the keys, so
      // that a warp's transposed 2-byte stores fall in distinct banks.
      const int key_row = i / (kHeadDim / 8), key_dim = i % (kHeadDim / 8) * 8;
      const int value_row = i % kMmaKeys, value_dim = i / kMmaKeys * 8;
      uint4 key{0, 0, 0, 0}, value{0, 0, 0, 0};
      if (first_key + key_row < kv_length)
        key = load_vector<8>(keys + kv_offset + int64_t(first_key + key_row) * kv_row + key_dim);
      if (first_key + value_row < kv_length)
        value = load_vector<8>(values + kv_offset + int64_t(first_key + value_row) * kv_row + value_dim);
      *reinterpret_cast<uint4*>(key_tile + key_row * kKeyStride + key_dim) = key;
      __half halves[8];
      memcpy(halves, &value, sizeof value);
#pragma unroll
      for (int e = 0; e < 8; ++e) value_tile[(value_dim + e) * kValueStride + permuted_key(value_row)] = halves[e];
    }
    __syncthreads();
    if (first_key > last_position) continue;  // every key of the tile is in this warp's future

    float score[kMmaKeys / 8][4] = {};
#pragma unroll
    for (int t = 0; t < kMmaKeys / 8; ++t)
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        const uint4 key = *reinterpret_cast<const uint4*>(key_tile + (8 * t + group) * kKeyStride + 32 * c + 8 * tig);
        const uint32_t first_a[4] = {query[0][c].x, query[1][c].x, query[0][c].y, query[1][c].y};
        const uint32_t second_a[4] = {query[0][c].z, query[1][c].z, query[0][c].w, query[1][c].w};
        const uint32_t first_b[2] = {key.x, key.y}, second_b[2] = {key.z, key.w};
        mma_f16_m16n8k16(score[t], first_a, first_b, score[t]);
        mma_f16_m16n8k16(score[t], second_a, second_b, score[t]);
      }

    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int t = 0; t < kMmaKeys / 8; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key_position = first_key + 8 * t + 2 * tig + e % 2;
        score[t][e] = key_position <= start + rows[e / 2] ? score[t][e] * q_scale : -INFINITY;
        tile_max[e / 2] = fmaxf(tile_max[e / 2], score[t][e]);
      }
    float correction[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      // The four lanes of a group hold one row. Finite: every row sees key 0 in its first tile.
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(kFullMask, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(kFullMask, tile_max[r], 2));
      const float new_max = fmaxf(running_max[r], tile_max[r]);
      correction[r] = exp2f(running_max[r] - new_max);
      running_max[r] = new_max;
      lane_sum[r] *= correction[r];
    }
#pragma unroll
    for (int t = 0; t < kMmaKeys / 8; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        score[t][e] = exp2f(score[t][e] - running_max[e / 2]);
        lane_sum[e / 2] += score[t][e];
      }
#pragma unroll
    for (int d = 0; d < kHeadDim / 8; ++d)
#pragma unroll
      for (int e = 0; e < 4; ++e) output[d][e] *= correction[e / 2];

    // output += probabilities · values, 16 keys (score tiles 2u and 2u + 1) per mma.
    uint32_t probability[kMmaKeys / 16][4];
#pragma unroll
    for (int u = 0; u < kMmaKeys / 16; ++u) {
      probability[u][0] = pack_halves(score[2 * u][0], score[2 * u][1]);
      probability[u][1] = pack_halves(score[2 * u][2], score[2 * u][3]);
      probability[u][2] = pack_halves(score[2 * u + 1][0], score[2 * u + 1][1]);
      probability[u][3] = pack_halves(score[2 * u + 1][2], score[2 * u + 1][3]);
    }
#pragma unroll
    for (int d = 0; d < kHeadDim / 8; ++d) {
      const __half* value_row = value_tile + (8 * d + group) * kValueStride + 16 * tig;
      const uint4 low = *reinterpret_cast<const uint4*>(value_row), high = *reinterpret_cast<const uint4*>(value_row + 8);
      const uint32_t words[8] = {low.x, low.y, low.z, low.w, high.x, high.y, high.z, high.w};  // word t: score tile t
#pragma unroll
      for (int u = 0; u < kMmaKeys / 16; ++u) {
        const uint32_t value_b[2] = {words[2 * u], words[2 * u + 1]};
        mma_f16_m16n8k16(output[d], probability[u], value_b, output[d]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float total = lane_sum[r];
    total += __shfl_xor_sync(kFullMask, total, 1);
    total += __shfl_xor_sync(kFullMask, total, 2);
    if (rows[r] >= seq) continue;
    __half* destination = out + (int64_t(b) * seq + rows[r]) * heads * kHeadDim + int64_t(h) * kHeadDim + 2 * tig;
#pragma unroll
    for (int d = 0; d < kHeadDim / 8; ++d)
      *reinterpret_cast<uint32_t*>(destination + 8 * d) = pack_halves(output[d][2 * r] / total, output[d][2 * r + 1] / total);
  }
}

// Grid (splits, heads, batch·seq): the keys of split blockIdx.x for one query and head. Lane groups of a
// power-of-two size each take one key (a 16-byte chunk per lane: 16 lanes for head_dim 128, 1 for 8)
// and keep their own online softmax; groups, then warps, are merged at the end. With one split the block
// writes the output, else its unnormalized accumulator and (max, sum) for combine_splits_kernel.
template <int kElems>
__global__ void __launch_bounds__(kThreads)
    decode_attention_kernel(const __half* q, int64_t q_row_stride, const __half* keys, const __half* values,
                            __half* out, float* partial_accumulators, float2* partial_stats, int seq, int start,
                            int64_t capacity, int heads, int kv_heads, int head_dim, float q_scale,
                            int keys_per_split) {
  using Vector = HalfVectorT<kElems>;
  constexpr int kChunksPerLane = (kMaxHeadDim / kElems + 31) / 32;
  __shared__ float warp_maxima[kWarps], warp_sums[kWarps];
  __shared__ float warp_accumulators[kWarps][kMaxHeadDim];

  const int split = blockIdx.x, splits = gridDim.x, h = blockIdx.y, row = blockIdx.z;
  const int b = row / seq, g = h / (heads / kv_heads);
  const int key_begin = split * keys_per_split, key_end = min(start + row % seq + 1, key_begin + keys_per_split);
  const int thread = threadIdx.x, warp = thread / 32, lane = thread % 32;
  const int chunks = head_dim / kElems;
  int group_lanes = 1;
  while (group_lanes < chunks && group_lanes < 32) group_lanes *= 2;
  const int groups_per_warp = 32 / group_lanes, group = lane / group_lanes, part = lane % group_lanes;
  // This lane's chunks: part + group_lanes·c.
  bool has_chunk[kChunksPerLane];
#pragma unroll
  for (int c = 0; c < kChunksPerLane; ++c) has_chunk[c] = part + group_lanes * c < chunks;

  float query[kChunksPerLane][kElems] = {}, accumulator[kChunksPerLane][kElems] = {};
  const __half* query_row = q + int64_t(row) * q_row_stride + int64_t(h) * head_dim;
#pragma unroll
  for (int c = 0; c < kChunksPerLane; ++c)
    if (has_chunk[c])
      unpack<kElems>(load_vector<kElems>(query_row + (part + group_lanes * c) * kElems), query[c], q_scale);

  const int64_t kv_row = int64_t(kv_heads) * head_dim;
  const int64_t kv_offset = (int64_t(b) * capacity * kv_heads + g) * head_dim + part * kElems;
  float running_max = -INFINITY, running_sum = 0.0f;
  // Warp-uniform trip count (the groups' shuffles must line up); keys past key_end are masked.
  const int keys_per_warp_step = groups_per_warp * kDecodeKeysPerStep;
  for (int first = key_begin + warp * keys_per_warp_step; first < key_end; first += kWarps * keys_per_warp_step) {
    Vector key_chunk[kDecodeKeysPerStep][kChunksPerLane], value_chunk[kDecodeKeysPerStep][kChunksPerLane];
    int key[kDecodeKeysPerStep];
#pragma unroll
    for (int s = 0; s < kDecodeKeysPerStep; ++s) {
      key[s] = first + s * groups_per_warp + group;
      const int64_t offset = kv_offset + min(key[s], key_end - 1) * kv_row;  // clamped: always a valid row
#pragma unroll
      for (int c = 0; c < kChunksPerLane; ++c) {
        key_chunk[s][c] = has_chunk[c] ? load_vector<kElems>(keys + offset + group_lanes * c * kElems) : Vector{};
        value_chunk[s][c] = has_chunk[c] ? load_vector<kElems>(values + offset + group_lanes * c * kElems) : Vector{};
      }
    }
    float score[kDecodeKeysPerStep], step_max = -INFINITY;
#pragma unroll
    for (int s = 0; s < kDecodeKeysPerStep; ++s) {
      float dot = 0.0f;
#pragma unroll
      for (int c = 0; c < kChunksPerLane; ++c) {
        float k[kElems];
        unpack<kElems>(key_chunk[s][c], k);
#pragma unroll
        for (int e = 0; e < kElems; ++e) dot += query[c][e] * k[e];
      }
      for (int offset = group_lanes / 2; offset > 0; offset /= 2) dot += __shfl_xor_sync(kFullMask, dot, offset);
      score[s] = key[s] < key_end ? dot : -INFINITY;
      step_max = fmaxf(step_max, score[s]);
    }
    const float new_max = fmaxf(running_max, step_max);
    const float reference = new_max == -INFINITY ? 0.0f : new_max;  // no keys yet: keep everything at 0
    const float correction = exp2f(running_max - reference);
    running_sum *= correction;
#pragma unroll
    for (int c = 0; c < kChunksPerLane; ++c)
#pragma unroll
      for (int e = 0; e < kElems; ++e) accumulator[c][e] *= correction;
#pragma unroll
    for (int s = 0; s < kDecodeKeysPerStep; ++s) {
      const float p = exp2f(score[s] - reference);
      running_sum += p;
#pragma unroll
      for (int c = 0; c < kChunksPerLane; ++c) {
        float v[kElems];
        unpack<kElems>(value_chunk[s][c], v);
#pragma unroll
        for (int e = 0; e < kElems; ++e) accumulator[c][e] += p * v[e];
      }
    }
    running_max = new_max;
  }

  // Merge the warp's lane groups (same part, different group).
  for (int offset = group_lanes; offset < 32; offset *= 2) {
    const float other_max = __shfl_xor_sync(kFullMask, running_max, offset);
    const float other_sum = __shfl_xor_sync(kFullMask, running_sum, offset);
    const float new_max = fmaxf(running_max, other_max), reference = new_max == -INFINITY ? 0.0f : new_max;
    const float mine = exp2f(running_max - reference), theirs = exp2f(other_max - reference);
    running_sum = running_sum * mine + other_sum * theirs;
#pragma unroll
    for (int c = 0; c < kChunksPerLane; ++c)
#pragma unroll
      for (int e = 0; e < kElems; ++e)
        accumulator[c][e] = accumulator[c][e] * mine + __shfl_xor_sync(kFullMask, accumulator[c][e], offset) * theirs;
    running_max = new_max;
  }
  if (group == 0) {
#pragma unroll
    for (int c = 0; c < kChunksPerLane; ++c)
      if (has_chunk[c])
#pragma unroll
        for (int e = 0; e < kElems; ++e)
          warp_accumulators[warp][(part + group_lanes * c) * kElems + e] = accumulator[c][e];
    if (part == 0) {
      warp_maxima[warp] = running_max;
      warp_sums[warp] = running_sum;
    }
  }
  __syncthreads();

  if (thread >= head_dim) return;
  float block_max = -INFINITY;
  for (int w = 0; w < kWarps; ++w) block_max = fmaxf(block_max, warp_maxima[w]);
  const float reference = block_max == -INFINITY ? 0.0f : block_max;
  float sum = 0.0f, value = 0.0f;
  for (int w = 0; w < kWarps; ++w) {
    const float weight = exp2f(warp_maxima[w] - reference);
    sum += warp_sums[w] * weight;
    value += warp_accumulators[w][thread] * weight;
  }
  const int64_t slot = (int64_t(row) * heads + h) * splits + split;
  if (splits == 1)
    out[(int64_t(row) * heads + h) * head_dim + thread] = __float2half_rn(value / sum);
  else {
    partial_accumulators[slot * head_dim + thread] = value;
    if (thread == 0) partial_stats[slot] = make_float2(block_max, sum);
  }
}

// Grid (heads, batch·seq), a thread per output dimension: the splits' softmaxes rescaled to their common max.
__global__ void combine_splits_kernel(const float* partial_accumulators, const float2* partial_stats, __half* out,
                                      int heads, int head_dim, int splits) {
  const int h = blockIdx.x, row = blockIdx.y, d = threadIdx.x;
  if (d >= head_dim) return;
  const int64_t first_slot = (int64_t(row) * heads + h) * splits;
  float block_max = -INFINITY;  // finite: split 0 always holds key 0
  for (int s = 0; s < splits; ++s) block_max = fmaxf(block_max, partial_stats[first_slot + s].x);
  float sum = 0.0f, value = 0.0f;
  for (int s = 0; s < splits; ++s) {
    const float2 stats = partial_stats[first_slot + s];
    const float weight = exp2f(stats.x - block_max);
    sum += stats.y * weight;
    value += partial_accumulators[(first_slot + s) * head_dim + d] * weight;
  }
  out[(int64_t(row) * heads + h) * head_dim + d] = __float2half_rn(value / sum);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The widest access (8, 2 or 1 halves) that every pointer's alignment and every element count allows.
int vector_width(std::initializer_list<const void*> pointers, std::initializer_list<int64_t> counts) {
  for (int width : {8, 2}) {
    const bool aligned = std::all_of(pointers.begin(), pointers.end(), [&](const void* pointer) {
      return reinterpret_cast<uintptr_t>(pointer) % (width * sizeof(__half)) == 0;
    });
    if (aligned && std::all_of(counts.begin(), counts.end(), [&](int64_t count) { return count % width == 0; }))
      return width;
  }
  return 1;
}

// The decode kernels' partial results; kept per calling thread and grown on demand, so that decode steps
// do not allocate (a cudaFree would also synchronize the device).
float* decode_scratch(size_t floats) {
  thread_local DeviceBuffer scratch;
  if (scratch.bytes() < floats * sizeof(float)) scratch = DeviceBuffer(floats * sizeof(float));
  return scratch.as<float>();
}

template <int kElems>
void launch_append_kv(const __half* k, const __half* v, int64_t rows, int64_t seq, int64_t start, int64_t width,
                      int64_t row_stride, __half* keys, __half* values, int64_t capacity) {
  constexpr int kBlock = 256;
  const int64_t blocks = std::min<int64_t>(ceil_div(rows * width / kElems, kBlock), 4096);
  FQ_LAUNCH(dim3(unsigned(blocks)), dim3(kBlock), 0, nullptr, append_kv_kernel<kElems>)
  (k, v, rows, seq, start, width, row_stride, keys, values, capacity);
  FQ_CHECK_LAUNCH();
}

template <int kElems>
void launch_attention(const __half* q, int64_t q_row_stride, const __half* keys, const __half* values, __half* out,
                      int64_t batch, int64_t seq, int64_t start, int64_t capacity, int64_t heads, int64_t kv_heads,
                      int64_t head_dim) {
  const float q_scale = kLog2e / std::sqrt(float(head_dim));
  if (seq > kMaxDecodeQueries && kElems == 8 && (head_dim == 64 || head_dim == 128)) {
    const dim3 grid{unsigned(ceil_div(seq, kMmaQueries)), unsigned(heads), unsigned(batch)};
    const auto kernel = head_dim == 64 ? prefill_attention_mma_kernel<64> : prefill_attention_mma_kernel<128>;
    FQ_LAUNCH(grid, dim3(kThreads), 0, nullptr, kernel)
    (q, q_row_stride, keys, values, out, int(seq), int(start), capacity, int(heads), int(kv_heads), q_scale);
    FQ_CHECK_LAUNCH();
    return;
  }
  if (seq > kMaxDecodeQueries) {
    const dim3 grid{unsigned(ceil_div(seq, kPrefillQueries)), unsigned(heads), unsigned(batch)};
    FQ_LAUNCH(grid, dim3(kThreads), 0, nullptr, prefill_attention_kernel<kElems>)
    (q, q_row_stride, keys, values, out, int(seq), int(start), capacity, int(heads), int(kv_heads), int(head_dim),
     q_scale);
    FQ_CHECK_LAUNCH();
    return;
  }
  const int64_t rows = batch * seq, kv_length = start + seq;
  int64_t splits =
      std::clamp(ceil_div(kDecodeTargetBlocks, rows * heads), int64_t{1}, ceil_div(kv_length, kMinKeysPerSplit));
  const int64_t keys_per_split = ceil_div(kv_length, splits);
  splits = ceil_div(kv_length, keys_per_split);
  float* partial_accumulators = nullptr;
  float2* partial_stats = nullptr;
  if (splits > 1) {
    const int64_t slots = rows * heads * splits;
    partial_accumulators = decode_scratch(size_t(slots * (head_dim + 2)));
    partial_stats = reinterpret_cast<float2*>(partial_accumulators + slots * head_dim);  // head_dim even: aligned
  }
  const dim3 grid{unsigned(splits), unsigned(heads), unsigned(rows)};
  FQ_LAUNCH(grid, dim3(kThreads), 0, nullptr, decode_attention_kernel<kElems>)
  (q, q_row_stride, keys, values, out, partial_accumulators, partial_stats, int(seq), int(start), capacity, int(heads),
   int(kv_heads), int(head_dim), q_scale, int(keys_per_split));
  FQ_CHECK_LAUNCH();
  if (splits > 1) {
    FQ_LAUNCH(dim3(unsigned(heads), unsigned(rows)), dim3(unsigned(ceil_div(head_dim, 32) * 32)), 0, nullptr,
              combine_splits_kernel)
    (partial_accumulators, partial_stats, out, int(heads), int(head_dim), int(splits));
    FQ_CHECK_LAUNCH();
  }
}

}  // namespace

void append_kv(const __half* k, const __half* v, int64_t batch, int64_t seq, int64_t start, int64_t kv_heads,
               int64_t head_dim, int64_t row_stride, __half* keys, __half* values, int64_t capacity) {
  check(batch > 0 && seq > 0 && kv_heads > 0 && head_dim > 0,
        "append_kv: batch {}, seq {}, kv_heads {}, head_dim {} must be positive", batch, seq, kv_heads, head_dim);
  check(start >= 0 && start + seq <= capacity, "append_kv: positions {}..{} do not fit the cache's capacity {}", start,
        start + seq - 1, capacity);
  const int64_t width = kv_heads * head_dim;
  check(row_stride >= width, "append_kv: row_stride {} is below kv_heads·head_dim = {}", row_stride, width);
  switch (vector_width({k, v, keys, values}, {width, row_stride})) {
    case 8:
      return launch_append_kv<8>(k, v, batch * seq, seq, start, width, row_stride, keys, values, capacity);
    case 2:
      return launch_append_kv<2>(k, v, batch * seq, seq, start, width, row_stride, keys, values, capacity);
    default:
      return launch_append_kv<1>(k, v, batch * seq, seq, start, width, row_stride, keys, values, capacity);
  }
}

void attention(const __half* q, int64_t q_row_stride, const __half* keys, const __half* values, __half* out,
               int64_t batch, int64_t seq, int64_t start, int64_t capacity, int64_t heads, int64_t kv_heads,
               int64_t head_dim) {
  check(batch > 0 && seq > 0 && heads > 0 && kv_heads > 0,
        "attention: batch {}, seq {}, heads {}, kv_heads {} must be positive", batch, seq, heads, kv_heads);
  check(head_dim > 0 && head_dim % 2 == 0 && head_dim <= kMaxHeadDim,
        "attention: head_dim {} must be even and at most {}", head_dim, kMaxHeadDim);
  check(heads % kv_heads == 0, "attention: heads {} is not a multiple of kv_heads {}", heads, kv_heads);
  check(start >= 0 && start + seq <= capacity && capacity <= INT_MAX,
        "attention: positions {}..{} do not fit the cache's capacity {}", start, start + seq - 1, capacity);
  check(q_row_stride >= heads * head_dim, "attention: q_row_stride {} is below heads·head_dim = {}", q_row_stride,
        heads * head_dim);
  check(batch <= 65535 && heads <= 65535 && (seq > kMaxDecodeQueries || batch * seq <= 65535),
        "attention: batch {} or heads {} exceed the grid", batch, heads);
  switch (vector_width({q, keys, values}, {q_row_stride, head_dim})) {
    case 8:
      return launch_attention<8>(q, q_row_stride, keys, values, out, batch, seq, start, capacity, heads, kv_heads,
                                 head_dim);
    case 2:
      return launch_attention<2>(q, q_row_stride, keys, values, out, batch, seq, start, capacity, heads, kv_heads,
                                 head_dim);
    default:
      fail("attention: q, keys and values must be 4-byte aligned and q_row_stride ({}) even", q_row_stride);
  }
}

}  // namespace fq::FQ_CUDA_NS
