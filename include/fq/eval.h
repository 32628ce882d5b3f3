// Model evaluation: perplexity over a token stream, and the KL-divergence of one model's next-token
// distributions from another's (a quantized model against its full-precision base).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "fq/model.h"

namespace fq {

struct PerplexityOptions {
  int64_t context = 512;  // tokens per window
  int64_t max_chunks = 0; // 0: every full window of the text
  int64_t batch = 1;      // windows per forward pass
};

struct PerplexityResult {
  double nll_sum = 0;     // natural-log NLL summed over predicted tokens
  int64_t predicted = 0;  // tokens predicted: (context - 1) per window
  int64_t chunks = 0;
  double seconds = 0;
  int64_t tokens_processed = 0;
  double perplexity() const;
};

// What perplexity and KL-divergence evaluate: logits f32 [batch, seq, vocab] of `batch` fresh sequences of
// `seq` tokens each (no earlier context), from a Model on the CPU or a model on another device.
struct LogitsSource {
  int64_t vocab = 0;
  int64_t max_positions = 0;  // the longest sequence it takes (0: no limit)
  std::function<Tensor(const int32_t* tokens, int64_t batch, int64_t seq)> windows;
};
// A CPU Model as a LogitsSource (a KV cache per batch size, emptied before every call).
LogitsSource logits_source(const Model& model);

// The usual WikiText-2 protocol: the text's tokens cut into non-overlapping windows of `context`
// tokens; inside each window every token after the first is predicted from those before it; the
// result is exp(mean NLL). `progress(chunks_done, chunks_total, running_perplexity)` is called
// after each batch.
PerplexityResult perplexity(const LogitsSource& model, const std::vector<int32_t>& tokens,
                            const PerplexityOptions& options,
                            const std::function<void(int64_t, int64_t, double)>& progress = {});
PerplexityResult perplexity(const Model& model, const std::vector<int32_t>& tokens, const PerplexityOptions& options,
                            const std::function<void(int64_t, int64_t, double)>& progress = {});

// How many windows perplexity() evaluates over `token_count` tokens; throws for bad options or a
// text shorter than one window.
int64_t perplexity_windows(size_t token_count, const PerplexityOptions& options);

// -log softmax(logits)[target], computed in double.
double negative_log_likelihood(const float* logits, int64_t vocab, int32_t target);

// One predicted position seen by both models.
struct NextTokenComparison {
  double kl_divergence = 0;      // KL(P_base || P_model) = sum_i p_base(i) * (log p_base(i) - log p_model(i))
  bool same_top_token = false;   // both rank the same token first (first index on ties)
  double base_nll = 0, model_nll = 0;  // -log p(target) under each
};
// Both logit rows turned into log-probabilities in double.
NextTokenComparison compare_next_token(const float* base_logits, const float* model_logits, int64_t vocab,
                                       int32_t target);

struct KLDivergenceResult {
  PerplexityResult base, model;  // each model's perplexity over the same windows
  int64_t tokens = 0;            // predicted positions compared
  double seconds = 0;            // both models' forward passes and the comparison
  double mean = 0, mean_stderr = 0, median = 0, p99 = 0, maximum = 0;  // of the per-token KL
  double top_token_agreement = 0, top_token_agreement_stderr = 0;       // share of tokens, in [0, 1]
};

// The perplexity() windows run through `base` and `model` alike, comparing the two next-token
// distributions at every predicted position (as llama.cpp's perplexity --kl-divergence does).
// `progress(chunks_done, chunks_total, mean_kl)` is called after each batch.
KLDivergenceResult kl_divergence(const LogitsSource& base, const LogitsSource& model,
                                 const std::vector<int32_t>& tokens, const PerplexityOptions& options,
                                 const std::function<void(int64_t, int64_t, double)>& progress = {});
KLDivergenceResult kl_divergence(const Model& base, const Model& model, const std::vector<int32_t>& tokens,
                                 const PerplexityOptions& options,
                                 const std::function<void(int64_t, int64_t, double)>& progress = {});

// Standard error of the mean with the sample (n - 1) standard deviation, as lm-evaluation-harness
// reports it; NaN for fewer than two values.
double mean_stderr(const std::vector<double>& values);
// The value at `fraction` of sorted `values`, interpolating linearly between ranks (numpy's default,
// llama.cpp's KLD percentiles). `sorted` must be ascending and non-empty.
double percentile(const std::vector<double>& sorted, double fraction);

}  // namespace fq
