// The GEMMs of a Linear layer on the GPU: cuBLASLt in FP16, int8 (int32 out) and FP8 e4m3, against the
// backend's own int8 GEMMs with the rescale fused (int_gemm_rescale, f16 out: the mma.sync kernel, and the
// wgmma kernel on sm_90), at the Linear shapes of
// OPT-13B, OPT-6.7B and LLaMA-2-7B (attention projections, MLP up and down) and M rows in {16, 512, 2048,
// 8192}. Timed with CUDA events around each call; TOPS counts 2·M·N·K per call. Without a GPU it says so
// and exits 0.
//   build/bench/cuda_gemm_bench --benchmark_format=json --benchmark_out=gemm.json
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "backends/cuda/device.h"
#include "backends/cuda/gemm.h"
#include "backends/cuda/int_gemm.h"
#include "backends/cuda/random_fill.h"
#include "fq/error.h"

namespace fq::cuda {
namespace {

struct Model {
  const char* name;
  int64_t hidden, ffn;
};
constexpr Model kModels[] = {{"opt-13b", 5120, 20480}, {"opt-6.7b", 4096, 16384}, {"llama-2-7b", 4096, 11008}};
constexpr int64_t kRows[] = {16, 512, 2048, 8192};

enum class Kernel { f16, s8, e4m3, int8_mma_sync, int8_wgmma };
constexpr std::pair<Kernel, const char*> kKernels[] = {
    {Kernel::f16, "cublaslt_f16"},           {Kernel::s8, "cublaslt_s8"},          {Kernel::e4m3, "cublaslt_e4m3"},
    {Kernel::int8_mma_sync, "own_int8_mma_sync"}, {Kernel::int8_wgmma, "own_int8_wgmma"}};

void check_cuda(cudaError_t status, const char* call) {
  if (status != cudaSuccess) fail("CUDA: {} failed: {}", call, cudaGetErrorString(status));
}

class EventTimer {
 public:
  EventTimer() {
    check_cuda(cudaEventCreate(&start_), "cudaEventCreate");
    check_cuda(cudaEventCreate(&stop_), "cudaEventCreate");
  }
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  double seconds(const std::function<void()>& work) {
    check_cuda(cudaEventRecord(start_, nullptr), "cudaEventRecord");
    work();
    check_cuda(cudaEventRecord(stop_, nullptr), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop_), "cudaEventSynchronize");
    float milliseconds = 0;
    check_cuda(cudaEventElapsedTime(&milliseconds, start_, stop_), "cudaEventElapsedTime");
    return milliseconds * 1e-3;
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

DeviceBuffer random_halves(int64_t count, uint64_t seed, float scale) {
  DeviceBuffer buffer(count * sizeof(__half));
  fill_random_half(buffer.as<__half>(), count, seed, scale);
  return buffer;
}

DeviceBuffer random_bytes(int64_t count, uint64_t seed) {
  DeviceBuffer buffer(count);
  fill_random_bytes(buffer.data(), count, seed);
  return buffer;
}

DeviceBuffer constant_floats(int64_t count, float value) { return upload<float>(std::vector<float>(count, value)); }

// Random e4m3 codes as a calibrated model would have them: f16 values quantized with a scale.
DeviceBuffer random_e4m3(int64_t count, uint64_t seed, const float* scale) {
  const DeviceBuffer values = random_halves(count, seed, 1);
  DeviceBuffer codes(count);
  quantize_e4m3(values.as<__half>(), count, scale, codes.as<uint8_t>());
  return codes;
}

// The inputs of one kernel at one shape, and the call that the timer measures.
std::function<void()> prepare(Kernel kernel, int64_t m, int64_t n, int64_t k, std::vector<DeviceBuffer>& keep) {
  auto hold = [&keep](DeviceBuffer buffer) { return keep.emplace_back(std::move(buffer)).data(); };
  const auto* bias_half = static_cast<const __half*>(hold(random_halves(n, 3, 1)));
  switch (kernel) {
    case Kernel::f16: {
      const auto* x = static_cast<const __half*>(hold(random_halves(m * k, 1, 1)));
      const auto* w = static_cast<const __half*>(hold(random_halves(n * k, 2, 0.05f)));
      auto* y = static_cast<__half*>(hold(DeviceBuffer(m * n * sizeof(__half))));
      return [=] { gemm_f16(x, w, bias_half, y, m, n, k); };
    }
    case Kernel::s8: {
      const auto* a = static_cast<const int8_t*>(hold(random_bytes(m * k, 1)));
      const auto* b = static_cast<const int8_t*>(hold(random_bytes(n * k, 2)));
      auto* acc = static_cast<int32_t*>(hold(DeviceBuffer(m * n * sizeof(int32_t))));
      return [=] { gemm_s8(a, b, acc, m, n, k); };
    }
    case Kernel::e4m3: {
      const auto* scales = static_cast<const float*>(hold(constant_floats(2, 1.0f / 256)));
      const auto* x = static_cast<const uint8_t*>(hold(random_e4m3(m * k, 1, scales)));
      const auto* w = static_cast<const uint8_t*>(hold(random_e4m3(n * k, 2, scales)));
      auto* y = static_cast<__half*>(hold(DeviceBuffer(m * n * sizeof(__half))));
      return [=] { gemm_e4m3(x, w, scales, scales + 1, bias_half, y, m, n, k); };
    }
    case Kernel::int8_mma_sync:
    case Kernel::int8_wgmma: {
      const auto* codes = static_cast<const int8_t*>(hold(random_bytes(m * k, 1)));
      const void* weights = hold(random_bytes(n * k, 2));
      const auto* steps = static_cast<const float*>(hold(constant_floats(m, 0.01f)));
      const auto* scales = static_cast<const float*>(hold(constant_floats(n, 0.001f)));
      const auto* bias = static_cast<const float*>(hold(constant_floats(n, 0.5f)));
      auto* out = static_cast<__half*>(hold(DeviceBuffer(m * n * sizeof(__half))));
      const IntGemmKernel own = kernel == Kernel::int8_wgmma ? IntGemmKernel::wgmma : IntGemmKernel::mma_sync;
      return [=] { int_gemm_rescale(codes, m, k, weights, 8, n, steps, true, scales, true, bias, out, {}, own); };
    }
  }
  fail("cuda_gemm_bench: unknown kernel");
}

void run(benchmark::State& state, Kernel kernel, int64_t m, int64_t n, int64_t k) {
  if (kernel == Kernel::e4m3 && !fp8_supported()) {
    state.SkipWithError("FP8 needs a GPU of compute capability 8.9 or above");
    return;
  }
  if (kernel == Kernel::int8_wgmma && !wgmma_supported()) {
    state.SkipWithError("wgmma needs an sm_90 GPU");
    return;
  }
  double total = 0;
  try {
    std::vector<DeviceBuffer> buffers;
    const std::function<void()> call = prepare(kernel, m, n, k, buffers);
    call();  // the first call picks cuBLASLt's algorithm and loads the kernel
    synchronize();
    EventTimer timer;
    for (auto _ : state) {
      const double seconds = timer.seconds(call);
      state.SetIterationTime(seconds);
      total += seconds;
    }
  } catch (const Error& error) {  // out of memory, or a kernel that rejects the shape: the others still run
    state.SkipWithError(error.what());
    return;
  }
  state.counters["TOPS"] = 2.0 * double(m) * double(n) * double(k) * double(state.iterations()) / total * 1e-12;
  state.counters["M"] = double(m);
  state.counters["N"] = double(n);
  state.counters["K"] = double(k);
}

void register_benchmarks() {
  for (const Model& model : kModels) {
    const std::pair<const char*, std::pair<int64_t, int64_t>> layers[] = {
        {"attention", {model.hidden, model.hidden}}, {"mlp_up", {model.ffn, model.hidden}},
        {"mlp_down", {model.hidden, model.ffn}}};
    for (const auto& [layer, shape] : layers)
      for (int64_t m : kRows)
        for (const auto& [kernel, kernel_name] : kKernels) {
          const auto [n, k] = shape;
          const std::string name = std::string(kernel_name) + "/" + model.name + "/" + layer + "/M:" + std::to_string(m);
          benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) { run(state, kernel, m, n, k); })
              ->UseManualTime()
              ->Unit(benchmark::kMicrosecond);
        }
  }
}

}  // namespace
}  // namespace fq::cuda

int main(int argc, char** argv) {
  std::string reason;
  if (!fq::cuda::device_available(&reason)) {
    std::printf("cuda_gemm_bench: skipped, no usable CUDA device: %s\n", reason.c_str());
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  fq::cuda::register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
