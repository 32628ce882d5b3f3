// fq ppl: perplexity of a model on a text file (WikiText-2 protocol), and with --kl-base the
// KL-divergence of its next-token distributions from a full-precision model's.
#include <fmt/format.h>

#include <fstream>
#include <optional>
#include <sstream>

#include "common.h"
#include "fq/eval.h"
#include "fq/progress.h"

namespace fq::cli {

namespace {
struct PplOptions {
  ModelOptions model;
  std::string file;
  PerplexityOptions eval;
  std::string kl_base;
  std::string kl_base_dtype = "f32";
  std::string device = "cpu";
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "{}: cannot open the text file", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The --kl-base model, checked to share the model's tokenizer.
LoadedModel load_kl_base(const PplOptions& options, const LoadedModel& loaded) {
  ModelOptions base_options = options.model;
  base_options.path = options.kl_base;
  base_options.dtype = options.kl_base_dtype;
  LoadedModel base = load_model(base_options, false);
  check(base.model.config().vocab_size == loaded.model.config().vocab_size,
        "--kl-base {}: its vocabulary has {} tokens and the model's {}; both must share one tokenizer",
        options.kl_base, base.model.config().vocab_size, loaded.model.config().vocab_size);
  check(!base.tokenizer || base.tokenizer->spec().tokens == loaded.tokenizer->spec().tokens,
        "--kl-base {}: its tokenizer differs from the model's; both must share one", options.kl_base);
  return base;
}

void run_kl_divergence(const PplOptions& options, const LoadedModel& loaded, const LoadedModel& base,
                       const std::vector<int32_t>& tokens, int64_t windows) {
  ProgressBar bar("kl", windows, "windows");
  const KLDivergenceResult result =
      kl_divergence(on_device(base.model, options.device), on_device(loaded.model, options.device), tokens, options.eval,
                    [&](int64_t done, int64_t, double mean) { bar.update(done, fmt::format("KL {:.6f}", mean)); });
  bar.finish();
  fmt::print("perplexity {:.4f} ({} compute) vs base {:.4f} ({}, {} compute) over {} predicted tokens "
             "({} windows of {})\n",
             result.model.perplexity(), options.model.dtype, result.base.perplexity(), options.kl_base,
             options.kl_base_dtype, result.tokens, result.base.chunks, options.eval.context);
  fmt::print("KL divergence from the base: mean {:.6f} ± {:.6f}, median {:.6f}, 99th percentile {:.6f}, max {:.6f}\n",
             result.mean, result.mean_stderr, result.median, result.p99, result.maximum);
  fmt::print("same top token: {:.3f}% ± {:.3f}% ({:.1f} s)\n", 100 * result.top_token_agreement,
             100 * result.top_token_agreement_stderr, result.seconds);
}

void run_ppl(const PplOptions& options) {
  LoadedModel loaded = load_model(options.model, true);
  std::optional<LoadedModel> base;
  if (!options.kl_base.empty()) base = load_kl_base(options, loaded);
  const std::string text = read_text(options.file);
  std::vector<int32_t> tokens = loaded.tokenizer->encode(text, false);
  const int64_t windows = perplexity_windows(tokens.size(), options.eval);
  fmt::print(stderr, "{}: {} bytes, {} tokens; {} windows of {} tokens\n", options.file, text.size(), tokens.size(),
             static_cast<int64_t>(tokens.size()) / options.eval.context, options.eval.context);
  if (base) return run_kl_divergence(options, loaded, *base, tokens, windows);
  ProgressBar bar("ppl", windows, "windows");
  PerplexityResult result = perplexity(on_device(loaded.model, options.device), tokens, options.eval,
                                       [&](int64_t done, int64_t, double ppl) {
                                         bar.update(done, fmt::format("ppl {:.4f}", ppl));
                                       });
  bar.finish();
  fmt::print("perplexity {:.4f} over {} predicted tokens ({} windows of {}), {:.1f} tokens/s, {} compute\n",
             result.perplexity(), result.predicted, result.chunks, options.eval.context,
             result.tokens_processed / result.seconds, options.device == "cpu" ? options.model.dtype : options.device);
}
}  // namespace

void add_ppl_command(CLI::App& app) {
  auto options = std::make_shared<PplOptions>();
  auto* command = app.add_subcommand(
      "ppl", "Perplexity on a text file: the whole file tokenized, non-overlapping windows of --ctx tokens, "
             "exp(mean NLL) over every predicted token");
  options->model.add_to(*command);
  command->add_option("-f,--file", options->file, "Text file, e.g. ../shared/data/wikitext2-test.raw")->required();
  command->add_option("--ctx", options->eval.context, "Tokens per window")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20))
      ->capture_default_str();
  command->add_option("--chunks", options->eval.max_chunks, "Evaluate only the first K windows (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_option("--batch", options->eval.batch, "Windows per forward pass")
      ->check(CLI::Range(int64_t{1}, int64_t{1024}))
      ->capture_default_str();
  command->add_option("--kl-base", options->kl_base,
                      "Full-precision model to compare against: mean and 99th-percentile KL-divergence of this "
                      "model's next-token distributions from its, and how often both rank the same token first");
  command->add_option("--kl-base-dtype", options->kl_base_dtype, "Compute type of the --kl-base model")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  add_device_option(*command, options->device);
  command->callback([options] { run_ppl(*options); });
}

}  // namespace fq::cli
