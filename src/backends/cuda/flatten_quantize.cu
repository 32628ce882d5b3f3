#include "backends/cuda/flatten_quantize.h"

#include <cfloat>
#include <cmath>
#include <vector>

#include "backends/cuda/kernel_helpers.h"
#include "fq/error.h"

namespace fq::FQ_CUDA_NS {

namespace {

// n · (qmax + 1) stays within int32 for every n up to this, so the kernels round and split codes in int32.
constexpr int32_t kMaxCopies = (1 << 24) - 1;

constexpr unsigned kThreads = 256;
constexpr unsigned kRowThreads = 512;  // the most threads of flattened_max's one block per row
constexpr int kCodePack = 8;           // codes per thread: one 8-byte store, the plan read as 16-byte packs
constexpr int kOutputPack = 8;         // rescale's outputs per thread: one 16-byte f16 store
constexpr int kFloatPack = 4;          // the norm's f32 inputs per 16-byte load

// A grid over column packs (x) and rows (y, each block looping over rows gridDim.y apart), so that a thread loads
// its columns' parameters once for all its rows. y is cut to what fills the device.
dim3 columns_by_rows_grid(int64_t column_packs, int64_t rows, unsigned threads) {
  const int64_t column_blocks = ceil_div(column_packs, threads);
  const int64_t row_groups =
      std::clamp<int64_t>(resident_blocks(threads) / column_blocks, 1, std::min<int64_t>(rows, 65535));
  check(column_blocks <= 0x7fffffff, "cuda: {} column packs are too many for a grid", column_packs);
  return dim3(static_cast<unsigned>(column_blocks), static_cast<unsigned>(row_groups));
}

// include/fq/quant/flatten.h's nearest_even_saturate with an int32 limit: NaN gives 0, the rest rounds to nearest
// even within ±limit.
__device__ __forceinline__ int32_t round_saturate(float value, int32_t limit) {
  if (std::isnan(value)) return 0;
  const float bound = static_cast<float>(limit);  // may round up; the integer clamp settles it
  const int32_t rounded = __float2int_rn(fminf(fmaxf(value, -bound), bound));
  return min(max(rounded, -limit), limit);
}

// floor(a / n) for n > 0 (integer division truncates toward zero).
__device__ __forceinline__ int32_t floor_divide(int32_t a, int32_t n) {
  const int32_t quotient = a / n;
  return quotient * n > a ? quotient - 1 : quotient;
}

// Copy `copy` of flatten_quantize_value(x, step, copies, qmax, stagger), bit for bit: the same float operations
// (inverse_step = 1.f / step), each rounded once.
__device__ __forceinline__ int8_t quantize_copy(float x, float inverse_step, int32_t copies, int32_t copy, int qmax,
                                                bool stagger) {
  const float scaled = __fmul_rn(x, inverse_step);
  if (stagger) return static_cast<int8_t>(floor_divide(round_saturate(scaled, copies * qmax) + copy, copies));
  return static_cast<int8_t>(round_saturate(__fdiv_rn(scaled, static_cast<float>(copies)), qmax));
}

// quant::dynamic_step: the division in double, rounded once to float.
__device__ __forceinline__ float dynamic_step(float largest, int qmax) {
  return largest > 0.f ? fmaxf(static_cast<float>(static_cast<double>(largest) / qmax), FLT_MIN) : 1.f;
}

// |x| / n as the flattened maximum counts it: float division, non-finite values left out (as 0).
__device__ __forceinline__ float flattened_magnitude(float x, int32_t copies) {
  const float magnitude = __fdiv_rn(fabsf(x), static_cast<float>(copies));
  return magnitude < INFINITY ? magnitude : 0.f;
}

// The plan of N adjacent flat columns: their source channels (-1: padding), copy indices and copy counts.
template <int N>
struct ColumnPlan {
  Pack<int32_t, N> source, copy, copies;
  // Their codes, value(channel) giving a source channel's input.
  template <typename Value>
  __device__ __forceinline__ Pack<int8_t, N> quantize(Value value, float inverse_step, int qmax, bool stagger) const {
    Pack<int8_t, N> out;
#pragma unroll
    for (int k = 0; k < N; ++k)
      out.v[k] = source.v[k] < 0 ? int8_t{0}
                                 : quantize_copy(value(source.v[k]), inverse_step, copies.v[k], copy.v[k], qmax, stagger);
    return out;
  }
};
template <int N>
__device__ __forceinline__ ColumnPlan<N> load_columns(const DeviceFlattenPlan& plan, int64_t column) {
  return {load_pack<N>(plan.source + column), load_pack<N>(plan.copy_index + column), load_pack<N>(plan.copies + column)};
}

// The readers of a QuantizerInput's value x[row, channel] in f32.
struct HalfReader {
  const __half* x;
  int64_t width;
  __device__ __forceinline__ float operator()(int64_t row, int32_t channel) const {
    return __half2float(__ldg(x + row * width + channel));
  }
};
struct GatedReader {
  const __half* gate;
  const __half* up;
  int64_t width;
  Activation activation;
  __device__ __forceinline__ float operator()(int64_t row, int32_t channel) const {
    const int64_t i = row * width + channel;
    return activation_of(activation, __half2float(__ldg(gate + i))) * __half2float(__ldg(up + i));
  }
};

// Calls launch(reader) with the reader of `input` over rows of `width` values.
template <typename Launch>
void with_reader(const QuantizerInput& input, int64_t width, Launch launch) {
  if (input.up)
    launch(GatedReader{input.x, input.up, width, input.activation});
  else
    launch(HalfReader{input.x, width});
}

// Each thread writes N adjacent codes of a row, for rows blockIdx.y, + gridDim.y, ...; flat_features is a multiple
// of N. The gathers of x go through the plan (a flattened channel's copies read the same value, from cache).
template <int N, typename Reader>
__global__ void __launch_bounds__(kThreads)
    flatten_quantize_kernel(Reader x, int64_t rows, DeviceFlattenPlan plan, int qmax, bool stagger,
                            const float* steps, bool step_per_row, int8_t* codes) {
  const int64_t column = (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) * N;
  if (column >= plan.flat_features) return;
  const ColumnPlan<N> columns = load_columns<N>(plan, column);
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const float inverse_step = __frcp_rn(steps[step_per_row ? row : 0]);
    store_pack(codes + row * plan.flat_features + column,
               columns.quantize([&](int32_t channel) { return x(row, channel); }, inverse_step, qmax, stagger));
  }
}

// One block per row: the row's largest |x_j| / n_j into row_max (if given) and, through atomicMax on the bits
// (which order non-negative floats as integers), into *tensor_max (if given, zeroed before).
template <typename Reader>
__global__ void __launch_bounds__(kRowThreads)
    flattened_max_kernel(Reader x, DeviceFlattenPlan plan, float* row_max, float* tensor_max) {
  const int64_t row = blockIdx.x;
  float largest = 0.f;
  // Every copy of a channel gives the same quotient, so walking the flattened columns covers each channel.
  for (int64_t column = threadIdx.x; column < plan.flat_features; column += blockDim.x) {
    const int32_t channel = __ldg(plan.source + column);
    if (channel < 0) continue;
    largest = fmaxf(largest, flattened_magnitude(x(row, channel), __ldg(plan.copies + column)));
  }
  largest = block_reduce(largest, MaxOp{}, 0.f);
  if (threadIdx.x != 0) return;
  if (row_max) row_max[row] = largest;
  if (tensor_max) atomicMax(reinterpret_cast<int*>(tensor_max), __float_as_int(largest));
}

__global__ void __launch_bounds__(kThreads) dynamic_steps_kernel(const float* maxima, int64_t count, int qmax,
                                                                  float* steps) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i < count) steps[i] = dynamic_step(maxima[i], qmax);
}

// One block per row: the row normalized in f32 into shared memory, then (with row_steps) its flattened maximum and
// dynamic step, then its codes, P adjacent ones per thread. width is a multiple of N, flat_features of P.
template <int N, int P>
__global__ void __launch_bounds__(kRowThreads)
    norm_flatten_quantize_kernel(const float* x, NormParameters norm, DeviceFlattenPlan plan, int qmax, bool stagger,
                                 const float* static_step, float* row_steps, int8_t* codes) {
  FQ_DYNAMIC_SHARED(float, normed);
  const int64_t row = blockIdx.x, width = plan.in_features;
  const float* values = x + row * width;
  const NormStatistics statistics = norm_statistics<N>(values, width, norm.center, norm.eps);
  for (int64_t c = int64_t{threadIdx.x} * N; c < width; c += int64_t{blockDim.x} * N) {
    const Pack<float, N> normalized = statistics.normalized<N>(values, c, norm.weight, norm.bias);
#pragma unroll
    for (int k = 0; k < N; ++k) normed[c + k] = normalized.v[k];
  }
  __syncthreads();
  float step;
  if (row_steps) {
    float largest = 0.f;
    for (int64_t column = threadIdx.x; column < plan.flat_features; column += blockDim.x) {
      const int32_t channel = __ldg(plan.source + column);
      if (channel >= 0) largest = fmaxf(largest, flattened_magnitude(normed[channel], __ldg(plan.copies + column)));
    }
    step = dynamic_step(block_reduce(largest, MaxOp{}, 0.f), qmax);
    if (threadIdx.x == 0) row_steps[row] = step;
  } else {
    step = *static_step;
  }
  const float inverse_step = __frcp_rn(step);
  int8_t* out = codes + row * plan.flat_features;
  for (int64_t column = int64_t{threadIdx.x} * P; column < plan.flat_features; column += int64_t{blockDim.x} * P) {
    store_pack(out + column, load_columns<P>(plan, column).quantize([&](int32_t channel) { return normed[channel]; },
                                                                     inverse_step, qmax, stagger));
  }
}

// Each thread rescales N adjacent columns, for rows blockIdx.y, + gridDim.y, ...; cols is a multiple of N. One
// explicit fma, as int_gemm's fused epilogue, so that both round the same way.
template <int N>
__global__ void __launch_bounds__(kThreads)
    rescale_kernel(const int32_t* acc, int64_t rows, int64_t cols, const float* steps, bool step_per_row,
                   const float* weight_scales, bool scale_per_column, const float* bias, __half* out,
                   Epilogue epilogue) {
  const int64_t column = (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) * N;
  if (column >= cols) return;
  Pack<float, N> scale, offset{};
  if (scale_per_column) {
    scale = load_pack<N>(weight_scales + column);
  } else {
#pragma unroll
    for (int k = 0; k < N; ++k) scale.v[k] = weight_scales[0];
  }
  if (bias) offset = load_pack<N>(bias + column);
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const float step = steps[step_per_row ? row : 0];
    const Pack<int32_t, N> sums = load_pack<N>(acc + row * cols + column);
    Pack<float, N> value;
#pragma unroll
    for (int k = 0; k < N; ++k)
      value.v[k] = apply_activation(epilogue, fmaf(static_cast<float>(sums.v[k]), step * scale.v[k], offset.v[k]));
    if (epilogue.residual) {
      Pack<float, N> sum = load_pack<N>(epilogue.residual + row * cols + column);
#pragma unroll
      for (int k = 0; k < N; ++k) sum.v[k] += value.v[k];
      store_pack(epilogue.residual + row * cols + column, sum);
    } else {
      Pack<__half, N> result;
#pragma unroll
      for (int k = 0; k < N; ++k) result.v[k] = __float2half_rn(value.v[k]);
      store_pack(out + row * cols + column, result);
    }
  }
}

void check_plan(const DeviceFlattenPlan& plan, const char* what) {
  check(plan.in_features > 0 && plan.flat_features > 0 && plan.source && plan.copy_index && plan.copies,
        "cuda {}: an empty device plan ({} -> {} features)", what, plan.in_features, plan.flat_features);
}

}  // namespace

DevicePlanStorage upload_plan(const FlattenPlan& plan) {
  const int64_t flat = plan.flat_features();
  check(plan.in_features > 0 && static_cast<int64_t>(plan.copies.size()) == plan.in_features &&
            static_cast<int64_t>(plan.copy_index.size()) == flat && flat > 0,
        "cuda flatten plan: {} input features with {} copy counts, {} columns with {} copy indices", plan.in_features,
        plan.copies.size(), flat, plan.copy_index.size());
  std::vector<int32_t> column_copies(static_cast<size_t>(flat));
  for (int64_t c = 0; c < flat; ++c) {
    const int32_t channel = plan.source[c];
    check(channel >= -1 && channel < plan.in_features, "cuda flatten plan: column {} has source {} (of {} channels)",
          c, channel, plan.in_features);
    column_copies[c] = channel < 0 ? 1 : plan.copies[channel];
    check(column_copies[c] >= 1 && column_copies[c] <= kMaxCopies && plan.copy_index[c] >= 0 &&
              plan.copy_index[c] < column_copies[c],
          "cuda flatten plan: column {} is copy {} of {} (at most {} copies)", c, plan.copy_index[c], column_copies[c],
          kMaxCopies);
  }
  const auto to_device = [](const std::vector<int32_t>& values) { return upload(std::span<const int32_t>(values)); };
  DevicePlanStorage storage{to_device(plan.source), to_device(plan.copy_index), to_device(column_copies), {}};
  storage.view = {storage.source.as<int32_t>(), storage.copy_index.as<int32_t>(), storage.copies.as<int32_t>(),
                  plan.in_features, flat};
  return storage;
}

void flattened_max(const QuantizerInput& x, int64_t rows, const DeviceFlattenPlan& plan, float* row_max_or_null,
                   float* tensor_max_or_null) {
  check_plan(plan, "flattened_max");
  check(row_max_or_null || tensor_max_or_null, "cuda flattened_max: neither a row nor a tensor maximum to write");
  if (tensor_max_or_null) fill_zero(tensor_max_or_null, sizeof(float));
  with_reader(x, plan.in_features, [&](auto reader) {
    FQ_LAUNCH(row_blocks(rows), block_threads(plan.flat_features, kRowThreads), 0, nullptr,
              flattened_max_kernel<decltype(reader)>)(reader, plan, row_max_or_null, tensor_max_or_null);
  });
  FQ_CHECK_LAUNCH();
}

void dynamic_steps(const float* maxima, int64_t count, int qmax, float* steps) {
  check(count > 0 && count <= 0x7fffffff && qmax >= 1, "cuda dynamic_steps: {} maxima, qmax {}", count, qmax);
  const unsigned threads = block_threads(count, kThreads);
  FQ_LAUNCH(static_cast<unsigned>(ceil_div(count, threads)), threads, 0, nullptr, dynamic_steps_kernel)(maxima, count,
                                                                                                         qmax, steps);
  FQ_CHECK_LAUNCH();
}

void flatten_quantize(const QuantizerInput& x, int64_t rows, const DeviceFlattenPlan& plan, int qmax, bool stagger,
                      const float* steps, bool step_per_row, int8_t* codes) {
  check_plan(plan, "flatten_quantize");
  check(rows > 0 && qmax >= 1 && qmax <= 127, "cuda flatten_quantize: {} rows, qmax {} (expected 1..127)", rows, qmax);
  const bool packed = plan.flat_features % kCodePack == 0 && pack_aligned<kCodePack>(codes) &&
                      pack_aligned<kCodePack>(plan.source) && pack_aligned<kCodePack>(plan.copy_index) &&
                      pack_aligned<kCodePack>(plan.copies);
  const int64_t column_packs = packed ? plan.flat_features / kCodePack : plan.flat_features;
  const unsigned threads = block_threads(column_packs, kThreads);
  const dim3 grid = columns_by_rows_grid(column_packs, rows, threads);
  with_reader(x, plan.in_features, [&](auto reader) {
    using Reader = decltype(reader);
    if (packed)
      FQ_LAUNCH(grid, threads, 0, nullptr, flatten_quantize_kernel<kCodePack, Reader>)(reader, rows, plan, qmax, stagger,
                                                                                     steps, step_per_row, codes);
    else
      FQ_LAUNCH(grid, threads, 0, nullptr, flatten_quantize_kernel<1, Reader>)(reader, rows, plan, qmax, stagger, steps,
                                                                             step_per_row, codes);
  });
  FQ_CHECK_LAUNCH();
}

bool norm_fusable(int64_t width) { return width > 0 && width * int64_t{sizeof(float)} <= 48 * 1024; }

void norm_flatten_quantize(const float* x, int64_t rows, const NormParameters& norm, const DeviceFlattenPlan& plan,
                           int qmax, bool stagger, const float* static_step, float* row_steps, int8_t* codes) {
  check_plan(plan, "norm_flatten_quantize");
  check(rows > 0 && qmax >= 1 && qmax <= 127, "cuda norm_flatten_quantize: {} rows, qmax {} (expected 1..127)", rows,
        qmax);
  check(norm_fusable(plan.in_features), "cuda norm_flatten_quantize: rows of {} values exceed its shared memory",
        plan.in_features);
  check(x && norm.weight && codes && (static_step != nullptr) != (row_steps != nullptr),
        "cuda norm_flatten_quantize: null input, weight or codes, or not exactly one of a static step and row steps");
  const int64_t width = plan.in_features;
  const bool floats_packed = width % kFloatPack == 0 && pack_aligned<kFloatPack>(x) &&
                             pack_aligned<kFloatPack>(norm.weight) && (!norm.bias || pack_aligned<kFloatPack>(norm.bias));
  const bool codes_packed = plan.flat_features % kCodePack == 0 && pack_aligned<kCodePack>(codes) &&
                            pack_aligned<kCodePack>(plan.source) && pack_aligned<kCodePack>(plan.copy_index) &&
                            pack_aligned<kCodePack>(plan.copies);
  const unsigned threads = block_threads(std::max(width, plan.flat_features), kRowThreads);
  const size_t shared = size_t(width) * sizeof(float);
  auto launch = [&](auto kernel) {
    FQ_LAUNCH(row_blocks(rows), threads, shared, nullptr, kernel)(x, norm, plan, qmax, stagger, static_step, row_steps,
                                                                  codes);
  };
  if (floats_packed && codes_packed)
    launch(norm_flatten_quantize_kernel<kFloatPack, kCodePack>);
  else if (floats_packed)
    launch(norm_flatten_quantize_kernel<kFloatPack, 1>);
  else if (codes_packed)
    launch(norm_flatten_quantize_kernel<1, kCodePack>);
  else
    launch(norm_flatten_quantize_kernel<1, 1>);
  FQ_CHECK_LAUNCH();
}

void rescale(const int32_t* acc, int64_t rows, int64_t cols, const float* steps, bool step_per_row,
             const float* weight_scales, bool scale_per_column, const float* bias, __half* out,
             const Epilogue& epilogue) {
  check(rows > 0 && cols > 0, "cuda rescale: {} rows of {} columns", rows, cols);
  check(out || epilogue.residual, "cuda rescale: no output (neither out nor a residual)");
  const bool packed = cols % kOutputPack == 0 && pack_aligned<kOutputPack>(acc) &&
                      (epilogue.residual ? pack_aligned<kOutputPack>(epilogue.residual) : pack_aligned<kOutputPack>(out)) &&
                      (!scale_per_column || pack_aligned<kOutputPack>(weight_scales)) &&
                      (!bias || pack_aligned<kOutputPack>(bias));
  const int64_t column_packs = packed ? cols / kOutputPack : cols;
  const unsigned threads = block_threads(column_packs, kThreads);
  const dim3 grid = columns_by_rows_grid(column_packs, rows, threads);
  if (packed)
    FQ_LAUNCH(grid, threads, 0, nullptr, rescale_kernel<kOutputPack>)(acc, rows, cols, steps, step_per_row,
                                                                    weight_scales, scale_per_column, bias, out,
                                                                    epilogue);
  else
    FQ_LAUNCH(grid, threads, 0, nullptr, rescale_kernel<1>)(acc, rows, cols, steps, step_per_row, weight_scales,
                                                          scale_per_column, bias, out, epilogue);
  FQ_CHECK_LAUNCH();
}

}  // namespace fq::FQ_CUDA_NS
