// Models on an NVIDIA GPU (the CUDA backend), or on the CPU emulator of that backend (the same code
// path, kernel for kernel, run slowly on host threads: what the tests and machines without a GPU use).
//
// A GpuModel is a copy of a loaded Model's graph on the device: float Linears as FP16 GEMMs (cuBLASLt),
// quantized Linears with their flatten plan, static or dynamic steps and int8 or packed int4 weights
// (flatten+quantize kernel, integer GEMM, fused rescale), f32 residual stream, f16 activations and KV
// cache. Pre-norm OPT and LLaMA-family graphs are supported.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "fq/model.h"
#include "fq/tensor.h"

namespace fq {

enum class Device { cpu, cuda, cuda_emulated };

// "cpu", "cuda" or "cuda-emulated"; anything else throws naming the flag's accepted values.
Device parse_device(std::string_view name);
// Whether this build has the real CUDA backend (nvcc was found when it was configured).
bool cuda_built();

class GpuModel {
 public:
  virtual ~GpuModel() = default;
  virtual const ModelConfig& config() const = 0;
  // e.g. "NVIDIA H100 80GB HBM3 (sm_90)" or "CPU emulator".
  virtual std::string device_name() const = 0;

  // Makes room for `batch` sequences of up to `capacity` positions and empties the KV cache.
  virtual void reset(int64_t batch, int64_t capacity) = 0;
  virtual int64_t batch() const = 0;
  virtual int64_t length() const = 0;
  // As Model::forward, with the device's own KV cache: logits f32 [batch, seq or 1, vocab] on the host.
  virtual Tensor forward(const int32_t* tokens, int64_t batch, int64_t seq, bool last_only = false) = 0;
  // forward() without copying logits back: for timing. Returns once the device has finished.
  virtual void forward_timed(const int32_t* tokens, int64_t batch, int64_t seq) = 0;

  // Device bytes of weights (Linears, embeddings, norms), and the most device memory held at once since
  // reset_peak_memory().
  virtual size_t weight_bytes() const = 0;
  virtual size_t peak_memory() const = 0;
  virtual void reset_peak_memory() = 0;
};

// Copies `model` to `device` (cuda or cuda_emulated). Throws a one-line fq::Error when the device is
// missing, the build has no CUDA, or the graph has a part the backend does not run (post-norm OPT).
std::unique_ptr<GpuModel> upload_model(const Model& model, Device device);

// Formats of random-weight models for benchmarks: fp16; w8a8 (every Linear flattened W8A8, static steps);
// w4a8 (INT4 weights); mixed (W4A4 for half of the Linear FLOPs as `fq quantize --recipe flatten-mixed` plans by
// default: every MLP input projection and as many down projections as that takes; the rest W8A8); fp8 (every
// Linear FP8 e4m3 with per-tensor scales, sm_89 and later). The head stays FP16 in all.
enum class RandomFormat { fp16, w8a8, w4a8, mixed, fp8 };
RandomFormat parse_random_format(std::string_view name);

// A model of `config`'s shapes with random weights generated on the device (nothing is read or held on the
// host), for speed and memory measurements only.
std::unique_ptr<GpuModel> random_gpu_model(const ModelConfig& config, RandomFormat format, Device device,
                                           uint64_t seed = 1);

// The shapes of well-known models for random-weight benchmarks: opt-6.7b, opt-13b, llama-2-7b.
ModelConfig preset_config(std::string_view name);

}  // namespace fq
