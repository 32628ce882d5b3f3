#include "io/file_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "fq/error.h"

namespace fq::io {

FileReader::FileReader(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail("{}: cannot open ({})", path, std::strerror(errno));
  struct stat info {};
  if (fstat(fd_, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd_);
    fail("{}: not a regular file", path);
  }
  size_ = static_cast<uint64_t>(info.st_size);
}

FileReader::~FileReader() { ::close(fd_); }

void FileReader::read(uint64_t offset, void* out, uint64_t bytes) const {
  check(offset <= size_ && bytes <= size_ - offset, "{}: truncated (needs bytes {} to {}, the file has {})", path_,
        offset, offset + bytes, size_);
  auto* destination = static_cast<char*>(out);
  constexpr uint64_t kMaxChunk = uint64_t{1} << 30;  // pread may stop short of larger requests anyway
  while (bytes > 0) {
    const ssize_t got = pread(fd_, destination, std::min(bytes, kMaxChunk), static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    check(got > 0, "{}: read failed at byte {} ({})", path_, offset, got < 0 ? std::strerror(errno) : "end of file");
    destination += got;
    offset += static_cast<uint64_t>(got);
    bytes -= static_cast<uint64_t>(got);
  }
}

}  // namespace fq::io
