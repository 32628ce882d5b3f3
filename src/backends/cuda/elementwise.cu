#include "backends/cuda/elementwise.h"

#include <cmath>
#include <limits>

#include "backends/cuda/epilogue.h"
#include "backends/cuda/kernel_helpers.h"
#include "fq/error.h"

namespace fq::FQ_CUDA_NS {

namespace {

constexpr unsigned kFlatThreads = 256;  // grid-stride kernels over flat arrays
constexpr unsigned kRowThreads = 512;   // the most threads of a kernel with one block per row
constexpr int kHalfPack = 8;            // f16 elements per 16-byte access

// Flat kernels: op.apply<N>(i) handles elements [i, i + N). Packs of N cover all but the last count % N elements,
// which single elements finish.
template <int N, typename Op>
__global__ void __launch_bounds__(kFlatThreads) elementwise_kernel(Op op, int64_t count) {
  const int64_t first = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t packed_end = count / N * N;
  for (int64_t i = first * N; i < packed_end; i += stride * N) op.template apply<N>(i);
  for (int64_t i = packed_end + first; i < count; i += stride) op.template apply<1>(i);
}

template <int N, typename Op>
void launch_elementwise_packed(const Op& op, int64_t count) {
  const int64_t blocks = std::min(ceil_div(ceil_div(count, N), kFlatThreads), resident_blocks(kFlatThreads));
  FQ_LAUNCH(static_cast<unsigned>(blocks), kFlatThreads, 0, nullptr, elementwise_kernel<N, Op>)(op, count);
  FQ_CHECK_LAUNCH();
}

// Runs op over count elements, in 16-byte packs of f16 where its pointers allow (op.aligned<N>()).
template <typename Op>
void launch_elementwise(const Op& op, int64_t count, const char* what) {
  check(count > 0, "cuda {}: {} elements", what, count);
  if (op.template aligned<kHalfPack>())
    launch_elementwise_packed<kHalfPack>(op, count);
  else
    launch_elementwise_packed<1>(op, count);
}

struct AddResidual {
  float* x;
  const __half* branch;
  template <int N>
  bool aligned() const {
    return pack_aligned<N>(x) && pack_aligned<N>(branch);
  }
  template <int N>
  __device__ void apply(int64_t i) const {
    Pack<float, N> sum = load_pack<N>(x + i);
    const Pack<__half, N> add = load_pack<N>(branch + i);
#pragma unroll
    for (int k = 0; k < N; ++k) sum.v[k] += __half2float(add.v[k]);
    store_pack(x + i, sum);
  }
};

struct ConvertToHalf {
  const float* in;
  __half* out;
  template <int N>
  bool aligned() const {
    return pack_aligned<N>(in) && pack_aligned<N>(out);
  }
  template <int N>
  __device__ void apply(int64_t i) const {
    const Pack<float, N> value = load_pack<N>(in + i);
    Pack<__half, N> result;
#pragma unroll
    for (int k = 0; k < N; ++k) result.v[k] = __float2half_rn(value.v[k]);
    store_pack(out + i, result);
  }
};

struct ConvertToFloat {
  const __half* in;
  float* out;
  template <int N>
  bool aligned() const {
    return pack_aligned<N>(in) && pack_aligned<N>(out);
  }
  template <int N>
  __device__ void apply(int64_t i) const {
    const Pack<__half, N> value = load_pack<N>(in + i);
    Pack<float, N> result;
#pragma unroll
    for (int k = 0; k < N; ++k) result.v[k] = __half2float(value.v[k]);
    store_pack(out + i, result);
  }
};

// gate = act(gate) · up, or act(gate) when up is null.
template <Activation kActivation>
struct Activate {
  __half* gate;
  const __half* up;
  template <int N>
  bool aligned() const {
    return pack_aligned<N>(gate) && (!up || pack_aligned<N>(up));
  }
  template <int N>
  __device__ void apply(int64_t i) const {
    Pack<__half, N> value = load_pack<N>(gate + i);
    Pack<__half, N> factor{};
    if (up) factor = load_pack<N>(up + i);
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const float activated = activation_value<kActivation>(__half2float(value.v[k]));
      value.v[k] = __float2half_rn(up ? activated * __half2float(factor.v[k]) : activated);
    }
    store_pack(gate + i, value);
  }
};

void launch_activation(__half* gate, const __half* up, int64_t count, Activation activation) {
  switch (activation) {
    case Activation::relu:
      return launch_elementwise(Activate<Activation::relu>{gate, up}, count, "activation");
    case Activation::silu:
      return launch_elementwise(Activate<Activation::silu>{gate, up}, count, "activation");
    case Activation::gelu:
      return launch_elementwise(Activate<Activation::gelu>{gate, up}, count, "activation");
  }
  fail("cuda activation: unknown activation {}", static_cast<int>(activation));
}

// One block per row: out[r, :] = table[tokens[r], :] when tokens are given, else
// out[r, :] += table[first_position + r % seq, :]. width is a multiple of N.
template <int N>
__global__ void __launch_bounds__(kRowThreads)
    gather_rows_kernel(const int32_t* tokens, int64_t seq, int64_t first_position, const __half* table,
                       int64_t width, float* out) {
  const int64_t row = blockIdx.x;
  const int64_t index = tokens ? int64_t{tokens[row]} : first_position + row % seq;
  const __half* source = table + index * width;
  float* destination = out + row * width;
  for (int64_t c = int64_t{threadIdx.x} * N; c < width; c += int64_t{blockDim.x} * N) {
    const Pack<__half, N> value = load_pack<N>(source + c);
    Pack<float, N> result{};
    if (!tokens) result = load_pack<N>(destination + c);
#pragma unroll
    for (int k = 0; k < N; ++k)
      result.v[k] = tokens ? __half2float(value.v[k]) : result.v[k] + __half2float(value.v[k]);
    store_pack(destination + c, result);
  }
}

void launch_gather_rows(const int32_t* tokens, int64_t rows, int64_t seq, int64_t first_position, const __half* table,
                        int64_t width, float* out) {
  const bool packed = width % kHalfPack == 0 && pack_aligned<kHalfPack>(table) && pack_aligned<kHalfPack>(out);
  const unsigned threads = block_threads(packed ? width / kHalfPack : width, kRowThreads);
  if (packed)
    FQ_LAUNCH(row_blocks(rows), threads, 0, nullptr, gather_rows_kernel<kHalfPack>)(
        tokens, seq, first_position, table, width, out);
  else
    FQ_LAUNCH(row_blocks(rows), threads, 0, nullptr, gather_rows_kernel<1>)(tokens, seq, first_position,
                                                                                     table, width, out);
  FQ_CHECK_LAUNCH();
}

constexpr int kFloatPack = 4;  // f32 elements per 16-byte access

// One block per row: out = (x - mean) · rsqrt(mean((x - mean)²) + eps) · weight (+ bias), where mean is 0 unless
// `center` (LayerNorm). Two passes over the row (three with centering), which stays in L1. width is a multiple of N.
template <int N>
__global__ void __launch_bounds__(kRowThreads)
    norm_kernel(const float* x, __half* out, int64_t width, const float* weight, const float* bias, bool center,
                float eps) {
  const float* row = x + int64_t{blockIdx.x} * width;
  const int64_t first = int64_t{threadIdx.x} * N, stride = int64_t{blockDim.x} * N;
  const NormStatistics statistics = norm_statistics<N>(row, width, center, eps);
  __half* destination = out + int64_t{blockIdx.x} * width;
  for (int64_t c = first; c < width; c += stride) {
    const Pack<float, N> normalized = statistics.normalized<N>(row, c, weight, bias);
    Pack<__half, N> result;
#pragma unroll
    for (int k = 0; k < N; ++k) result.v[k] = __float2half_rn(normalized.v[k]);
    store_pack(destination + c, result);
  }
}

void launch_norm(const float* x, __half* out, int64_t rows, int64_t width, const float* weight, const float* bias,
                 bool center, float eps) {
  check(rows > 0 && width > 0, "cuda norm: {} rows of width {}", rows, width);
  const bool packed = width % kFloatPack == 0 && pack_aligned<kFloatPack>(x) && pack_aligned<kFloatPack>(out) &&
                      pack_aligned<kFloatPack>(weight) && (!bias || pack_aligned<kFloatPack>(bias));
  const unsigned threads = block_threads(packed ? width / kFloatPack : width, kRowThreads);
  if (packed)
    FQ_LAUNCH(row_blocks(rows), threads, 0, nullptr, norm_kernel<kFloatPack>)(x, out, width, weight, bias,
                                                                                       center, eps);
  else
    FQ_LAUNCH(row_blocks(rows), threads, 0, nullptr, norm_kernel<1>)(x, out, width, weight, bias, center,
                                                                              eps);
  FQ_CHECK_LAUNCH();
}

// One block per row; each thread rotates N adjacent pairs (i, i + half) of one head. half is a multiple of N.
template <int N>
__global__ void __launch_bounds__(kRowThreads)
    rope_kernel(__half* x, int64_t seq, int64_t first_position, int heads, int half, int64_t row_stride,
                const float* cosines, const float* sines) {
  const int64_t row = blockIdx.x;
  const int64_t position = first_position + row % seq;
  const float* row_cosines = cosines + position * half;
  const float* row_sines = sines + position * half;
  __half* row_values = x + row * row_stride;
  const int packs_per_head = half / N;
  for (int item = threadIdx.x; item < heads * packs_per_head; item += blockDim.x) {
    const int head = item / packs_per_head, i = item % packs_per_head * N;
    __half* first = row_values + int64_t{head} * 2 * half + i;
    __half* second = first + half;
    Pack<__half, N> a = load_pack<N>(first), b = load_pack<N>(second);
    const Pack<float, N> c = load_pack<N>(row_cosines + i), s = load_pack<N>(row_sines + i);
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const float fa = __half2float(a.v[k]), fb = __half2float(b.v[k]);
      a.v[k] = __float2half_rn(fa * c.v[k] - fb * s.v[k]);
      b.v[k] = __float2half_rn(fb * c.v[k] + fa * s.v[k]);
    }
    store_pack(first, a);
    store_pack(second, b);
  }
}

}  // namespace

void embed(const int32_t* tokens, int64_t rows, const __half* table, int64_t width, float* out) {
  check(rows > 0 && width > 0 && tokens, "cuda embed: {} rows of width {}", rows, width);
  launch_gather_rows(tokens, rows, 1, 0, table, width, out);
}

void add_positions(float* x, int64_t rows, int64_t seq, int64_t first_position, const __half* table, int64_t width) {
  check(rows > 0 && seq > 0 && width > 0 && first_position >= 0,
        "cuda add_positions: {} rows, seq {}, width {}, first position {}", rows, seq, width, first_position);
  launch_gather_rows(nullptr, rows, seq, first_position, table, width, x);
}

void rms_norm(const float* x, __half* out, int64_t rows, int64_t width, const float* weight, float eps) {
  launch_norm(x, out, rows, width, weight, nullptr, false, eps);
}

void layer_norm(const float* x, __half* out, int64_t rows, int64_t width, const float* weight, const float* bias,
                float eps) {
  launch_norm(x, out, rows, width, weight, bias, true, eps);
}

void add_residual(float* x, const __half* branch, int64_t count) {
  launch_elementwise(AddResidual{x, branch}, count, "add_residual");
}

void rope(__half* x, int64_t rows, int64_t seq, int64_t first_position, int64_t heads, int64_t head_dim,
          int64_t row_stride, const float* cosines, const float* sines) {
  check(rows > 0 && seq > 0 && first_position >= 0 && heads > 0 && head_dim > 0 && head_dim % 2 == 0 &&
            heads * head_dim <= std::numeric_limits<int>::max() && row_stride >= heads * head_dim,
        "cuda rope: {} rows, seq {}, first position {}, {} heads of {}, row stride {}", rows, seq, first_position,
        heads, head_dim, row_stride);
  const int half = static_cast<int>(head_dim / 2);
  const bool packed = half % kHalfPack == 0 && row_stride % kHalfPack == 0 && pack_aligned<kHalfPack>(x) &&
                      pack_aligned<kHalfPack>(cosines) && pack_aligned<kHalfPack>(sines);
  const int pack = packed ? kHalfPack : 1;
  const unsigned threads = block_threads(heads * half / pack, kRowThreads);
  if (packed)
    FQ_LAUNCH(row_blocks(rows), threads, 0, nullptr, rope_kernel<kHalfPack>)(
        x, seq, first_position, static_cast<int>(heads), half, row_stride, cosines, sines);
  else
    FQ_LAUNCH(row_blocks(rows), threads, 0, nullptr, rope_kernel<1>)(
        x, seq, first_position, static_cast<int>(heads), half, row_stride, cosines, sines);
  FQ_CHECK_LAUNCH();
}

void activate(__half* x, int64_t count, Activation activation) { launch_activation(x, nullptr, count, activation); }

void gated_activate(__half* gate, const __half* up, int64_t count, Activation activation) {
  launch_activation(gate, up, count, activation);
}

void convert_to_half(const float* in, __half* out, int64_t count) {
  launch_elementwise(ConvertToHalf{in, out}, count, "convert_to_half");
}

void convert_to_float(const __half* in, float* out, int64_t count) {
  launch_elementwise(ConvertToFloat{in, out}, count, "convert_to_float");
}

}  // namespace fq::FQ_CUDA_NS
