#include "io/fq_file.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "io/file_reader.h"

namespace fq::io {

namespace {
constexpr char kMagic[8] = {'F', 'Q', 'M', 'O', 'D', 'E', 'L', 0};
constexpr uint64_t kAlignment = 64;
constexpr size_t kPreambleBytes = 24;  // magic, u32 version, u32 flags, u64 header length

uint64_t align_up(uint64_t value) { return (value + kAlignment - 1) / kAlignment * kAlignment; }

DType dtype_from_name(const std::string& name, const std::string& path, const std::string& tensor) {
  for (DType type : {DType::f32, DType::f16, DType::bf16, DType::i8, DType::i32, DType::i4})
    if (dtype_name(type) == name) return type;
  fail("{}: tensor '{}' has unknown dtype '{}'", path, tensor, name);
}

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}
}  // namespace

uint32_t crc32(const void* data, size_t size) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> entries{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      entries[i] = c;
    }
    return entries;
  }();
  uint32_t c = 0xFFFFFFFFu;
  const auto* bytes = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < size; ++i) c = table[(c ^ bytes[i]) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

void write_fq(const std::string& path, nlohmann::json header, const std::map<std::string, Tensor>& tensors) {
  check(header.is_object(), "{}: the .fq header must be a JSON object", path);
  std::vector<Tensor> contiguous;
  nlohmann::json table = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    contiguous.push_back(tensor.contiguous());
    const Tensor& data = contiguous.back();
    table[name] = {{"dtype", dtype_name(data.dtype())},
                   {"shape", data.shape()},
                   {"offset", offset},
                   {"bytes", data.nbytes()},
                   {"crc32", crc32(data.raw(), data.nbytes())}};
    offset = align_up(offset + data.nbytes());
  }
  header["tensors"] = std::move(table);
  const std::string text = header.dump();
  std::string preamble(kMagic, sizeof(kMagic));
  put<uint32_t>(preamble, kFqFormatVersion);
  put<uint32_t>(preamble, 0);
  put<uint64_t>(preamble, text.size());
  const uint64_t data_start = align_up(kPreambleBytes + text.size());

  const std::string temporary = path + ".partial";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    check(out.good(), "{}: cannot open for writing", temporary);
    out.write(preamble.data(), static_cast<std::streamsize>(preamble.size()));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    std::string padding(data_start - kPreambleBytes - text.size(), '\0');
    out.write(padding.data(), static_cast<std::streamsize>(padding.size()));
    for (const Tensor& data : contiguous) {
      out.write(static_cast<const char*>(data.raw()), static_cast<std::streamsize>(data.nbytes()));
      padding.assign(align_up(data.nbytes()) - data.nbytes(), '\0');
      out.write(padding.data(), static_cast<std::streamsize>(padding.size()));
    }
    out.flush();
    check(out.good(), "{}: write failed (disk full?)", temporary);
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  check(!error, "{}: cannot move the finished file into place ({})", path, error.message());
}

namespace {
// One row of the tensor table, checked against the file.
struct TableEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t offset;  // from the start of the tensor data
  uint64_t bytes;
  uint32_t checksum;
};

TableEntry checked_entry(const std::string& path, const std::string& name, const nlohmann::json& entry,
                         uint64_t data_start, uint64_t data_size, uint64_t file_size) {
  TableEntry out{name, DType::f32, {}, 0, 0, 0};
  std::string type;
  try {
    type = entry.at("dtype").get<std::string>();
    out.shape = entry.at("shape").get<Shape>();
    out.offset = entry.at("offset").get<uint64_t>();
    out.bytes = entry.at("bytes").get<uint64_t>();
    out.checksum = entry.at("crc32").get<uint32_t>();
  } catch (const nlohmann::json::exception&) {
    fail("{}: tensor '{}' has a malformed entry {}", path, name, entry.dump());
  }
  out.dtype = dtype_from_name(type, path, name);
  int64_t count = 1;
  for (int64_t d : out.shape) {
    check(d >= 0 && (d == 0 || count <= std::numeric_limits<int64_t>::max() / d), "{}: tensor '{}' has a bad shape",
          path, name);
    count *= d;
  }
  // At least half a byte per value (i4): a bound that also keeps dtype_bytes() from overflowing.
  check(static_cast<uint64_t>(count) / 2 <= data_size, "{}: tensor '{}' of shape {} cannot fit in the file", path, name,
        shape_str(out.shape));
  check(dtype_bytes(out.dtype, count) == out.bytes, "{}: tensor '{}' stores {} bytes, its shape {} needs {}", path,
        name, out.bytes, shape_str(out.shape), dtype_bytes(out.dtype, count));
  check(out.offset % kAlignment == 0, "{}: tensor '{}' is not 64-byte aligned", path, name);
  check(out.offset <= data_size && out.bytes <= data_size - out.offset,
        "{}: truncated (tensor '{}' ends at byte {}, the file has {})", path, name, data_start + out.offset + out.bytes,
        file_size);
  return out;
}
}  // namespace

FqContents read_fq(const std::string& path) {
  const FileReader file(path);
  const uint64_t size = file.size();
  char preamble[kPreambleBytes];
  check(size >= kPreambleBytes, "{}: not an .fq file (bad magic)", path);
  file.read(0, preamble, kPreambleBytes);
  check(std::memcmp(preamble, kMagic, sizeof(kMagic)) == 0, "{}: not an .fq file (bad magic)", path);
  uint32_t version;
  uint64_t header_bytes;
  std::memcpy(&version, preamble + 8, 4);
  std::memcpy(&header_bytes, preamble + 16, 8);
  check(version <= kFqFormatVersion, "{}: .fq format version {} is newer than this fq reads (up to {}); upgrade fq",
        path, version, kFqFormatVersion);
  check(version >= 1, "{}: .fq format version 0 is invalid", path);
  check(header_bytes <= size - kPreambleBytes, "{}: truncated (header of {} bytes, file of {})", path, header_bytes,
        size);
  std::string text(header_bytes, '\0');
  file.read(kPreambleBytes, text.data(), header_bytes);
  FqContents contents;
  try {
    contents.header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& error) {
    fail("{}: the JSON header is corrupted ({})", path, error.what());
  }
  check(contents.header.is_object() && contents.header.contains("tensors") && contents.header["tensors"].is_object(),
        "{}: the header has no tensor table", path);
  const uint64_t data_start = align_up(kPreambleBytes + header_bytes);
  const uint64_t data_size = size >= data_start ? size - data_start : 0;
  // The whole table is checked before any data is read, so a damaged file costs no large allocation.
  std::vector<TableEntry> entries;
  uint64_t data_end = 0;  // the writer pads every tensor, the last included, to the alignment
  for (const auto& [name, entry] : contents.header["tensors"].items()) {
    entries.push_back(checked_entry(path, name, entry, data_start, data_size, size));
    data_end = std::max(data_end, align_up(entries.back().offset + entries.back().bytes));
  }
  check(data_start + data_end == size, "{}: truncated or padded: {} bytes, the header describes {}", path, size,
        data_start + data_end);
  // Each tensor is read into the memory it will live in: no mapping of the file stays behind.
  for (const TableEntry& entry : entries) {
    Tensor tensor = Tensor::empty(entry.dtype, entry.shape);
    file.read(data_start + entry.offset, tensor.raw(), entry.bytes);
    check(crc32(tensor.raw(), entry.bytes) == entry.checksum, "{}: tensor '{}' is corrupted (checksum mismatch)", path,
          entry.name);
    contents.tensors.emplace(entry.name, std::move(tensor));
  }
  contents.header.erase("tensors");
  return contents;
}

}  // namespace fq::io
