#include "backends/cpu/int8_matmul.h"

#include <fmt/format.h>

#include <cstdio>
#include <tuple>

#include "fq/parallel.h"

namespace fq::cpu {

using dnnl::memory;

namespace {

constexpr int64_t layout_rows = 512;  // the row count the weight layout is chosen for (it is the same for all here)

memory::desc codes_desc(int64_t rows, int64_t k) { return {{rows, k}, memory::data_type::s8, memory::format_tag::ab}; }

// The scales go in as a [1, N] binary multiply rather than constant output scales: constants would make
// every layer's primitive unique, each with its own JIT kernels (hundreds of MB at prefill sizes), while
// this way layers of one shape share them through oneDNN's primitive cache.
dnnl::primitive_attr epilogue_attr(bool bias, int64_t n) {
  const memory::desc row({1, n}, memory::data_type::f32, memory::format_tag::ab);
  dnnl::post_ops ops;
  ops.append_binary(dnnl::algorithm::binary_mul, row);
  if (bias) ops.append_binary(dnnl::algorithm::binary_add, row);
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);
  return attr;
}

}  // namespace

Int8Matmul::Int8Matmul(const Tensor& weights, std::vector<float> output_scales, const Tensor& bias) {
  check(weights.dtype() == DType::i8 && weights.rank() == 2 && weights.is_contiguous(),
        "int8 matmul: weights must be contiguous i8 [N, K], got {} {}", dtype_name(weights.dtype()),
        shape_str(weights.shape()));
  out_ = weights.dim(0);
  in_ = weights.dim(1);
  check(output_scales.empty() || output_scales.size() == 1 || static_cast<int64_t>(output_scales.size()) == out_,
        "int8 matmul: {} output scales for {} outputs", output_scales.size(), out_);
  // One per output either way: the epilogue multiplies by a [1, N] row.
  if (output_scales.size() == 1) output_scales.assign(static_cast<size_t>(out_), output_scales[0]);
  output_scales_ = std::move(output_scales);
  if (bias.defined()) {
    check(bias.numel() == out_, "int8 matmul: bias has {} values, expected {}", bias.numel(), out_);
    bias_ = bias.to(DType::f32).contiguous();
  }
  // The layout oneDNN prefers for these weights (with its s8 compensation), chosen once.
  const memory::desc any({in_, out_}, memory::data_type::s8, memory::format_tag::any);
  const memory::desc dst({layout_rows, out_}, memory::data_type::s32, memory::format_tag::ab);
  const dnnl::matmul::primitive_desc layout(dnnl::matmul::desc(codes_desc(layout_rows, in_), any, dst), engine());
  memory plain({{in_, out_}, memory::data_type::s8, memory::format_tag::ba}, engine(), weights.raw());
  blocked_ = memory(layout.weights_desc(), engine());
  dnnl::reorder(plain, blocked_).execute(stream(), plain, blocked_);
  stream().wait();
}

const Int8Matmul::Primitives& Int8Matmul::primitives(int64_t rows) const {
  std::lock_guard lock(mutex_);
  auto it = cache_.find(rows);
  if (it != cache_.end()) return it->second;
  const memory::desc weights = blocked_.get_desc();
  Primitives entry;
  const dnnl::matmul::primitive_desc plain(
      dnnl::matmul::desc(codes_desc(rows, in_), weights,
                         {{rows, out_}, memory::data_type::s32, memory::format_tag::ab}),
      user_scratchpad(), engine());
  entry.plain = dnnl::matmul(plain);
  entry.plain_name = plain.impl_info_str();
  if (has_epilogue()) {
    const dnnl::matmul::primitive_desc fused(
        dnnl::matmul::desc(codes_desc(rows, in_), weights,
                           {{rows, out_}, memory::data_type::f32, memory::format_tag::ab}),
        user_scratchpad(epilogue_attr(bias_.defined(), out_)), engine());
    entry.fused = dnnl::matmul(fused);
    entry.fused_name = fused.impl_info_str();
  }
  log_int8_isa_once(has_epilogue() ? entry.fused_name : entry.plain_name);
  return cache_.emplace(rows, std::move(entry)).first->second;
}

void Int8Matmul::run(const int8_t* codes, int64_t rows, float* y) const {
  check(has_epilogue(), "int8 matmul: run() needs output scales");
  memory src(codes_desc(rows, in_), engine(), const_cast<int8_t*>(codes));
  memory dst({{rows, out_}, memory::data_type::f32, memory::format_tag::ab}, engine(), y);
  const memory::desc row({1, out_}, memory::data_type::f32, memory::format_tag::ab);
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, src},
      {DNNL_ARG_WEIGHTS, blocked_},
      {DNNL_ARG_DST, dst},
      {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, memory(row, engine(), const_cast<float*>(output_scales_.data()))}};
  if (bias_.defined())
    args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, memory(row, engine(), bias_.raw()));
  execute(primitives(rows).fused, std::move(args));
}

void Int8Matmul::accumulate(const int8_t* codes, int64_t rows, int32_t* acc) const {
  memory src(codes_desc(rows, in_), engine(), const_cast<int8_t*>(codes));
  memory dst({{rows, out_}, memory::data_type::s32, memory::format_tag::ab}, engine(), acc);
  execute(primitives(rows).plain, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, blocked_}, {DNNL_ARG_DST, dst}});
}

Tensor Int8Matmul::weights() const {
  Tensor plain = Tensor::empty(DType::i8, {out_, in_});
  memory destination({{in_, out_}, memory::data_type::s8, memory::format_tag::ba}, engine(), plain.raw());
  dnnl::reorder(blocked_, destination).execute(stream(), const_cast<memory&>(blocked_), destination);
  stream().wait();
  return plain;
}

std::string Int8Matmul::implementation(int64_t rows) const {
  const Primitives& entry = primitives(rows);
  return has_epilogue() ? entry.fused_name : entry.plain_name;
}

void int8_matmul_plain(const int8_t* codes, int64_t rows, int64_t k, const int8_t* weights, int64_t n, int32_t* acc,
                       int64_t acc_stride) {
  static std::mutex mutex;
  static std::map<std::tuple<int64_t, int64_t, int64_t, int64_t>, dnnl::matmul> cache;
  const memory::desc weights_desc({k, n}, memory::data_type::s8, memory::format_tag::ba);
  const memory::desc dst_desc({rows, n}, memory::data_type::s32, memory::dims{acc_stride, 1});
  const dnnl::matmul* primitive;
  {
    std::lock_guard lock(mutex);
    auto key = std::make_tuple(rows, k, n, acc_stride);
    auto it = cache.find(key);
    if (it == cache.end()) {
      const dnnl::matmul::primitive_desc desc(dnnl::matmul::desc(codes_desc(rows, k), weights_desc, dst_desc),
                                              user_scratchpad(), engine());
      log_int8_isa_once(desc.impl_info_str());
      it = cache.emplace(key, dnnl::matmul(desc)).first;
    }
    primitive = &it->second;
  }
  execute(*primitive, {{DNNL_ARG_SRC, memory(codes_desc(rows, k), engine(), const_cast<int8_t*>(codes))},
                       {DNNL_ARG_WEIGHTS, memory(weights_desc, engine(), const_cast<int8_t*>(weights))},
                       {DNNL_ARG_DST, memory(dst_desc, engine(), acc)}});
}

void rescale_rows(const int32_t* acc, int64_t rows, int64_t n, std::span<const float> steps,
                  std::span<const float> weight_scales, const float* bias, float* y) {
  const bool per_channel = weight_scales.size() > 1;
  auto rescale = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float step = steps[steps.size() == 1 ? 0 : r];
      const int32_t* sums = acc + r * n;
      float* out = y + r * n;
      if (per_channel) {
        for (int64_t c = 0; c < n; ++c) out[c] = float(sums[c]) * (step * weight_scales[c]) + (bias ? bias[c] : 0.f);
      } else {
        const float scale = step * weight_scales[0];
        for (int64_t c = 0; c < n; ++c) out[c] = float(sums[c]) * scale + (bias ? bias[c] : 0.f);
      }
    }
  };
  // Threads only pay off on prefill-sized outputs.
  if (rows * n >= (int64_t{1} << 16))
    parallel_for(rows, rescale);
  else
    rescale(0, rows);
}

void log_int8_isa_once(const std::string& implementation) {
  static std::once_flag once;
  std::call_once(once, [&] {
    std::fprintf(stderr, "fq: int8 GEMMs run on oneDNN %s (best CPU ISA here: %s)\n", implementation.c_str(),
                 isa_name());
  });
}

}  // namespace fq::cpu
