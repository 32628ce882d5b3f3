#include "backends/cpu/small_batch_gemm.h"

#include <algorithm>
#include <type_traits>

#include "backends/cpu/small_batch_kernels.h"
#include "fq/parallel.h"

namespace fq::cpu {

namespace {

using small_batch::kBlockBytes;

// Outputs per work item shared among the threads (whole tiles of either kernel).
constexpr int64_t kItemOutputs = 4;
// Outputs per kernel call: their sums (kRowsPerPass x kChunkOutputs int32) stay in L1.
constexpr int64_t kChunkOutputs = 256;
// Below this many weight bytes per call one thread does it all: one thread streams ~50-100 GB/s from
// cache, so smaller calls take a few microseconds, about what waking a sleeping OpenMP thread costs.
constexpr int64_t kParallelMinBytes = 1 << 20;

int64_t padded(int64_t bytes) { return (bytes + kBlockBytes - 1) / kBlockBytes * kBlockBytes; }

// even[i] = x[2i], odd[i] = x[2i + 1] for i < pairs; returns the sum of those codes (mod 2^32).
// (__restrict lets the compiler vectorize the byte shuffles.)
uint32_t split_pairs(const int8_t* __restrict x, int64_t pairs, int8_t* __restrict even, int8_t* __restrict odd) {
  uint32_t sum = 0;
  for (int64_t i = 0; i < pairs; ++i) {
    even[i] = x[2 * i];
    odd[i] = x[2 * i + 1];
    sum += static_cast<uint32_t>(x[2 * i] + x[2 * i + 1]);
  }
  return sum;
}

// out[i] = x[i] + 128 as an unsigned byte, what vpdpbusd multiplies.
void shift_codes(const int8_t* __restrict x, int64_t count, uint8_t* __restrict out) {
  for (int64_t i = 0; i < count; ++i) out[i] = static_cast<uint8_t>(x[i]) ^ 0x80;
}

int32_t low_nibble_value(uint8_t byte) { return ((byte & 0x0f) ^ 8) - 8; }
int32_t high_nibble_value(uint8_t byte) { return ((byte >> 4) ^ 8) - 8; }

// Outputs n = first + i·stride (i < count) whose weight rows have one layout, so one kernel call serves them.
struct OutputGroup {
  int64_t first = 0, stride = 1, count = 0;
};

template <int Rows>
using RowCount = std::integral_constant<int, Rows>;

// fn(RowCount<rows>{}) for 1 <= rows <= 8.
template <typename Fn>
void with_row_count(int64_t rows, const Fn& fn) {
  static_assert(SmallBatchGemm::kRowsPerPass == 8);
  switch (rows) {
    case 1: return fn(RowCount<1>{});
    case 2: return fn(RowCount<2>{});
    case 3: return fn(RowCount<3>{});
    case 4: return fn(RowCount<4>{});
    case 5: return fn(RowCount<5>{});
    case 6: return fn(RowCount<6>{});
    case 7: return fn(RowCount<7>{});
    default: return fn(RowCount<8>{});
  }
}

// Shares the outputs of `groups` among the threads, kItemOutputs at a time, and calls
// chunk(group, first, count, row, RowCount<Rows>{}) for outputs [first, first + count) of a group
// (count <= kChunkOutputs) and rows [row, row + Rows) (Rows <= kRowsPerPass), covering all of them.
template <typename Chunk>
void for_each_chunk(const std::vector<OutputGroup>& groups, int64_t rows, int64_t weight_bytes, const Chunk& chunk) {
  std::vector<int64_t> first_item;
  int64_t items = 0;
  for (const OutputGroup& group : groups) {
    first_item.push_back(items);
    items += (group.count + kItemOutputs - 1) / kItemOutputs;
  }
  const auto work = [&](int64_t begin, int64_t end) {
    for (size_t g = 0; g < groups.size(); ++g) {
      const int64_t start = std::max<int64_t>(0, (begin - first_item[g]) * kItemOutputs);
      const int64_t stop = std::min(groups[g].count, (end - first_item[g]) * kItemOutputs);
      for (int64_t first = start; first < stop; first += kChunkOutputs)
        for (int64_t row = 0; row < rows; row += SmallBatchGemm::kRowsPerPass)
          with_row_count(std::min(SmallBatchGemm::kRowsPerPass, rows - row), [&](auto rows_here) {
            chunk(g, first, std::min(kChunkOutputs, stop - first), row, rows_here);
          });
    }
  };
  const int64_t passes = (rows + SmallBatchGemm::kRowsPerPass - 1) / SmallBatchGemm::kRowsPerPass;
  if (weight_bytes * passes < kParallelMinBytes)
    work(0, items);
  else
    parallel_for(items, work);
}

}  // namespace

SmallBatchGemm::SmallBatchGemm(Tensor weights) : weights_(std::move(weights)) {
  check((weights_.dtype() == DType::i8 || weights_.dtype() == DType::i4) && weights_.rank() == 2 &&
            weights_.is_contiguous() && weights_.dim(0) >= 1 && weights_.dim(1) >= 1,
        "small-batch gemm: weights must be contiguous i8 or i4 [N, K], got {} {}", dtype_name(weights_.dtype()),
        shape_str(weights_.shape()));
  if (weights_.dtype() == DType::i8) {
    const int8_t* data = weights_.data<int8_t>();
    int8_offsets_.resize(outputs());
    for (int64_t n = 0; n < outputs(); ++n) {
      uint32_t sum = 0;
      for (int64_t k = 0; k < width(); ++k) sum += static_cast<uint32_t>(data[n * width() + k]);
      int8_offsets_[n] = 128u * sum;
    }
  }
}

void SmallBatchGemm::run(const int8_t* codes, int64_t rows, int32_t* acc) const {
  check(rows >= 0, "small-batch gemm: {} rows", rows);
  if (rows == 0) return;
  check(codes != nullptr && acc != nullptr, "small-batch gemm: null codes or accumulators");
  if (weights_.dtype() == DType::i4)
    run_int4(codes, rows, acc);
  else
    run_int8(codes, rows, acc);
}

void SmallBatchGemm::run_int4(const int8_t* codes, int64_t rows, int32_t* acc) const {
  const int64_t n_outputs = outputs(), k = width();
  const uint8_t* packed = weights_.data<uint8_t>();
  // Row n starts at nibble n·K. With K even every row is whole bytes. With K odd, even rows end with
  // a lone low nibble (element K-1) and odd rows begin with a lone high nibble (element 0): the lone
  // one is added apart, the other K-1 codes are whole bytes, paired with x[lead + 2i], x[lead + 2i + 1].
  const int leads = k % 2 == 0 ? 1 : 2;
  const int64_t pairs = k / 2, stride = padded(pairs);
  // Zero padded and 64-byte aligned (tensor memory), so no activation load splits a cache line.
  const Tensor split = Tensor::zeros(DType::i8, {2, leads * rows, stride});
  int8_t* even = split.data<int8_t>();
  int8_t* odd = even + leads * rows * stride;
  std::vector<uint32_t> split_sums(leads * rows, 0);
  for (int lead = 0; lead < leads; ++lead)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t at = (lead * rows + r) * stride;
      split_sums[lead * rows + r] = split_pairs(codes + r * k + lead, pairs, even + at, odd + at);
    }
  std::vector<OutputGroup> groups;
  if (leads == 1)
    groups.push_back({0, 1, n_outputs});
  else {
    groups.push_back({0, 2, (n_outputs + 1) / 2});
    if (n_outputs > 1) groups.push_back({1, 2, n_outputs / 2});
  }
  for_each_chunk(groups, rows, n_outputs * pairs, [&](size_t lead, int64_t first, int64_t count, int64_t row,
                                                       auto rows_here) {
    constexpr int kRows = decltype(rows_here)::value;
    const OutputGroup& group = groups[lead];
    const int64_t first_output = group.first + first * group.stride;
    const int64_t at = (lead * rows + row) * stride;
    int32_t sums[kRows * kChunkOutputs];
    small_batch::int4_sums<kRows>(packed + (first_output * k + lead) / 2, group.stride * k / 2, count, pairs,
                                  even + at, odd + at, stride, sums, kChunkOutputs);
    for (int r = 0; r < kRows; ++r) {
      const int8_t* x = codes + (row + r) * k;
      const uint32_t offset = 8u * split_sums[lead * rows + row + r];
      uint32_t* out = reinterpret_cast<uint32_t*>(acc + (row + r) * n_outputs) + first_output;
      for (int64_t i = 0; i < count; ++i)
        out[i * group.stride] = static_cast<uint32_t>(sums[r * kChunkOutputs + i]) - offset;
      if (k % 2 == 0) continue;
      // The lone nibble: element 0 in the high nibble of the first byte of an odd row, element K-1 in
      // the low nibble of the last byte of an even row.
      for (int64_t i = 0; i < count; ++i) {
        const int64_t start = (first_output + i * group.stride) * k;
        out[i * group.stride] += static_cast<uint32_t>(
            lead == 1 ? x[0] * high_nibble_value(packed[start / 2])
                      : x[k - 1] * low_nibble_value(packed[(start + k - 1) / 2]));
      }
    }
  });
}

void SmallBatchGemm::run_int8(const int8_t* codes, int64_t rows, int32_t* acc) const {
  const int64_t n_outputs = outputs(), k = width(), stride = padded(k);
  const int8_t* weights = weights_.data<int8_t>();
  // Zero padded and 64-byte aligned (tensor memory), so no activation load splits a cache line.
  const Tensor shifted_codes = Tensor::zeros(DType::i8, {rows, stride});
  uint8_t* shifted = reinterpret_cast<uint8_t*>(shifted_codes.data<int8_t>());
  for (int64_t r = 0; r < rows; ++r) shift_codes(codes + r * k, k, shifted + r * stride);
  for_each_chunk({{0, 1, n_outputs}}, rows, n_outputs * k, [&](size_t, int64_t first, int64_t count, int64_t row,
                                                                auto rows_here) {
    constexpr int kRows = decltype(rows_here)::value;
    int32_t sums[kRows * kChunkOutputs];
    small_batch::int8_sums<kRows>(weights + first * k, k, count, k, shifted + row * stride, stride, sums,
                                  kChunkOutputs);
    for (int r = 0; r < kRows; ++r) {
      uint32_t* out = reinterpret_cast<uint32_t*>(acc + (row + r) * n_outputs) + first;
      for (int64_t i = 0; i < count; ++i)
        out[i] = static_cast<uint32_t>(sums[r * kChunkOutputs + i]) - int8_offsets_[first + i];
    }
  });
}

}  // namespace fq::cpu
