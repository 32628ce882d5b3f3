// include/fq/gpu.h: picks the real CUDA backend or its CPU emulation.
#include "backends/cuda/device_model.h"  // the emulated backend's declarations (this file is built with FQ_CUDA_EMULATE)
#include "fq/error.h"
#include "fq/gpu.h"

#if FQ_HAVE_CUDA
namespace fq::cuda {
std::unique_ptr<GpuModel> upload_model(const Model& model);
std::unique_ptr<GpuModel> random_model(const ModelConfig& config, RandomFormat format, uint64_t seed);
bool device_available(std::string* reason);
}  // namespace fq::cuda
#endif

namespace fq {

namespace {
void require_cuda() {
#if FQ_HAVE_CUDA
  std::string reason;
  check(cuda::device_available(&reason), "--device cuda: no usable CUDA GPU ({})", reason);
#else
  fail("--device cuda: this fq was built without the CUDA backend (no nvcc when it was configured); "
       "rebuild with the CUDA toolkit, or use --device cpu");
#endif
}
}  // namespace

Device parse_device(std::string_view name) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") return Device::cuda;
  if (name == "cuda-emulated") return Device::cuda_emulated;
  fail("--device: unknown device '{}' (expected cpu, cuda or cuda-emulated)", name);
}

bool cuda_built() { return FQ_HAVE_CUDA; }

RandomFormat parse_random_format(std::string_view name) {
  if (name == "fp16") return RandomFormat::fp16;
  if (name == "w8a8") return RandomFormat::w8a8;
  if (name == "w4a8") return RandomFormat::w4a8;
  if (name == "mixed") return RandomFormat::mixed;
  if (name == "fp8") return RandomFormat::fp8;
  fail("unknown random-weight format '{}' (expected fp16, w8a8, w4a8, mixed or fp8)", name);
}

std::unique_ptr<GpuModel> upload_model(const Model& model, Device device) {
  check(device != Device::cpu, "upload_model: the CPU runs the Model itself");
  if (device == Device::cuda_emulated) return cuda_emu::upload_model(model);
  require_cuda();
#if FQ_HAVE_CUDA
  return cuda::upload_model(model);
#endif
}

std::unique_ptr<GpuModel> random_gpu_model(const ModelConfig& config, RandomFormat format, Device device,
                                           uint64_t seed) {
  check(device != Device::cpu, "random_gpu_model: random-weight models run on cuda or cuda-emulated only");
  if (device == Device::cuda_emulated) return cuda_emu::random_model(config, format, seed);
  require_cuda();
#if FQ_HAVE_CUDA
  return cuda::random_model(config, format, seed);
#endif
}

}  // namespace fq
