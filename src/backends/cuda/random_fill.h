// Random device buffers for random-weight benchmark models, generated on the device from a counter-based
// hash (so a 13B-parameter model never passes through host memory).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backends/cuda/portable.h"

namespace fq::FQ_CUDA_NS {

// values[i] uniform in [-scale, scale).
void fill_random_half(__half* values, size_t count, uint64_t seed, float scale);
// Every byte uniform: int8 codes in [-128, 127], or packed int4 pairs in [-8, 7].
void fill_random_bytes(void* bytes, size_t count, uint64_t seed);

// Replaces the e4m3 NaN bytes (0x7f, 0xff) of random FP8 weights by the largest finite values (±448).
void clear_e4m3_nans(uint8_t* bytes, size_t count);

}  // namespace fq::FQ_CUDA_NS
