#include <algorithm>
#include <chrono>
#include <cmath>

#include "fq/eval.h"
#include "fq/parallel.h"

namespace fq {

namespace {
struct LogSoftmax {
  double log_sum = 0;  // log sum_i exp(logit_i); log p(i) = logit_i - log_sum
  int64_t top = 0;     // first index of the largest logit
};

LogSoftmax log_softmax(const float* logits, int64_t vocab) {
  LogSoftmax result;
  for (int64_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[result.top]) result.top = i;
  const double peak = logits[result.top];
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - peak);
  result.log_sum = peak + std::log(sum);
  return result;
}
}  // namespace

NextTokenComparison compare_next_token(const float* base_logits, const float* model_logits, int64_t vocab,
                                       int32_t target) {
  check(target >= 0 && target < vocab, "target token {} is outside the vocabulary [0, {})", target, vocab);
  const LogSoftmax base = log_softmax(base_logits, vocab), model = log_softmax(model_logits, vocab);
  NextTokenComparison result;
  for (int64_t i = 0; i < vocab; ++i) {
    const double base_log_p = base_logits[i] - base.log_sum;
    result.kl_divergence += std::exp(base_log_p) * (base_log_p - (model_logits[i] - model.log_sum));
  }
  result.same_top_token = base.top == model.top;
  result.base_nll = base.log_sum - base_logits[target];
  result.model_nll = model.log_sum - model_logits[target];
  return result;
}

KLDivergenceResult kl_divergence(const Model& base, const Model& model, const std::vector<int32_t>& tokens,
                                 const PerplexityOptions& options,
                                 const std::function<void(int64_t, int64_t, double)>& progress) {
  return kl_divergence(logits_source(base), logits_source(model), tokens, options, progress);
}

KLDivergenceResult kl_divergence(const LogitsSource& base, const LogitsSource& model,
                                 const std::vector<int32_t>& tokens, const PerplexityOptions& options,
                                 const std::function<void(int64_t, int64_t, double)>& progress) {
  const int64_t vocab = model.vocab, context = options.context;
  check(base.vocab == vocab,
        "the KL base model has a vocabulary of {} tokens and the model {}: both must share one tokenizer", base.vocab,
        vocab);
  const int64_t chunks = perplexity_windows(tokens.size(), options);

  KLDivergenceResult result;
  std::vector<double> token_kl;
  double kl_sum = 0;
  int64_t agreeing = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t first = 0; first < chunks; first += options.batch) {
    const int64_t batch = std::min(options.batch, chunks - first);
    const int32_t* window = tokens.data() + first * context;
    const Tensor base_logits = base.windows(window, batch, context);
    const Tensor model_logits = model.windows(window, batch, context);
    const int64_t rows = batch * (context - 1);
    std::vector<NextTokenComparison> compared(rows);
    parallel_for(rows, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t position = (r / (context - 1)) * context + r % (context - 1);
        compared[r] = compare_next_token(base_logits.data<float>() + position * vocab,
                                         model_logits.data<float>() + position * vocab, vocab, window[position + 1]);
      }
    });
    for (const NextTokenComparison& c : compared) {
      token_kl.push_back(c.kl_divergence);
      kl_sum += c.kl_divergence;
      agreeing += c.same_top_token;
      result.base.nll_sum += c.base_nll;
      result.model.nll_sum += c.model_nll;
    }
    for (PerplexityResult* each : {&result.base, &result.model}) {
      each->predicted += rows;
      each->chunks += batch;
      each->tokens_processed += batch * context;
    }
    if (progress) progress(result.base.chunks, chunks, kl_sum / static_cast<double>(token_kl.size()));
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const double n = static_cast<double>(token_kl.size());
  result.tokens = static_cast<int64_t>(token_kl.size());
  result.mean = kl_sum / n;
  result.mean_stderr = mean_stderr(token_kl);
  std::sort(token_kl.begin(), token_kl.end());
  result.median = percentile(token_kl, 0.5);
  result.p99 = percentile(token_kl, 0.99);
  result.maximum = token_kl.back();
  result.top_token_agreement = static_cast<double>(agreeing) / n;
  result.top_token_agreement_stderr =
      n > 1 ? std::sqrt(result.top_token_agreement * (1 - result.top_token_agreement) / (n - 1)) : NAN;
  return result;
}

}  // namespace fq
