// Packing 4-bit activation codes for the native INT4 GEMM (int4_gemm_s4mma, sm_80/sm_89).
#pragma once

#include <cstdint>

#include "backends/cuda/portable.h"

namespace fq::FQ_CUDA_NS {

// packed[i] = low nibble codes[2i], high nibble codes[2i + 1], as fq::pack_int4. codes hold values in [-8, 7]
// (4-bit activation codes are within ±7); count is even; codes 16-byte and packed 8-byte aligned.
void pack_codes_int4(const int8_t* codes, int64_t count, uint8_t* packed);

}  // namespace fq::FQ_CUDA_NS
