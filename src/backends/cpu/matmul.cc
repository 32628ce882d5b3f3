#include "backends/cpu/matmul.h"

#include <vector>

namespace fq::cpu {

using dnnl::memory;

namespace {
memory::data_type dnnl_type(DType type) {
  switch (type) {
    case DType::f32: return memory::data_type::f32;
    case DType::bf16: return memory::data_type::bf16;
    case DType::f16: return memory::data_type::f16;
    case DType::i8: return memory::data_type::s8;
    case DType::i32: return memory::data_type::s32;
    default: fail("oneDNN has no type for {}", dtype_name(type));
  }
}
}  // namespace

namespace {
constexpr int64_t layout_rows = 512;  // the row count the weight layout is chosen for

memory::desc weight_desc(int64_t k, int64_t n, memory::data_type type, memory::format_tag tag) {
  return {{k, n}, type, tag};  // W[N, K] read as Wᵀ [K, N]
}

dnnl::matmul::primitive_desc linear_desc(int64_t rows, int64_t k, int64_t n, memory::data_type type,
                                         const memory::desc& weights, bool bias) {
  memory::desc src({rows, k}, type, memory::format_tag::ab);
  memory::desc dst({rows, n}, memory::data_type::f32, memory::format_tag::ab);
  dnnl::matmul::desc desc =
      bias ? dnnl::matmul::desc(src, weights, memory::desc({1, n}, memory::data_type::f32, memory::format_tag::ab), dst)
           : dnnl::matmul::desc(src, weights, dst);
  return dnnl::matmul::primitive_desc(desc, user_scratchpad(), engine());
}
}  // namespace

LinearMatmul::LinearMatmul(Tensor weight, Tensor bias) : bias_(std::move(bias)) {
  check(weight.rank() == 2, "linear weight must be 2-D, got {}", shape_str(weight.shape()));
  check(weight.dtype() == DType::f32 || weight.dtype() == DType::bf16, "linear weight must be f32 or bf16, got {}",
        dtype_name(weight.dtype()));
  const Tensor plain = weight.contiguous();
  out_ = plain.dim(0);
  in_ = plain.dim(1);
  dtype_ = plain.dtype();
  if (bias_.defined()) {
    bias_ = bias_.to(DType::f32).contiguous();
    check(bias_.numel() == out_features(), "linear bias has {} values, expected {}", bias_.numel(), out_features());
  }
  const auto type = dnnl_type(dtype_);
  const auto layout = linear_desc(layout_rows, in_, out_, type, weight_desc(in_, out_, type, memory::format_tag::any),
                                  bias_.defined());
  memory source(weight_desc(in_, out_, type, memory::format_tag::ba), engine(), plain.raw());
  blocked_ = memory(layout.weights_desc(), engine());
  dnnl::reorder(source, blocked_).execute(stream(), source, blocked_);
  stream().wait();
}

Tensor LinearMatmul::weight() const {
  Tensor plain = Tensor::empty(dtype_, {out_, in_});
  memory destination(weight_desc(in_, out_, dnnl_type(dtype_), memory::format_tag::ba), engine(), plain.raw());
  dnnl::reorder(blocked_, destination).execute(stream(), const_cast<memory&>(blocked_), destination);
  stream().wait();
  return plain;
}

const dnnl::matmul& LinearMatmul::primitive(int64_t rows) const {
  std::lock_guard lock(mutex_);
  auto it = primitives_.find(rows);
  if (it != primitives_.end()) return it->second;
  const auto desc = linear_desc(rows, in_, out_, dnnl_type(dtype_), blocked_.get_desc(), bias_.defined());
  return primitives_.emplace(rows, dnnl::matmul(desc)).first->second;
}

void LinearMatmul::run(const Tensor& x, Tensor& y) const {
  const int64_t rows = x.dim(0), k = in_features(), n = out_features();
  check(x.rank() == 2 && x.dim(1) == k, "linear input has shape {}, expected [rows, {}]", shape_str(x.shape()), k);
  check(y.rank() == 2 && y.dim(0) == rows && y.dim(1) == n && y.dtype() == DType::f32 && y.is_contiguous(),
        "linear output has shape {}, expected f32 [{}, {}]", shape_str(y.shape()), rows, n);
  Tensor input = x.contiguous();
  if (dtype_ == DType::bf16) input = input.to(DType::bf16);
  const auto type = dnnl_type(dtype_);
  memory src({{rows, k}, type, memory::format_tag::ab}, engine(), input.raw());
  memory dst({{rows, n}, memory::data_type::f32, memory::format_tag::ab}, engine(), y.raw());
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, blocked_}, {DNNL_ARG_DST, dst}};
  if (bias_.defined())
    args.emplace(DNNL_ARG_BIAS, memory({{1, n}, memory::data_type::f32, memory::format_tag::ab}, engine(), bias_.raw()));
  execute(primitive(rows), std::move(args));
}

void batched_matmul(const StridedOperand& a, const StridedOperand& b, const StridedOperand& c) {
  memory::desc a_desc(a.dims, memory::data_type::f32, a.strides);
  memory::desc b_desc(b.dims, memory::data_type::f32, b.strides);
  memory::desc c_desc(c.dims, memory::data_type::f32, c.strides);
  // oneDNN's primitive cache makes re-creating the same shape cheap.
  dnnl::matmul product(
      dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_desc, b_desc, c_desc), user_scratchpad(), engine()));
  execute(product, {{DNNL_ARG_SRC, memory(a_desc, engine(), a.data)},
                    {DNNL_ARG_WEIGHTS, memory(b_desc, engine(), b.data)},
                    {DNNL_ARG_DST, memory(c_desc, engine(), c.data)}});
}

}  // namespace fq::cpu
