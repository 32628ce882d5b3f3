// The float ops of a decoder layer (attention, norms, RoPE, add, SiLU-gate) at SmolLM2-135M shapes
// (9 query heads, 3 kv heads, head_dim 64, hidden 576, intermediate 1536) and OPT-6.7B shapes
// (32 heads x 128, hidden 4096).
//
//   OMP_WAIT_POLICY=passive build/bench/ops_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only
// Counters: GFLOPS for attention (the causal multiply-adds actually needed: QKᵀ and PV over the
// visible keys only), bytes_per_second for the elementwise ops.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "fq/model.h"
#include "ops/ops.h"

namespace fq {
namespace {

std::vector<float> random_values(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> out(count);
  for (float& v : out) v = normal(rng);
  return out;
}

Tensor random_tensor(Shape shape, uint32_t seed) {
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  return Tensor::from_floats(random_values(count, seed), shape);
}

// Args: seq (new queries), start (positions already in the cache), heads, kv_heads, head_dim.
void run_attention(benchmark::State& state, ops::AttentionPrecision precision) {
  const int64_t seq = state.range(0), start = state.range(1), heads = state.range(2), kv_heads = state.range(3),
                head_dim = state.range(4), total = start + seq;
  const auto q = random_values(seq * heads * head_dim, 1);
  const auto keys = random_values(total * kv_heads * head_dim, 2);
  const auto values = random_values(total * kv_heads * head_dim, 3);
  std::vector<float> out(q.size());
  for (auto _ : state) {
    ops::attention(q.data(), keys.data(), values.data(), out.data(), seq, start, heads, kv_heads, head_dim, precision);
    benchmark::DoNotOptimize(out.data());
  }
  // Query t sees start + t + 1 keys; QKᵀ and PV each take 2 * head_dim flops per (query, key, head).
  const double visible = double(seq) * double(start) + double(seq) * double(seq + 1) / 2;
  state.counters["GFLOPS"] = benchmark::Counter(visible * double(heads) * double(head_dim) * 4 * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Attention(benchmark::State& state) { run_attention(state, ops::AttentionPrecision::f32); }
void BM_AttentionBf16(benchmark::State& state) { run_attention(state, ops::AttentionPrecision::bf16); }

void attention_args(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"seq", "start", "heads", "kv_heads", "head_dim"});
  for (int64_t seq : {128, 512, 2048}) bench->Args({seq, 0, 9, 3, 64});  // SmolLM2-135M prefill
  bench->Args({64, 448, 9, 3, 64});                                      // a later prefill chunk
  bench->Args({512, 0, 32, 32, 128});                                    // OPT-6.7B prefill
  bench->Args({1, 511, 9, 3, 64});                                       // decode
  bench->Args({4, 2044, 9, 3, 64});
  bench->Args({1, 511, 32, 32, 128});
}

void set_bytes(benchmark::State& state, int64_t bytes_per_iteration) {
  state.SetBytesProcessed(state.iterations() * bytes_per_iteration);
}

// Args: rows, width, kind (0 RMSNorm, 1 LayerNorm).
void BM_Norm(benchmark::State& state) {
  const int64_t rows = state.range(0), width = state.range(1);
  const NormKind kind = state.range(2) == 0 ? NormKind::rms_norm : NormKind::layer_norm;
  const Tensor x = random_tensor({rows, width}, 4);
  const Norm weights{random_tensor({width}, 5), kind == NormKind::layer_norm ? random_tensor({width}, 6) : Tensor()};
  Tensor out = Tensor::empty(DType::f32, {rows, width});
  for (auto _ : state) {
    ops::norm(x, out, weights, kind, 1e-5f);
    benchmark::DoNotOptimize(out.raw());
  }
  set_bytes(state, rows * width * 8);
}

void norm_args(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"rows", "width", "layer_norm"});
  for (int64_t rows : {512, 1}) {
    bench->Args({rows, 576, 0});
    bench->Args({rows, 4096, 1});
  }
}

// Args: rows (= seq, batch 1), heads, head_dim, start.
void BM_Rope(benchmark::State& state) {
  const int64_t rows = state.range(0), heads = state.range(1), head_dim = state.range(2), start = state.range(3);
  Tensor x = random_tensor({rows, heads * head_dim}, 7);
  for (auto _ : state) {
    ops::rope(x, rows, heads, head_dim, start, 100000.0);
    benchmark::DoNotOptimize(x.raw());
  }
  set_bytes(state, rows * heads * head_dim * 8);
}

void rope_args(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"rows", "heads", "head_dim", "start"});
  bench->Args({512, 9, 64, 0});
  bench->Args({512, 3, 64, 0});
  bench->Args({1, 9, 64, 511});
}

// Args: rows, width.
void BM_Add(benchmark::State& state) {
  const int64_t rows = state.range(0), width = state.range(1);
  Tensor x = random_tensor({rows, width}, 8);
  const Tensor y = random_tensor({rows, width}, 9);
  for (auto _ : state) {
    ops::add(x, y);
    benchmark::DoNotOptimize(x.raw());
  }
  set_bytes(state, rows * width * 12);
}

// Args: rows, width.
void BM_SiluGate(benchmark::State& state) {
  const int64_t rows = state.range(0), width = state.range(1);
  const Tensor gate = random_tensor({rows, width}, 10);
  const Tensor up = random_tensor({rows, width}, 11);
  Tensor work = Tensor::empty(DType::f32, {rows, width});
  for (auto _ : state) {
    std::copy_n(gate.data<float>(), rows * width, work.data<float>());  // fresh inputs, not timed
    const auto begin = std::chrono::steady_clock::now();
    ops::gated_activate(work, up, Activation::silu);
    benchmark::DoNotOptimize(work.raw());
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count());
  }
  set_bytes(state, rows * width * 12);
}

void elementwise_args(benchmark::internal::Benchmark* bench, int64_t width) {
  bench->ArgNames({"rows", "width"});
  bench->Args({512, width});
  bench->Args({1, width});
}

BENCHMARK(BM_Attention)->Apply(attention_args)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AttentionBf16)->Apply(attention_args)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Norm)->Apply(norm_args)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Rope)->Apply(rope_args)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Add)
    ->Apply([](auto* bench) { elementwise_args(bench, 576); })
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SiluGate)
    ->Apply([](auto* bench) { elementwise_args(bench, 1536); })
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace fq
