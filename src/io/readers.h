// The checkpoint readers behind load_checkpoint(); each returns tensors under HF names.
#pragma once

#include <map>
#include <string>

#include "fq/checkpoint.h"

namespace fq::io {

// config.json + model.safetensors, or sharded model-0000k-of-0000n.safetensors with
// model.safetensors.index.json; tokenizer files in the same directory.
Checkpoint load_hf_directory(const std::string& dir);
// One .safetensors file: name -> tensor (F32, F16, BF16, I8, I32), memory-mapped.
std::map<std::string, Tensor> read_safetensors(const std::string& path);
// Writes tensors (any dtype but i4) to a .safetensors file with optional string metadata.
void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// An .fq file (docs/format.md).
Checkpoint load_fq(const std::string& path);

// GGUF v2/v3; quantized tensors are dequantized to f32, or straight to bf16 for the matrices (2-D
// tensors) when `matrix_type` is bf16, so that a bf16 model never holds an f32 copy of them.
Checkpoint load_gguf(const std::string& path, DType matrix_type = DType::f32);

// llama2.c checkpoint (legacy or version 1) and its tokenizer.bin.
Checkpoint load_llama2c(const std::string& path, const std::string& tokenizer_path);

}  // namespace fq::io
