// When a cheap op should use the other threads at all. With OMP_WAIT_POLICY=passive on this shared
// 2-core machine waking them costs 10-40 us, more than a 512 x 576 RMSNorm, RoPE or add (7-40 us on
// one core) or a decode step's attention takes; measured in bench/ops_bench.cc.
#pragma once

#include <cstdint>

#include "fq/parallel.h"

namespace fq::cpu {

// Work from which splitting pays: floats of an elementwise op, multiply-adds of attention.
inline constexpr int64_t kParallelFloats = int64_t{1} << 19;
inline constexpr int64_t kParallelMultiplyAdds = int64_t{1} << 22;

// body(begin, end) over ranges covering [0, count): with parallel_for when `parallel`, else all on
// this thread.
template <typename Body>
void maybe_parallel_for(bool parallel, int64_t count, const Body& body) {
  if (parallel) {
    parallel_for(count, body);
  } else if (count > 0) {
    body(int64_t{0}, count);
  }
}

}  // namespace fq::cpu
