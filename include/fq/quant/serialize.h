// Saving a (partly) quantized model as one .fq file (docs/format.md) and rebuilding its quantized
// Linears when the file is loaded.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

#include "fq/checkpoint.h"
#include "fq/linear.h"
#include "fq/model.h"

namespace fq {

struct FqMetadata {
  nlohmann::json config;   // the source checkpoint's HF config
  TokenizerSpec tokenizer;
  nlohmann::json recipe;   // what was done (recipe name, options)
  nlohmann::json report;   // per-layer numbers for `fq inspect` (bits, T, K -> K', maxima, errors)
};

// How a model keeps what stays float: the token embedding as f32, bf16 or i8 (int8 rows with one
// scale each), and the weights of unquantized Linears (the lm_head unless --quantize-head) as f32 or bf16.
struct FloatStorage {
  DType embedding = DType::i8;
  DType linears = DType::bf16;
};

// Converts `model`'s token embedding and float Linears to `storage` in place, before save_fq, so
// that the model in memory computes exactly what its .fq file will (bf16 Linears compute in bf16).
// A tied float head is rebuilt from the embedding's table when both are in the same float format,
// and keeps a weight of its own otherwise.
void convert_float_storage(Model& model, const FloatStorage& storage);

// Writes every tensor of `model` (float ones under their HF names, quantized Linears as codes,
// scales and flatten plans) plus `metadata`. A tied float head equal to the embedding table is not
// written twice.
void save_fq(const std::string& path, Model& model, const FqMetadata& metadata);

// The QuantizedLinear stored under HF prefix `prefix` of an .fq checkpoint.
std::unique_ptr<Linear> load_quantized_linear(const Checkpoint& checkpoint, const std::string& prefix);

}  // namespace fq
