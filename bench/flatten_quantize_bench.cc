// Flatten + quantize of activations (FlattenQuantizer) at SmolLM2-135M shapes: the AVX-512 kernel against the
// scalar reference loops, and its share of a quantized Linear next to the s8 GEMM of the same M x K' x N
// (oneDNN matmul, weights reordered once to the layout it prefers).
//
//   OMP_WAIT_POLICY=passive build/bench/flatten_quantize_bench
// Counters: ns_per_row (time per activation row), bytes_per_second (f32 read + i8 written), and for
// BM_LinearShare the two parts and quantize_share = quantize / (quantize + GEMM).
#include <benchmark/benchmark.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/dnnl_context.h"
#include "quant/activation_quant.h"

namespace fq {
namespace {

using quant::FlattenQuantizer;
using Path = FlattenQuantizer::Path;

// K input channels, about 10% of them added as copies (n = 2 or 3 on channels chosen at random), padded to 64.
FlattenPlan smollm_like_plan(int64_t width) {
  std::mt19937_64 rng(width);
  std::vector<int32_t> copies(width, 1);
  int64_t extra = 0;
  while (extra < width / 10) {
    int32_t& n = copies[rng() % width];
    if (n > 1) continue;
    n = 2 + static_cast<int32_t>(rng() % 2);
    extra += n - 1;
  }
  return FlattenPlan::from_copies(std::move(copies), 1.f, 64);
}

// Activations with a heavy tail per channel and larger values on the flattened channels.
std::vector<float> activations(const FlattenPlan& plan, int64_t rows) {
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(rows * plan.in_features);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < plan.in_features; ++j) x[r * plan.in_features + j] = normal(rng) * plan.copies[j];
  return x;
}

enum Mode { kStaticStep, kDynamicStep, kPerToken };

// One flatten + quantize of `rows` rows in the given mode.
void quantize(const FlattenQuantizer& quantizer, const std::vector<float>& x, int64_t rows, Mode mode,
              std::vector<float>& steps, std::vector<int8_t>& codes, Path path) {
  const int64_t width = quantizer.in_features();
  if (mode == kPerToken) {
    quantizer.quantize_per_token(x.data(), rows, width, steps.data(), codes.data(), path);
    return;
  }
  steps[0] = mode == kStaticStep ? 0.05f : quant::dynamic_step(quantizer.flattened_max(x.data(), rows, width, path), 127);
  quantizer.quantize(x.data(), rows, width, std::span(steps.data(), 1), codes.data(), path);
}

void set_row_counters(benchmark::State& state, const FlattenQuantizer& quantizer, int64_t rows) {
  state.counters["ns_per_row"] = benchmark::Counter(double(rows) * 1e-9, benchmark::Counter::kIsIterationInvariantRate |
                                                                             benchmark::Counter::kInvert);
  state.SetBytesProcessed(state.iterations() * rows * (quantizer.in_features() * 4 + quantizer.flat_features()));
}

// Args: K, rows, mode, path (0 vectorized, 1 reference).
void BM_FlattenQuantize(benchmark::State& state) {
  const int64_t width = state.range(0), rows = state.range(1);
  const auto mode = static_cast<Mode>(state.range(2));
  const auto path = state.range(3) == 0 ? Path::vectorized : Path::reference;
  const FlattenPlan plan = smollm_like_plan(width);
  const FlattenQuantizer quantizer(plan, 127, true);
  const std::vector<float> x = activations(plan, rows);
  std::vector<float> steps(rows);
  std::vector<int8_t> codes(rows * plan.flat_features());
  for (auto _ : state) {
    quantize(quantizer, x, rows, mode, steps, codes, path);
    benchmark::DoNotOptimize(codes.data());
  }
  set_row_counters(state, quantizer, rows);
  state.SetLabel(path == Path::vectorized && FlattenQuantizer::vectorized_kernel() ? "avx512" : "scalar");
}

// s8 [M, K'] x s8 [K', N] -> s32 [M, N] with oneDNN, as a quantized Linear runs it.
class Int8Gemm {
 public:
  Int8Gemm(int64_t rows, int64_t depth, int64_t outputs) {
    using dnnl::memory;
    const memory::desc source({rows, depth}, memory::data_type::s8, memory::format_tag::ab);
    const memory::desc any_weights({depth, outputs}, memory::data_type::s8, memory::format_tag::any);
    const memory::desc destination({rows, outputs}, memory::data_type::s32, memory::format_tag::ab);
    const dnnl::matmul::primitive_desc descriptor(dnnl::matmul::desc(source, any_weights, destination), cpu::engine());
    std::vector<int8_t> plain(depth * outputs);
    std::mt19937 rng(3);
    for (int8_t& w : plain) w = static_cast<int8_t>(int(rng() % 255) - 127);
    memory plain_weights({{depth, outputs}, memory::data_type::s8, memory::format_tag::ab}, cpu::engine(),
                         plain.data());
    weights_ = memory(descriptor.weights_desc(), cpu::engine());
    dnnl::reorder(plain_weights, weights_).execute(cpu::stream(), plain_weights, weights_);
    source_ = memory(source, cpu::engine());
    destination_ = memory(destination, cpu::engine());
    matmul_ = dnnl::matmul(descriptor);
    name_ = descriptor.impl_info_str();
  }
  void run(const int8_t* codes) {
    source_.set_data_handle(const_cast<int8_t*>(codes));
    matmul_.execute(cpu::stream(), {{DNNL_ARG_SRC, source_}, {DNNL_ARG_WEIGHTS, weights_}, {DNNL_ARG_DST, destination_}});
    cpu::stream().wait();
  }
  const std::string& name() const { return name_; }

 private:
  dnnl::memory weights_, source_, destination_;
  dnnl::matmul matmul_;
  std::string name_;
};

// Args: K, rows, N, mode. Times the kernel and the GEMM it feeds, alternately.
void BM_LinearShare(benchmark::State& state) {
  const int64_t width = state.range(0), rows = state.range(1), outputs = state.range(2);
  const auto mode = static_cast<Mode>(state.range(3));
  const FlattenPlan plan = smollm_like_plan(width);
  const FlattenQuantizer quantizer(plan, 127, true);
  const std::vector<float> x = activations(plan, rows);
  std::vector<float> steps(rows);
  std::vector<int8_t> codes(rows * plan.flat_features());
  Int8Gemm gemm(rows, plan.flat_features(), outputs);
  using Clock = std::chrono::steady_clock;
  Clock::duration quantizing{}, multiplying{};
  for (auto _ : state) {
    const auto start = Clock::now();
    quantize(quantizer, x, rows, mode, steps, codes, Path::vectorized);
    const auto middle = Clock::now();
    gemm.run(codes.data());
    quantizing += middle - start;
    multiplying += Clock::now() - middle;
  }
  const double quantize_ns = std::chrono::duration<double, std::nano>(quantizing).count();
  const double gemm_ns = std::chrono::duration<double, std::nano>(multiplying).count();
  const double per_row = double(state.iterations()) * double(rows);
  state.counters["quantize_ns_per_row"] = quantize_ns / per_row;
  state.counters["gemm_ns_per_row"] = gemm_ns / per_row;
  state.counters["quantize_share"] = quantize_ns / (quantize_ns + gemm_ns);
  state.SetLabel(gemm.name());
}

// SmolLM2-135M: hidden 576 (q/k/v/o and gate/up inputs), intermediate 1536 (down input).
void flatten_quantize_args(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"K", "rows", "mode", "reference"});
  for (int64_t width : {576, 1536})
    for (int64_t rows : {512, 1})
      for (int64_t mode : {kStaticStep, kDynamicStep, kPerToken})
        for (int64_t reference : {0, 1}) bench->Args({width, rows, mode, reference});
}

void linear_share_args(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"K", "rows", "N", "mode"});
  for (int64_t mode : {kStaticStep, kDynamicStep, kPerToken}) {
    bench->Args({576, 512, 576, mode});
    bench->Args({576, 512, 1536, mode});
    bench->Args({1536, 512, 576, mode});
    bench->Args({1536, 512, 1536, mode});
  }
}

BENCHMARK(BM_FlattenQuantize)->Apply(flatten_quantize_args)->UseRealTime();
BENCHMARK(BM_LinearShare)->Apply(linear_share_args)->UseRealTime();

}  // namespace
}  // namespace fq
