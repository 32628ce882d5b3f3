// The elementwise and row-wise float ops of the decoder graph on the GPU: embeddings, norms, residual adds,
// rotary embedding, activations and conversions. The residual stream is f32 [rows, hidden]; what feeds a Linear
// and what a Linear returns is f16. All pointers are device pointers; every call queues kernels on the default
// stream and returns. Sizes must be positive (fq::Error otherwise).
#pragma once

#include <cstdint>

#include "backends/cuda/portable.h"
#include "fq/model.h"

namespace fq::FQ_CUDA_NS {

// out[r, :] = table[tokens[r], :] for f16 table [vocab, width] and f32 out [rows, width] (tokens already validated).
void embed(const int32_t* tokens, int64_t rows, const __half* table, int64_t width, float* out);
// x[r, :] += table[first_position + r % seq, :]: learned positions (OPT), x f32 [rows, width].
void add_positions(float* x, int64_t rows, int64_t seq, int64_t first_position, const __half* table, int64_t width);

// out = x · rsqrt(mean(x²) + eps) · weight, row by row in f32 (HF LlamaRMSNorm); x f32, out f16 [rows, width].
void rms_norm(const float* x, __half* out, int64_t rows, int64_t width, const float* weight, float eps);
// out = (x - mean) · rsqrt(variance + eps) · weight + bias (bias may be null), two passes in f32.
void layer_norm(const float* x, __half* out, int64_t rows, int64_t width, const float* weight, const float* bias,
                float eps);

// x += branch: f32 x, f16 branch, count elements.
void add_residual(float* x, const __half* branch, int64_t count);

// HF half-split rotary embedding in place on f16 x viewed as rows × (heads·head_dim), `row_stride` elements between
// rows; row r has position first_position + r % seq. cosines and sines are f32 [positions, head_dim / 2] (as
// ops::rope builds them). In f32: (a, b) -> (a·c - b·s, b·c + a·s) for a = x[i], b = x[i + head_dim / 2].
void rope(__half* x, int64_t rows, int64_t seq, int64_t first_position, int64_t heads, int64_t head_dim,
          int64_t row_stride, const float* cosines, const float* sines);

// x = act(x) in place, in f32 (gelu is the exact erf form).
void activate(__half* x, int64_t count, Activation activation);
// gate = act(gate) · up, the gated MLP.
void gated_activate(__half* gate, const __half* up, int64_t count, Activation activation);

// f32 <-> f16, round to nearest even.
void convert_to_half(const float* in, __half* out, int64_t count);
void convert_to_float(const __half* in, float* out, int64_t count);

}  // namespace fq::FQ_CUDA_NS
