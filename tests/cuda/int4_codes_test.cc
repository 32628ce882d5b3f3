// Packing 4-bit activation codes on the device equals fq::pack_int4.
#include "backends/cuda/int4_codes.h"
#include "cuda/cuda_test_util.h"
#include "fq/quant/quantize.h"

namespace dev = fq::FQ_CUDA_NS;

FQ_CUDA_SUITE(Int4Codes);

FQ_CUDA_TEST(Int4Codes, PackingEqualsTheHostPacking) {
  const uint32_t seed = dev::testing::fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937 random(seed);
  std::uniform_int_distribution<int> code(-8, 7);
  for (int64_t count : {2, 16, 30, 64 * 5, 16 * 37 + 6}) {
    SCOPED_TRACE(count);
    fq::Tensor codes = fq::Tensor::empty(fq::DType::i8, {count});
    for (int64_t i = 0; i < count; ++i) codes.data<int8_t>()[i] = static_cast<int8_t>(code(random));
    codes.data<int8_t>()[0] = -8;
    codes.data<int8_t>()[count - 1] = 7;
    const fq::Tensor want = fq::pack_int4(codes);
    dev::DeviceBuffer input = dev::upload<int8_t>({codes.data<int8_t>(), size_t(count)}), packed(count / 2);
    dev::pack_codes_int4(input.as<const int8_t>(), count, packed.as<uint8_t>());
    const std::vector<uint8_t> got = dev::download<uint8_t>(packed.data(), count / 2);
    for (int64_t i = 0; i < count / 2; ++i) ASSERT_EQ(got[i], want.data<uint8_t>()[i]) << "byte " << i;
  }
  dev::DeviceBuffer buffer(64);
  EXPECT_THROW(dev::pack_codes_int4(buffer.as<const int8_t>(), 3, buffer.as<uint8_t>()), fq::Error);
}
