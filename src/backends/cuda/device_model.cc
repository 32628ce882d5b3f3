// The decoder graph of src/model/decoder.cc on the device: f32 residual stream, f16 Linear inputs and
// outputs, f16 KV cache. The order of operations is the CPU graph's, so the two agree to f16 rounding.
#include "backends/cuda/device_model.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "backends/cuda/attention.h"
#include "backends/cuda/device.h"
#include "backends/cuda/device_linear.h"
#include "backends/cuda/device_profile.h"
#include "backends/cuda/elementwise.h"
#include "backends/cuda/random_fill.h"
#include "fq/error.h"
#include "fq/quant/quantize.h"
#include "fq/quant/recipe.h"
#include "ops/ops.h"

namespace fq::FQ_CUDA_NS {

namespace {

struct DeviceNorm {
  DeviceBuffer weight, bias;  // f32 [hidden]; bias empty for RMSNorm
};

struct DeviceLayer {
  DeviceNorm attn_norm, mlp_norm;
  std::unique_ptr<DeviceLinear> q, k, v, o, gate, up, down;
  bool qkv_share_input = false, gate_up_share_input = false;
};

// Activation buffers of one forward pass, grown to the largest row count seen.
struct Activations {
  int64_t rows = 0;
  DeviceBuffer tokens, residual, normed, q, k, v, mixed, branch, gate, up, logits_half, logits;
};

DeviceBuffer upload_floats(const Tensor& tensor) {
  if (!tensor.defined()) return {};
  const Tensor source = tensor.contiguous();
  return upload<float>({source.data<float>(), static_cast<size_t>(source.numel())});
}

// Whether two host Linears quantize their (shared) input identically, so one set of codes serves both.
bool share_input(std::initializer_list<const Linear*> linears) {
  const auto* first = dynamic_cast<const QuantizedLinear*>(*linears.begin());
  if (!first) return false;
  for (const Linear* linear : linears) {
    const auto* quantized = dynamic_cast<const QuantizedLinear*>(linear);
    if (!quantized || !first->shares_input_quantization(*quantized)) return false;
  }
  return true;
}

class DeviceModel final : public GpuModel {
 public:
  explicit DeviceModel(const ModelConfig& config) : config_(config) {
    check(config.pre_norm, "the CUDA backend runs pre-norm graphs only; this {} model uses post-LayerNorm blocks",
          config.model_type);
    check(config.embed_dim == config.hidden_size,
          "the CUDA backend does not run project_in/project_out (embedding width {} vs hidden {})", config.embed_dim,
          config.hidden_size);
    check(config.head_dim <= 128 && config.head_dim % 2 == 0, "the CUDA backend needs an even head_dim <= 128, got {}",
          config.head_dim);
  }

  const ModelConfig& config() const override { return config_; }
  std::string device_name() const override {
    const DeviceInfo info = device_info();
    return info.compute_capability ? fmt::format("{} (sm_{})", info.name, info.compute_capability) : info.name;
  }

  void reset(int64_t batch, int64_t capacity) override {
    check(batch >= 1 && capacity >= 1, "reset: batch {} and capacity {} must be positive", batch, capacity);
    check(config_.use_rope || capacity <= config_.max_positions,
          "reset: {} positions exceed the model's {} learned positions", capacity, config_.max_positions);
    length_ = 0;
    if (batch == batch_ && capacity == capacity_) return;
    batch_ = batch;
    capacity_ = capacity;
    keys_.clear();
    values_.clear();
    const size_t bytes = size_t(batch) * capacity * config_.num_kv_heads * config_.head_dim * sizeof(uint16_t);
    for (size_t i = 0; i < layers_.size(); ++i) {
      keys_.emplace_back(bytes);
      values_.emplace_back(bytes);
    }
    if (config_.use_rope) upload_rotation_tables(capacity);
  }
  int64_t batch() const override { return batch_; }
  int64_t length() const override { return length_; }

  Tensor forward(const int32_t* tokens, int64_t batch, int64_t seq, bool last_only) override {
    const int64_t out_rows = run(tokens, batch, seq, last_only);
    Tensor logits = Tensor::empty(DType::f32, {batch, last_only ? 1 : seq, config_.vocab_size});
    copy_to_host(logits.raw(), act_.logits.data(), size_t(out_rows) * config_.vocab_size * sizeof(float));
    return logits;
  }

  void forward_timed(const int32_t* tokens, int64_t batch, int64_t seq) override {
    run(tokens, batch, seq, true);
    synchronize();
  }

  size_t weight_bytes() const override { return weight_bytes_; }
  size_t peak_memory() const override { return peak_memory_in_use(); }
  void reset_peak_memory() override { FQ_CUDA_NS::reset_peak_memory(); }

  // The graph, filled by the builders below.
  std::shared_ptr<const DeviceBuffer> embedding;  // f16 [vocab, hidden]
  DeviceBuffer positions;                        // f16 [max_positions + offset, hidden], OPT only
  std::vector<DeviceLayer> layers_;
  DeviceNorm final_norm;
  std::unique_ptr<DeviceLinear> head;

  void count_weights() {
    weight_bytes_ = embedding->bytes() + positions.bytes() + final_norm.weight.bytes() + final_norm.bias.bytes();
    for (const DeviceLayer& layer : layers_) {
      for (const DeviceNorm* norm : {&layer.attn_norm, &layer.mlp_norm})
        weight_bytes_ += norm->weight.bytes() + norm->bias.bytes();
      for (const auto* linear : {&layer.q, &layer.k, &layer.v, &layer.o, &layer.gate, &layer.up, &layer.down})
        if (*linear) weight_bytes_ += (*linear)->weight_bytes();
    }
    if (head && !head_tied_to_embedding) weight_bytes_ += head->weight_bytes();
  }
  bool head_tied_to_embedding = false;  // the head reads the embedding's buffer: counted once

 private:
  // The CPU's RoPE tables (ops::rotation_table), so both rotate by the same cos and sin.
  void upload_rotation_tables(int64_t positions) {
    const auto table = ops::rotation_table(positions, config_.head_dim, config_.rope_theta);
    const size_t count = size_t(positions) * (config_.head_dim / 2);
    cosines_ = upload<float>({table->cosines.data(), count});
    sines_ = upload<float>({table->sines.data(), count});
  }

  void grow(int64_t rows) {
    if (rows <= act_.rows) return;
    const ModelConfig& c = config_;
    const int64_t q_width = c.num_heads * c.head_dim, kv_width = c.num_kv_heads * c.head_dim;
    const auto halves = [&](int64_t width) { return DeviceBuffer(size_t(rows) * width * sizeof(uint16_t)); };
    act_ = {};
    act_.rows = rows;
    act_.tokens = DeviceBuffer(size_t(rows) * sizeof(int32_t));
    act_.residual = DeviceBuffer(size_t(rows) * c.hidden_size * sizeof(float));
    act_.normed = halves(c.hidden_size);
    act_.q = halves(q_width);
    act_.k = halves(kv_width);
    act_.v = halves(kv_width);
    act_.mixed = halves(q_width);
    act_.branch = halves(c.hidden_size);
    act_.gate = halves(c.intermediate_size);
    act_.up = halves(c.intermediate_size);
    act_.logits_half = halves(c.vocab_size);
    act_.logits = DeviceBuffer(size_t(rows) * c.vocab_size * sizeof(float));
  }

  NormParameters parameters(const DeviceNorm& norm) const {
    return {norm.weight.as<const float>(), norm.bias.empty() ? nullptr : norm.bias.as<const float>(),
            config_.norm == NormKind::layer_norm, config_.norm_eps};
  }

  void embed_tokens(float* x, int64_t rows, int64_t seq) const {
    const DeviceScope section("embedding");
    const int64_t hidden = config_.hidden_size;
    embed(act_.tokens.as<const int32_t>(), rows, embedding->as<const __half>(), hidden, x);
    if (!positions.empty())
      add_positions(x, rows, seq, length_ + config_.position_offset, positions.as<const __half>(), hidden);
  }

  // x += o(attention(q, k, v)) of attn_norm(x).
  void attention_block(const DeviceLayer& layer, size_t index, float* x, int64_t batch, int64_t seq, int64_t rows) {
    const ModelConfig& c = config_;
    const int64_t start = length_, q_width = c.num_heads * c.head_dim, kv_width = c.num_kv_heads * c.head_dim;
    __half *q = act_.q.as<__half>(), *k = act_.k.as<__half>(), *v = act_.v.as<__half>();
    const DeviceLinear* projections[] = {layer.q.get(), layer.k.get(), layer.v.get()};
    __half* const outputs[] = {q, k, v};
    forward_normed(projections, layer.qkv_share_input, x, rows, parameters(layer.attn_norm), act_.normed.as<__half>(),
                   outputs, workspace_);
    __half* keys = keys_[index].as<__half>();
    __half* values = values_[index].as<__half>();
    {
      const DeviceScope section("rope + kv append");
      if (c.use_rope) {
        rope(q, rows, seq, start, c.num_heads, c.head_dim, q_width, cosines_.as<const float>(),
             sines_.as<const float>());
        rope(k, rows, seq, start, c.num_kv_heads, c.head_dim, kv_width, cosines_.as<const float>(),
             sines_.as<const float>());
      }
      append_kv(k, v, batch, seq, start, c.num_kv_heads, c.head_dim, kv_width, keys, values, capacity_);
    }
    {
      const DeviceScope section("attention");
      attention(q, q_width, keys, values, act_.mixed.as<__half>(), batch, seq, start, capacity_, c.num_heads,
                c.num_kv_heads, c.head_dim);
    }
    layer.o->forward(act_.mixed.as<const __half>(), rows, act_.branch.as<__half>(), workspace_, {.residual = x});
  }

  // x += down(act(gate) · up, or act(up)) of mlp_norm(x).
  void mlp_block(const DeviceLayer& layer, float* x, int64_t rows) {
    const int64_t width = config_.intermediate_size;
    __half* up = act_.up.as<__half>();
    if (layer.gate) {
      __half* gate = act_.gate.as<__half>();
      const DeviceLinear* projections[] = {layer.gate.get(), layer.up.get()};
      __half* const outputs[] = {gate, up};
      forward_normed(projections, layer.gate_up_share_input, x, rows, parameters(layer.mlp_norm),
                     act_.normed.as<__half>(), outputs, workspace_);
      if (const auto* down = dynamic_cast<const QuantizedDeviceLinear*>(layer.down.get())) {
        // act(gate) · up computed inside down's flatten + quantize, in f32 (as on the CPU), never stored.
        down->quantize(QuantizerInput(gate, up, config_.activation), rows, workspace_);
        down->multiply(rows, act_.branch.as<__half>(), workspace_, {.residual = x});
        return;
      }
      const DeviceScope section("activation");
      gated_activate(gate, up, rows * width, config_.activation);
      up = gate;
    } else {
      const DeviceLinear* projection[] = {layer.up.get()};
      __half* const output[] = {up};
      forward_normed(projection, false, x, rows, parameters(layer.mlp_norm), act_.normed.as<__half>(), output,
                     workspace_, {.activate = true, .activation = config_.activation});
    }
    layer.down->forward(up, rows, act_.branch.as<__half>(), workspace_, {.residual = x});
  }

  // The forward pass up to f32 logits in act_.logits; returns their row count.
  int64_t run(const int32_t* tokens, int64_t batch, int64_t seq, bool last_only) {
    const ModelConfig& c = config_;
    check(batch_ > 0, "forward: reset() the model for a batch and capacity first");
    check(batch == batch_, "forward: batch {} does not match the KV cache's batch {}", batch, batch_);
    check(seq > 0 && length_ + seq <= capacity_, "forward: {} + {} positions exceed the KV cache capacity {}", length_,
          seq, capacity_);
    const int64_t rows = batch * seq, hidden = c.hidden_size;
    for (int64_t r = 0; r < rows; ++r)
      check(tokens[r] >= 0 && tokens[r] < c.vocab_size, "token id {} is outside the vocabulary [0, {})", tokens[r],
            c.vocab_size);
    grow(rows);
    copy_to_device(act_.tokens.data(), tokens, size_t(rows) * sizeof(int32_t));
    float* x = act_.residual.as<float>();
    embed_tokens(x, rows, seq);

    for (size_t i = 0; i < layers_.size(); ++i) {
      const DeviceLayer& layer = layers_[i];
      attention_block(layer, i, x, batch, seq, rows);
      mlp_block(layer, x, rows);
    }
    length_ += seq;

    int64_t out_rows = rows;
    if (last_only) {
      // The last position of each sequence, gathered into the first `batch` rows.
      for (int64_t b = 0; b < batch; ++b)
        copy_on_device(x + b * hidden, x + ((b + 1) * seq - 1) * hidden, hidden * sizeof(float));
      out_rows = batch;
    }
    const DeviceLinear* projection[] = {head.get()};
    __half* const output[] = {act_.logits_half.as<__half>()};
    forward_normed(projection, false, x, out_rows, parameters(final_norm), act_.normed.as<__half>(), output, workspace_);
    const DeviceScope section("logits to f32");
    convert_to_float(act_.logits_half.as<const __half>(), act_.logits.as<float>(), out_rows * c.vocab_size);
    return out_rows;
  }

  ModelConfig config_;
  int64_t batch_ = 0, capacity_ = 0, length_ = 0;
  std::vector<DeviceBuffer> keys_, values_;
  DeviceBuffer cosines_, sines_;
  Activations act_;
  LinearWorkspace workspace_;
  size_t weight_bytes_ = 0;
};

DeviceNorm upload_norm(const Norm& norm) { return {upload_floats(norm.weight), upload_floats(norm.bias)}; }

}  // namespace

std::unique_ptr<GpuModel> upload_model(const Model& model) {
  const ModelConfig& c = model.config();
  check(model.final_norm.weight.defined(), "the CUDA backend needs a final norm (pre-norm graphs only)");
  auto device = std::make_unique<DeviceModel>(c);

  std::vector<float> rows(size_t(c.vocab_size) * c.embed_dim);
  for (int64_t id = 0; id < c.vocab_size; ++id) model.token_embedding.lookup(id, rows.data() + id * c.embed_dim);
  device->embedding = std::make_shared<const DeviceBuffer>(upload_halves(rows));
  if (model.position_embedding.defined()) {
    const Tensor table = model.position_embedding.contiguous();
    device->positions = upload_halves({table.data<float>(), table.data<float>() + table.numel()});
  }
  for (const DecoderLayer& layer : model.layers) {
    DeviceLayer& out = device->layers_.emplace_back();
    out.attn_norm = upload_norm(layer.attn_norm);
    out.mlp_norm = upload_norm(layer.mlp_norm);
    for (auto [from, to] : {std::pair{&layer.q, &out.q}, {&layer.k, &out.k}, {&layer.v, &out.v}, {&layer.o, &out.o},
                            {&layer.gate, &out.gate}, {&layer.up, &out.up}, {&layer.down, &out.down}})
      if (*from) *to = upload_linear(**from);
    out.qkv_share_input = share_input({layer.q.get(), layer.k.get(), layer.v.get()});
    out.gate_up_share_input = layer.gate && share_input({layer.gate.get(), layer.up.get()});
  }
  device->final_norm = upload_norm(model.final_norm);
  device->head = upload_linear(*model.lm_head);
  device->count_weights();
  return device;
}

namespace {

// Random weights of one Linear in `format`'s precision for its slot.
std::unique_ptr<DeviceLinear> random_linear(int64_t out, int64_t in, int bits, bool bias, uint64_t seed) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(in));
  std::vector<float> bias_values(bias ? out : 0, 0.01f);
  if (bits == 0) {  // FP8 e4m3: random bytes with the NaN encodings (0x7f, 0xff) cleared
    DeviceBuffer weight(size_t(out) * in);
    fill_random_bytes(weight.data(), weight.bytes(), seed);
    clear_e4m3_nans(weight.as<uint8_t>(), weight.bytes());
    return std::make_unique<Fp8Linear>(std::move(weight), scale / 448.f, 4.0f / 448.f, upload_halves(bias_values), out,
                                       in);
  }
  if (bits == 16) {
    DeviceBuffer weight(size_t(out) * in * sizeof(uint16_t));
    fill_random_half(weight.as<__half>(), size_t(out) * in, seed, scale);
    return std::make_unique<HalfLinear>(std::make_shared<const DeviceBuffer>(std::move(weight)),
                                        upload_halves(bias_values), out, in);
  }
  // A typical FlattenQuant plan: a few outlier channels split in 2–4 copies, the width padded to 64.
  std::vector<int32_t> copies(in, 1);
  for (int64_t j = 0; j < in; j += 512) copies[j] = 2 + int32_t(j / 512 % 3);
  QuantizedWeights w;
  w.plan = FlattenPlan::from_copies(std::move(copies), 4.0f, 64);
  w.activation.bits = bits;
  w.activation.step = 4.0f / quant_max(bits);
  w.weight_bits = bits;
  w.out_features = out;
  w.weight_scales.assign(out, scale / quant_max(bits));
  w.bias = bias_values;
  const size_t bytes = size_t(out) * w.plan.flat_features() * bits / 8;
  w.weights = DeviceBuffer(bytes);
  fill_random_bytes(w.weights.data(), bytes, seed);
  return std::make_unique<QuantizedDeviceLinear>(std::move(w));
}

DeviceNorm random_norm(const ModelConfig& c) {
  const std::vector<float> ones(c.hidden_size, 1.0f), zeros(c.hidden_size, 0.0f);
  return {upload<float>(ones), c.norm == NormKind::layer_norm ? upload<float>(zeros) : DeviceBuffer()};
}

}  // namespace

MixedPlan plan_mixed(const ModelConfig& c) {
  // Multiply-adds per token of one layer's Linears.
  const double q_width = double(c.num_heads * c.head_dim), kv_width = double(c.num_kv_heads * c.head_dim);
  const double hidden = double(c.hidden_size), layers = double(c.num_layers);
  const double mlp_inputs = (c.gated_mlp ? 2 : 1) * double(c.intermediate_size) * hidden;
  const double down = double(c.intermediate_size) * hidden;
  const double total = layers * ((q_width + 2 * kv_width) * hidden + q_width * hidden + mlp_inputs + down);
  // Every MLP input projection, then down projections from the first layer on until the share is reached (the
  // last one may overshoot, as in plan_precision).
  MixedPlan mixed{.down_in_4_bits = std::vector<bool>(c.num_layers, false)};
  double low = layers * mlp_inputs;
  for (int64_t i = 0; i < c.num_layers && low < RecipeOptions{}.int4_share * total; ++i) {
    mixed.down_in_4_bits[i] = true;
    low += down;
  }
  mixed.int4_share = low / total;
  return mixed;
}

std::unique_ptr<GpuModel> random_model(const ModelConfig& c, RandomFormat format, uint64_t seed) {
  auto device = std::make_unique<DeviceModel>(c);
  const bool bias = c.model_type == "opt";
  // Bits of each slot's format; 0 stands for FP8 e4m3.
  const int base_bits = format == RandomFormat::fp16 ? 16
                        : format == RandomFormat::w4a8 ? 4
                        : format == RandomFormat::fp8  ? 0
                                                       : 8;
  const bool mixed = format == RandomFormat::mixed;
  const int mlp_in_bits = mixed ? 4 : base_bits;
  const std::vector<bool> down_in_4_bits = mixed ? plan_mixed(c).down_in_4_bits : std::vector<bool>(c.num_layers);

  DeviceBuffer embedding(size_t(c.vocab_size) * c.hidden_size * sizeof(uint16_t));
  fill_random_half(embedding.as<__half>(), size_t(c.vocab_size) * c.hidden_size, seed++, 0.02f);
  device->embedding = std::make_shared<const DeviceBuffer>(std::move(embedding));
  if (!c.use_rope) {
    const size_t count = size_t(c.max_positions + c.position_offset) * c.hidden_size;
    device->positions = DeviceBuffer(count * sizeof(uint16_t));
    fill_random_half(device->positions.as<__half>(), count, seed++, 0.02f);
  }
  const int64_t q_width = c.num_heads * c.head_dim, kv_width = c.num_kv_heads * c.head_dim;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    DeviceLayer& layer = device->layers_.emplace_back();
    layer.attn_norm = random_norm(c);
    layer.mlp_norm = random_norm(c);
    layer.q = random_linear(q_width, c.hidden_size, base_bits, bias, seed++);
    layer.k = random_linear(kv_width, c.hidden_size, base_bits, bias, seed++);
    layer.v = random_linear(kv_width, c.hidden_size, base_bits, bias, seed++);
    layer.o = random_linear(c.hidden_size, q_width, base_bits, bias, seed++);
    if (c.gated_mlp) layer.gate = random_linear(c.intermediate_size, c.hidden_size, mlp_in_bits, bias, seed++);
    layer.up = random_linear(c.intermediate_size, c.hidden_size, mlp_in_bits, bias, seed++);
    layer.down = random_linear(c.hidden_size, c.intermediate_size, down_in_4_bits[i] ? 4 : base_bits, bias, seed++);
    // The random plans of one input width are identical, so q/k/v (and gate/up) share their codes.
    layer.qkv_share_input = base_bits != 16 && base_bits != 0;
    layer.gate_up_share_input = mlp_in_bits != 16 && mlp_in_bits != 0;
  }
  device->final_norm = random_norm(c);
  // The head stays FP16 (as `fq quantize` leaves it by default), tied to the embedding where the model ties it.
  if (c.tied_embeddings) {
    device->head = std::make_unique<HalfLinear>(device->embedding, DeviceBuffer(), c.vocab_size, c.hidden_size);
    device->head_tied_to_embedding = true;
  } else {
    device->head = random_linear(c.vocab_size, c.hidden_size, 16, false, seed++);
  }
  device->count_weights();
  return device;
}

}  // namespace fq::FQ_CUDA_NS
