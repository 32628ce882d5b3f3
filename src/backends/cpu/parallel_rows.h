// Row loops for the cheap elementwise ops: parallel only when the work pays for waking the other
// threads. With OMP_WAIT_POLICY=passive on this shared 2-core machine a wake-up costs 10-40 us, more
// than a 512 x 576 RMSNorm, RoPE or add takes on one core (7-40 us); measured in bench/ops_bench.cc.
#pragma once

#include <cstdint>

#include "fq/parallel.h"

namespace fq::cpu {

// Floats of elementwise work below which one thread does it alone.
inline constexpr int64_t kParallelFloats = int64_t{1} << 19;

// body(begin, end) over disjoint ranges covering [0, rows); each row carries `row_floats` of work.
template <typename Body>
void for_rows(int64_t rows, int64_t row_floats, const Body& body) {
  if (rows * row_floats < kParallelFloats) {
    if (rows > 0) body(int64_t{0}, rows);
    return;
  }
  parallel_for(rows, body);
}

}  // namespace fq::cpu
