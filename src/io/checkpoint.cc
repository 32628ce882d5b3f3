#include "fq/checkpoint.h"

#include <filesystem>

#include "fq/tokenizer.h"
#include "io/readers.h"

namespace fq {

const Tensor& Checkpoint::tensor(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail("{}: tensor '{}' is missing", source, name);
  return it->second;
}

Checkpoint load_checkpoint(const std::string& path, const LoadOptions& options) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::exists(path, error)) fail("{}: no such file or directory", path);
  if (fs::is_directory(path, error)) {
    Checkpoint checkpoint = io::load_hf_directory(path);
    if (fs::exists(fs::path(path) / "tokenizer.json") || fs::exists(fs::path(path) / "vocab.json"))
      checkpoint.tokenizer = load_hf_tokenizer(path);
    return checkpoint;
  }
  std::string extension = fs::path(path).extension().string();
  if (extension == ".gguf") return io::load_gguf(path, options.compute);
  if (extension == ".fq") return io::load_fq(path);
  if (extension == ".bin") {
    std::string tokenizer = options.tokenizer_path;
    // Without --tokenizer, use tokenizer.bin beside the model when there is one.
    const fs::path beside = fs::path(path).parent_path() / "tokenizer.bin";
    if (tokenizer.empty() && fs::exists(beside, error)) tokenizer = beside.string();
    return io::load_llama2c(path, tokenizer);
  }
  if (extension == ".safetensors") return io::load_hf_directory(fs::path(path).parent_path().string());
  fail("{}: unknown model format (expected an HF directory, a .gguf, .fq or llama2.c .bin file)", path);
}

}  // namespace fq
