// Integer GEMM kernels with the fused rescale (int_gemm.h), on the mma.sync wrappers of mma.h.
//
// The kernels feed the mma 64 operand bytes of each row per step (a "chunk": 64 int8 codes, or 128
// int4 codes for the s4 mma, two mma deep) and load it as 16-byte vectors: lane (group, tig) of an
// m16n8 tile takes bytes 16·tig .. 16·tig + 15 of the chunk of A rows group and group + 8 and of B
// column group, and gives words 0-1 to the first mma and words 2-3 to the second. That is the PTX
// fragment layout (mma.h) applied to a permutation of k, the same for A and B because in both a
// lane's k depends on tig alone, so the sums are unchanged and no ldmatrix or byte shuffle is needed.
#include "backends/cuda/int_gemm.h"

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string_view>

#include "backends/cuda/device.h"
#include "backends/cuda/mma.h"
#include "backends/cuda/wgmma.h"
#include "fq/error.h"

namespace fq::FQ_CUDA_NS {

namespace {

// How the operands are stored (activation codes × weight codes), which picks the mma.
enum class Operands {
  i8_i8,  // int8 × int8: s8 mma
  i8_i4,  // int8 × packed int4, the weights unpacked to int8 as they are loaded: s8 mma (W4A8)
  i4_i4,  // packed int4 × packed int4: s4 mma
};

constexpr int kChunkBytes = 64;
constexpr int kSegmentBytes = 16;  // one lane's load
constexpr int kSegmentsPerRow = kChunkBytes / kSegmentBytes;

// What the kernels take: the operands, their shape and the rescale.
struct Gemm {
  const uint8_t* a;   // [rows, row_bytes]
  const uint8_t* b;   // [n, row_bytes] as the mma sees it (half that in memory when int4 weights are unpacked)
  int64_t rows, n;
  int64_t row_bytes;  // k, or k / 2 for packed int4 activations
  int64_t chunks;     // row_bytes / kChunkBytes, rounded up (a packed row may end halfway into a chunk)
  const float* steps;
  bool step_per_row;
  const float* scales;
  bool scale_per_column;
  const float* bias;  // or nullptr
  __half* out;        // [rows, n]; unused with epilogue.residual
  Epilogue epilogue;

  __device__ __forceinline__ float rescale(int64_t row, int64_t column, int32_t sum) const {
    const float step = __ldg(steps + (step_per_row ? row : 0));
    const float scale = __ldg(scales + (scale_per_column ? column : 0));
    return apply_activation(epilogue,
                            fmaf(static_cast<float>(sum), step * scale, bias ? __ldg(bias + column) : 0.0f));
  }
  __device__ __forceinline__ void store(int64_t row, int64_t column, int32_t sum) const {
    if (row >= rows || column >= n) return;
    if (epilogue.residual)
      epilogue.residual[row * n + column] += rescale(row, column, sum);
    else
      out[row * n + column] = __float2half_rn(rescale(row, column, sum));
  }
  // Columns `column` (even) and column + 1 of a row, as one 4-byte store where the row allows it.
  __device__ __forceinline__ void store_pair(int64_t row, int64_t column, int32_t sum0, int32_t sum1) const {
    struct alignas(4) HalfPair {
      __half first, second;
    };
    if (row < rows && column + 1 < n && n % 2 == 0 && !epilogue.residual) {
      *reinterpret_cast<HalfPair*>(out + row * n + column) =
          HalfPair{__float2half_rn(rescale(row, column, sum0)), __float2half_rn(rescale(row, column + 1, sum1))};
    } else {
      store(row, column, sum0);
      store(row, column + 1, sum1);
    }
  }
};

// Sign-extends the eight nibbles of `nibbles & 0x0f0f0f0f` in their bytes: ((v ^ 8) + 0x78) ^ 0x80 is
// v, or v - 16 (mod 256) when v ≥ 8, and never carries into the next byte.
__device__ __forceinline__ uint32_t widen_nibbles(uint32_t nibbles) {
  return (((nibbles & 0x0f0f0f0fu) ^ 0x08080808u) + 0x78787878u) ^ 0x80808080u;
}

// Eight packed int4 codes (low nibble first) as eight int8 codes in the same order.
__device__ __forceinline__ uint2 unpack_int4x8(uint32_t packed) {
  const uint32_t even = widen_nibbles(packed), odd = widen_nibbles(packed >> 4);
  return {__byte_perm(even, odd, 0x5140), __byte_perm(even, odd, 0x7362)};
}

// 16 bytes of row `row` of an operand as the mma sees it, from byte `offset` of the row; zeros for a
// row outside the matrix (`inside` false) or an offset past its end. kUnpack: the matrix holds packed
// int4 codes, half as many bytes, which are unpacked to int8.
template <bool kUnpack>
__device__ __forceinline__ uint4 load_segment(const uint8_t* matrix, int64_t row_bytes, int64_t row, bool inside,
                                              int64_t offset) {
  if (!inside || offset >= row_bytes) return {0, 0, 0, 0};
  if constexpr (kUnpack) {
    const uint2 packed = __ldg(reinterpret_cast<const uint2*>(matrix + (row * row_bytes + offset) / 2));
    const uint2 low = unpack_int4x8(packed.x), high = unpack_int4x8(packed.y);
    return {low.x, low.y, high.x, high.y};
  } else {
    return __ldg(reinterpret_cast<const uint4*>(matrix + row * row_bytes + offset));
  }
}

// The two mma of one chunk for one m16n8 tile: a_top / a_bottom the lane's segments of rows group and
// group + 8, b its segment of column group (see the top of the file).
template <Operands kOperands>
__device__ __forceinline__ void mma_chunk(int32_t acc[4], const uint4& a_top, const uint4& a_bottom, const uint4& b) {
  const uint32_t a_first[4] = {a_top.x, a_bottom.x, a_top.y, a_bottom.y}, b_first[2] = {b.x, b.y};
  const uint32_t a_second[4] = {a_top.z, a_bottom.z, a_top.w, a_bottom.w}, b_second[2] = {b.z, b.w};
  if constexpr (kOperands == Operands::i4_i4) {
    mma_s4_m16n8k64(acc, a_first, b_first, acc);
    mma_s4_m16n8k64(acc, a_second, b_second, acc);
  } else {
    mma_s8_m16n8k32(acc, a_first, b_first, acc);
    mma_s8_m16n8k32(acc, a_second, b_second, acc);
  }
}

// The output tile a block of a 1-D grid computes. Blocks in launch order go down kGroupRows row tiles,
// then one column tile right, so that the blocks resident at once share a few row panels of the codes and
// column panels of the weights in L2, instead of every wave streaming all of the weights again.
struct OutputTile {
  int64_t row, column;  // tile indices
};
constexpr int64_t kGroupRows = 8;
__device__ __forceinline__ OutputTile grouped_tile(int64_t block, int64_t row_tiles, int64_t column_tiles) {
  const int64_t group = block / (kGroupRows * column_tiles), first = group * kGroupRows;
  const int64_t rows_in_group = row_tiles - first < kGroupRows ? row_tiles - first : kGroupRows;
  const int64_t within = block % (kGroupRows * column_tiles);
  return {first + within % rows_in_group, within / rows_in_group};
}

// Many rows: 128×128 output tiles, 8 warps of 64×32 (4×4 mma tiles each); chunks are staged in shared
// memory, double buffered so that the next chunk's global loads are in flight during the mma.
constexpr int kTileM = 128, kTileN = 128;
constexpr int kWarpsM = 2, kWarpsN = 4;
constexpr int kTileThreads = 32 * kWarpsM * kWarpsN;
constexpr int kWarpTileM = kTileM / kWarpsM, kWarpTileN = kTileN / kWarpsN;
constexpr int kMmaTilesM = kWarpTileM / 16, kMmaTilesN = kWarpTileN / 8;
constexpr int kTileLoads = kTileM * kSegmentsPerRow / kTileThreads;  // segments of A (and of B) per thread
static_assert(kTileM == kTileN && kTileM * kSegmentsPerRow % kTileThreads == 0);

template <Operands kOperands>
__global__ void __launch_bounds__(kTileThreads) int_gemm_tiled(Gemm gemm) {
  constexpr bool kUnpack = kOperands == Operands::i8_i4;
  // Rows of 64 bytes: the 8 lanes of a quarter warp read 2 rows × 64 bytes, all 32 banks, no conflict.
  __align__(16) __shared__ uint8_t a_tile[2][kTileM][kChunkBytes];
  __align__(16) __shared__ uint8_t b_tile[2][kTileN][kChunkBytes];
  const OutputTile tile = grouped_tile(blockIdx.x, (gemm.rows + kTileM - 1) / kTileM, (gemm.n + kTileN - 1) / kTileN);
  const int64_t first_row = tile.row * kTileM, first_column = tile.column * kTileN;

  uint4 a_next[kTileLoads], b_next[kTileLoads];
  auto fetch = [&](int64_t chunk) {
#pragma unroll
    for (int i = 0; i < kTileLoads; ++i) {
      const int segment = threadIdx.x + i * kTileThreads, r = segment / kSegmentsPerRow;
      const int64_t offset = chunk * kChunkBytes + segment % kSegmentsPerRow * kSegmentBytes;
      a_next[i] = load_segment<false>(gemm.a, gemm.row_bytes, first_row + r, first_row + r < gemm.rows, offset);
      b_next[i] = load_segment<kUnpack>(gemm.b, gemm.row_bytes, first_column + r, first_column + r < gemm.n, offset);
    }
  };
  auto stage = [&](int buffer) {
#pragma unroll
    for (int i = 0; i < kTileLoads; ++i) {
      const int segment = threadIdx.x + i * kTileThreads, r = segment / kSegmentsPerRow;
      const int at = segment % kSegmentsPerRow * kSegmentBytes;
      *reinterpret_cast<uint4*>(&a_tile[buffer][r][at]) = a_next[i];
      *reinterpret_cast<uint4*>(&b_tile[buffer][r][at]) = b_next[i];
    }
  };

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, tig = lane % 4;
  const int warp_row = warp / kWarpsN * kWarpTileM, warp_column = warp % kWarpsN * kWarpTileN;
  int32_t acc[kMmaTilesM][kMmaTilesN][4] = {};
  fetch(0);
  stage(0);
  __syncthreads();
  for (int64_t chunk = 0; chunk < gemm.chunks; ++chunk) {
    const int buffer = static_cast<int>(chunk % 2);
    const bool more = chunk + 1 < gemm.chunks;
    if (more) fetch(chunk + 1);
    uint4 a_top[kMmaTilesM], a_bottom[kMmaTilesM], b[kMmaTilesN];
#pragma unroll
    for (int mi = 0; mi < kMmaTilesM; ++mi) {
      const int row = warp_row + 16 * mi + group;
      a_top[mi] = *reinterpret_cast<const uint4*>(&a_tile[buffer][row][tig * kSegmentBytes]);
      a_bottom[mi] = *reinterpret_cast<const uint4*>(&a_tile[buffer][row + 8][tig * kSegmentBytes]);
    }
#pragma unroll
    for (int ni = 0; ni < kMmaTilesN; ++ni)
      b[ni] = *reinterpret_cast<const uint4*>(&b_tile[buffer][warp_column + 8 * ni + group][tig * kSegmentBytes]);
#pragma unroll
    for (int mi = 0; mi < kMmaTilesM; ++mi)
#pragma unroll
      for (int ni = 0; ni < kMmaTilesN; ++ni) mma_chunk<kOperands>(acc[mi][ni], a_top[mi], a_bottom[mi], b[ni]);
    // The other buffer was last read before the previous barrier, so it is free.
    if (more) stage(1 - buffer);
    __syncthreads();
  }

#pragma unroll
  for (int mi = 0; mi < kMmaTilesM; ++mi)
#pragma unroll
    for (int ni = 0; ni < kMmaTilesN; ++ni) {
      const int64_t row = first_row + warp_row + 16 * mi + group;
      const int64_t column = first_column + warp_column + 8 * ni + 2 * tig;
      gemm.store_pair(row, column, acc[mi][ni][0], acc[mi][ni][1]);
      gemm.store_pair(row + 8, column, acc[mi][ni][2], acc[mi][ni][3]);
    }
}

// Up to 16 rows (decoding): bound by reading the weights once, so every block takes a thin slice of
// columns, its warps split k (chunk c goes to warp c % 8) and load their segments straight from global
// memory, several chunks ahead, then add their partial sums in shared memory.
constexpr int kDecodeRows = 16;
constexpr int kDecodeWarps = 8;
constexpr int kDecodeThreads = 32 * kDecodeWarps;
constexpr int kDecodeTilesN = 2;  // n8 mma tiles per block
constexpr int kDecodeColumns = 8 * kDecodeTilesN;
constexpr int kDecodeBatch = 4;  // chunks a warp has in flight
static_assert(kDecodeTilesN * 4 * 32 == kDecodeThreads, "the reduction gives each thread one sum of the block");

template <Operands kOperands>
__global__ void __launch_bounds__(kDecodeThreads) int_gemm_decode(Gemm gemm) {
  constexpr bool kUnpack = kOperands == Operands::i8_i4;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, tig = lane % 4;
  const int64_t first_column = int64_t{blockIdx.x} * kDecodeColumns;
  int32_t acc[kDecodeTilesN][4] = {};
  for (int64_t first = warp; first < gemm.chunks; first += kDecodeWarps * kDecodeBatch) {
    uint4 a_top[kDecodeBatch], a_bottom[kDecodeBatch], b[kDecodeBatch][kDecodeTilesN];
#pragma unroll
    for (int i = 0; i < kDecodeBatch; ++i) {
      // A chunk past the end loads zeros: its offset is past the rows' end.
      const int64_t offset = (first + i * kDecodeWarps) * kChunkBytes + tig * kSegmentBytes;
      a_top[i] = load_segment<false>(gemm.a, gemm.row_bytes, group, group < gemm.rows, offset);
      a_bottom[i] = load_segment<false>(gemm.a, gemm.row_bytes, group + 8, group + 8 < gemm.rows, offset);
#pragma unroll
      for (int ni = 0; ni < kDecodeTilesN; ++ni) {
        const int64_t column = first_column + 8 * ni + group;
        b[i][ni] = load_segment<kUnpack>(gemm.b, gemm.row_bytes, column, column < gemm.n, offset);
      }
    }
#pragma unroll
    for (int i = 0; i < kDecodeBatch; ++i) {
      if (first + i * kDecodeWarps >= gemm.chunks) break;  // the same for the whole warp
#pragma unroll
      for (int ni = 0; ni < kDecodeTilesN; ++ni) mma_chunk<kOperands>(acc[ni], a_top[i], a_bottom[i], b[i][ni]);
    }
  }

  // partial[w][slot][lane]: accumulator `slot` (n8 tile · 4 + register) of `lane` in warp w; thread
  // (warp, lane) then adds up one of them over the warps.
  __shared__ int32_t partial[kDecodeWarps][kDecodeTilesN * 4][32];
#pragma unroll
  for (int ni = 0; ni < kDecodeTilesN; ++ni)
#pragma unroll
    for (int i = 0; i < 4; ++i) partial[warp][ni * 4 + i][lane] = acc[ni][i];
  __syncthreads();
  int32_t sum = 0;
#pragma unroll
  for (int w = 0; w < kDecodeWarps; ++w) sum += partial[w][warp][lane];
  const int tile = warp / 4, i = warp % 4;
  gemm.store(group + 8 * (i / 2), first_column + 8 * tile + 2 * tig + i % 2, sum);
}

// Many rows on Hopper: 128×256 output tiles for two warpgroups (64 rows each, one m64n256k32 wgmma per
// 32 bytes of k), operands staged by cp.async in kWgmmaStages shared-memory stages of 128 bytes of k. A
// stage is refilled two tiles after it was multiplied, so one group of wgmma stays in flight while the
// next tile's copies are issued and two more tiles' copies are still landing.
constexpr int kWgmmaTileM = 128, kWgmmaTileN = 256, kWgmmaTileK = 128;
constexpr int kWgmmaStages = 4;
constexpr int kWgmmaThreads = 256;
constexpr int kWgmmaSegments = kWgmmaTileK / kSegmentBytes;  // 16-byte segments per row of a stage
constexpr int kWgmmaStageBytes = (kWgmmaTileM + kWgmmaTileN) * kWgmmaTileK;
constexpr int kWgmmaSharedBytes = kWgmmaStages * kWgmmaStageBytes;
static_assert(kWgmmaTileM == 2 * 64 && kWgmmaThreads == 2 * 128 && kWgmmaStages >= 3);
static_assert(kWgmmaTileM * kWgmmaSegments % kWgmmaThreads == 0 && kWgmmaTileN * kWgmmaSegments % kWgmmaThreads == 0);

// An operand tile of rows kSegments · 16 bytes long in wgmma's no-swizzle layout (wgmma.h): core
// matrices of 8 rows × 16 bytes, 128 contiguous bytes each, ordered by row group, then by segment.
template <int kSegments>
struct CoreMatrixTile {
  static constexpr int kCoreBytes = 128;
  static __device__ __forceinline__ int offset(int row, int segment) {
    return (row / 8 * kSegments + segment) * kCoreBytes + row % 8 * kSegmentBytes;
  }
  // The wgmma operand of the rows from `first_row` (a multiple of 8), bytes 32 · step .. 32 · step + 31.
  static __device__ __forceinline__ SharedOperand operand(const uint8_t* tile, int first_row, int step) {
    return {shared_address(tile + offset(first_row, 2 * step)), kCoreBytes, kSegments * kCoreBytes};
  }
};

__global__ void __launch_bounds__(kWgmmaThreads, 1) int_gemm_wgmma(Gemm gemm) {
#if FQ_WGMMA_COMPILED
  using Tile = CoreMatrixTile<kWgmmaSegments>;
  constexpr int kABytes = kWgmmaTileM * kWgmmaTileK;                       // A's part of a stage, then B's
  constexpr int kALoads = kWgmmaTileM * kWgmmaSegments / kWgmmaThreads;  // segments per thread per stage
  constexpr int kLoads = (kWgmmaTileM + kWgmmaTileN) * kWgmmaSegments / kWgmmaThreads;
  FQ_DYNAMIC_SHARED(uint8_t, shared);
  const OutputTile output = grouped_tile(blockIdx.x, (gemm.rows + kWgmmaTileM - 1) / kWgmmaTileM,
                                        (gemm.n + kWgmmaTileN - 1) / kWgmmaTileN);
  const int64_t first_row = output.row * kWgmmaTileM, first_column = output.column * kWgmmaTileN;
  const int64_t tiles = (gemm.row_bytes + kWgmmaTileK - 1) / kWgmmaTileK;
  auto load = [&](int64_t tile) {
    uint8_t* stage = shared + tile % kWgmmaStages * kWgmmaStageBytes;
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const bool is_a = i < kALoads;
      const int index = threadIdx.x + (is_a ? i : i - kALoads) * kWgmmaThreads;
      // Eight consecutive threads fill one core matrix: 128 contiguous bytes, no bank conflict.
      const int row = index / (8 * kWgmmaSegments) * 8 + index % 8, segment = index / 8 % kWgmmaSegments;
      const uint8_t* matrix = is_a ? gemm.a : gemm.b;
      const int64_t matrix_row = (is_a ? first_row : first_column) + row;
      const int64_t offset = tile * kWgmmaTileK + segment * kSegmentBytes;
      const bool inside = matrix_row < (is_a ? gemm.rows : gemm.n) && offset < gemm.row_bytes;
      cp_async_16(stage + (is_a ? 0 : kABytes) + Tile::offset(row, segment),
                  inside ? matrix + matrix_row * gemm.row_bytes + offset : matrix, inside);
    }
  };

  for (int tile = 0; tile < kWgmmaStages - 2; ++tile) {
    if (tile < tiles) load(tile);
    cp_async_commit();  // empty groups too, so that every thread counts the same groups
  }
  const int warpgroup = threadIdx.x / 128;
  int32_t acc[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0;
  for (int64_t tile = 0; tile < tiles; ++tile) {
    // This tile's copies have landed (later ones may be in flight) and, past the barrier, both
    // warpgroups are done with the wgmma of tile - 2, whose stage the next load refills.
    cp_async_wait<kWgmmaStages - 3>();
    fence_proxy_async();
    __syncthreads();
    if (tile + kWgmmaStages - 2 < tiles) load(tile + kWgmmaStages - 2);
    cp_async_commit();
    const uint8_t* stage = shared + tile % kWgmmaStages * kWgmmaStageBytes;
    wgmma_fence();
#pragma unroll
    for (int step = 0; step < kWgmmaSegments / 2; ++step)
      wgmma_s8_m64n256k32(acc, Tile::operand(stage, 64 * warpgroup, step), Tile::operand(stage + kABytes, 0, step));
    wgmma_commit();
    wgmma_wait<1>();
  }
  wgmma_wait<0>();
  wgmma_settle(acc);

  const int warp = threadIdx.x / 32 % 4, lane = threadIdx.x % 32, group = lane / 4, tig = lane % 4;
  const int64_t row = first_row + 64 * warpgroup + 16 * warp + group;
#pragma unroll
  for (int c = 0; c < 32; ++c) {
    const int64_t column = first_column + 8 * c + 2 * tig;
    gemm.store_pair(row, column, acc[4 * c], acc[4 * c + 1]);
    gemm.store_pair(row + 8, column, acc[4 * c + 2], acc[4 * c + 3]);
  }
#else
  (void)gemm;
  __trap();  // launched only where wgmma_supported()
#endif
}

template <Operands kOperands>
void launch(const Gemm& gemm) {
  if (gemm.rows <= kDecodeRows) {
    const dim3 grid(static_cast<unsigned>((gemm.n + kDecodeColumns - 1) / kDecodeColumns));
    FQ_LAUNCH(grid, dim3(kDecodeThreads), 0, nullptr, int_gemm_decode<kOperands>)(gemm);
  } else {
    const dim3 grid(static_cast<unsigned>((gemm.n + kTileN - 1) / kTileN * ((gemm.rows + kTileM - 1) / kTileM)));
    FQ_LAUNCH(grid, dim3(kTileThreads), 0, nullptr, int_gemm_tiled<kOperands>)(gemm);
  }
  FQ_CHECK_LAUNCH();
}

void launch_wgmma(const Gemm& gemm) {
  static const bool allowed = (FQ_ALLOW_DYNAMIC_SHARED(int_gemm_wgmma, kWgmmaSharedBytes), true);
  (void)allowed;
  const dim3 grid(
      static_cast<unsigned>((gemm.n + kWgmmaTileN - 1) / kWgmmaTileN * ((gemm.rows + kWgmmaTileM - 1) / kWgmmaTileM)));
  FQ_LAUNCH(grid, dim3(kWgmmaThreads), kWgmmaSharedBytes, nullptr, int_gemm_wgmma)(gemm);
  FQ_CHECK_LAUNCH();
}

bool aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

// Checks the arguments both launchers share and fills in a Gemm. largest_product: the largest
// |activation code · weight code| the storage allows, which bounds k for exact int32 sums; row_bytes:
// the bytes of a row of codes.
Gemm make_gemm(const char* function, const void* codes, int64_t rows, int64_t k, const void* weights, int64_t n,
               int64_t largest_product, int64_t row_bytes, const float* steps, bool step_per_row,
               const float* weight_scales, bool scale_per_column, const float* bias, __half* out,
               const Epilogue& epilogue) {
  check(rows > 0 && n > 0 && k > 0 && k % 64 == 0,
        "{}: rows {}, k {}, n {} (expected positive sizes, k a multiple of 64)", function, rows, k, n);
  check(k <= std::numeric_limits<int32_t>::max() / largest_product, "{}: k {} is too large for exact int32 sums",
        function, k);
  check((rows + kTileM - 1) / kTileM * ((n + kDecodeColumns - 1) / kDecodeColumns) <= 0x7fffffff,
        "{}: {} rows × {} columns is more than one launch covers", function, rows, n);
  check(codes && weights && steps && weight_scales && (out || epilogue.residual),
        "{}: null codes, weights, steps, weight scales or output", function);
  check(aligned16(codes) && aligned16(weights), "{}: codes and weights must be 16-byte aligned", function);
  return Gemm{.a = static_cast<const uint8_t*>(codes),
              .b = static_cast<const uint8_t*>(weights),
              .rows = rows,
              .n = n,
              .row_bytes = row_bytes,
              .chunks = (row_bytes + kChunkBytes - 1) / kChunkBytes,
              .steps = steps,
              .step_per_row = step_per_row,
              .scales = weight_scales,
              .scale_per_column = scale_per_column,
              .bias = bias,
              .out = out,
              .epilogue = epilogue};
}

// The fragments of mma.h read straight from rows of 32 bytes (int_gemm.h: mma_tile).
template <int kBits>
__global__ void mma_tile_kernel(const uint8_t* a, const uint8_t* b, const int32_t* c, int32_t* d) {
  const int lane = threadIdx.x, group = lane / 4, tig = lane % 4;
  auto word = [](const uint8_t* matrix, int row, int index) {
    return reinterpret_cast<const uint32_t*>(matrix + 32 * row)[index];
  };
  const uint32_t a_regs[4] = {word(a, group, tig), word(a, group + 8, tig), word(a, group, tig + 4),
                              word(a, group + 8, tig + 4)};
  const uint32_t b_regs[2] = {word(b, group, tig), word(b, group, tig + 4)};
  const int top = group * 8 + 2 * tig, bottom = top + 8 * 8;
  const int32_t c_regs[4] = {c[top], c[top + 1], c[bottom], c[bottom + 1]};
  int32_t d_regs[4];
  if constexpr (kBits == 8) {
    mma_s8_m16n8k32(d_regs, a_regs, b_regs, c_regs);
  } else {
    mma_s4_m16n8k64(d_regs, a_regs, b_regs, c_regs);
  }
  d[top] = d_regs[0];
  d[top + 1] = d_regs[1];
  d[bottom] = d_regs[2];
  d[bottom + 1] = d_regs[3];
}

// One wgmma of wgmma.h from row-major operands copied into shared memory by plain stores (wgmma_tile).
constexpr int kWgmmaTileSharedBytes = (64 + 256) * 32;

__global__ void wgmma_tile_kernel(const int8_t* a, const int8_t* b, const int32_t* c, int32_t* d) {
#if FQ_WGMMA_COMPILED
  using Tile = CoreMatrixTile<2>;
  FQ_DYNAMIC_SHARED(uint8_t, shared);
  uint8_t* const a_tile = shared;
  uint8_t* const b_tile = shared + 64 * 32;
  for (int index = threadIdx.x; index < (64 + 256) * 2; index += 128) {
    const bool is_a = index < 64 * 2;
    const int row = (is_a ? index : index - 64 * 2) / 2, segment = index % 2;
    const auto* source = reinterpret_cast<const uint4*>((is_a ? a : b) + row * 32 + segment * kSegmentBytes);
    *reinterpret_cast<uint4*>((is_a ? a_tile : b_tile) + Tile::offset(row, segment)) = __ldg(source);
  }
  fence_proxy_async();
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, tig = lane % 4;
  auto element = [&](int i) { return (16 * warp + group + 8 * (i % 4 / 2)) * 256 + 8 * (i / 4) + 2 * tig + i % 2; };
  int32_t acc[128];
  for (int i = 0; i < 128; ++i) acc[i] = c[element(i)];
  wgmma_fence();
  wgmma_s8_m64n256k32(acc, Tile::operand(a_tile, 0, 0), Tile::operand(b_tile, 0, 0));
  wgmma_commit();
  wgmma_wait<0>();
  wgmma_settle(acc);
  for (int i = 0; i < 128; ++i) d[element(i)] = acc[i];
#else
  (void)a, (void)b, (void)c, (void)d;
  __trap();  // launched only where wgmma_supported()
#endif
}

}  // namespace

void int_gemm_rescale(const int8_t* codes, int64_t rows, int64_t k, const void* weights, int weight_bits, int64_t n,
                      const float* steps, bool step_per_row, const float* weight_scales, bool scale_per_column,
                      const float* bias, __half* out, const Epilogue& epilogue, IntGemmKernel kernel) {
  check(weight_bits == 8 || weight_bits == 4, "int_gemm_rescale: weight_bits {} (expected 8 or 4)", weight_bits);
  const Gemm gemm = make_gemm("int_gemm_rescale", codes, rows, k, weights, n, weight_bits == 8 ? 128 * 128 : 128 * 8,
                              k, steps, step_per_row, weight_scales, scale_per_column, bias, out, epilogue);
  if (kernel == IntGemmKernel::automatic) kernel = automatic_int_gemm_kernel(rows, weight_bits);
  if (kernel == IntGemmKernel::wgmma) {
    check(weight_bits == 8 && wgmma_supported(),
          "int_gemm_rescale: the wgmma kernel needs int8 weights and an sm_90 GPU (H100, H200)");
    launch_wgmma(gemm);
  } else if (weight_bits == 8) {
    launch<Operands::i8_i8>(gemm);
  } else {
    launch<Operands::i8_i4>(gemm);
  }
}

bool wgmma_supported() {
#if FQ_CUDA_EMULATED
  return true;
#else
  static const bool supported = device_available() && device_info().compute_capability == 90;
  return supported;
#endif
}

IntGemmKernel automatic_int_gemm_kernel(int64_t rows, int weight_bits) {
  // FQ_CUDA_WGMMA: 0 never, 1 wherever it runs (the emulator too), unset on sm_90 GPUs; the emulator keeps to
  // mma.sync by default since its wgmma is slower to emulate and has its own tests.
  static const bool wgmma_wanted = [] {
    const char* setting = std::getenv("FQ_CUDA_WGMMA");
    const std::string_view wanted = setting ? setting : "";
    if (wanted == "0") return false;
    return wgmma_supported() && (wanted == "1" || !FQ_CUDA_EMULATED);
  }();
  return rows > kDecodeRows && weight_bits == 8 && wgmma_wanted ? IntGemmKernel::wgmma : IntGemmKernel::mma_sync;
}

void int4_gemm_s4mma(const uint8_t* codes, int64_t rows, int64_t k, const uint8_t* weights, int64_t n,
                     const float* steps, bool step_per_row, const float* weight_scales, bool scale_per_column,
                     const float* bias, __half* out, const Epilogue& epilogue) {
  const Gemm gemm = make_gemm("int4_gemm_s4mma", codes, rows, k, weights, n, 8 * 8, k / 2, steps, step_per_row,
                              weight_scales, scale_per_column, bias, out, epilogue);
  launch<Operands::i4_i4>(gemm);
}

void mma_tile(int bits, const uint8_t* a, const uint8_t* b, const int32_t* c, int32_t* d) {
  check(bits == 8 || bits == 4, "mma_tile: bits {} (expected 8 or 4)", bits);
  check(a && b && c && d, "mma_tile: null operand");
  if (bits == 8) {
    FQ_LAUNCH(dim3(1), dim3(32), 0, nullptr, mma_tile_kernel<8>)(a, b, c, d);
  } else {
    FQ_LAUNCH(dim3(1), dim3(32), 0, nullptr, mma_tile_kernel<4>)(a, b, c, d);
  }
  FQ_CHECK_LAUNCH();
}

void wgmma_tile(const int8_t* a, const int8_t* b, const int32_t* c, int32_t* d) {
  check(wgmma_supported(), "wgmma_tile: wgmma needs an sm_90 GPU (H100, H200)");
  check(a && b && c && d && aligned16(a) && aligned16(b), "wgmma_tile: null or misaligned operand");
  FQ_LAUNCH(dim3(1), dim3(128), kWgmmaTileSharedBytes, nullptr, wgmma_tile_kernel)(a, b, c, d);
  FQ_CHECK_LAUNCH();
}

}  // namespace fq::FQ_CUDA_NS
