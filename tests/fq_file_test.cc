#include <gtest/gtest.h>

#include <cstring>

#include "io/fq_file.h"
#include "test_util.h"

namespace fq::io {
namespace {

std::map<std::string, Tensor> sample_tensors() {
  Tensor weights = Tensor::empty(DType::i8, {3, 5});
  for (int i = 0; i < 15; ++i) weights.data<int8_t>()[i] = static_cast<int8_t>(i * 17 - 100);
  Tensor packed = Tensor::empty(DType::i4, {4, 6});
  for (size_t i = 0; i < packed.nbytes(); ++i) packed.data<uint8_t>()[i] = static_cast<uint8_t>(0x5A + i);
  return {{"w", weights}, {"packed", packed}, {"scale", Tensor::from_floats({0.5f, -2.f, 3.25f}, {3})}};
}

std::string error_of(const std::string& path) {
  try {
    read_fq(path);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST(FqFile, RoundTripKeepsHeaderTensorsAndAlignment) {
  test::TempDir dir;
  auto tensors = sample_tensors();
  write_fq(dir.file("m.fq"), {{"recipe", "flatten-w8a8"}, {"config", {{"hidden_size", 64}}}}, tensors);
  FqContents contents = read_fq(dir.file("m.fq"));
  EXPECT_EQ(contents.header["recipe"], "flatten-w8a8");
  EXPECT_FALSE(contents.header.contains("tensors"));
  ASSERT_EQ(contents.tensors.size(), 3u);
  for (const auto& [name, tensor] : tensors) {
    const Tensor& read = contents.tensors.at(name);
    EXPECT_EQ(read.dtype(), tensor.dtype()) << name;
    EXPECT_EQ(read.shape(), tensor.shape()) << name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(read.raw()) % 64, 0u) << name;
    EXPECT_EQ(std::memcmp(read.raw(), tensor.raw(), tensor.nbytes()), 0) << name;
  }
}

TEST(FqFile, TruncationAndCorruptionAreOneLineErrors) {
  test::TempDir dir;
  write_fq(dir.file("m.fq"), {{"recipe", "x"}}, sample_tensors());
  const std::vector<uint8_t> bytes = test::read_bytes(dir.file("m.fq"));
  for (size_t cut = 0; cut < bytes.size(); cut += 7) {
    const std::string path = dir.file("cut" + std::to_string(cut) + ".fq");
    test::write_bytes(path, std::vector<uint8_t>(bytes.begin(), bytes.begin() + cut));
    const std::string message = error_of(path);
    EXPECT_NE(message, "") << "cut at " << cut;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  // Every single flipped byte is caught: in the preamble/header by parsing, in the data by the checksums
  // (padding bytes are not covered and may load).
  int caught = 0;
  for (size_t at = 0; at < bytes.size(); ++at) {
    std::vector<uint8_t> corrupted = bytes;
    corrupted[at] ^= 0x41;
    test::write_bytes(dir.file("flip.fq"), corrupted);
    caught += error_of(dir.file("flip.fq")).empty() ? 0 : 1;
  }
  EXPECT_GT(caught, static_cast<int>(bytes.size() / 2));
  std::vector<uint8_t> newer = bytes;
  newer[8] = kFqFormatVersion + 1;
  test::write_bytes(dir.file("newer.fq"), newer);
  EXPECT_NE(error_of(dir.file("newer.fq")).find("newer"), std::string::npos);
  std::vector<uint8_t> magic = bytes;
  magic[0] = 'X';
  test::write_bytes(dir.file("magic.fq"), magic);
  EXPECT_NE(error_of(dir.file("magic.fq")).find("not an .fq file"), std::string::npos);
}

TEST(FqFile, ChecksumNamesTheCorruptedTensor) {
  test::TempDir dir;
  std::map<std::string, Tensor> tensors = {{"big", Tensor::from_floats(std::vector<float>(64, 1.f), {64})}};
  write_fq(dir.file("m.fq"), nlohmann::json::object(), tensors);
  std::vector<uint8_t> bytes = test::read_bytes(dir.file("m.fq"));
  bytes[bytes.size() - 100] ^= 0x10;  // inside the 256 data bytes of "big"
  test::write_bytes(dir.file("bad.fq"), bytes);
  const std::string message = error_of(dir.file("bad.fq"));
  EXPECT_NE(message.find("'big'"), std::string::npos) << message;
  EXPECT_NE(message.find("checksum"), std::string::npos) << message;
}

TEST(FqFile, Crc32MatchesTheStandardCheckValue) {
  const char* text = "123456789";
  EXPECT_EQ(crc32(text, 9), 0xCBF43926u);
}

}  // namespace
}  // namespace fq::io
