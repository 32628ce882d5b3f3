#include "io/gguf_dequant.h"

#include <algorithm>
#include <cstring>

#include "fq/dtype.h"
#include "fq/error.h"
#include "fq/parallel.h"
#include "io/gguf_format.h"

namespace fq::io::gguf {

namespace {

constexpr int64_t kSuperBlock = 256;  // ggml's QK_K

// Fields are read with memcpy: GGUF only aligns tensors, not the fields inside blocks.
float read_half(const uint8_t* at) {
  uint16_t bits;
  std::memcpy(&bits, at, 2);
  return f16_to_f32(bits);
}

// block_q8_0: f16 scale, 32 int8 quants.
void q8_0_block(const uint8_t* block, float* out) {
  float d = read_half(block);
  const auto* quants = reinterpret_cast<const int8_t*>(block + 2);
  for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(quants[j]) * d;
}

// block_q4_0: f16 scale, 16 bytes of nibbles (element j low nibble, j+16 high), offset 8.
void q4_0_block(const uint8_t* block, float* out) {
  float d = read_half(block);
  const uint8_t* quants = block + 2;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>((quants[j] & 0x0F) - 8) * d;
    out[j + 16] = static_cast<float>((quants[j] >> 4) - 8) * d;
  }
}

// block_q4_1: f16 scale, f16 minimum, 16 bytes of nibbles laid out as in Q4_0.
void q4_1_block(const uint8_t* block, float* out) {
  float d = read_half(block);
  float minimum = read_half(block + 2);
  const uint8_t* quants = block + 4;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>(quants[j] & 0x0F) * d + minimum;
    out[j + 16] = static_cast<float>(quants[j] >> 4) * d + minimum;
  }
}

// The 6-bit scale and minimum of sub-block j of a Q4_K block (ggml's get_scale_min_k4): the
// first four sit in the low bits of bytes 0-7, the last four are split across bytes 8-11 and
// the top two bits of bytes 0-7.
void q4_k_scale_min(int j, const uint8_t* scales, uint8_t& scale, uint8_t& minimum) {
  if (j < 4) {
    scale = scales[j] & 63;
    minimum = scales[j + 4] & 63;
  } else {
    scale = static_cast<uint8_t>((scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4));
    minimum = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// block_q4_K: f16 d, f16 dmin, 12 bytes of packed 6-bit scales/minimums, 128 bytes of nibbles.
// Each 64 elements share 32 bytes: low nibbles are the first 32 elements, high nibbles the next.
void q4_k_block(const uint8_t* block, float* out) {
  float d = read_half(block);
  float dmin = read_half(block + 2);
  const uint8_t* scales = block + 4;
  const uint8_t* quants = block + 16;
  for (int group = 0; group < 4; ++group) {
    uint8_t scale, minimum;
    q4_k_scale_min(2 * group, scales, scale, minimum);
    float d_low = d * scale, m_low = dmin * minimum;
    q4_k_scale_min(2 * group + 1, scales, scale, minimum);
    float d_high = d * scale, m_high = dmin * minimum;
    for (int l = 0; l < 32; ++l) {
      out[l] = d_low * static_cast<float>(quants[l] & 0x0F) - m_low;
      out[l + 32] = d_high * static_cast<float>(quants[l] >> 4) - m_high;
    }
    quants += 32;
    out += 64;
  }
}

// block_q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8 scales, f16 d.
// Each 128 elements use 64 low-nibble bytes, 32 high bytes and 8 scales (one per 16 elements).
void q6_k_block(const uint8_t* block, float* out) {
  const uint8_t* low = block;
  const uint8_t* high = block + 128;
  const auto* scales = reinterpret_cast<const int8_t*>(block + 192);
  float d = read_half(block + 208);
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      int is = l / 16;
      int q1 = ((low[l] & 0x0F) | (((high[l] >> 0) & 3) << 4)) - 32;
      int q2 = ((low[l + 32] & 0x0F) | (((high[l] >> 2) & 3) << 4)) - 32;
      int q3 = ((low[l] >> 4) | (((high[l] >> 4) & 3) << 4)) - 32;
      int q4 = ((low[l + 32] >> 4) | (((high[l] >> 6) & 3) << 4)) - 32;
      out[l] = d * static_cast<float>(scales[is]) * static_cast<float>(q1);
      out[l + 32] = d * static_cast<float>(scales[is + 2]) * static_cast<float>(q2);
      out[l + 64] = d * static_cast<float>(scales[is + 4]) * static_cast<float>(q3);
      out[l + 96] = d * static_cast<float>(scales[is + 6]) * static_cast<float>(q4);
    }
    low += 64;
    high += 32;
    scales += 8;
    out += 128;
  }
}

using RowConverter = void (*)(const uint8_t* src, float* dst, int64_t count);

template <int64_t kBlockSize, int64_t kBlockBytes, void (*kBlock)(const uint8_t*, float*)>
void block_row(const uint8_t* src, float* dst, int64_t count) {
  for (int64_t block = 0; block < count / kBlockSize; ++block)
    kBlock(src + block * kBlockBytes, dst + block * kBlockSize);
}

void f32_row(const uint8_t* src, float* dst, int64_t count) { std::memcpy(dst, src, static_cast<size_t>(count) * 4); }

// 16-bit rows go through an aligned buffer since the source row may sit at any address.
template <void (*kConvert)(const uint16_t*, float*, int64_t)>
void half_row(const uint8_t* src, float* dst, int64_t count) {
  constexpr int64_t kChunk = 512;
  uint16_t buffer[kChunk];
  for (int64_t start = 0; start < count; start += kChunk) {
    int64_t n = std::min(kChunk, count - start);
    std::memcpy(buffer, src + start * 2, static_cast<size_t>(n) * 2);
    kConvert(buffer, dst + start, n);
  }
}

RowConverter row_converter(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::f32: return f32_row;
    case GgmlType::f16: return half_row<convert_f16_to_f32>;
    case GgmlType::bf16: return half_row<convert_bf16_to_f32>;
    case GgmlType::q8_0: return block_row<32, 34, q8_0_block>;
    case GgmlType::q4_0: return block_row<32, 18, q4_0_block>;
    case GgmlType::q4_1: return block_row<32, 20, q4_1_block>;
    case GgmlType::q4_k: return block_row<kSuperBlock, 144, q4_k_block>;
    case GgmlType::q6_k: return block_row<kSuperBlock, 210, q6_k_block>;
  }
  return nullptr;
}

}  // namespace

bool can_dequantize(uint32_t type) { return row_converter(type) != nullptr; }

void dequantize(const std::vector<DequantizeJob>& jobs) {
  // Everything that can fail is checked here: the parallel pass must not throw.
  std::vector<RowConverter> converters;
  std::vector<int64_t> row_bytes, first_row{0};
  for (const DequantizeJob& job : jobs) {
    RowConverter convert = row_converter(job.type);
    const GgmlTypeTraits* traits = ggml_type_traits(job.type);
    check(convert != nullptr && traits != nullptr && job.rows >= 0 && job.row_length % traits->block_size == 0,
          "cannot dequantize ggml type {} with rows of {} elements", ggml_type_name(job.type), job.row_length);
    check(job.dst_type == DType::f32 || job.dst_type == DType::bf16, "cannot dequantize ggml type {} to {}",
          ggml_type_name(job.type), dtype_name(job.dst_type));
    converters.push_back(convert);
    row_bytes.push_back(job.row_length / traits->block_size * traits->block_bytes);
    first_row.push_back(first_row.back() + job.rows);
  }
  auto convert_rows = [&](int64_t begin, int64_t end) {
    // Rows are numbered across the jobs; find the job holding `begin`, then walk forward.
    auto after = std::upper_bound(first_row.begin(), first_row.end(), begin);
    size_t index = static_cast<size_t>(after - first_row.begin()) - 1;
    std::vector<float> row_values;  // bf16 rows are dequantized here first
    for (int64_t row = begin; row < end; ++row) {
      while (row >= first_row[index + 1]) ++index;
      const DequantizeJob& job = jobs[index];
      const int64_t local = row - first_row[index], at = local * job.row_length;
      const uint8_t* src = job.src + local * row_bytes[index];
      if (job.dst_type == DType::f32) {
        converters[index](src, static_cast<float*>(job.dst) + at, job.row_length);
      } else {
        row_values.resize(static_cast<size_t>(job.row_length));
        converters[index](src, row_values.data(), job.row_length);
        convert_f32_to_bf16(row_values.data(), static_cast<uint16_t*>(job.dst) + at, job.row_length);
      }
    }
  };
  int64_t elements = 0;
  for (const DequantizeJob& job : jobs) elements += job.rows * job.row_length;
  // Handing a little work to other threads costs more than doing it here.
  constexpr int64_t kParallelMinimum = int64_t{1} << 16;
  if (elements < kParallelMinimum)
    convert_rows(0, first_row.back());
  else
    parallel_for(first_row.back(), convert_rows);
}

}  // namespace fq::io::gguf
