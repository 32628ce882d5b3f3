#include "backends/cuda/device_linear.h"

#include <cstring>

#include "backends/cuda/autotune.h"
#include "backends/cuda/device_profile.h"
#include "backends/cuda/elementwise.h"
#include "backends/cuda/gemm.h"
#include "backends/cuda/int4_codes.h"
#include "backends/cuda/int_gemm.h"
#include "fq/error.h"
#include "fq/quant/quantize.h"

namespace fq::FQ_CUDA_NS {

DeviceBuffer upload_halves(const std::vector<float>& values) {
  std::vector<uint16_t> halves(values.size());
  convert_f32_to_f16(values.data(), halves.data(), static_cast<int64_t>(values.size()));
  return upload<uint16_t>(halves);
}

namespace {
// The integer GEMMs step through k in blocks of 64.
constexpr int64_t kFlatAlign = 64;

DeviceBuffer upload_floats(const std::vector<float>& values) { return upload<float>(values); }

// Half-precision copy of a float tensor [rows, cols] (f32 or bf16).
DeviceBuffer upload_half(const Tensor& weight) {
  const Tensor source = weight.contiguous();
  std::vector<float> values(source.numel());
  if (source.dtype() == DType::bf16)
    convert_bf16_to_f32(source.data<uint16_t>(), values.data(), source.numel());
  else
    std::memcpy(values.data(), source.data<float>(), values.size() * sizeof(float));
  return upload_halves(values);
}

// The epilogue of a GEMM that cannot fuse it (cuBLASLt's), on y [rows, out] once the GEMM has written it.
void run_epilogue(__half* y, int64_t rows, int64_t out, const Epilogue& epilogue) {
  if (epilogue.activate) {
    const DeviceScope section("activation");
    activate(y, rows * out, epilogue.activation);
  }
  if (epilogue.residual) {
    const DeviceScope section("residual add");
    add_residual(epilogue.residual, y, rows * out);
  }
}

std::vector<float> bias_values(const Tensor& bias) {
  if (!bias.defined()) return {};
  const Tensor source = bias.contiguous();
  return {source.data<float>(), source.data<float>() + source.numel()};
}
}  // namespace

HalfLinear::HalfLinear(std::shared_ptr<const DeviceBuffer> weight, DeviceBuffer bias, int64_t out, int64_t in)
    : weight_(std::move(weight)), bias_(std::move(bias)), out_(out), in_(in) {}

void HalfLinear::forward(const __half* x, int64_t rows, __half* y, LinearWorkspace&, const Epilogue& epilogue) const {
  {
    const DeviceScope section("fp16 gemm");
    gemm_f16(x, weight_->as<const __half>(), bias_.empty() ? nullptr : bias_.as<const __half>(), y, rows, out_, in_);
  }
  run_epilogue(y, rows, out_, epilogue);
}

Fp8Linear::Fp8Linear(DeviceBuffer weights, float weight_scale, float input_scale, DeviceBuffer bias, int64_t out,
                     int64_t in)
    : weights_(std::move(weights)), bias_(std::move(bias)), out_(out), in_(in) {
  check(fp8_supported(), "FP8 e4m3 Linears need compute capability 8.9 or above (Ada, Hopper)");
  check(out % 16 == 0 && in % 16 == 0, "FP8 Linear: {} x {} is not a multiple of 16 both ways", out, in);
  const std::vector<float> scales{input_scale, weight_scale};
  scales_ = upload_floats(scales);
}

void Fp8Linear::forward(const __half* x, int64_t rows, __half* y, LinearWorkspace& ws,
                        const Epilogue& epilogue) const {
  {
    const DeviceScope section("fp8 quantize + gemm");
    LinearWorkspace::reserve(ws.codes, size_t(rows) * in_);
    quantize_e4m3(x, rows * in_, scales_.as<const float>(), ws.codes.as<uint8_t>());
    gemm_e4m3(ws.codes.as<const uint8_t>(), weights_.as<const uint8_t>(), scales_.as<const float>(),
              scales_.as<const float>() + 1, bias_.empty() ? nullptr : bias_.as<const __half>(), y, rows, out_, in_);
  }
  run_epilogue(y, rows, out_, epilogue);
}

Int4Product preferred_int4_product() {
  static const int capability = device_info().compute_capability;
  return capability >= 80 && capability < 90 ? Int4Product::native_s4 : Int4Product::unpack_to_int8;
}

QuantizedDeviceLinear::QuantizedDeviceLinear(QuantizedWeights w, Int4Product int4_product, Int8Product int8_product)
    : plan_(upload_plan(w.plan)),
      in_(w.plan.in_features),
      flat_(w.plan.flat_features()),
      out_(w.out_features),
      activation_(w.activation),
      qmax_(quant_max(w.activation.bits)),
      weight_bits_(w.weight_bits),
      weights_(std::move(w.weights)),
      weight_scales_(upload_floats(w.weight_scales)),
      bias_(upload_floats(w.bias)),
      per_column_scales_(w.weight_scales.size() > 1),
      native_s4_(int4_product == Int4Product::native_s4 && w.weight_bits == 4 && w.activation.bits == 4),
      int8_product_(int8_product) {
  check(flat_ % kFlatAlign == 0, "device Linear: flattened width {} is not a multiple of {}", flat_, kFlatAlign);
  check(weight_bits_ == 8 || weight_bits_ == 4, "device Linear: {}-bit weights (expected 8 or 4)", weight_bits_);
  if (!activation_.dynamic) {
    const std::vector<float> step{activation_.step};
    static_step_ = upload_floats(step);
  }
}

size_t QuantizedDeviceLinear::weight_bytes() const {
  return weights_.bytes() + weight_scales_.bytes() + bias_.bytes() + 3 * flat_ * sizeof(int32_t);
}

void QuantizedDeviceLinear::quantize(const QuantizerInput& x, int64_t rows, LinearWorkspace& ws) const {
  const DeviceScope section(x.up ? "activation+flatten+quantize" : "flatten+quantize");
  LinearWorkspace::reserve(ws.codes, size_t(rows) * flat_);
  ws.code_steps = static_step_.as<const float>();
  if (activation_.dynamic) {
    // Per token: one maximum (and step) per row; per tensor: one for the whole input.
    LinearWorkspace::reserve(ws.maxima, size_t(rows) * sizeof(float));
    LinearWorkspace::reserve(ws.steps, size_t(rows) * sizeof(float));
    float* maxima = ws.maxima.as<float>();
    flattened_max(x, rows, plan_.view, activation_.per_token ? maxima : nullptr,
                  activation_.per_token ? nullptr : maxima);
    dynamic_steps(maxima, activation_.per_token ? rows : 1, qmax_, ws.steps.as<float>());
    ws.code_steps = ws.steps.as<const float>();
  }
  flatten_quantize(x, rows, plan_.view, qmax_, activation_.stagger, ws.code_steps, activation_.per_token,
                   ws.codes.as<int8_t>());
}

bool QuantizedDeviceLinear::quantize_normed(const float* x, int64_t rows, const NormParameters& norm,
                                            LinearWorkspace& ws) const {
  if ((activation_.dynamic && !activation_.per_token) || !norm_fusable(in_)) return false;
  const DeviceScope section("norm+flatten+quantize");
  LinearWorkspace::reserve(ws.codes, size_t(rows) * flat_);
  if (activation_.dynamic) {
    LinearWorkspace::reserve(ws.steps, size_t(rows) * sizeof(float));
    norm_flatten_quantize(x, rows, norm, plan_.view, qmax_, activation_.stagger, nullptr, ws.steps.as<float>(),
                          ws.codes.as<int8_t>());
    ws.code_steps = ws.steps.as<const float>();
  } else {
    norm_flatten_quantize(x, rows, norm, plan_.view, qmax_, activation_.stagger, static_step_.as<const float>(),
                          nullptr, ws.codes.as<int8_t>());
    ws.code_steps = static_step_.as<const float>();
  }
  return true;
}

void QuantizedDeviceLinear::multiply(int64_t rows, __half* y, LinearWorkspace& ws, const Epilogue& epilogue) const {
  const float* scales = weight_scales_.as<const float>();
  const float* bias = bias_.empty() ? nullptr : bias_.as<const float>();
  if (weight_bits_ == 8) {
    Int8Product product = int8_product_;
    if (product == Int8Product::fastest) {
      static const std::string wgmma_names[] = {"cublaslt int8 gemm + rescale", "fused int8 gemm (wgmma)"};
      static const std::string mma_sync_names[] = {"cublaslt int8 gemm + rescale", "fused int8 gemm (mma.sync)"};
      const auto& names =
          automatic_int_gemm_kernel(rows, 8) == IntGemmKernel::wgmma ? wgmma_names : mma_sync_names;
      // Timed without the residual add, which running every candidate would repeat; y is written instead.
      const Epilogue timed{.activate = epilogue.activate, .activation = epilogue.activation};
      const std::string key = fmt::format("int8 product rows={} out={} k={}{}{}", rows, out_, flat_,
                                          activation_.per_token ? " per-token" : "",
                                          per_column_scales_ ? " per-channel" : "");
      product = fastest(key, names, [&](size_t i) {
                  multiply_int8(i == 0 ? Int8Product::cublaslt : Int8Product::fused, rows, y, ws, timed);
                }) == 0
                    ? Int8Product::cublaslt
                    : Int8Product::fused;
    }
    multiply_int8(product, rows, y, ws, epilogue);
  } else if (native_s4_) {
    LinearWorkspace::reserve(ws.packed_codes, size_t(rows) * flat_ / 2);
    const DeviceScope section("int4 gemm (native s4, rescale fused)");
    pack_codes_int4(ws.codes.as<const int8_t>(), rows * flat_, ws.packed_codes.as<uint8_t>());
    int4_gemm_s4mma(ws.packed_codes.as<const uint8_t>(), rows, flat_, weights_.as<const uint8_t>(), out_,
                    ws.code_steps, activation_.per_token, scales, per_column_scales_, bias, y, epilogue);
  } else {
    // W4A8: int4 weights unpacked inside the GEMM, the rescale fused.
    const DeviceScope section("int4-weight gemm (rescale fused)");
    int_gemm_rescale(ws.codes.as<const int8_t>(), rows, flat_, weights_.data(), 4, out_, ws.code_steps,
                     activation_.per_token, scales, per_column_scales_, bias, y, epilogue);
  }
}

void QuantizedDeviceLinear::multiply_int8(Int8Product product, int64_t rows, __half* y, LinearWorkspace& ws,
                                          const Epilogue& epilogue) const {
  const float* scales = weight_scales_.as<const float>();
  const float* bias = bias_.empty() ? nullptr : bias_.as<const float>();
  if (product == Int8Product::fused) {
    const DeviceScope section("int8 gemm (rescale fused)");
    int_gemm_rescale(ws.codes.as<const int8_t>(), rows, flat_, weights_.data(), 8, out_, ws.code_steps,
                     activation_.per_token, scales, per_column_scales_, bias, y, epilogue);
    return;
  }
  LinearWorkspace::reserve(ws.accumulators, size_t(rows) * out_ * sizeof(int32_t));
  {
    const DeviceScope section("int8 gemm");
    gemm_s8(ws.codes.as<const int8_t>(), weights_.as<const int8_t>(), ws.accumulators.as<int32_t>(), rows, out_,
            flat_);
  }
  const DeviceScope section("int rescale");
  rescale(ws.accumulators.as<const int32_t>(), rows, out_, ws.code_steps, activation_.per_token, scales,
          per_column_scales_, bias, y, epilogue);
}

void QuantizedDeviceLinear::forward(const __half* x, int64_t rows, __half* y, LinearWorkspace& ws,
                                    const Epilogue& epilogue) const {
  quantize(x, rows, ws);
  multiply(rows, y, ws, epilogue);
}

QuantizedWeights quantized_weights(const QuantizedLinear& linear) {
  QuantizedWeights out;
  out.plan = linear.plan();
  out.activation = linear.activation();
  out.weight_bits = linear.weight_bits();
  out.out_features = linear.out_features();
  out.weight_scales = linear.weight_scales();
  out.bias = bias_values(linear.bias());
  Tensor codes = linear.weight_codes();
  // Pad the flat width with zero columns (padding codes are 0 on the activation side too).
  const int64_t flat = out.plan.flat_features(), padded = (flat + kFlatAlign - 1) / kFlatAlign * kFlatAlign;
  if (padded != flat) {
    Tensor plain = out.weight_bits == 4 ? unpack_int4(codes) : codes.contiguous();
    Tensor wide = Tensor::zeros(DType::i8, {out.out_features, padded});
    for (int64_t n = 0; n < out.out_features; ++n)
      std::memcpy(wide.data<int8_t>() + n * padded, plain.data<int8_t>() + n * flat, flat);
    codes = out.weight_bits == 4 ? pack_int4(wide) : wide;
    out.plan.source.resize(padded, -1);
    out.plan.copy_index.resize(padded, 0);
  }
  const Tensor contiguous = codes.contiguous();
  out.weights = DeviceBuffer(contiguous.nbytes());
  copy_to_device(out.weights.data(), contiguous.raw(), contiguous.nbytes());
  return out;
}

std::unique_ptr<DeviceLinear> upload_linear(const Linear& linear) {
  if (const auto* quantized = dynamic_cast<const QuantizedLinear*>(&linear))
    return std::make_unique<QuantizedDeviceLinear>(quantized_weights(*quantized));
  if (const auto* floating = dynamic_cast<const FloatLinear*>(&linear)) {
    auto weight = std::make_shared<const DeviceBuffer>(upload_half(floating->weight()));
    return std::make_unique<HalfLinear>(std::move(weight), upload_halves(bias_values(floating->bias())),
                                        floating->out_features(), floating->in_features());
  }
  fail("the CUDA backend has no device form of a '{}' Linear", linear.kind());
}

void forward_same_input(std::span<const DeviceLinear* const> linears, bool share_input, const __half* x, int64_t rows,
                        std::span<__half* const> ys, LinearWorkspace& ws, const Epilogue& epilogue) {
  const auto* first = dynamic_cast<const QuantizedDeviceLinear*>(linears[0]);
  if (share_input && first) {
    first->quantize(x, rows, ws);
    for (size_t i = 0; i < linears.size(); ++i)
      static_cast<const QuantizedDeviceLinear*>(linears[i])->multiply(rows, ys[i], ws, epilogue);
    return;
  }
  for (size_t i = 0; i < linears.size(); ++i) linears[i]->forward(x, rows, ys[i], ws, epilogue);
}

void forward_normed(std::span<const DeviceLinear* const> linears, bool share_input, const float* x, int64_t rows,
                    const NormParameters& norm, __half* normed, std::span<__half* const> ys, LinearWorkspace& ws,
                    const Epilogue& epilogue) {
  const auto* first = dynamic_cast<const QuantizedDeviceLinear*>(linears[0]);
  if (first && (share_input || linears.size() == 1) && first->quantize_normed(x, rows, norm, ws)) {
    for (size_t i = 0; i < linears.size(); ++i)
      static_cast<const QuantizedDeviceLinear*>(linears[i])->multiply(rows, ys[i], ws, epilogue);
    return;
  }
  {
    const DeviceScope section("norm");
    const int64_t width = linears[0]->in_features();
    if (norm.center)
      layer_norm(x, normed, rows, width, norm.weight, norm.bias, norm.eps);
    else
      rms_norm(x, normed, rows, width, norm.weight, norm.eps);
  }
  forward_same_input(linears, share_input, normed, rows, ys, ws, epilogue);
}

}  // namespace fq::FQ_CUDA_NS
