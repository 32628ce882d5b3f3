#include "common.h"

#include <cstdio>

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

}  // namespace fq::cli
