#include "common.h"

#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "fq/gpu.h"
#include "fq/parallel.h"

namespace fq::cli {

void ModelOptions::add_to(CLI::App& command, bool model_required) {
  command.add_option("-m,--model", path, "Model: a Hugging Face directory, a .gguf file or a llama2.c .bin")
      ->required(model_required);
  command.add_option("--tokenizer", tokenizer, "llama2.c tokenizer.bin (default: tokenizer.bin beside the model)");
  command.add_option("--dtype", dtype, "Compute type of the float Linear layers and of attention's products: f32 (reference) or bf16 (AMX/AVX512-BF16)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  command.add_option("-t,--threads", threads, "Worker threads (default: all cores)")->check(CLI::NonNegativeNumber);
}

LoadedModel load_model(const ModelOptions& options, bool need_tokenizer) {
  if (options.threads > 0) set_num_threads(options.threads);
  LoadOptions load_options;
  load_options.tokenizer_path = options.tokenizer;
  load_options.compute = options.dtype == "bf16" ? DType::bf16 : DType::f32;
  Checkpoint checkpoint = load_checkpoint(options.path, load_options);
  const TokenizerSpec tokenizer = std::move(checkpoint.tokenizer);
  const std::string format = checkpoint.format;
  // Moved in: the model frees each checkpoint tensor once it holds its own form of it.
  LoadedModel loaded{Model::from_checkpoint(std::move(checkpoint), load_options.compute), nullptr, format};
  loaded.model.set_attention_bf16(load_options.compute == DType::bf16);
  if (tokenizer.kind != TokenizerSpec::Kind::none) loaded.tokenizer = make_tokenizer(tokenizer);
  check(loaded.tokenizer || !need_tokenizer, "{}: no tokenizer found (expected tokenizer.json, vocab.json + merges.txt, "
        "GGUF tokenizer metadata, or --tokenizer tokenizer.bin)", options.path);
  return loaded;
}

void add_device_option(CLI::App& command, std::string& device) {
  command.add_option("--device", device,
                     "cpu; cuda (the model copied to an NVIDIA GPU: FP16 and FlattenQuant kernels); or cuda-emulated "
                     "(the GPU code path on the CPU emulator, for checking: very slow)")
      ->check(CLI::IsMember({"cpu", "cuda", "cuda-emulated"}))
      ->capture_default_str();
}

LogitsSource on_device(const Model& model, const std::string& device) {
  if (device == "cpu") return logits_source(model);
  std::shared_ptr<GpuModel> copy = upload_model(model, parse_device(device));
  fmt::print(stderr, "running on {}\n", copy->device_name());
  return {model.config().vocab_size, model.config().max_positions,
          [copy](const int32_t* tokens, int64_t batch, int64_t seq) {
            copy->reset(batch, seq);
            return copy->forward(tokens, batch, seq);
          }};
}

}  // namespace fq::cli
