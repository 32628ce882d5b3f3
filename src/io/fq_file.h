// The .fq container (docs/format.md): magic, version, a JSON header, and 64-byte aligned tensors
// with a CRC-32 each. What the header means beyond "tensors" is the caller's business.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>

#include "fq/tensor.h"

namespace fq::io {

// 2: int8 token embeddings (with row scales) and a tied lm_head stored on its own (docs/format.md).
constexpr uint32_t kFqFormatVersion = 2;

struct FqContents {
  nlohmann::json header;                  // without the "tensors" table
  std::map<std::string, Tensor> tensors;  // each in its own 64-byte aligned memory
};

// Writes `header` (an object; its "tensors" key is set here) and `tensors` (any dtype, contiguous
// or not) to `path`, atomically (a temporary file renamed into place).
void write_fq(const std::string& path, nlohmann::json header, const std::map<std::string, Tensor>& tensors);
// Reads and validates everything (sizes, offsets, alignment, checksums); errors name the file and tensor.
FqContents read_fq(const std::string& path);

uint32_t crc32(const void* data, size_t size);

}  // namespace fq::io
