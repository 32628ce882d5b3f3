#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fq/error.h"

namespace fq::io {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open ({})", path, std::strerror(errno));
  struct stat info {};
  if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(info.st_size);
  if (file->size_ > 0) {
    void* address = mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (address == MAP_FAILED) {
      ::close(fd);
      fail("{}: cannot memory-map ({})", path, std::strerror(errno));
    }
    file->data_ = static_cast<uint8_t*>(address);
  }
  ::close(fd);
  return file;
}

void MappedFile::release_pages(size_t offset, size_t bytes) const {
  check(offset <= size_ && bytes <= size_ - offset, "{}: cannot release bytes {} to {} of {}", path_, offset,
        offset + bytes, size_);
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t begin = offset / page * page;  // the mapping itself starts on a page
  // A read-only private mapping is never written, so dropping its pages loses nothing; a failure only
  // leaves them resident.
  if (bytes > 0) madvise(data_ + begin, offset + bytes - begin, MADV_DONTNEED);
}

MappedFile::~MappedFile() {
  if (data_) munmap(data_, size_);
}

}  // namespace fq::io
