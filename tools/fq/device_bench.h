// fq bench --device cuda|cuda-emulated: prefill and decode times of a model on the GPU backend, either a
// loaded checkpoint (uploaded) or random weights of a well-known shape (--random-weights --arch).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"
#include "fq/gpu.h"

namespace fq::cli {

struct DeviceBenchRequest {
  Device device = Device::cuda;
  ModelOptions model;                // used when model.path is set
  std::string arch;                  // --random-weights: opt-6.7b, opt-13b, llama-2-7b
  std::vector<std::string> formats;  // --random-weights: fp16, w8a8, w4a8, mixed
  std::vector<int64_t> batches, prompts;
  int64_t decode = 0;
  int repeats = 3;
  bool profile = false;  // one more prefill per row, with every section's kernels drained and timed
  std::string json_path;
};

void device_bench(const DeviceBenchRequest& request);

}  // namespace fq::cli
