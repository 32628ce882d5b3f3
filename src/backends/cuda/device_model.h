// The decoder graph on the device (the real CUDA backend or its CPU emulation): see include/fq/gpu.h.
#pragma once

#include <memory>
#include <vector>

#include "backends/cuda/portable.h"
#include "fq/gpu.h"

namespace fq::FQ_CUDA_NS {

std::unique_ptr<GpuModel> upload_model(const Model& model);
std::unique_ptr<GpuModel> random_model(const ModelConfig& config, RandomFormat format, uint64_t seed);

// Which Linears RandomFormat::mixed keeps in 4 bits: `fq quantize --recipe flatten-mixed`'s default share of
// the Linear FLOPs (RecipeOptions::int4_share), reached with the MLP input projections (fc1, or gate and up) of
// every layer and then the down projections from the first layer on.
struct MixedPlan {
  std::vector<bool> down_in_4_bits;  // per layer; the MLP input projections are 4-bit in every layer
  double int4_share = 0;             // of the Linear FLOPs (the head excluded)
};
MixedPlan plan_mixed(const ModelConfig& config);

}  // namespace fq::FQ_CUDA_NS
