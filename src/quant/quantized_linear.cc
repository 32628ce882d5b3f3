// QuantizedLinear: checked construction, the integer forward pass and its fake-quant reference.
#include "fq/quant/quantized_linear.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backends/cpu/int8_matmul.h"
#include "backends/cpu/small_batch_gemm.h"
#include "fq/parallel.h"
#include "fq/profile.h"
#include "quant/activation_quant.h"

namespace fq {

namespace {

void check_plan(const FlattenPlan& plan) {
  check(plan.in_features >= 1 && static_cast<int64_t>(plan.copies.size()) == plan.in_features,
        "quantized linear: flatten plan has {} copy counts for {} input features", plan.copies.size(), plan.in_features);
  const FlattenPlan rebuilt = FlattenPlan::from_copies(plan.copies, plan.threshold, plan.align);
  check(rebuilt.source == plan.source && rebuilt.copy_index == plan.copy_index,
        "quantized linear: flatten plan columns do not match its copy counts");
}

Tensor checked_weight_codes(Tensor codes, int bits, int64_t flat_features) {
  const int qmax = quant_max(bits);
  check(codes.rank() == 2 && codes.dim(1) == flat_features && codes.dim(0) >= 1,
        "quantized linear: weight codes have shape {}, expected [out, {}]", shape_str(codes.shape()), flat_features);
  check(codes.dtype() == DType::i8 || (bits == 4 && codes.dtype() == DType::i4),
        "quantized linear: {}-bit weight codes cannot be {}", bits, dtype_name(codes.dtype()));
  check(codes.is_contiguous(), "quantized linear: weight codes must be contiguous");
  const Tensor values = codes.dtype() == DType::i4 ? unpack_int4(codes) : codes;
  const int8_t* data = values.data<int8_t>();
  for (int64_t i = 0; i < values.numel(); ++i)
    check(data[i] >= -qmax && data[i] <= qmax, "quantized linear: weight code {} at element {} is outside ±{}", data[i],
          i, qmax);
  // 4-bit weights are held packed.
  return bits == 4 && codes.dtype() == DType::i8 ? pack_int4(codes) : codes;
}

// Per-thread scratch, grown as needed and reused, so steady-state forward() calls allocate nothing.
template <typename T>
T* scratch(std::vector<T>& buffer, int64_t count) {
  if (static_cast<int64_t>(buffer.size()) < count) buffer.resize(static_cast<size_t>(count));
  return buffer.data();
}
thread_local std::vector<int8_t> codes_scratch, unpacked_scratch;
thread_local std::vector<int32_t> sums_scratch;
thread_local std::vector<float> steps_scratch;

// 4-bit weights are unpacked to int8 this many output rows at a time for the GEMM.
constexpr int64_t unpack_rows = 256;

}  // namespace

QuantizedLinear::QuantizedLinear(FlattenPlan plan, Tensor weight_codes, int weight_bits,
                                 std::vector<float> weight_scales, ActivationQuant activation, Tensor bias)
    : plan_(std::move(plan)), weight_bits_(weight_bits), weight_scales_(std::move(weight_scales)),
      activation_(activation) {
  check_plan(plan_);
  Tensor codes = checked_weight_codes(std::move(weight_codes), weight_bits_, plan_.flat_features());
  out_features_ = codes.dim(0);
  check(weight_scales_.size() == 1 || static_cast<int64_t>(weight_scales_.size()) == out_features_,
        "quantized linear: {} weight scales for {} outputs, expected 1 or {}", weight_scales_.size(), out_features_,
        out_features_);
  for (float scale : weight_scales_)
    check(scale > 0 && std::isfinite(scale), "quantized linear: weight scale {} is not positive and finite", scale);
  const int activation_max = quant_max(activation_.bits);
  check(!activation_.per_token || activation_.dynamic, "quantized linear: per-token activations must be dynamic");
  check(activation_.dynamic || (activation_.step > 0 && std::isfinite(activation_.step)),
        "quantized linear: static activation step {} is not positive and finite", activation_.step);
  // Every int32 sum of K' products of codes must fit.
  check(plan_.flat_features() * int64_t{activation_max} * quant_max(weight_bits_) <= std::numeric_limits<int32_t>::max(),
        "quantized linear: {} flattened inputs could overflow the int32 accumulators", plan_.flat_features());
  if (bias.defined()) {
    check(bias.numel() == out_features_, "quantized linear: bias has {} values, expected {}", bias.numel(),
          out_features_);
    bias_ = bias.to(DType::f32).contiguous();
  }
  quantizer_ = std::make_shared<const quant::FlattenQuantizer>(plan_, activation_max, activation_.stagger);
  if (codes.dtype() == DType::i4) {
    packed_weights_ = std::move(codes);
    small_batch_ = std::make_shared<const cpu::SmallBatchGemm>(packed_weights_);
    return;
  }
  // A static step is known now: the whole rescale (step · weight scale) and the bias go into the GEMM.
  std::vector<float> output_scales;
  if (!activation_.dynamic)
    for (float scale : weight_scales_) output_scales.push_back(static_cast<float>(double(activation_.step) * scale));
  matmul_ = std::make_shared<const cpu::Int8Matmul>(codes, std::move(output_scales), bias_);
}

Tensor QuantizedLinear::weight_codes() const { return matmul_ ? matmul_->weights() : packed_weights_; }

std::string QuantizedLinear::kind() const {
  return fmt::format("w{}a{} {}, {} weights, K x{:.2f}, {}", weight_bits_, activation_.bits,
                     activation_.per_token ? "per-token" : activation_.dynamic ? "dynamic" : "static",
                     weight_scales_.size() == 1 ? "per-tensor" : "per-channel",
                     double(plan_.flat_features()) / double(plan_.in_features), activation_.stagger ? "staggered" : "plain");
}

void QuantizedLinear::check_input(const Tensor& x) const {
  check(x.dtype() == DType::f32 && x.rank() == 2 && x.dim(1) == in_features(),
        "quantized linear: input is {} {}, expected f32 [rows, {}]", dtype_name(x.dtype()), shape_str(x.shape()),
        in_features());
}

void QuantizedLinear::check_io(const Tensor& x, const Tensor& y) const {
  check_input(x);
  check(y.dtype() == DType::f32 && y.rank() == 2 && y.dim(0) == x.dim(0) && y.dim(1) == out_features() &&
            y.is_contiguous(),
        "quantized linear: output is {} {}, expected contiguous f32 [{}, {}]", dtype_name(y.dtype()),
        shape_str(y.shape()), x.dim(0), out_features());
}

void QuantizedLinear::quantize_into(const Tensor& x, int8_t* codes, std::vector<float>& steps) const {
  const Tensor input = x.strides()[1] == 1 ? x : x.contiguous();
  const float* data = input.data<float>();
  const int64_t rows = input.dim(0), stride = input.strides()[0];
  if (activation_.per_token) {
    steps.resize(static_cast<size_t>(rows));
    quantizer_->quantize_per_token(data, rows, stride, steps.data(), codes);
    return;
  }
  float step = activation_.step;
  if (activation_.dynamic) step = quant::dynamic_step(quantizer_->flattened_max(data, rows, stride), quant_max(activation_.bits));
  steps.assign(1, step);
  quantizer_->quantize(data, rows, stride, steps, codes);
}

void QuantizedLinear::accumulate_into(const int8_t* codes, int64_t rows, int32_t* sums) const {
  if (matmul_) {
    matmul_->accumulate(codes, rows, sums);
    return;
  }
  if (rows <= cpu::SmallBatchGemm::kRowsPerPass) {
    small_batch_->run(codes, rows, sums);
    return;
  }
  const int64_t flat = plan_.flat_features();
  const uint8_t* packed = packed_weights_.data<uint8_t>();
  for (int64_t first = 0; first < out_features_; first += unpack_rows) {
    const int64_t count = std::min(unpack_rows, out_features_ - first);
    int8_t* weights = scratch(unpacked_scratch, count * flat);
    parallel_for(count, [&](int64_t begin, int64_t end) {
      unpack_int4_range(packed, (first + begin) * flat, (end - begin) * flat, weights + begin * flat);
    });
    cpu::int8_matmul_plain(codes, rows, flat, weights, count, sums + first, out_features_);
  }
}

Tensor QuantizedLinear::quantize_input(const Tensor& x, float& step) const {
  check(!activation_.per_token, "quantized linear: per-token activations have one step per row");
  std::vector<float> steps;
  Tensor codes = quantize_input_rows(x, steps);
  step = steps[0];
  return codes;
}

Tensor QuantizedLinear::quantize_input_rows(const Tensor& x, std::vector<float>& steps) const {
  check_input(x);
  Tensor codes = Tensor::empty(DType::i8, {x.dim(0), plan_.flat_features()});
  quantize_into(x, codes.data<int8_t>(), steps);
  if (steps.size() == 1) steps.assign(static_cast<size_t>(x.dim(0)), steps[0]);
  return codes;
}

Tensor QuantizedLinear::accumulate(const Tensor& codes) const {
  check(codes.dtype() == DType::i8 && codes.rank() == 2 && codes.dim(1) == plan_.flat_features() && codes.is_contiguous(),
        "quantized linear: codes are {} {}, expected contiguous i8 [rows, {}]", dtype_name(codes.dtype()),
        shape_str(codes.shape()), plan_.flat_features());
  Tensor sums = Tensor::empty(DType::i32, {codes.dim(0), out_features()});
  accumulate_into(codes.data<int8_t>(), codes.dim(0), sums.data<int32_t>());
  return sums;
}

void QuantizedLinear::forward(const Tensor& x, Tensor& y) const {
  check_io(x, y);
  int8_t* codes = scratch(codes_scratch, x.dim(0) * plan_.flat_features());
  {
    profile::Scope scope("flatten+quantize");
    quantize_into(x, codes, steps_scratch);
  }
  forward_codes(codes, x.dim(0), steps_scratch, y);
}

void QuantizedLinear::forward_codes(const int8_t* codes, int64_t rows, std::span<const float> steps, Tensor& y) const {
  check(y.dtype() == DType::f32 && y.rank() == 2 && y.dim(0) == rows && y.dim(1) == out_features_ && y.is_contiguous(),
        "quantized linear: output is {} {}, expected contiguous f32 [{}, {}]", dtype_name(y.dtype()),
        shape_str(y.shape()), rows, out_features_);
  if (matmul_ && matmul_->has_epilogue()) {
    profile::Scope scope("int gemm (rescale fused)");
    matmul_->run(codes, rows, y.data<float>());
    return;
  }
  int32_t* sums = scratch(sums_scratch, rows * out_features_);
  {
    profile::Scope scope("int gemm");
    accumulate_into(codes, rows, sums);
  }
  profile::Scope scope("int rescale");
  cpu::rescale_rows(sums, rows, out_features_, steps, weight_scales_, bias_.defined() ? bias_.data<float>() : nullptr,
                    y.data<float>());
}

bool QuantizedLinear::shares_input_quantization(const QuantizedLinear& other) const {
  const ActivationQuant &a = activation_, &b = other.activation_;
  return plan_.in_features == other.plan_.in_features && plan_.align == other.plan_.align &&
         plan_.copies == other.plan_.copies && a.bits == b.bits && a.dynamic == b.dynamic &&
         a.per_token == b.per_token && a.stagger == b.stagger && (a.dynamic || a.step == b.step);
}

void forward_same_input(std::span<const Linear* const> linears, const Tensor& x, std::span<Tensor> ys) {
  check(linears.size() == ys.size(), "forward_same_input: {} Linears for {} outputs", linears.size(), ys.size());
  for (size_t i = 0; i < linears.size(); ++i) ys[i] = Tensor::empty(DType::f32, {x.dim(0), linears[i]->out_features()});
  const auto* first = dynamic_cast<const QuantizedLinear*>(linears.empty() ? nullptr : linears[0]);
  const bool shared = first && std::all_of(linears.begin(), linears.end(), [&](const Linear* linear) {
    const auto* quantized = dynamic_cast<const QuantizedLinear*>(linear);
    return quantized && first->shares_input_quantization(*quantized);
  });
  if (!shared) {
    for (size_t i = 0; i < linears.size(); ++i) linears[i]->forward(x, ys[i]);
    return;
  }
  first->check_io(x, ys[0]);
  int8_t* codes = scratch(codes_scratch, x.dim(0) * first->plan().flat_features());
  {
    profile::Scope scope("flatten+quantize");
    first->quantize_into(x, codes, steps_scratch);
  }
  for (size_t i = 0; i < linears.size(); ++i)
    static_cast<const QuantizedLinear*>(linears[i])->forward_codes(codes, x.dim(0), steps_scratch, ys[i]);
}

void QuantizedLinear::forward_simulated(const Tensor& x, Tensor& y) const {
  check_io(x, y);
  std::vector<float> steps;
  const Tensor codes = quantize_input_rows(x, steps);
  const Tensor stored = weight_codes();
  const Tensor weights = stored.dtype() == DType::i4 ? unpack_int4(stored) : stored;
  const int64_t rows = x.dim(0), outputs = out_features(), flat = plan_.flat_features();
  const int8_t* input_codes = codes.data<int8_t>();
  const int8_t* weight_codes = weights.data<int8_t>();
  const float* bias = bias_.defined() ? bias_.data<float>() : nullptr;
  float* out = y.data<float>();
  parallel_for(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t n = 0; n < outputs; ++n) {
        double sum = 0;
        for (int64_t c = 0; c < flat; ++c)
          sum += (double(input_codes[r * flat + c]) * steps[r]) * (double(weight_codes[n * flat + c]) * weight_scale(n));
        out[r * outputs + n] = static_cast<float>(sum + (bias ? bias[n] : 0.0));
      }
  });
}

}  // namespace fq
