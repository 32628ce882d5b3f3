// The decoder graph on the device (the real CUDA backend or its CPU emulation): see include/fq/gpu.h.
#pragma once

#include <memory>

#include "backends/cuda/portable.h"
#include "fq/gpu.h"

namespace fq::FQ_CUDA_NS {

std::unique_ptr<GpuModel> upload_model(const Model& model);
std::unique_ptr<GpuModel> random_model(const ModelConfig& config, RandomFormat format, uint64_t seed);

}  // namespace fq::FQ_CUDA_NS
