// profile::Scope for device work (`fq bench --device cuda --profile`): when profiling is on, the device's queue
// is drained at both ends, so the section holds exactly the kernels launched inside it. That serializes the
// launches: profiled runs are slower than timed ones, and the shares are what counts.
#pragma once

#include <optional>

#include "backends/cuda/device.h"
#include "fq/profile.h"

namespace fq::FQ_CUDA_NS {

class DeviceScope {
 public:
  explicit DeviceScope(const char* section) : on_(profile::enabled()) {
    if (!on_) return;
    synchronize();
    scope_.emplace(section);
  }
  ~DeviceScope() {
    if (on_) synchronize();  // before scope_ ends its timing
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  bool on_;
  std::optional<profile::Scope> scope_;
};

}  // namespace fq::FQ_CUDA_NS
