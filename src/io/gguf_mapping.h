// How a GGUF model of the LLaMA family (llama, mistral, qwen2) maps onto Hugging Face config
// keys and tensor names, and the undoing of llama.cpp's rotary row permutation.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "fq/tensor.h"
#include "io/gguf_format.h"

namespace fq::io::gguf {

struct Architecture {
  std::string name;         // general.architecture; also the prefix of its metadata keys
  bool rotary_interleaved;  // llama.cpp's converter permuted the q/k rows into interleaved pairs
};

// The file's architecture; fq::Error naming it when fq does not know it.
Architecture read_architecture(const File& file);

// HF config.json keys from the metadata (and the tensor table, for the tied head and the
// vocabulary size when the metadata lacks it).
nlohmann::json hf_config(const File& file, const Architecture& architecture);

// The HF name of a GGUF tensor; fq::Error for a name outside the layout or a layer index
// beyond `layers`.
std::string hf_tensor_name(const File& file, const std::string& gguf_name, int64_t layers);

// Inverse of convert_hf_to_gguf.py's LlamaModel.permute for a q or k weight (or bias) whose
// dim 0 holds `heads` heads of head_dim rows: within each head, GGUF row 2j is HF row j and
// GGUF row 2j+1 is HF row head_dim/2 + j. Returns a new contiguous tensor of the same float type.
Tensor unpermute_rotary_rows(const Tensor& weight, int64_t heads);

}  // namespace fq::io::gguf
