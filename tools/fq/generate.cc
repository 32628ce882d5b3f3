// fq generate: stream a continuation of a prompt.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>

#include "common.h"
#include "fq/gpu.h"
#include "fq/sampler.h"

namespace fq::cli {

namespace {
struct GenerateOptions {
  ModelOptions model;
  std::string prompt;
  int64_t tokens = 128;
  SamplerOptions sampler;
  bool no_bos = false;
  bool ignore_eos = false;
  std::string device = "cpu";
};

void generate(const GenerateOptions& options) {
  LoadedModel loaded = load_model(options.model, true);
  const Model& model = loaded.model;
  const Tokenizer& tokenizer = *loaded.tokenizer;
  std::vector<int32_t> ids = tokenizer.encode(options.prompt, tokenizer.add_bos() && !options.no_bos);
  if (ids.empty() && tokenizer.bos_id() >= 0) ids.push_back(tokenizer.bos_id());
  check(!ids.empty(), "the prompt is empty and the tokenizer has no BOS token to start from");
  const int64_t capacity = static_cast<int64_t>(ids.size()) + options.tokens;
  check(model.config().use_rope || capacity <= model.config().max_positions,
        "prompt ({} tokens) + -n {} exceed the model's {} positions", ids.size(), options.tokens,
        model.config().max_positions);

  Sampler sampler(options.sampler);
  // Last-position logits of `count` more tokens of the one sequence, on the CPU or on the device.
  std::function<Tensor(const int32_t*, int64_t)> extend;
  KVCache cache = model.new_cache(1, options.device == "cpu" ? capacity : 1);
  std::unique_ptr<GpuModel> device;
  if (options.device == "cpu") {
    extend = [&](const int32_t* tokens, int64_t count) { return model.forward(tokens, 1, count, cache, true); };
  } else {
    device = upload_model(model, parse_device(options.device));
    device->reset(1, capacity);
    extend = [&](const int32_t* tokens, int64_t count) { return device->forward(tokens, 1, count, true); };
  }
  const size_t prompt_length = ids.size();
  // Stream by decoding the whole sequence and printing what is new: tokenizers that drop a
  // leading space or merge bytes into characters then print exactly what decode() would.
  std::string printed = tokenizer.decode(ids);
  std::fwrite(printed.data(), 1, printed.size(), stdout);
  std::fflush(stdout);

  const auto start = std::chrono::steady_clock::now();
  Tensor logits = extend(ids.data(), static_cast<int64_t>(ids.size()));
  const auto prefilled = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < options.tokens; ++step) {
    int32_t next = sampler.sample(logits.data<float>(), model.config().vocab_size);
    if (next == tokenizer.eos_id() && !options.ignore_eos) break;
    ids.push_back(next);
    std::string text = tokenizer.decode(ids);
    if (text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0) {
      std::fwrite(text.data() + printed.size(), 1, text.size() - printed.size(), stdout);
      std::fflush(stdout);
    }
    printed = std::move(text);
    if (step + 1 < options.tokens) logits = extend(&next, 1);
  }
  const auto end = std::chrono::steady_clock::now();
  const double prefill_s = std::chrono::duration<double>(prefilled - start).count();
  const double decode_s = std::chrono::duration<double>(end - prefilled).count();
  const size_t generated = ids.size() - prompt_length;
  std::fprintf(stderr, "\n\nprompt: %zu tokens in %.3f s (%.1f tok/s) | generated: %zu tokens in %.3f s (%.1f tok/s)\n",
               prompt_length, prefill_s, prompt_length / prefill_s, generated, decode_s,
               generated > 0 ? generated / decode_s : 0.0);
}
}  // namespace

void add_generate_command(CLI::App& app) {
  auto options = std::make_shared<GenerateOptions>();
  auto* command = app.add_subcommand("generate", "Generate text from a prompt, streaming tokens as they come");
  options->model.add_to(*command);
  command->add_option("-p,--prompt", options->prompt, "Prompt text (empty: start from BOS)");
  command->add_option("-n,--tokens", options->tokens, "Number of tokens to generate")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_option("--temp", options->sampler.temperature, "Sampling temperature; 0 is greedy")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_option("--top-p", options->sampler.top_p, "Nucleus sampling: keep the most likely tokens up to this mass")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command->add_option("--seed", options->sampler.seed, "Random seed for sampling")->capture_default_str();
  add_device_option(*command, options->device);
  command->add_flag("--no-bos", options->no_bos, "Do not add the BOS token before the prompt");
  command->add_flag("--ignore-eos", options->ignore_eos, "Keep generating after an end-of-sequence token");
  command->callback([options] { generate(*options); });
}

}  // namespace fq::cli
