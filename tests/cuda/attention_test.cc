// KV cache appends and causal grouped-query attention (src/backends/cuda/attention.h) against the CPU
// reference, through a fused qkv buffer as the model feeds them: prefill from position 0 and after earlier
// positions, decode of one and of a few queries (split keys, combined), GQA and MHA, head dims that take
// the 16-byte and the 4-byte loads. The cache is filled with NaN past the written positions, so reading
// there shows.
#include "backends/cuda/attention.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "cuda/cuda_test_util.h"
#include "fq/dtype.h"
#include "fq/error.h"
#include "ops/reference.h"

namespace dev = fq::FQ_CUDA_NS;

FQ_CUDA_SUITE(Attention);

namespace {

constexpr uint16_t kNaN = 0xffff;  // f16 NaN, the fill of cache positions not written

struct Shape {
  int64_t batch, seq, start, heads, kv_heads, head_dim;
  int64_t stride_padding = 0;  // extra columns per qkv row; 2 makes rows only 4-byte aligned
};

__half* as_half(const dev::DeviceBuffer& buffer) { return buffer.as<__half>(); }

std::vector<uint16_t> random_f16(size_t count, float scale, std::mt19937& random) {
  std::uniform_real_distribution<float> uniform(-scale, scale);
  std::vector<uint16_t> out(count);
  for (uint16_t& value : out) value = fq::f32_to_f16(uniform(random));
  return out;
}

// Writes positions 0..start-1 (from a separate history buffer) and start..start+seq-1 (the k and v column
// slices of a fused qkv buffer) to a NaN-filled cache, checks the cache, then runs attention on the q
// slice and compares each batch element with fq::reference::attention.
void check_attention(const Shape& shape) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed << ", batch " << shape.batch << ", seq " << shape.seq
                                    << ", start " << shape.start << ", heads " << shape.heads << "/" << shape.kv_heads
                                    << ", head_dim " << shape.head_dim << ", padding " << shape.stride_padding);
  std::mt19937 random(seed);
  const auto [batch, seq, start, heads, kv_heads, head_dim, padding] = shape;
  const int64_t width = heads * head_dim, kv_width = kv_heads * head_dim;
  const int64_t qkv_stride = width + 2 * kv_width + padding, capacity = start + seq + 5;

  // Large q and k give peaked softmaxes, where a wrong max or rescale shows.
  std::vector<uint16_t> qkv = random_f16(size_t(batch * seq * qkv_stride), 2.0f, random);
  std::vector<uint16_t> history = random_f16(size_t(std::max<int64_t>(batch * start, 1) * 2 * kv_width), 2.0f, random);
  const std::vector<uint16_t> cache_fill(size_t(batch * capacity * kv_width), kNaN);

  dev::DeviceBuffer qkv_device = dev::upload<uint16_t>(qkv), history_device = dev::upload<uint16_t>(history);
  dev::DeviceBuffer keys = dev::upload<uint16_t>(cache_fill), values = dev::upload<uint16_t>(cache_fill);
  dev::DeviceBuffer out = dev::upload<uint16_t>(std::vector<uint16_t>(size_t(batch * seq * width), kNaN));
  const __half* qkv_half = as_half(qkv_device);
  if (start > 0)
    dev::append_kv(as_half(history_device), as_half(history_device) + kv_width, batch, start, 0, kv_heads, head_dim,
                   2 * kv_width, as_half(keys), as_half(values), capacity);
  dev::append_kv(qkv_half + width, qkv_half + width + kv_width, batch, seq, start, kv_heads, head_dim, qkv_stride,
                 as_half(keys), as_half(values), capacity);
  dev::attention(qkv_half, qkv_stride, as_half(keys), as_half(values), as_half(out), batch, seq, start, capacity, heads,
                 kv_heads, head_dim);
  const std::vector<uint16_t> keys_host = dev::download<uint16_t>(keys.data(), cache_fill.size());
  const std::vector<uint16_t> values_host = dev::download<uint16_t>(values.data(), cache_fill.size());
  const std::vector<uint16_t> out_host = dev::download<uint16_t>(out.data(), size_t(batch * seq * width));

  for (int64_t b = 0; b < batch; ++b) {
    // The cache: history, then the new rows, then untouched.
    std::vector<float> q_ref, keys_ref, values_ref;
    for (int64_t p = 0; p < capacity; ++p)
      for (int64_t c = 0; c < kv_width; ++c) {
        const size_t at = size_t((b * capacity + p) * kv_width + c);
        uint16_t expected_key = kNaN, expected_value = kNaN;
        if (p < start) {
          expected_key = history[size_t((b * start + p) * 2 * kv_width + c)];
          expected_value = history[size_t((b * start + p) * 2 * kv_width + kv_width + c)];
        } else if (p < start + seq) {
          expected_key = qkv[size_t((b * seq + p - start) * qkv_stride + width + c)];
          expected_value = qkv[size_t((b * seq + p - start) * qkv_stride + width + kv_width + c)];
        }
        ASSERT_EQ(keys_host[at], expected_key) << "keys, batch " << b << ", position " << p << ", column " << c;
        ASSERT_EQ(values_host[at], expected_value) << "values, batch " << b << ", position " << p << ", column " << c;
        if (p < start + seq) {
          keys_ref.push_back(fq::f16_to_f32(expected_key));
          values_ref.push_back(fq::f16_to_f32(expected_value));
        }
      }
    for (int64_t t = 0; t < seq; ++t)
      for (int64_t c = 0; c < width; ++c) q_ref.push_back(fq::f16_to_f32(qkv[size_t((b * seq + t) * qkv_stride + c)]));

    const std::vector<float> expected =
        fq::reference::attention(q_ref, keys_ref, values_ref, seq, start, heads, kv_heads, head_dim);
    float largest = 0.0f;
    for (float value : expected) largest = std::max(largest, std::abs(value));
    const float tolerance = 2e-3f * largest;
    int64_t wrong = 0;
    for (int64_t i = 0; i < seq * width; ++i) {
      const float actual = fq::f16_to_f32(out_host[size_t(b * seq * width + i)]);
      if (!(std::abs(actual - expected[size_t(i)]) <= tolerance) && wrong++ < 5)
        ADD_FAILURE() << "batch " << b << ", query " << i / width << ", head " << i % width / head_dim << ", dim "
                      << i % head_dim << ": " << actual << ", expected " << expected[size_t(i)];
    }
    EXPECT_EQ(wrong, 0) << "of " << seq * width << " outputs of batch element " << b;
  }
}

}  // namespace

// head_dim 64 and 128 with 16-byte aligned rows take the tensor-core kernel (64 queries × 64 keys per
// tile), other head_dims and 4-byte rows the FMA one.
FQ_CUDA_TEST(Attention, PrefillFromTheFirstPosition) {
  check_attention({.batch = 2, .seq = 37, .start = 0, .heads = 4, .kv_heads = 2, .head_dim = 8});
}

FQ_CUDA_TEST(Attention, PrefillAfterEarlierPositions) {
  check_attention({.batch = 2, .seq = 37, .start = 21, .heads = 2, .kv_heads = 2, .head_dim = 64});
}

FQ_CUDA_TEST(Attention, PrefillOverSeveralQueryAndKeyTiles) {
  check_attention({.batch = 1, .seq = 75, .start = 40, .heads = 4, .kv_heads = 1, .head_dim = 128});
}

FQ_CUDA_TEST(Attention, PrefillOnTensorCoresOverManyTilesFromTheFirstPosition) {
  // Three query tiles, the last partial. (With start > 0 above, warps whose queries all precede a key tile skip it.)
  check_attention({.batch = 2, .seq = 150, .start = 0, .heads = 4, .kv_heads = 2, .head_dim = 64});
}

FQ_CUDA_TEST(Attention, PrefillWithUnalignedRowsOnFmaKernel) {
  check_attention({.batch = 1, .seq = 70, .start = 5, .heads = 2, .kv_heads = 1, .head_dim = 64, .stride_padding = 2});
}

FQ_CUDA_TEST(Attention, PrefillWithUnalignedRowsAndOddHeadDim) {
  // 4-byte loads; head_dim 10 leaves a pair after the groups of 4 in the score product.
  check_attention({.batch = 1, .seq = 9, .start = 3, .heads = 4, .kv_heads = 1, .head_dim = 10, .stride_padding = 2});
}

FQ_CUDA_TEST(Attention, DecodeOneQuerySplitAcrossBlocks) {
  // 150 keys for 8 (batch, head) pairs: several splits, combined.
  check_attention({.batch = 2, .seq = 1, .start = 149, .heads = 4, .kv_heads = 2, .head_dim = 64});
}

FQ_CUDA_TEST(Attention, DecodeOneQueryOneBlock) {
  check_attention({.batch = 2, .seq = 1, .start = 40, .heads = 4, .kv_heads = 4, .head_dim = 8});
}

FQ_CUDA_TEST(Attention, DecodeFewQueries) {
  check_attention({.batch = 2, .seq = 3, .start = 70, .heads = 4, .kv_heads = 2, .head_dim = 64, .stride_padding = 2});
}

FQ_CUDA_TEST(Attention, DecodeLongCacheHeadDim128) {
  check_attention({.batch = 1, .seq = 2, .start = 500, .heads = 2, .kv_heads = 1, .head_dim = 128});
}

FQ_CUDA_TEST(Attention, DecodeFirstPosition) {
  check_attention({.batch = 1, .seq = 1, .start = 0, .heads = 2, .kv_heads = 1, .head_dim = 128});
}

FQ_CUDA_TEST(Attention, RejectsBadArguments) {
  dev::DeviceBuffer buffer(4096);
  __half* p = as_half(buffer);
  EXPECT_THROW(dev::attention(p, 36, p, p, p, 1, 1, 0, 4, 4, 2, 9), fq::Error);     // odd head_dim
  EXPECT_THROW(dev::attention(p, 36, p, p, p, 1, 1, 0, 4, 3, 2, 8), fq::Error);     // heads % kv_heads
  EXPECT_THROW(dev::attention(p, 36, p, p, p, 1, 4, 1, 4, 4, 2, 8), fq::Error);     // past the capacity
  EXPECT_THROW(dev::attention(p, 16, p, p, p, 1, 1, 0, 4, 4, 2, 8), fq::Error);     // q rows too narrow
  EXPECT_THROW(dev::attention(p, 33, p, p, p, 1, 1, 0, 4, 4, 1, 8), fq::Error);     // odd q row stride
  EXPECT_THROW(dev::attention(p, 256, p, p, p, 1, 1, 0, 4, 1, 1, 256), fq::Error);  // head_dim above 128
  EXPECT_THROW(dev::append_kv(p, p, 1, 2, 3, 2, 8, 16, p, p, 4), fq::Error);        // past the capacity
  EXPECT_THROW(dev::append_kv(p, p, 1, 2, 0, 2, 8, 8, p, p, 4), fq::Error);         // row_stride below the width
  EXPECT_THROW(dev::append_kv(p, p, 0, 2, 0, 2, 8, 16, p, p, 4), fq::Error);        // empty batch
}
