// The bookkeeping behind device.h's memory_in_use() and peak_memory_in_use(), shared by both backends'
// DeviceBuffer (device_buffer.cc), which call these as they allocate and free.
#pragma once

#include <cstddef>

#include "backends/cuda/portable.h"

namespace fq::FQ_CUDA_NS::detail {

void count_allocation(size_t bytes);
void count_release(size_t bytes);

}  // namespace fq::FQ_CUDA_NS::detail
