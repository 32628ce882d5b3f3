#include "backends/cuda/int4_codes.h"

#include "fq/error.h"

namespace fq::FQ_CUDA_NS {

namespace {

// Each thread turns 16 codes (one 16-byte load) into 8 bytes (one 8-byte store).
__global__ void pack_codes_kernel(const int4* codes, uint2* packed, int64_t groups) {
  for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    const int4 sixteen = codes[g];
    const unsigned words[4] = {unsigned(sixteen.x), unsigned(sixteen.y), unsigned(sixteen.z), unsigned(sixteen.w)};
    unsigned out[2] = {0, 0};
    for (int w = 0; w < 4; ++w)
      for (int b = 0; b < 4; ++b) {
        const unsigned nibble = (words[w] >> (8 * b)) & 0xfu;  // the code's two's complement, low 4 bits
        const int position = 4 * w + b;                       // code index within the 16
        out[position / 8] |= nibble << (4 * (position % 8));
      }
    packed[g] = {out[0], out[1]};
  }
}

// The tail past the last whole group of 16: two codes per thread.
__global__ void pack_codes_tail_kernel(const int8_t* codes, uint8_t* packed, int64_t first_pair, int64_t pairs) {
  const int64_t p = first_pair + int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p < pairs) packed[p] = uint8_t((codes[2 * p] & 0xf) | ((codes[2 * p + 1] & 0xf) << 4));
}

}  // namespace

void pack_codes_int4(const int8_t* codes, int64_t count, uint8_t* packed) {
  check(count >= 0 && count % 2 == 0, "pack_codes_int4: {} codes is not an even count", count);
  check(reinterpret_cast<uintptr_t>(codes) % 16 == 0 && reinterpret_cast<uintptr_t>(packed) % 8 == 0,
        "pack_codes_int4: codes must be 16-byte and packed 8-byte aligned");
  const int64_t groups = count / 16, pairs = count / 2;
  if (groups > 0) {
    const auto blocks = static_cast<unsigned>(std::min<int64_t>((groups + 255) / 256, 4096));
    FQ_LAUNCH(blocks, 256, 0, nullptr, pack_codes_kernel)(reinterpret_cast<const int4*>(codes),
                                                          reinterpret_cast<uint2*>(packed), groups);
    FQ_CHECK_LAUNCH();
  }
  if (8 * groups < pairs) {
    FQ_LAUNCH(1, 32, 0, nullptr, pack_codes_tail_kernel)(codes, packed, 8 * groups, pairs);
    FQ_CHECK_LAUNCH();
  }
}

}  // namespace fq::FQ_CUDA_NS
