// Log-likelihood of continuations, batched: lm-evaluation-harness's loglikelihood requests
// (HFLM._encode_pair and _loglikelihood_tokens) on our model.
#include <algorithm>
#include <climits>
#include <cstring>
#include <map>
#include <memory>
#include <optional>

#include "fq/eval.h"
#include "fq/parallel.h"
#include "fq/tasks.h"

namespace fq {

namespace {
// A request as the model sees it: the tokens fed in, and the continuation tokens that the last
// positions of the input predict.
struct Sequence {
  std::vector<int32_t> input;
  std::vector<int32_t> targets;
  size_t first_target() const { return input.size() - targets.size(); }  // input position predicting targets[0]
};

Sequence make_sequence(const TokenizedRequest& tokens, int64_t max_positions) {
  std::vector<int32_t> whole = tokens.context;
  whole.insert(whole.end(), tokens.continuation.begin(), tokens.continuation.end());
  const size_t window = static_cast<size_t>(max_positions) + 1;
  check(tokens.continuation.size() < window, "a continuation of {} tokens does not fit the model's {} positions",
        tokens.continuation.size(), max_positions);
  if (whole.size() > window) whole.erase(whole.begin(), whole.end() - static_cast<ptrdiff_t>(window));
  whole.pop_back();
  return {std::move(whole), tokens.continuation};
}

// Sequences run together in one forward pass. With shared > 0 they all begin with the same
// `shared` tokens, which run once (batch 1) and are copied into every row's KV cache.
struct Batch {
  std::vector<int64_t> rows;  // indices of sequences, longest first
  int64_t shared = 0;
};

// Requests with the same context (the choices of one item) share it as a prefix where `share_prefixes`;
// the rest are batched longest first, right-padded.
std::vector<Batch> plan_batches(const std::vector<Sequence>& sequences, int64_t batch_size, bool share_prefixes) {
  std::map<std::vector<int32_t>, std::vector<int64_t>> by_context;
  std::vector<std::vector<int64_t>*> groups;  // in the order of their first request
  for (int64_t i = 0; i < static_cast<int64_t>(sequences.size()); ++i) {
    const Sequence& s = sequences[i];
    auto& rows = by_context[std::vector<int32_t>(s.input.begin(), s.input.begin() + s.first_target() + 1)];
    if (rows.empty()) groups.push_back(&rows);
    rows.push_back(i);
  }
  auto longest_first = [&](int64_t a, int64_t b) { return sequences[a].input.size() > sequences[b].input.size(); };
  auto add_batches = [&](std::vector<Batch>& batches, std::vector<int64_t>& rows, int64_t shared) {
    std::stable_sort(rows.begin(), rows.end(), longest_first);
    for (size_t begin = 0; begin < rows.size(); begin += batch_size) {
      const size_t end = std::min(rows.size(), begin + static_cast<size_t>(batch_size));
      batches.push_back({std::vector<int64_t>(rows.begin() + begin, rows.begin() + end), shared});
    }
  };
  std::vector<Batch> batches;
  std::vector<int64_t> alone;
  for (std::vector<int64_t>* rows : groups) {
    if (rows->size() == 1 || !share_prefixes) {
      alone.insert(alone.end(), rows->begin(), rows->end());
      continue;
    }
    // The context, but every row keeps at least one position of its own.
    size_t shared = sequences[rows->front()].first_target() + 1;
    for (int64_t row : *rows) shared = std::min(shared, sequences[row].input.size() - 1);
    add_batches(batches, *rows, static_cast<int64_t>(shared));
  }
  add_batches(batches, alone, 0);
  return batches;
}

// Copies the first `length` positions of a batch-1 cache into every row of `rows`.
void broadcast_prefix(KVCache& prefix, KVCache& rows, int64_t layers, int64_t length) {
  for (int64_t layer = 0; layer < layers; ++layer) {
    for (const bool keys : {true, false}) {
      const Tensor& source = keys ? prefix.keys(layer) : prefix.values(layer);
      Tensor& target = keys ? rows.keys(layer) : rows.values(layer);
      const int64_t width = source.numel() / prefix.capacity();  // kv_heads * head_dim
      for (int64_t b = 0; b < rows.batch(); ++b)
        std::memcpy(target.data<float>() + b * rows.capacity() * width, source.data<float>(),
                    length * width * sizeof(float));
    }
  }
  rows.clear();
  rows.advance(length);
}

// The logits of one batch: after the shared prefix ([1, 1, vocab]; undefined without one) and of every
// row's own tokens ([rows, length, vocab]).
struct BatchLogits {
  Tensor prefix, rows;
};
// Runs a batch of `rows` sequences that begin with the same `shared` tokens at `prefix` (0: none) and go
// on with `length` tokens each at `tokens`, in a KV cache of `capacity` positions.
using BatchRunner = std::function<BatchLogits(const int32_t* prefix, int64_t shared, const int32_t* tokens,
                                              int64_t rows, int64_t length, int64_t capacity)>;

// On a CPU Model: the prefix runs once at batch 1 and its KV cache is copied into every row; caches are
// kept per batch size.
BatchRunner cpu_runner(const Model& model) {
  struct Caches {
    std::optional<KVCache> prefix;
    std::map<int64_t, KVCache> rows;
  };
  auto caches = std::make_shared<Caches>();
  return [&model, caches](const int32_t* prefix, int64_t shared, const int32_t* tokens, int64_t rows, int64_t length,
                          int64_t capacity) {
    const ModelConfig& config = model.config();
    KVCache& cache = caches->rows.try_emplace(rows, config, rows, capacity).first->second;
    if (cache.capacity() < capacity) cache = model.new_cache(rows, capacity);
    BatchLogits out;
    if (shared > 0) {
      if (!caches->prefix || caches->prefix->capacity() < capacity) caches->prefix = model.new_cache(1, capacity);
      caches->prefix->clear();
      out.prefix = model.forward(prefix, 1, shared, *caches->prefix, true);
      broadcast_prefix(*caches->prefix, cache, config.num_layers, shared);
    } else {
      cache.clear();
    }
    out.rows = model.forward(tokens, rows, length, cache);
    return out;
  };
}

// On any LogitsSource (a model on a GPU): fresh sequences only, so prefixes are not shared.
BatchRunner source_runner(const LogitsSource& source) {
  return [&source](const int32_t*, int64_t shared, const int32_t* tokens, int64_t rows, int64_t length, int64_t) {
    check(shared == 0, "score_requests: a LogitsSource cannot share prefixes");
    return BatchLogits{Tensor(), source.windows(tokens, rows, length)};
  };
}

std::string excerpt(std::string_view text) {
  std::string shown;
  for (char c : text.substr(0, 60)) shown += c == '\n' ? std::string("\\n") : std::string(1, c);
  return shown;
}
}  // namespace

TokenizedRequest tokenize_request(const Tokenizer& tokenizer, const LoglikelihoodRequest& request) {
  const size_t kept = request.context.find_last_not_of(" \t\n\r\f\v");
  const size_t context_end = kept == std::string::npos ? 0 : kept + 1;
  const std::string context = request.context.substr(0, context_end);
  const std::string continuation = request.context.substr(context_end) + request.continuation;
  check(!context.empty(), "a log-likelihood request needs a non-empty context (continuation \"{}\")",
        excerpt(continuation));
  TokenizedRequest result;
  result.context = tokenizer.encode(context, tokenizer.add_bos());
  const std::vector<int32_t> whole = tokenizer.encode(context + continuation, tokenizer.add_bos());
  check(whole.size() > result.context.size(), "the continuation \"{}\" adds no tokens to its context",
        excerpt(continuation));
  result.continuation.assign(whole.begin() + static_cast<ptrdiff_t>(result.context.size()), whole.end());
  return result;
}

namespace {
std::vector<LoglikelihoodScore> score_with(const BatchRunner& run, bool share_prefixes, int64_t vocab,
                                           int64_t max_positions, const Tokenizer& tokenizer,
                                           const std::vector<LoglikelihoodRequest>& requests,
                                           const ScoringOptions& options,
                                           const std::function<void(int64_t, int64_t)>& progress) {
  check(options.batch >= 1, "--batch must be at least 1, got {}", options.batch);
  const int64_t count = static_cast<int64_t>(requests.size());
  std::vector<LoglikelihoodScore> scores(requests.size());
  if (count == 0) return scores;
  if (max_positions <= 0) max_positions = INT32_MAX;
  std::vector<Sequence> sequences;
  for (const LoglikelihoodRequest& request : requests)
    sequences.push_back(make_sequence(tokenize_request(tokenizer, request), max_positions));

  int64_t capacity = 0;
  for (const Sequence& s : sequences) capacity = std::max(capacity, static_cast<int64_t>(s.input.size()));
  int64_t done = 0;
  for (const Batch& batch : plan_batches(sequences, options.batch, share_prefixes)) {
    const int64_t rows = static_cast<int64_t>(batch.rows.size()), shared = batch.shared;
    const int64_t length = static_cast<int64_t>(sequences[batch.rows[0]].input.size()) - shared;
    std::vector<int32_t> tokens(rows * length, 0);  // right padding: any valid id
    struct Target {
      const float* logits;  // set once the logits exist
      int64_t row, request;  // row in the suffix logits (-1: the prefix's last position)
      int32_t token;
    };
    std::vector<Target> targets;
    for (int64_t b = 0; b < rows; ++b) {
      const Sequence& s = sequences[batch.rows[b]];
      std::copy(s.input.begin() + shared, s.input.end(), tokens.begin() + b * length);
      for (size_t t = 0; t < s.targets.size(); ++t) {
        const int64_t position = static_cast<int64_t>(s.first_target() + t);
        targets.push_back({nullptr, position < shared ? -1 : b * length + position - shared, batch.rows[b],
                           s.targets[t]});
      }
    }
    const BatchLogits logits =
        run(sequences[batch.rows[0]].input.data(), shared, tokens.data(), rows, length, capacity);
    for (Target& target : targets)
      target.logits = target.row < 0 ? logits.prefix.data<float>() : logits.rows.data<float>() + target.row * vocab;
    std::vector<double> log_probability(targets.size());
    std::vector<char> is_top(targets.size());
    parallel_for(static_cast<int64_t>(targets.size()), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float* row = targets[i].logits;
        log_probability[i] = -negative_log_likelihood(row, vocab, targets[i].token);
        is_top[i] = std::max_element(row, row + vocab) - row == targets[i].token;
      }
    });
    for (int64_t request : batch.rows) scores[request].greedy = true;
    for (size_t i = 0; i < targets.size(); ++i) {
      LoglikelihoodScore& score = scores[targets[i].request];
      score.loglikelihood += log_probability[i];
      score.greedy = score.greedy && is_top[i];
    }
    done += rows;
    if (progress) progress(done, count);
  }
  return scores;
}
}  // namespace

std::vector<LoglikelihoodScore> score_requests(const Model& model, const Tokenizer& tokenizer,
                                               const std::vector<LoglikelihoodRequest>& requests,
                                               const ScoringOptions& options,
                                               const std::function<void(int64_t, int64_t)>& progress) {
  const ModelConfig& config = model.config();
  return score_with(cpu_runner(model), true, config.vocab_size, config.max_positions, tokenizer, requests, options,
                    progress);
}

std::vector<LoglikelihoodScore> score_requests(const LogitsSource& model, const Tokenizer& tokenizer,
                                               const std::vector<LoglikelihoodRequest>& requests,
                                               const ScoringOptions& options,
                                               const std::function<void(int64_t, int64_t)>& progress) {
  return score_with(source_runner(model), false, model.vocab, model.max_positions, tokenizer, requests, options,
                    progress);
}

}  // namespace fq
