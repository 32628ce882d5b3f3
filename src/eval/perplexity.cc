#include <chrono>
#include <cmath>
#include <memory>

#include "fq/eval.h"
#include "fq/parallel.h"

namespace fq {

double PerplexityResult::perplexity() const { return predicted > 0 ? std::exp(nll_sum / predicted) : NAN; }

int64_t perplexity_windows(size_t token_count, const PerplexityOptions& options) {
  check(options.context >= 2, "--ctx must be at least 2, got {}", options.context);
  check(options.batch >= 1, "--batch must be at least 1, got {}", options.batch);
  int64_t chunks = static_cast<int64_t>(token_count) / options.context;
  check(chunks > 0, "the text has {} tokens, fewer than one window of --ctx {}", token_count, options.context);
  return options.max_chunks > 0 ? std::min(chunks, options.max_chunks) : chunks;
}

double negative_log_likelihood(const float* logits, int64_t vocab, int32_t target) {
  double peak = logits[0];
  for (int64_t i = 1; i < vocab; ++i) peak = std::max(peak, double(logits[i]));
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - peak);
  return std::log(sum) + peak - logits[target];
}

LogitsSource logits_source(const Model& model) {
  auto cache = std::make_shared<KVCache>(model.new_cache(1, 1));
  return {model.config().vocab_size, model.config().max_positions, [&model, cache](const int32_t* tokens, int64_t batch, int64_t seq) {
            if (cache->batch() != batch || cache->capacity() < seq) *cache = model.new_cache(batch, seq);
            cache->clear();
            return model.forward(tokens, batch, seq, *cache);
          }};
}

PerplexityResult perplexity(const Model& model, const std::vector<int32_t>& tokens, const PerplexityOptions& options,
                            const std::function<void(int64_t, int64_t, double)>& progress) {
  return perplexity(logits_source(model), tokens, options, progress);
}

PerplexityResult perplexity(const LogitsSource& model, const std::vector<int32_t>& tokens,
                            const PerplexityOptions& options,
                            const std::function<void(int64_t, int64_t, double)>& progress) {
  const int64_t context = options.context, vocab = model.vocab;
  const int64_t chunks = perplexity_windows(tokens.size(), options);

  PerplexityResult result;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t first = 0; first < chunks; first += options.batch) {
    const int64_t batch = std::min(options.batch, chunks - first);
    const int32_t* window = tokens.data() + first * context;
    Tensor logits = model.windows(window, batch, context);
    const int64_t rows = batch * (context - 1);
    std::vector<double> nll(rows);
    parallel_for(rows, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / (context - 1), t = r % (context - 1);
        nll[r] = negative_log_likelihood(logits.data<float>() + (b * context + t) * vocab, vocab,
                                         window[b * context + t + 1]);
      }
    });
    for (double value : nll) result.nll_sum += value;
    result.predicted += rows;
    result.chunks += batch;
    result.tokens_processed += batch * context;
    if (progress) progress(result.chunks, chunks, result.perplexity());
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace fq
