// Mapping a checkpoint (HF names) onto the shared decoder graph, one function per family.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "fq/checkpoint.h"
#include "fq/model.h"

namespace fq::model {

// Building consumes the checkpoint: each load_* below removes the tensors it used from it, so that a
// tensor the graph converts or lays out anew is held twice only while that happens.

// The tensor `name` as f32, checked against `shape`.
Tensor load_tensor(Checkpoint& checkpoint, const std::string& name, const Shape& shape);
// The token embedding `prefix`.weight of `shape` [vocab, width]: int8 rows (with `prefix`.weight_scales f32
// [vocab]) and bf16 tables stay as stored; f32 and f16 ones become bf16 when computing in bf16, else f32.
TokenEmbedding load_embedding(Checkpoint& checkpoint, const std::string& prefix, const Shape& shape, DType compute);
// The inverse of load_embedding: `prefix`.weight (and `prefix`.weight_scales for int8 rows) into `tensors`.
void export_embedding(const TokenEmbedding& embedding, const std::string& prefix,
                      std::map<std::string, Tensor>& tensors);
// The Linear stored under `prefix`: the QuantizedLinear of an .fq file, or a FloatLinear from
// `prefix`.weight [out, in] and, when present (or `require_bias`), `prefix`.bias.
std::unique_ptr<Linear> load_linear(Checkpoint& checkpoint, const std::string& prefix, int64_t out, int64_t in,
                                    DType compute, bool require_bias = false);

// The HF prefix of a Linear slot: `role` is "attn.q", "mlp.down", ... for layer `layer`, or
// "project_in", "project_out", "lm_head".
std::string opt_checkpoint_prefix(const std::string& role, int64_t layer);
std::string llama_checkpoint_prefix(const std::string& role, int64_t layer);

// The graph's float tensors other than Linear weights (embeddings, norms), under their HF names:
// the inverse of build_*, used to save a (transformed) model.
void export_opt_tensors(const Model& model, std::map<std::string, Tensor>& tensors);
void export_llama_tensors(const Model& model, std::map<std::string, Tensor>& tensors);

// The output head: the quantized one of an .fq file, the tied embedding, or lm_head.weight (which an
// .fq file also stores for a tied head when its embedding is kept in another format).
std::unique_ptr<Linear> load_head(Checkpoint& checkpoint, const ModelConfig& config, const TokenEmbedding& embedding,
                                  DType compute);

void build_opt(Checkpoint& checkpoint, const ModelConfig& config, DType compute, Model& model);
void build_llama(Checkpoint& checkpoint, const ModelConfig& config, DType compute, Model& model);

}  // namespace fq::model
