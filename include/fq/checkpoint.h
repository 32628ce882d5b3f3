// What every checkpoint reader produces: a Hugging Face style config, tensors under Hugging Face
// names, and the tokenizer's data. Readers of other formats (GGUF, llama2.c) translate names and
// config keys and undo their rotary permutation, so the model code sees one convention only:
// Linear weights are [out, in]; q/k rotary pairs are half-split (HF), not interleaved.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "fq/tensor.h"

namespace fq {

struct TokenizerSpec {
  enum class Kind { none, byte_bpe, sentencepiece_bpe };
  // GGUF's token types.
  enum TokenType : int32_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

  Kind kind = Kind::none;
  std::vector<std::string> tokens;   // id -> token text (byte-level BPE: in GPT-2's byte alphabet)
  std::vector<float> scores;         // SentencePiece merge priorities (higher merges first)
  std::vector<int32_t> token_types;  // TokenType per id; empty means all normal
  std::vector<std::string> merges;   // byte-level BPE: "left right", highest priority first
  std::string pre = "gpt2";          // pre-tokenizer: gpt2, llama3, smollm (digits split), ...
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false;
  bool add_space_prefix = false;     // SentencePiece: prepend a space before encoding
};

struct Checkpoint {
  std::string source;                    // the path the user gave, for messages
  std::string format;                    // "safetensors", "gguf", "llama2c"
  nlohmann::json config;                 // HF config.json keys (model_type, hidden_size, ...)
  std::map<std::string, Tensor> tensors; // HF names; f32, f16 or bf16
  TokenizerSpec tokenizer;
  // .fq files: the quantized Linears, HF prefix -> how to rebuild it from its tensors
  // (see include/fq/quant/serialize.h); empty for float checkpoints.
  nlohmann::json quantization = nlohmann::json::object();
  nlohmann::json metadata = nlohmann::json::object();  // .fq files: "recipe" and "report"

  // The tensor `name`, or an error naming the checkpoint and the tensor.
  const Tensor& tensor(const std::string& name) const;
  bool has(const std::string& name) const { return tensors.count(name) != 0; }
};

struct LoadOptions {
  std::string tokenizer_path;  // llama2.c: tokenizer.bin (default: tokenizer.bin beside the model)
  // The compute type the model will be built with. bf16 lets a reader that converts anyway (GGUF's
  // quantized blocks) write matrices in bf16 directly, so loading never holds them in f32 too;
  // 1-D tensors (norms, biases) stay f32.
  DType compute = DType::f32;
};

// Dispatches on what `path` is: a directory (HF), *.gguf, *.fq, or a llama2.c *.bin.
Checkpoint load_checkpoint(const std::string& path, const LoadOptions& options = {});

}  // namespace fq
