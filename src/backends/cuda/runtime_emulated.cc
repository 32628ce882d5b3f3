// device.h on the CPU: "device" memory is host memory, so the emulated kernels can read it directly.
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "backends/cuda/device.h"
#include "fq/error.h"

namespace fq::cuda_emu {

namespace {
std::mutex memory_mutex;
size_t in_use = 0, peak = 0;
}  // namespace

bool device_available(std::string*) { return true; }

DeviceInfo device_info() { return {"CPU emulator", 0, 0, 0}; }

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  data_ = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  check(data_ != nullptr, "emulated device: out of memory allocating {} bytes", bytes);
  std::memset(data_, 0xff, bytes);  // as uninitialized device memory may hold anything
  std::lock_guard lock(memory_mutex);
  in_use += bytes;
  peak = std::max(peak, in_use);
}

DeviceBuffer::~DeviceBuffer() {
  if (!data_) return;
  std::free(data_);
  std::lock_guard lock(memory_mutex);
  in_use -= bytes_;
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    DeviceBuffer old(std::move(*this));
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void copy_to_device(void* destination, const void* source, size_t bytes) { std::memcpy(destination, source, bytes); }
void copy_to_host(void* destination, const void* source, size_t bytes) { std::memcpy(destination, source, bytes); }
void copy_on_device(void* destination, const void* source, size_t bytes) { std::memmove(destination, source, bytes); }
void fill_zero(void* destination, size_t bytes) { std::memset(destination, 0, bytes); }
void synchronize() {}

size_t memory_in_use() {
  std::lock_guard lock(memory_mutex);
  return in_use;
}
size_t peak_memory_in_use() {
  std::lock_guard lock(memory_mutex);
  return peak;
}
void reset_peak_memory() {
  std::lock_guard lock(memory_mutex);
  peak = in_use;
}

}  // namespace fq::cuda_emu
