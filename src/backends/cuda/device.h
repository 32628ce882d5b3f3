// Device memory and the device itself, for the CUDA backend (namespace fq::cuda, runtime_cuda.cc on the
// CUDA runtime) and its CPU emulation (namespace fq::cuda_emu, runtime_emulated.cc on host memory).
// Everything runs on the default stream; failures throw fq::Error with one line naming the call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "backends/cuda/portable.h"

namespace fq::FQ_CUDA_NS {

struct DeviceInfo {
  std::string name;
  int compute_capability = 0;  // major·10 + minor, e.g. 90
  int multiprocessors = 0;
  size_t total_memory = 0;
};

// Whether a usable device is present; when not, `reason` (if given) says why in one line.
bool device_available(std::string* reason = nullptr);
// The current device; throws when none is available.
DeviceInfo device_info();

// Owned device memory (emulated: 64-byte aligned host memory, poisoned with 0xff bytes). Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }
  bool empty() const { return bytes_ == 0; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

void copy_to_device(void* device_destination, const void* host_source, size_t bytes);
void copy_to_host(void* host_destination, const void* device_source, size_t bytes);
void copy_on_device(void* destination, const void* source, size_t bytes);
void fill_zero(void* device_destination, size_t bytes);
// Waits for all queued work; throws when any of it failed.
void synchronize();

// Bytes of device memory held by DeviceBuffers now, and the most held at once since the last reset.
size_t memory_in_use();
size_t peak_memory_in_use();
void reset_peak_memory();

template <typename T>
DeviceBuffer upload(std::span<const T> values) {
  DeviceBuffer buffer(values.size_bytes());
  if (!values.empty()) copy_to_device(buffer.data(), values.data(), values.size_bytes());
  return buffer;
}
template <typename T>
std::vector<T> download(const void* device_source, size_t count) {
  std::vector<T> out(count);
  if (count) copy_to_host(out.data(), device_source, count * sizeof(T));
  return out;
}

}  // namespace fq::FQ_CUDA_NS
