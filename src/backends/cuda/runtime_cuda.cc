// device.h on the CUDA runtime.
#include <cuda_runtime.h>


#include "backends/cuda/device.h"
#include "backends/cuda/memory_accounting.h"
#include "fq/error.h"

namespace fq::cuda {

namespace {

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail("CUDA: {} failed: {} ({})", what, cudaGetErrorString(status), cudaGetErrorName(status));
}
}  // namespace

void check_launch(const char* file, int line) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) fail("CUDA: kernel launch at {}:{} failed: {}", file, line, cudaGetErrorString(status));
}

void allow_dynamic_shared(const void* kernel, size_t bytes) {
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
             "cudaFuncSetAttribute (dynamic shared memory)");
}

bool device_available(std::string* reason) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    if (reason) *reason = status != cudaSuccess ? cudaGetErrorString(status) : "no CUDA device is present";
    cudaGetLastError();  // clear the sticky error of a failed query
    return false;
  }
  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  if (major < 8) {
    if (reason) *reason = "the GPU's compute capability is below 8.0 (this build targets sm_80, sm_89 and sm_90a)";
    return false;
  }
  return true;
}

DeviceInfo device_info() {
  std::string reason;
  check(device_available(&reason), "no usable CUDA device: {}", reason);
  cudaDeviceProp properties{};
  check_cuda(cudaGetDeviceProperties(&properties, 0), "cudaGetDeviceProperties");
  return {properties.name, properties.major * 10 + properties.minor, properties.multiProcessorCount,
          properties.totalGlobalMem};
}

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  const cudaError_t status = cudaMalloc(&data_, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    fail("CUDA: out of device memory allocating {:.1f} MiB ({:.1f} MiB free of {:.1f} MiB)", bytes / 1048576.0,
         free_bytes / 1048576.0, total / 1048576.0);
  }
  detail::count_allocation(bytes);
}

DeviceBuffer::~DeviceBuffer() {
  if (!data_) return;
  cudaFree(data_);
  detail::count_release(bytes_);
}

void copy_to_device(void* destination, const void* source, size_t bytes) {
  check_cuda(cudaMemcpy(destination, source, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
}
void copy_to_host(void* destination, const void* source, size_t bytes) {
  check_cuda(cudaMemcpy(destination, source, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
}
void copy_on_device(void* destination, const void* source, size_t bytes) {
  check_cuda(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy on the device");
}
void fill_zero(void* destination, size_t bytes) { check_cuda(cudaMemsetAsync(destination, 0, bytes), "cudaMemset"); }
void synchronize() { check_cuda(cudaDeviceSynchronize(), "a queued kernel"); }

}  // namespace fq::cuda
