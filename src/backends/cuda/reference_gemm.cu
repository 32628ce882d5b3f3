// Plain GEMM kernels (one thread per output) and the FP8 e4m3 quantizer, for both backends.
#include <cstring>

#include "backends/cuda/gemm.h"
#include "backends/cuda/reference_gemm.h"
#include "fq/error.h"

namespace fq::FQ_CUDA_NS {

namespace {

constexpr float kE4m3Max = 448.0f;

// The e4m3 ("fn": no infinities, one NaN pattern per sign) code of v: round to nearest even, saturated to ±448.
__device__ __forceinline__ uint8_t encode_e4m3(float v) {
  const uint8_t sign = (__float_as_uint(v) >> 24) & 0x80;
  const float magnitude = fabsf(v);
  if (magnitude != magnitude) return sign | 0x7f;
  if (magnitude >= kE4m3Max) return sign | 0x7e;
  // Below the smallest normal (2^-6) the codes are multiples of 2^-9; the count 8 is that normal's code.
  if (magnitude < 0x1p-6f) return sign | uint8_t(__float2int_rn(magnitude * 0x1p9f));
  // Round the 23 mantissa bits to 3, ties to even; a carry moves into the exponent as it should.
  uint32_t bits = __float_as_uint(magnitude);
  bits += 0x7ffffu + ((bits >> 20) & 1u);
  const uint32_t exponent = (bits >> 23) - 127 + 7, mantissa = (bits >> 20) & 7u;
  return sign | uint8_t(exponent << 3 | mantissa);
}

__device__ __forceinline__ float decode_e4m3(uint8_t code) {
  const uint32_t exponent = (code >> 3) & 15u, mantissa = code & 7u;
  float magnitude;
  if (exponent == 15 && mantissa == 7)
    magnitude = __uint_as_float(0x7fc00000u);
  else if (exponent == 0)
    magnitude = float(mantissa) * 0x1p-9f;
  else
    magnitude = __uint_as_float((exponent - 7 + 127) << 23 | mantissa << 20);
  return code & 0x80 ? -magnitude : magnitude;
}

// The element types of the three GEMMs: how an input widens, and what becomes of the finished sum.
struct HalfLinear {
  using Input = __half;
  using Accumulator = float;
  using Output = __half;
  const __half* bias;
  static __device__ float widen(__half v) { return __half2float(v); }
  __device__ __half finish(float sum, int64_t column) const {
    return __float2half_rn(bias ? sum + __half2float(bias[column]) : sum);
  }
};

struct Int8Product {
  using Input = int8_t;
  using Accumulator = int32_t;
  using Output = int32_t;
  static __device__ int32_t widen(int8_t v) { return v; }
  __device__ int32_t finish(int32_t sum, int64_t) const { return sum; }
};

struct E4m3Linear {
  using Input = uint8_t;
  using Accumulator = float;
  using Output = __half;
  const float* x_scale;
  const float* w_scale;
  const __half* bias;
  static __device__ float widen(uint8_t v) { return decode_e4m3(v); }
  __device__ __half finish(float sum, int64_t column) const {
    const float scaled = sum * (*x_scale * *w_scale);
    return __float2half_rn(bias ? scaled + __half2float(bias[column]) : scaled);
  }
};

// Columns run along threadIdx.x so that the stores of a warp are contiguous.
constexpr int kBlockColumns = 32, kBlockRows = 8;
constexpr int64_t kMaxRows = int64_t{65535} * kBlockRows;  // gridDim.y's limit

template <typename Kind>
__global__ void __launch_bounds__(kBlockColumns * kBlockRows)
    reference_gemm_kernel(const typename Kind::Input* x, const typename Kind::Input* w, Kind kind,
                          typename Kind::Output* y, int64_t m, int64_t n, int64_t k) {
  const int64_t column = blockIdx.x * int64_t{kBlockColumns} + threadIdx.x;
  const int64_t row = blockIdx.y * int64_t{kBlockRows} + threadIdx.y;
  if (row >= m || column >= n) return;
  const typename Kind::Input* x_row = x + row * k;
  const typename Kind::Input* w_row = w + column * k;
  typename Kind::Accumulator sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += Kind::widen(x_row[i]) * Kind::widen(w_row[i]);
  y[row * n + column] = kind.finish(sum, column);
}

template <typename Kind>
void launch_reference(const typename Kind::Input* x, const typename Kind::Input* w, Kind kind,
                      typename Kind::Output* y, int64_t m, int64_t n, int64_t k) {
  check(m <= kMaxRows, "reference GEMM: m = {} rows exceed the grid's {}", m, kMaxRows);
  const dim3 grid(unsigned((n + kBlockColumns - 1) / kBlockColumns), unsigned((m + kBlockRows - 1) / kBlockRows));
  FQ_LAUNCH(grid, dim3(kBlockColumns, kBlockRows), 0, nullptr, reference_gemm_kernel<Kind>)(x, w, kind, y, m, n, k);
  FQ_CHECK_LAUNCH();
}

// Eight values per thread: one 16-byte load of f16, one 8-byte store of codes.
constexpr int kQuantizeChunk = 8, kQuantizeThreads = 256;

__global__ void __launch_bounds__(kQuantizeThreads)
    quantize_e4m3_kernel(const __half* x, int64_t count, const float* scale, uint8_t* out) {
  const int64_t first = (blockIdx.x * int64_t{kQuantizeThreads} + threadIdx.x) * kQuantizeChunk;
  if (first >= count) return;
  const float divisor = *scale;
  if (first + kQuantizeChunk > count) {  // the tail
    for (int64_t i = first; i < count; ++i) out[i] = encode_e4m3(__half2float(x[i]) / divisor);
    return;
  }
  const uint4 packed = *reinterpret_cast<const uint4*>(x + first);
  __half values[kQuantizeChunk];
  memcpy(values, &packed, sizeof(packed));
  uint32_t words[2] = {0, 0};
  for (int i = 0; i < kQuantizeChunk; ++i)
    words[i / 4] |= uint32_t{encode_e4m3(__half2float(values[i]) / divisor)} << (8 * (i % 4));
  *reinterpret_cast<uint2*>(out + first) = uint2{words[0], words[1]};
}

bool aligned(const void* pointer, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(pointer) % bytes == 0; }

}  // namespace

void check_gemm_arguments(const char* function, GemmKind kind, const void* x, const void* w, const void* y,
                          int64_t m, int64_t n, int64_t k) {
  check(m > 0 && n > 0 && k > 0, "{}: m, n, k = {}, {}, {} (expected all >= 1)", function, m, n, k);
  check(x && w && y, "{}: a null matrix pointer", function);
  // cuBLASLt's int8 (IMMA) and FP8 kernels: dimension and pointer alignment in the TN layout.
  const int64_t multiple = kind == GemmKind::s8 ? 4 : kind == GemmKind::e4m3 ? 16 : 1;
  const uintptr_t alignment = kind == GemmKind::s8 ? 4 : kind == GemmKind::e4m3 ? 16 : 2;
  check(n % multiple == 0 && k % multiple == 0, "{}: n = {} and k = {} must be multiples of {}", function, n, k,
        multiple);
  check(aligned(x, alignment) && aligned(w, alignment) && aligned(y, alignment),
        "{}: matrix pointers must be {}-byte aligned", function, alignment);
  constexpr int64_t kMaxS8Depth = INT32_MAX / (128 * 128);  // k products of -128·-128 still fit in int32
  check(kind != GemmKind::s8 || k <= kMaxS8Depth, "{}: k = {} exceeds {}, where the int32 sum could overflow",
        function, k, kMaxS8Depth);
}

void reference_gemm_f16(const __half* x, const __half* w, const __half* bias, __half* y, int64_t m, int64_t n,
                        int64_t k) {
  check_gemm_arguments("reference_gemm_f16", GemmKind::f16, x, w, y, m, n, k);
  launch_reference(x, w, HalfLinear{bias}, y, m, n, k);
}

void reference_gemm_s8(const int8_t* a, const int8_t* b, int32_t* acc, int64_t m, int64_t n, int64_t k) {
  check_gemm_arguments("reference_gemm_s8", GemmKind::s8, a, b, acc, m, n, k);
  launch_reference(a, b, Int8Product{}, acc, m, n, k);
}

void reference_gemm_e4m3(const uint8_t* x, const uint8_t* w, const float* x_scale, const float* w_scale,
                         const __half* bias, __half* y, int64_t m, int64_t n, int64_t k) {
  check_gemm_arguments("reference_gemm_e4m3", GemmKind::e4m3, x, w, y, m, n, k);
  check(x_scale && w_scale, "reference_gemm_e4m3: a null scale pointer");
  launch_reference(x, w, E4m3Linear{x_scale, w_scale, bias}, y, m, n, k);
}

void quantize_e4m3(const __half* x, int64_t count, const float* scale, uint8_t* out) {
  check(count > 0, "quantize_e4m3: count = {} (expected >= 1)", count);
  check(x && scale && out, "quantize_e4m3: a null pointer");
  check(aligned(x, 16) && aligned(out, 8), "quantize_e4m3: x must be 16-byte and out 8-byte aligned");
  const int64_t threads = (count + kQuantizeChunk - 1) / kQuantizeChunk;
  const int64_t blocks = (threads + kQuantizeThreads - 1) / kQuantizeThreads;
  FQ_LAUNCH(unsigned(blocks), kQuantizeThreads, 0, nullptr, quantize_e4m3_kernel)(x, count, scale, out);
  FQ_CHECK_LAUNCH();
}

}  // namespace fq::FQ_CUDA_NS
