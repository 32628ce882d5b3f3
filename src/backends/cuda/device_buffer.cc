// What both backends' DeviceBuffer share: moves and the memory accounting. Allocation and freeing are in
// runtime_cuda.cc and runtime_emulated.cc.
#include <algorithm>
#include <mutex>
#include <utility>

#include "backends/cuda/device.h"
#include "backends/cuda/memory_accounting.h"

namespace fq::FQ_CUDA_NS {

namespace {
std::mutex memory_mutex;
size_t in_use = 0, peak = 0;
}  // namespace

namespace detail {
void count_allocation(size_t bytes) {
  std::lock_guard lock(memory_mutex);
  in_use += bytes;
  peak = std::max(peak, in_use);
}
void count_release(size_t bytes) {
  std::lock_guard lock(memory_mutex);
  in_use -= bytes;
}
}  // namespace detail

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

}  // namespace fq::FQ_CUDA_NS
