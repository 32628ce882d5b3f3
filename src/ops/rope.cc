#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "backends/cpu/parallel_threshold.h"
#include "ops/ops.h"

namespace fq::ops {

namespace {
RotationTable build_table(int64_t positions, int64_t head_dim, double theta) {
  const int64_t half = head_dim / 2;
  RotationTable table{positions, std::vector<float>(positions * half), std::vector<float>(positions * half)};
  std::vector<float> inverse_frequency(half);
  for (int64_t i = 0; i < half; ++i)
    inverse_frequency[i] = static_cast<float>(1.0 / std::pow(theta, double(2 * i) / double(head_dim)));
  parallel_for(positions, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p)
      for (int64_t i = 0; i < half; ++i) {
        // HF computes the angle in f32 (position * inv_freq) and its cos/sin in f32; match it.
        const float angle = static_cast<float>(p) * inverse_frequency[i];
        table.cosines[p * half + i] = std::cos(angle);
        table.sines[p * half + i] = std::sin(angle);
      }
  });
  return table;
}

}  // namespace

// The table for (head_dim, theta) covering at least `positions`, computed once and shared by every
// layer and call: the trigonometry otherwise costs more than the rotation. It grows by doubling;
// a caller keeps its snapshot alive while another thread replaces it.
std::shared_ptr<const RotationTable> rotation_table(int64_t positions, int64_t head_dim, double theta) {
  static std::mutex mutex;
  static std::map<std::pair<int64_t, double>, std::shared_ptr<const RotationTable>> tables;
  std::lock_guard lock(mutex);
  auto& table = tables[{head_dim, theta}];
  if (!table || table->positions < positions) {
    const int64_t grown = std::max(positions, table ? 2 * table->positions : int64_t{512});
    table = std::make_shared<const RotationTable>(build_table(grown, head_dim, theta));
  }
  return table;
}

void rope(Tensor& x, int64_t seq, int64_t heads, int64_t head_dim, int64_t start, double theta) {
  check(x.rank() == 2 && x.dtype() == DType::f32 && x.is_contiguous(),
        "rope: input must be contiguous f32 [rows, width], got {}", shape_str(x.shape()));
  check(x.dim(1) == heads * head_dim, "rope: width {} is not {} heads x {}", x.dim(1), heads, head_dim);
  check(head_dim % 2 == 0 && seq > 0 && x.dim(0) % seq == 0 && start >= 0,
        "rope: {} rows are not whole sequences of {} (head_dim {}, start {})", x.dim(0), seq, head_dim, start);
  const int64_t rows = x.dim(0), half = head_dim / 2, width = heads * head_dim;
  const auto table = rotation_table(start + seq, head_dim, theta);
  float* data = x.data<float>();
  cpu::maybe_parallel_for(rows * width >= cpu::kParallelFloats, rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t position = start + r % seq;
      const float* cosines = table->cosines.data() + position * half;
      const float* sines = table->sines.data() + position * half;
      for (int64_t h = 0; h < heads; ++h) {
        float* first = data + r * width + h * head_dim;
        float* second = first + half;
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          const float a = first[i], b = second[i];
          first[i] = a * cosines[i] - b * sines[i];
          second[i] = b * cosines[i] + a * sines[i];
        }
      }
    }
  });
}

}  // namespace fq::ops
