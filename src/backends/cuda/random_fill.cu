#include "backends/cuda/random_fill.h"

#include "fq/error.h"

namespace fq::FQ_CUDA_NS {

namespace {

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__global__ void fill_half_kernel(__half* values, size_t count, uint64_t seed, float scale) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x) {
    const uint32_t bits = static_cast<uint32_t>(splitmix64(seed ^ (i * 0x100000001b3ull)) >> 40);  // 24 bits
    values[i] = __float2half_rn((float(bits) * (2.0f / 16777216.0f) - 1.0f) * scale);
  }
}

__global__ void fill_bytes_kernel(uint32_t* words, size_t count, uint64_t seed) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x)
    words[i] = static_cast<uint32_t>(splitmix64(seed ^ (i * 0x100000001b3ull)));
}

__global__ void clear_e4m3_nans_kernel(uint8_t* bytes, size_t count) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x)
    if ((bytes[i] & 0x7f) == 0x7f) bytes[i] = static_cast<uint8_t>(bytes[i] - 1);
}

unsigned grid_for(size_t count) { return static_cast<unsigned>(std::min<size_t>((count + 255) / 256, 4096)); }

}  // namespace

void fill_random_half(__half* values, size_t count, uint64_t seed, float scale) {
  if (count == 0) return;
  FQ_LAUNCH(grid_for(count), 256, 0, nullptr, fill_half_kernel)(values, count, seed, scale);
  FQ_CHECK_LAUNCH();
}

void fill_random_bytes(void* bytes, size_t count, uint64_t seed) {
  check(count % 4 == 0, "fill_random_bytes: {} bytes is not a whole number of 32-bit words", count);
  if (count == 0) return;
  FQ_LAUNCH(grid_for(count / 4), 256, 0, nullptr, fill_bytes_kernel)(static_cast<uint32_t*>(bytes), count / 4, seed);
  FQ_CHECK_LAUNCH();
}

void clear_e4m3_nans(uint8_t* bytes, size_t count) {
  if (count == 0) return;
  FQ_LAUNCH(grid_for(count), 256, 0, nullptr, clear_e4m3_nans_kernel)(bytes, count);
  FQ_CHECK_LAUNCH();
}

}  // namespace fq::FQ_CUDA_NS
