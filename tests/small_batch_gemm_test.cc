// SmallBatchGemm (the decode-sized integer GEMM) against the plain reference quant::int_gemm, bit for
// bit: int8 and packed int4 weights, even and odd K with every kind of tail, 1 to 40 rows, extreme
// codes, one and two threads, weights that end right before an unreadable page, checked construction.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <random>

#include "backends/cpu/small_batch_gemm.h"
#include "fq/parallel.h"
#include "fq/quant/quantize.h"
#include "quant/int_gemm.h"

namespace fq {
namespace {

using cpu::SmallBatchGemm;

constexpr int32_t kPoison = 0x5a5a5a5a;

enum class Codes { random, extreme };

// i8 [rows, width] codes: uniform in [low, high], or only the two ends when extreme.
Tensor random_codes(int64_t rows, int64_t width, int low, int high, Codes kind, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> uniform(low, high);
  std::bernoulli_distribution coin;
  Tensor codes = Tensor::empty(DType::i8, {rows, width});
  for (int64_t i = 0; i < codes.numel(); ++i)
    codes.data<int8_t>()[i] = static_cast<int8_t>(kind == Codes::extreme ? (coin(rng) ? high : low) : uniform(rng));
  return codes;
}

// Weight codes i8 [N, K], packed to i4 when bits is 4.
Tensor random_weights(int bits, int64_t outputs, int64_t width, Codes kind, uint64_t seed) {
  const Tensor codes = bits == 4 ? random_codes(outputs, width, -8, 7, kind, seed)
                                 : random_codes(outputs, width, -127, 127, kind, seed);
  return bits == 4 ? pack_int4(codes) : codes;
}

// Runs both GEMMs on poisoned outputs and expects equal sums.
void expect_matches_reference(const SmallBatchGemm& gemm, const Tensor& weights, const Tensor& activations,
                              const std::string& what) {
  const int64_t rows = activations.dim(0), outputs = weights.dim(0);
  std::vector<int32_t> expected(rows * outputs, kPoison), actual(rows * outputs, kPoison);
  quant::int_gemm(activations.data<int8_t>(), rows, weights, expected.data());
  gemm.run(activations.data<int8_t>(), rows, actual.data());
  for (int64_t i = 0; i < rows * outputs; ++i)
    ASSERT_EQ(actual[i], expected[i]) << what << ": row " << i / outputs << ", output " << i % outputs;
}

class SmallBatchGemmTest : public testing::TestWithParam<int> {};

TEST_P(SmallBatchGemmTest, MatchesReferenceOnRandomCodes) {
  const int bits = GetParam();
  // Whole 64-byte blocks, tails of every size, and odd K (int4 rows that start mid-byte).
  for (int64_t width : {64, 576, 640, 1536, 1600, 72, 200, 1, 3, 65, 127, 641})
    for (int64_t outputs : {1, 7, 192, 577}) {
      const Tensor weights = random_weights(bits, outputs, width, Codes::random, width * 1000 + outputs);
      const SmallBatchGemm gemm(weights);
      for (int64_t rows = 1; rows <= 9; ++rows)
        expect_matches_reference(gemm, weights, random_codes(rows, width, -127, 127, Codes::random, rows),
                                 fmt::format("w{} N {} K {} rows {}", bits, outputs, width, rows));
    }
}

TEST_P(SmallBatchGemmTest, MatchesReferenceOnExtremeCodes) {
  const int bits = GetParam();
  for (int64_t width : {640, 1600, 200, 641})
    for (int64_t outputs : {7, 192}) {
      const Tensor weights = random_weights(bits, outputs, width, Codes::extreme, width + outputs);
      const SmallBatchGemm gemm(weights);
      for (int64_t rows : {1, 4, 8, 9})
        expect_matches_reference(gemm, weights, random_codes(rows, width, -127, 127, Codes::extreme, rows),
                                 fmt::format("w{} extreme N {} K {} rows {}", bits, outputs, width, rows));
    }
}

TEST_P(SmallBatchGemmTest, MatchesReferenceWithManyRows) {
  const int bits = GetParam();
  const Tensor weights = random_weights(bits, 33, 201, Codes::random, 5);
  const SmallBatchGemm gemm(weights);
  for (int64_t rows : {16, 17, 40})
    expect_matches_reference(gemm, weights, random_codes(rows, 201, -127, 127, Codes::random, rows),
                             fmt::format("w{} rows {}", bits, rows));
}

// Over 1 MiB of weights: the outputs are shared among the threads (for odd K in two interleaved groups).
TEST_P(SmallBatchGemmTest, SameSumsOnOneAndTwoThreads) {
  const int bits = GetParam();
  const int threads = num_threads();
  for (int64_t width : {2000, 2001}) {
    const Tensor weights = random_weights(bits, 1100, width, Codes::random, 11);
    const SmallBatchGemm gemm(weights);
    for (int count : {1, 2}) {
      set_num_threads(count);
      expect_matches_reference(gemm, weights, random_codes(3, width, -127, 127, Codes::random, 12),
                               fmt::format("w{} K {} on {} threads", bits, width, count));
    }
  }
  set_num_threads(threads);
}

// Weights that end exactly where an unreadable page begins: reading one byte past them would crash.
TEST_P(SmallBatchGemmTest, ReadsNoByteBeyondTheWeights) {
  const int bits = GetParam();
  const int64_t page = sysconf(_SC_PAGESIZE);
  for (int64_t width : {72, 200, 641}) {
    const Tensor source = random_weights(bits, 7, width, Codes::random, width);
    const int64_t readable = (static_cast<int64_t>(source.nbytes()) + page - 1) / page * page;
    void* mapping = mmap(nullptr, readable + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mapping, MAP_FAILED);
    std::shared_ptr<void> pages(mapping, [=](void* p) { munmap(p, readable + page); });
    ASSERT_EQ(mprotect(static_cast<char*>(mapping) + readable, page, PROT_NONE), 0);
    char* data = static_cast<char*>(mapping) + readable - source.nbytes();
    std::memcpy(data, source.raw(), source.nbytes());
    const Tensor weights = Tensor::wrap(source.dtype(), source.shape(), data, pages);
    expect_matches_reference(SmallBatchGemm(weights), source, random_codes(5, width, -127, 127, Codes::random, 1),
                             fmt::format("w{} guarded K {}", bits, width));
  }
}

INSTANTIATE_TEST_SUITE_P(Bits, SmallBatchGemmTest, testing::Values(4, 8),
                         [](const testing::TestParamInfo<int>& info) { return fmt::format("w{}", info.param); });

TEST(SmallBatchGemm, RejectsBadWeights) {
  EXPECT_THROW(SmallBatchGemm(Tensor::zeros(DType::f32, {4, 8})), Error);
  EXPECT_THROW(SmallBatchGemm(Tensor::zeros(DType::i8, {32})), Error);
  EXPECT_THROW(SmallBatchGemm(Tensor::zeros(DType::i8, {0, 8})), Error);
  EXPECT_THROW(SmallBatchGemm(Tensor::zeros(DType::i8, {4, 0})), Error);
  EXPECT_THROW(SmallBatchGemm(Tensor::zeros(DType::i8, {4, 8}).t()), Error);
  EXPECT_THROW(SmallBatchGemm{Tensor()}, Error);
}

TEST(SmallBatchGemm, RejectsBadCalls) {
  const SmallBatchGemm gemm(Tensor::zeros(DType::i8, {4, 8}));
  int8_t codes[8] = {};
  int32_t acc[4] = {kPoison, kPoison, kPoison, kPoison};
  EXPECT_THROW(gemm.run(codes, -1, acc), Error);
  EXPECT_THROW(gemm.run(nullptr, 1, acc), Error);
  EXPECT_THROW(gemm.run(codes, 1, nullptr), Error);
  gemm.run(codes, 0, acc);  // nothing to do
  EXPECT_EQ(acc[0], kPoison);
  gemm.run(codes, 1, acc);
  EXPECT_EQ(acc[3], 0);
}

}  // namespace
}  // namespace fq
