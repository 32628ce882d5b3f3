// The Linear GEMMs of SmolLM2-135M and OPT-6.7B, y[M, N] = x[M, K] · Wᵀ, as the model runs them: f32 and
// bf16 on cpu::LinearMatmul (bf16 includes converting x), s8 on cpu::Int8Matmul (int8 codes in, the
// static-scale rescale fused, f32 out). GOPS counts 2·M·N·K operations per call.
//   OMP_WAIT_POLICY=passive build/bench/gemm_bench --benchmark_min_time=0.2 --benchmark_filter=SmolLM2
#include <benchmark/benchmark.h>

#include <fmt/format.h>

#include <functional>
#include <memory>
#include <vector>

#include "backends/cpu/int8_matmul.h"
#include "backends/cpu/matmul.h"

namespace fq {
namespace {

struct LinearShape {
  const char* model;
  const char* layers;  // the Linears of one layer with this shape
  int64_t outputs, inputs;  // N, K
  std::vector<int64_t> rows;  // the M values to run
};

// SmolLM2-135M: hidden 576, 3 kv heads of 64, intermediate 1536, vocabulary 49152 (tied head).
// OPT-6.7B: hidden 4096, ffn 16384.
const std::vector<LinearShape>& shapes() {
  static const std::vector<LinearShape> all = {
      {"SmolLM2-135M", "attn.q+o", 576, 576, {1, 16, 512}},
      {"SmolLM2-135M", "attn.k+v", 192, 576, {1, 16, 512}},
      {"SmolLM2-135M", "mlp.gate+up", 1536, 576, {1, 16, 512}},
      {"SmolLM2-135M", "mlp.down", 576, 1536, {1, 16, 512}},
      {"SmolLM2-135M", "lm_head", 49152, 576, {1, 16, 512}},
      {"OPT-6.7B", "attn.q+k+v+out", 4096, 4096, {1, 16, 512, 2048}},
      {"OPT-6.7B", "fc1", 16384, 4096, {1, 16, 512, 2048}},
      {"OPT-6.7B", "fc2", 4096, 16384, {1, 16, 512, 2048}},
  };
  return all;
}

// Deterministic values in -127..127 without the cost of a random engine on the 67M-element OPT weights.
int8_t pattern(int64_t i) { return static_cast<int8_t>(static_cast<int64_t>((i * 2654435761u) % 255) - 127); }

// [rows, columns] of the pattern: int8 codes as they are, float types times `scale`.
Tensor filled(DType type, int64_t rows, int64_t columns, float scale) {
  Tensor values = Tensor::empty(type == DType::i8 ? DType::i8 : DType::f32, {rows, columns});
  for (int64_t i = 0; i < values.numel(); ++i) {
    if (type == DType::i8)
      values.data<int8_t>()[i] = pattern(i);
    else
      values.data<float>()[i] = pattern(i) * scale;
  }
  return values.to(type);
}

void count_operations(benchmark::State& state, const LinearShape& shape, int64_t rows) {
  state.counters["GOPS"] = benchmark::Counter(2e-9 * double(rows) * double(shape.outputs) * double(shape.inputs),
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(fmt::format("N={} K={}", shape.outputs, shape.inputs));
}

// The weights of one shape and type at a time, kept while the M values of that shape run (registration
// order), so that the OPT weights are made and reordered once per type, not once per M.
template <typename Matmul>
const Matmul& cached(const LinearShape& shape, DType type, const std::function<std::unique_ptr<Matmul>()>& make) {
  static const LinearShape* cached_shape = nullptr;
  static DType cached_type = DType::f32;
  static std::unique_ptr<Matmul> matmul;
  if (cached_shape != &shape || cached_type != type) {
    matmul.reset();
    matmul = make();
    cached_shape = &shape;
    cached_type = type;
  }
  return *matmul;
}

void run_float(benchmark::State& state, const LinearShape& shape, DType type) {
  const int64_t rows = state.range(0);
  const cpu::LinearMatmul& matmul = cached<cpu::LinearMatmul>(shape, type, [&] {
    return std::make_unique<cpu::LinearMatmul>(filled(type, shape.outputs, shape.inputs, 1.f / 4096), Tensor());
  });
  const Tensor x = filled(DType::f32, rows, shape.inputs, 1.f / 128);
  Tensor y = Tensor::empty(DType::f32, {rows, shape.outputs});
  matmul.run(x, y);  // primitive creation
  for (auto _ : state) {
    matmul.run(x, y);
    benchmark::DoNotOptimize(y.raw());
  }
  count_operations(state, shape, rows);
}

void run_int8(benchmark::State& state, const LinearShape& shape) {
  const int64_t rows = state.range(0);
  const cpu::Int8Matmul& matmul = cached<cpu::Int8Matmul>(shape, DType::i8, [&] {
    return std::make_unique<cpu::Int8Matmul>(filled(DType::i8, shape.outputs, shape.inputs, 0),
                                             std::vector<float>{1e-4f}, Tensor());
  });
  const Tensor codes = filled(DType::i8, rows, shape.inputs, 0);
  std::vector<float> y(static_cast<size_t>(rows * shape.outputs));
  matmul.run(codes.data<int8_t>(), rows, y.data());  // primitive creation
  for (auto _ : state) {
    matmul.run(codes.data<int8_t>(), rows, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  count_operations(state, shape, rows);
}

// Names read "f32/SmolLM2-135M/mlp.down/M:512"; the label gives N and K.
const int registered = [] {
  for (const LinearShape& shape : shapes())
    for (const char* type : {"f32", "bf16", "s8"}) {
      const std::string name = fmt::format("{}/{}/{}", type, shape.model, shape.layers);
      benchmark::internal::Benchmark* bench =
          std::string(type) == "s8"
              ? benchmark::RegisterBenchmark(name.c_str(), [&shape](benchmark::State& state) { run_int8(state, shape); })
              : benchmark::RegisterBenchmark(name.c_str(), [&shape, type](benchmark::State& state) {
                  run_float(state, shape, std::string(type) == "bf16" ? DType::bf16 : DType::f32);
                });
      bench->ArgName("M")->Unit(benchmark::kMicrosecond)->UseRealTime();
      for (int64_t rows : shape.rows) bench->Arg(rows);
    }
  return 0;
}();

}  // namespace
}  // namespace fq
