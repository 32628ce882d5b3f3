// device.h on the CPU: "device" memory is host memory, so the emulated kernels can read it directly.
#include <cstdlib>
#include <cstring>

#include "backends/cuda/device.h"
#include "backends/cuda/memory_accounting.h"
#include "fq/error.h"

namespace fq::cuda_emu {

bool device_available(std::string*) { return true; }

DeviceInfo device_info() { return {"CPU emulator", 0, 0, 0}; }

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  data_ = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  check(data_ != nullptr, "emulated device: out of memory allocating {} bytes", bytes);
  std::memset(data_, 0xff, bytes);  // as uninitialized device memory may hold anything
  detail::count_allocation(bytes);
}

DeviceBuffer::~DeviceBuffer() {
  if (!data_) return;
  std::free(data_);
  detail::count_release(bytes_);
}

void copy_to_device(void* destination, const void* source, size_t bytes) { std::memcpy(destination, source, bytes); }
void copy_to_host(void* destination, const void* source, size_t bytes) { std::memcpy(destination, source, bytes); }
void copy_on_device(void* destination, const void* source, size_t bytes) { std::memmove(destination, source, bytes); }
void fill_zero(void* destination, size_t bytes) { std::memset(destination, 0, bytes); }
void synchronize() {}

}  // namespace fq::cuda_emu
