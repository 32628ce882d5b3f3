// Linears reading one input (q/k/v, gate/up): the quantizer gives them one flatten plan and step, and
// forward_same_input() quantizes that input once with exactly the results of running them one by one.
#include <gtest/gtest.h>

#include <cstring>

#include "fq/checkpoint.h"
#include "fq/quant.h"
#include "quant_test_util.h"
#include "test_util.h"

namespace fq {
namespace {

std::vector<int32_t> tokens(int64_t length, int64_t seed) {
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < length; ++t) ids.push_back(static_cast<int32_t>((t * 37 + seed * 11 + 5) % 320));
  return ids;
}

const QuantizedLinear& quantized(const std::unique_ptr<Linear>& linear) {
  const auto* layer = dynamic_cast<const QuantizedLinear*>(linear.get());
  if (!layer) throw std::runtime_error("not a quantized Linear");
  return *layer;
}

Model quantized_fixture(bool shared_input) {
  Model model = Model::from_checkpoint(load_checkpoint(test::fixture("llama_gqa")), DType::f32);
  const Calibration calibration = calibrate(model, {tokens(64, 1), tokens(40, 2)});
  quantize_model(model, calibration, [](const std::string& slot) -> std::optional<LinearQuantConfig> {
    if (slot == "lm_head") return std::nullopt;
    return LinearQuantConfig{};
  }, shared_input);
  return model;
}

TEST(SharedInput, GroupsGetOnePlanAndStep) {
  const Model model = quantized_fixture(true);
  for (const DecoderLayer& layer : model.layers) {
    const QuantizedLinear &q = quantized(layer.q), &k = quantized(layer.k), &v = quantized(layer.v);
    EXPECT_TRUE(q.shares_input_quantization(k) && q.shares_input_quantization(v));
    EXPECT_EQ(q.plan().threshold, v.plan().threshold);
    EXPECT_TRUE(quantized(layer.gate).shares_input_quantization(quantized(layer.up)));
    // Other inputs, other plans.
    EXPECT_FALSE(q.shares_input_quantization(quantized(layer.down)));
  }
}

TEST(SharedInput, OneQuantizationGivesTheSameOutputsAsSeparateCalls) {
  const Model model = quantized_fixture(true);
  const DecoderLayer& layer = model.layers[0];
  for (int64_t rows : {1, 7, 40}) {
    const Tensor x = test::outlier_activations(rows, layer.q->in_features(), 5, 2);
    const Linear* group[] = {layer.q.get(), layer.k.get(), layer.v.get()};
    Tensor together[3];
    forward_same_input(group, x, together);
    for (int i = 0; i < 3; ++i) {
      Tensor alone = Tensor::empty(DType::f32, {rows, group[i]->out_features()});
      group[i]->forward(x, alone);
      ASSERT_EQ(together[i].shape(), alone.shape());
      EXPECT_EQ(std::memcmp(together[i].raw(), alone.raw(), alone.nbytes()), 0) << "projection " << i << " rows " << rows;
    }
  }
}

TEST(SharedInput, SeparateThresholdsStillRunCorrectly) {
  // Without sharing the group may differ in plan; forward_same_input then runs each Linear alone.
  const Model separate = quantized_fixture(false), shared = quantized_fixture(true);
  const std::vector<int32_t> probe = tokens(24, 3);
  const Tensor a = test::logits_of(separate, probe), b = test::logits_of(shared, probe);
  double largest = 0, difference = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    largest = std::max<double>(largest, std::abs(a.data<float>()[i]));
    difference = std::max<double>(difference, std::abs(a.data<float>()[i] - b.data<float>()[i]));
  }
  // Two quantizations of the same model: close, not equal in general.
  EXPECT_LT(difference, 0.1 * largest);
}

TEST(SharedInput, RejectsMismatchedOutputs) {
  const Model model = quantized_fixture(true);
  const Linear* group[] = {model.layers[0].q.get(), model.layers[0].k.get()};
  Tensor outputs[1];
  EXPECT_THROW(forward_same_input(group, test::outlier_activations(2, group[0]->in_features(), 1, 1), outputs), Error);
}

}  // namespace
}  // namespace fq
