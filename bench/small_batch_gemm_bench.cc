// Decode-sized integer GEMMs at SmolLM2-135M shapes (N x K' of the attention, MLP and LM-head
// Linears, 1 and 4 rows): SmallBatchGemm on packed int4 and on int8 weights against oneDNN's s8 and
// bf16 matmuls (weights in the layout oneDNN picks, reordered once). The GB/s counter counts each
// kernel's own weight bytes per call (int4: N·K/2, int8: N·K, bf16: 2·N·K).
//   OMP_WAIT_POLICY=passive build/bench/small_batch_gemm_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true   (FQ_THREADS=1 OMP_NUM_THREADS=1: one thread)
#include <benchmark/benchmark.h>

#include <random>

#include "backends/cpu/dnnl_context.h"
#include "backends/cpu/small_batch_gemm.h"
#include "fq/quant/quantize.h"

namespace fq {
namespace {

using dnnl::memory;

// rows, N, K'
void decode_shapes(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"rows", "N", "K"});
  for (int64_t rows : {1, 4})
    for (auto [outputs, width] : {std::pair{576, 640}, {192, 640}, {1536, 640}, {576, 1600}, {49152, 576}})
      bench->Args({rows, outputs, width});
  bench->Unit(benchmark::kMicrosecond)->UseRealTime();
}

Tensor random_codes(int64_t rows, int64_t width, int qmax) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> uniform(-qmax, qmax);
  Tensor codes = Tensor::empty(DType::i8, {rows, width});
  for (int64_t i = 0; i < codes.numel(); ++i) codes.data<int8_t>()[i] = static_cast<int8_t>(uniform(rng));
  return codes;
}

void count_weight_bytes(benchmark::State& state, double bytes_per_call) {
  state.counters["GB/s"] = benchmark::Counter(bytes_per_call * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void run_small_batch(benchmark::State& state, int bits) {
  const int64_t rows = state.range(0), outputs = state.range(1), width = state.range(2);
  const Tensor codes = random_codes(outputs, width, bits == 4 ? 7 : 127);
  const cpu::SmallBatchGemm gemm(bits == 4 ? pack_int4(codes) : codes);
  const Tensor activations = random_codes(rows, width, 127);
  std::vector<int32_t> acc(rows * outputs);
  for (auto _ : state) {
    gemm.run(activations.data<int8_t>(), rows, acc.data());
    benchmark::DoNotOptimize(acc.data());
  }
  count_weight_bytes(state, double(outputs) * width * bits / 8);
}

void SmallBatchInt4(benchmark::State& state) { run_small_batch(state, 4); }
void SmallBatchInt8(benchmark::State& state) { run_small_batch(state, 8); }

// A oneDNN matmul src [rows, K] x weights [K, N] -> dst [rows, N] with weights in the primitive's own layout.
void run_onednn(benchmark::State& state, memory::data_type type) {
  const int64_t rows = state.range(0), outputs = state.range(1), width = state.range(2);
  const memory::data_type result = type == memory::data_type::s8 ? memory::data_type::s32 : memory::data_type::f32;
  const memory::desc src_desc({rows, width}, type, memory::format_tag::ab);
  const memory::desc any_weights({width, outputs}, type, memory::format_tag::any);
  const memory::desc dst_desc({rows, outputs}, result, memory::format_tag::ab);
  const dnnl::matmul::primitive_desc desc(dnnl::matmul::desc(src_desc, any_weights, dst_desc), cpu::engine());
  const dnnl::matmul matmul(desc);

  // Row n of the weights holds output n's K values (the [N, K] layout of a Linear), i.e. [K, N] "ba".
  const Tensor weight_codes = random_codes(outputs, width, 127), activation_codes = random_codes(rows, width, 127);
  const auto filled = [&](const Tensor& codes) {
    if (type == memory::data_type::s8) return codes;
    Tensor values = Tensor::empty(DType::bf16, codes.shape());
    for (int64_t i = 0; i < codes.numel(); ++i)
      values.data<uint16_t>()[i] = f32_to_bf16(codes.data<int8_t>()[i] / 64.f);
    return values;
  };
  const Tensor plain_weights = filled(weight_codes), activations = filled(activation_codes);
  memory plain({{width, outputs}, type, memory::format_tag::ba}, cpu::engine(), plain_weights.raw());
  memory weights(desc.weights_desc(), cpu::engine());
  dnnl::reorder(plain, weights).execute(cpu::stream(), plain, weights);
  memory src(src_desc, cpu::engine(), activations.raw());
  memory dst(dst_desc, cpu::engine());
  cpu::stream().wait();

  for (auto _ : state) {
    matmul.execute(cpu::stream(), {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}});
    cpu::stream().wait();
  }
  count_weight_bytes(state, double(outputs) * width * (type == memory::data_type::s8 ? 1 : 2));
}

void OnednnS8(benchmark::State& state) { run_onednn(state, memory::data_type::s8); }
void OnednnBf16(benchmark::State& state) { run_onednn(state, memory::data_type::bf16); }

BENCHMARK(SmallBatchInt4)->Apply(decode_shapes);
BENCHMARK(SmallBatchInt8)->Apply(decode_shapes);
BENCHMARK(OnednnS8)->Apply(decode_shapes);
BENCHMARK(OnednnBf16)->Apply(decode_shapes);

}  // namespace
}  // namespace fq
