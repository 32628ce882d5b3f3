// The integer GEMM of a quantized Linear for decode-sized batches (up to kRowsPerPass rows): int8
// activation codes times int8 or packed int4 weight codes, exact int32 sums (equal to
// quant::int_gemm bit for bit, with wraparound where that overflows). One pass over the weight
// bytes per kRowsPerPass rows, every row sharing each weight load; packed int4 weights are read in
// place, so a decode token moves half the bytes of int8. AVX-512 VNNI kernels (small_batch_kernels.h).
#pragma once

#include <cstdint>
#include <vector>

#include "fq/tensor.h"

namespace fq::cpu {

class SmallBatchGemm {
 public:
  // Rows one pass over the weights serves; more rows are still correct, one pass per kRowsPerPass.
  static constexpr int64_t kRowsPerPass = 8;

  // weights: contiguous i8 [N, K] or packed i4 [N, K] as pack_int4 stores it (any K, odd too);
  // referenced, not copied.
  explicit SmallBatchGemm(Tensor weights);
  // acc[rows, N] = codes[rows, K] · weightsᵀ
  void run(const int8_t* codes, int64_t rows, int32_t* acc) const;

  int64_t outputs() const { return weights_.dim(0); }
  int64_t width() const { return weights_.dim(1); }

 private:
  void run_int4(const int8_t* codes, int64_t rows, int32_t* acc) const;
  void run_int8(const int8_t* codes, int64_t rows, int32_t* acc) const;

  Tensor weights_;
  // int8 weights: 128·Σ_k W[n, k] per output (mod 2^32), what the kernel's shifted activations add.
  std::vector<uint32_t> int8_offsets_;
};

}  // namespace fq::cpu
