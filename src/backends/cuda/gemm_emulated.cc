// gemm.h on the CPU emulator: the plain kernels of reference_gemm.cu, which support every type.
#include "backends/cuda/gemm.h"
#include "backends/cuda/reference_gemm.h"

namespace fq::cuda_emu {

void gemm_f16(const __half* x, const __half* w, const __half* bias, __half* y, int64_t m, int64_t n, int64_t k) {
  reference_gemm_f16(x, w, bias, y, m, n, k);
}

void gemm_s8(const int8_t* a, const int8_t* b, int32_t* acc, int64_t m, int64_t n, int64_t k) {
  reference_gemm_s8(a, b, acc, m, n, k);
}

bool fp8_supported() { return true; }

void gemm_e4m3(const uint8_t* x, const uint8_t* w, const float* x_scale, const float* w_scale, const __half* bias,
               __half* y, int64_t m, int64_t n, int64_t k) {
  reference_gemm_e4m3(x, w, x_scale, w_scale, bias, y, m, n, k);
}

}  // namespace fq::cuda_emu
