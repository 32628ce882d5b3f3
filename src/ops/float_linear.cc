#include "fq/linear.h"

#include "backends/cpu/matmul.h"
#include "fq/profile.h"

namespace fq {

struct FloatLinear::Impl {
  cpu::LinearMatmul matmul;
};

namespace {
Tensor weight_for(const Tensor& weight, DType compute) {
  check(compute == DType::f32 || compute == DType::bf16, "float linear compute type must be f32 or bf16, got {}",
        dtype_name(compute));
  return weight.to(compute);
}
}  // namespace

FloatLinear::FloatLinear(const Tensor& weight, const Tensor& bias, DType compute)
    : impl_(new Impl{cpu::LinearMatmul(weight_for(weight, compute), bias)}) {}
FloatLinear::~FloatLinear() = default;

int64_t FloatLinear::in_features() const { return impl_->matmul.in_features(); }
int64_t FloatLinear::out_features() const { return impl_->matmul.out_features(); }
void FloatLinear::forward(const Tensor& x, Tensor& y) const {
  profile::Scope scope("float gemm");
  impl_->matmul.run(x, y);
}
std::string FloatLinear::kind() const { return std::string(dtype_name(impl_->matmul.dtype())); }
Tensor FloatLinear::weight() const { return impl_->matmul.weight(); }
const Tensor& FloatLinear::bias() const { return impl_->matmul.bias(); }

}  // namespace fq
