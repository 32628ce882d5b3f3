// A file read with pread straight into the caller's buffers: what is read is owned by the caller and
// nothing stays mapped, so a loader holds one copy of each tensor (the page cache is the kernel's).
#pragma once

#include <cstdint>
#include <string>

namespace fq::io {

class FileReader {
 public:
  // Throws fq::Error naming the path when it cannot be opened or is not a regular file.
  explicit FileReader(const std::string& path);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Reads exactly `bytes` at `offset` into `out`; throws naming the file when they are not all there.
  void read(uint64_t offset, void* out, uint64_t bytes) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace fq::io
