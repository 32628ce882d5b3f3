// gemm.h on cuBLASLt: one handle and workspace per process, and one algorithm per shape, chosen on the shape's
// first call by timing the heuristic's best few (autotune.h; with tuning off, the heuristic's first) and cached,
// so that a later call costs the descriptors' setup (no allocation) and the launch.
#include <cublasLt.h>

#include <algorithm>
#include <bit>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "backends/cuda/autotune.h"
#include "backends/cuda/device.h"
#include "backends/cuda/gemm.h"
#include "backends/cuda/reference_gemm.h"
#include "fq/error.h"

namespace fq::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;
// How many of the heuristic's algorithms are timed for a new shape.
constexpr int kCandidateAlgorithms = 6;

void check_cublas(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail("cuBLASLt: {} failed: {} ({})", call, cublasLtGetStatusString(status), cublasLtGetStatusName(status));
}

struct Context {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

// Created on first use and never freed: at exit the CUDA runtime may be gone before static destructors run.
// The workspace is outside memory_in_use(), which counts DeviceBuffers.
const Context& context() {
  static const Context* instance = [] {
    Context created;
    check_cublas(cublasLtCreate(&created.handle), "cublasLtCreate");
    const cudaError_t status = cudaMalloc(&created.workspace, kWorkspaceBytes);
    if (status != cudaSuccess) {
      cublasLtDestroy(created.handle);
      fail("CUDA: cudaMalloc of cuBLASLt's {} MiB workspace failed: {}", kWorkspaceBytes >> 20,
           cudaGetErrorString(status));
    }
    return new Context(created);
  }();
  return *instance;
}

template <typename T>
void set_attribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
  check_cublas(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)), "cublasLtMatmulDescSetAttribute");
}

// One GEMM's types and epilogue.
struct Operation {
  GemmKind kind;
  cudaDataType_t input, output;
  cublasComputeType_t compute;
  cudaDataType_t scale_type;
  const void* alpha;  // host pointers of scale_type
  const void* beta;
  const void* bias = nullptr;  // of the output's type, or null
  const float* x_scale = nullptr;  // FP8: per-tensor scales, device pointers
  const float* w_scale = nullptr;
};

// The largest power of two up to 256 that divides every address (cuBLASLt's heuristic assumes 256 unless told).
uint32_t common_alignment(std::initializer_list<const void*> pointers) {
  uintptr_t bits = 256;
  for (const void* pointer : pointers)
    if (pointer) bits |= reinterpret_cast<uintptr_t>(pointer);
  return uint32_t{1} << std::countr_zero(bits);
}

using AlgorithmKey = std::tuple<GemmKind, int64_t, int64_t, int64_t, bool, uint32_t>;

// The heuristic's best algorithms for the shape, at most kCandidateAlgorithms, best first.
std::vector<cublasLtMatmulAlgo_t> candidate_algorithms(const AlgorithmKey& key, cublasLtMatmulDesc_t desc,
                                                       cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                                       cublasLtMatrixLayout_t d, const char* function) {
  cublasLtMatmulPreferenceOpaque_t preference_storage;
  cublasLtMatmulPreference_t preference = &preference_storage;
  check_cublas(cublasLtMatmulPreferenceInit(preference), "cublasLtMatmulPreferenceInit");
  const uint64_t workspace = kWorkspaceBytes;
  const uint32_t alignment = std::get<5>(key);
  const std::pair<cublasLtMatmulPreferenceAttributes_t, const void*> settings[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &alignment}, {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &alignment},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &alignment}, {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &alignment}};
  check_cublas(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                    sizeof(workspace)),
               "cublasLtMatmulPreferenceSetAttribute");
  for (const auto& [attribute, value] : settings)
    check_cublas(cublasLtMatmulPreferenceSetAttribute(preference, attribute, value, sizeof(alignment)),
                 "cublasLtMatmulPreferenceSetAttribute");

  cublasLtMatmulHeuristicResult_t results[kCandidateAlgorithms]{};
  int found = 0;
  check_cublas(cublasLtMatmulAlgoGetHeuristic(context().handle, desc, a, b, d, d, preference, kCandidateAlgorithms,
                                              results, &found),
               "cublasLtMatmulAlgoGetHeuristic");
  const auto [kind, m, n, k, bias, aligned_to] = key;
  check(found > 0, "cuBLASLt: no algorithm for {} with m, n, k = {}, {}, {}{} ({}-byte aligned)", function, m, n, k,
        bias ? " and a bias" : "", aligned_to);
  std::vector<cublasLtMatmulAlgo_t> algorithms;
  for (int i = 0; i < found; ++i)
    if (results[i].state == CUBLAS_STATUS_SUCCESS) algorithms.push_back(results[i].algo);
  check(!algorithms.empty(), "cuBLASLt: no usable algorithm for {} with m, n, k = {}, {}, {}", function, m, n, k);
  return algorithms;
}

// Row-major y [m,n] = x [m,k] · w [n,k]ᵀ is column-major yᵀ (n × m) = w · xᵀ: A = w read transposed (k × n,
// leading dimension k), B = x as stored (k × m), D = y (n × m, leading dimension n). This is the "TN" layout
// that cuBLASLt's int8 and FP8 kernels require; the bias (length n) runs along D's rows, one per output feature.
void matmul(const char* function, const Operation& op, const void* x, const void* w, void* y, int64_t m, int64_t n,
            int64_t k) {
  const Context& lt = context();
  cublasLtMatmulDescOpaque_t desc_storage;
  cublasLtMatmulDesc_t desc = &desc_storage;
  check_cublas(cublasLtMatmulDescInit(desc, op.compute, op.scale_type), "cublasLtMatmulDescInit");
  set_attribute<int32_t>(desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
  set_attribute<int32_t>(desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  if (op.bias) {
    set_attribute<uint32_t>(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS);
    set_attribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, op.bias);
  }
  if (op.x_scale) {
    set_attribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, op.w_scale);
    set_attribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, op.x_scale);
  }
  cublasLtMatrixLayoutOpaque_t a_storage, b_storage, d_storage;
  cublasLtMatrixLayout_t a = &a_storage, b = &b_storage, d = &d_storage;
  check_cublas(cublasLtMatrixLayoutInit(a, op.input, k, n, k), "cublasLtMatrixLayoutInit");
  check_cublas(cublasLtMatrixLayoutInit(b, op.input, k, m, k), "cublasLtMatrixLayoutInit");
  check_cublas(cublasLtMatrixLayoutInit(d, op.output, n, m, n), "cublasLtMatrixLayoutInit");

  const AlgorithmKey key{op.kind, m, n, k, op.bias != nullptr, common_alignment({x, w, y})};
  auto launch = [&](const cublasLtMatmulAlgo_t& algorithm) {
    // C is D with beta = 0: cuBLASLt reads no C then.
    check_cublas(cublasLtMatmul(lt.handle, desc, op.alpha, w, a, x, b, op.beta, y, d, y, d, &algorithm, lt.workspace,
                                kWorkspaceBytes, nullptr),
                 "cublasLtMatmul");
  };
  static std::mutex mutex;
  static std::map<AlgorithmKey, cublasLtMatmulAlgo_t> chosen;
  std::unique_lock lock(mutex);
  if (auto found = chosen.find(key); found != chosen.end()) {
    const cublasLtMatmulAlgo_t algorithm = found->second;
    lock.unlock();
    launch(algorithm);
    return;
  }
  const std::vector<cublasLtMatmulAlgo_t> algorithms = candidate_algorithms(key, desc, a, b, d, function);
  std::vector<std::string> names;
  for (size_t i = 0; i < algorithms.size(); ++i) names.push_back(fmt::format("heuristic #{}", i + 1));
  const std::string tuning_key = fmt::format("{} m={} n={} k={}{} ({}-byte aligned)", function, m, n, k,
                                             op.bias ? " +bias" : "", std::get<5>(key));
  // The timing runs write y as the real call does; the chosen algorithm then runs once more for the result.
  const size_t best = fastest(tuning_key, names, [&](size_t i) { launch(algorithms[i]); });
  chosen.emplace(key, algorithms[best]);
  lock.unlock();
  launch(algorithms[best]);
}

}  // namespace

void gemm_f16(const __half* x, const __half* w, const __half* bias, __half* y, int64_t m, int64_t n, int64_t k) {
  check_gemm_arguments("gemm_f16", GemmKind::f16, x, w, y, m, n, k);
  const float one = 1, zero = 0;
  Operation op{GemmKind::f16, CUDA_R_16F, CUDA_R_16F, CUBLAS_COMPUTE_32F, CUDA_R_32F, &one, &zero};
  op.bias = bias;
  matmul("gemm_f16", op, x, w, y, m, n, k);
}

void gemm_s8(const int8_t* a, const int8_t* b, int32_t* acc, int64_t m, int64_t n, int64_t k) {
  check_gemm_arguments("gemm_s8", GemmKind::s8, a, b, acc, m, n, k);
  const int32_t one = 1, zero = 0;
  const Operation op{GemmKind::s8, CUDA_R_8I, CUDA_R_32I, CUBLAS_COMPUTE_32I, CUDA_R_32I, &one, &zero};
  matmul("gemm_s8", op, a, b, acc, m, n, k);
}

bool fp8_supported() {
  static const bool supported = device_available() && device_info().compute_capability >= 89;
  return supported;
}

void gemm_e4m3(const uint8_t* x, const uint8_t* w, const float* x_scale, const float* w_scale, const __half* bias,
               __half* y, int64_t m, int64_t n, int64_t k) {
  check(fp8_supported(), "gemm_e4m3: FP8 needs a GPU of compute capability 8.9 or above");
  check_gemm_arguments("gemm_e4m3", GemmKind::e4m3, x, w, y, m, n, k);
  check(x_scale && w_scale, "gemm_e4m3: a null scale pointer");
  const float one = 1, zero = 0;
  Operation op{GemmKind::e4m3, CUDA_R_8F_E4M3, CUDA_R_16F, CUBLAS_COMPUTE_32F, CUDA_R_32F, &one, &zero};
  op.bias = bias;
  op.x_scale = x_scale;
  op.w_scale = w_scale;
  matmul("gemm_e4m3", op, x, w, y, m, n, k);
}

}  // namespace fq::cuda
