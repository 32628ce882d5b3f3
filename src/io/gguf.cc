// load_gguf: a LLaMA-family GGUF file as a Checkpoint under HF names, every tensor as f32 (or the
// matrices as bf16, for a model that computes in bf16).
#include <cstdint>
#include <vector>

#include "fq/error.h"
#include "io/gguf_dequant.h"
#include "io/gguf_format.h"
#include "io/gguf_mapping.h"
#include "io/gguf_tokenizer.h"
#include "io/readers.h"

namespace fq::io {

namespace {

// F32 data that stays f32 is a view of the mapped file; anything else gets owned memory of its
// final type (matrices in `matrix_type`, the rest f32) and a job that fills it.
Tensor prepare_tensor(const gguf::File& file, const gguf::TensorInfo& info, DType matrix_type,
                      std::vector<gguf::DequantizeJob>& jobs) {
  if (!gguf::can_dequantize(info.type))
    fail("{}: GGUF tensor '{}' has ggml type {}, which fq cannot read (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, "
         "Q4_K, Q6_K)",
         file.path(), info.name, gguf::ggml_type_name(info.type));
  const uint8_t* data = file.data(info);
  const DType type = info.ne.size() >= 2 ? matrix_type : DType::f32;
  if (type == DType::f32 && info.type == static_cast<uint32_t>(gguf::GgmlType::f32) &&
      reinterpret_cast<uintptr_t>(data) % alignof(float) == 0)
    return Tensor::wrap(DType::f32, info.shape(), const_cast<uint8_t*>(data), file.mapping());
  Tensor out = Tensor::empty(type, info.shape());
  jobs.push_back({info.type, data, info.rows(), info.row_length(), out.raw(), type});
  return out;
}

// Runs the jobs in passes of about kPassBytes of file data, dropping each pass's file pages after it,
// so that loading holds the converted tensors and at most one pass of the file, not all of it.
void dequantize_in_passes(const gguf::File& file, const std::vector<gguf::DequantizeJob>& jobs,
                          const std::vector<uint64_t>& source_bytes) {
  constexpr uint64_t kPassBytes = uint64_t{32} << 20;
  const MappedFile& mapping = *file.mapping();
  for (size_t first = 0, last = 0; first < jobs.size(); first = last) {
    uint64_t bytes = 0;
    while (last < jobs.size() && (last == first || bytes + source_bytes[last] <= kPassBytes))
      bytes += source_bytes[last++];
    gguf::dequantize({jobs.begin() + static_cast<std::ptrdiff_t>(first),
                      jobs.begin() + static_cast<std::ptrdiff_t>(last)});
    for (size_t i = first; i < last; ++i)
      mapping.release_pages(static_cast<size_t>(jobs[i].src - mapping.data()), source_bytes[i]);
  }
}

// Heads of a q or k tensor whose rows llama.cpp interleaved, or 0 for any other tensor.
int64_t permuted_heads(const std::string& hf_name, const nlohmann::json& config) {
  auto is = [&](std::string_view projection) {
    return hf_name.ends_with(fmt::format("self_attn.{}.weight", projection)) ||
           hf_name.ends_with(fmt::format("self_attn.{}.bias", projection));
  };
  if (is("q_proj")) return config["num_attention_heads"].get<int64_t>();
  if (is("k_proj")) return config["num_key_value_heads"].get<int64_t>();
  return 0;
}

}  // namespace

Checkpoint load_gguf(const std::string& path, DType matrix_type) {
  check(matrix_type == DType::f32 || matrix_type == DType::bf16, "{}: GGUF matrices load as f32 or bf16, not {}", path,
        dtype_name(matrix_type));
  gguf::File file = gguf::File::open(path);
  gguf::Architecture architecture = gguf::read_architecture(file);

  Checkpoint checkpoint;
  checkpoint.source = path;
  checkpoint.format = "gguf";
  checkpoint.config = gguf::hf_config(file, architecture);
  checkpoint.tokenizer = gguf::read_tokenizer(file);

  const int64_t layers = checkpoint.config["num_hidden_layers"].get<int64_t>();
  std::vector<gguf::DequantizeJob> jobs;
  std::vector<uint64_t> source_bytes;  // of each job
  for (const gguf::TensorInfo& info : file.tensors()) {
    std::string name = gguf::hf_tensor_name(file, info.name, layers);
    if (checkpoint.has(name)) fail("{}: two GGUF tensors map to '{}' (the second is '{}')", path, name, info.name);
    checkpoint.tensors.emplace(std::move(name), prepare_tensor(file, info, matrix_type, jobs));
    source_bytes.resize(jobs.size(), info.nbytes);
  }
  dequantize_in_passes(file, jobs, source_bytes);

  if (architecture.rotary_interleaved) {
    for (auto& [name, tensor] : checkpoint.tensors) {
      int64_t heads = permuted_heads(name, checkpoint.config);
      if (heads == 0) continue;
      int64_t rows = tensor.dim(0);
      if (rows % heads != 0 || (rows / heads) % 2 != 0)
        fail("{}: GGUF tensor for '{}' has {} rows, not {} heads of an even size", path, name, rows, heads);
      tensor = gguf::unpermute_rotary_rows(tensor, heads);
    }
  }
  // The unpermuted views' pages too: whatever the model keeps viewing, it reads back on use.
  file.mapping()->release_pages(0, file.mapping()->size());
  for (const char* required : {"model.embed_tokens.weight", "model.norm.weight"})
    if (!checkpoint.has(required)) fail("{}: GGUF file lacks the tensor for '{}'", path, required);
  return checkpoint;
}

}  // namespace fq::io
