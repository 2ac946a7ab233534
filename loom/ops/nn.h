// Neural-network ops on fused CPU kernels: norms, activations, softmax, dropout, the
// cross-entropy loss, rotary embedding, attention and embedding lookup. Half-precision
// inputs are computed in f32 and rounded once on output.
#pragma once

#include "loom/core/rng.h"
#include "loom/core/tensor.h"

namespace loom::ops {

// x: (..., C); weight, bias: (C) or undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// x: (..., C); weight: (C). y = x / sqrt(mean(x²) + eps) * weight.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);

Tensor gelu(const Tensor& x);  // tanh approximation (GPT-2's gelu_new)
Tensor silu(const Tensor& x);
// gate, up: same shape. silu(gate) * up, the LLaMA MLP nonlinearity.
Tensor swiglu(const Tensor& gate, const Tensor& up);
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// Zeroes each element with probability p and scales the rest by 1/(1-p). The mask is a pure
// function of key and the element index (recomputed in backward, never stored). With whole_cols,
// x's last dim holds columns [col_offset, col_offset + n) of rows of whole_cols (a
// tensor-parallel rank's features): element (i, c) takes the mask of element (i, col_offset + c)
// of the whole.
Tensor dropout(const Tensor& x, double p, RngKey key, int64_t whole_cols = 0, int64_t col_offset = 0);

enum class Reduction { mean, sum, none };
// logits: (..., Vp), targets: (...) integer. Only the first num_classes columns take part
// (num_classes < Vp leaves a padded vocabulary out; -1 = all). Targets equal to ignore_index
// contribute nothing; mean divides by the number of the others (0 when there are none).
// Reduction::none returns the per-position losses, shape (...).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100,
                     Reduction reduction = Reduction::mean, int64_t num_classes = -1);

// x: (B, T, H, D), Hugging Face rotate_half layout; positions: (T) or (B, T) integer, or undefined
// (0..T-1).
Tensor rope(const Tensor& x, double theta, const Tensor& positions = Tensor());

// q: (B, H, Tq, D), k, v: (B, Hkv, Tk, D) with H a multiple of Hkv -> (B, H, Tq, D).
// causal aligns the last query with the last key (Tq < Tk is a KV-cache step). doc_ids: (B, T)
// integer, packed-sequence document ids (a query sees keys of its own document only; Tq == Tk).
// scale 0 means 1/sqrt(D). Fused flash-style kernel: O(T) extra memory, recomputed in backward.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                    const Tensor& doc_ids = Tensor(), double scale = 0.0);

// Packed documents: (B, T) positions, each document's starting at 0 -> (B, T) i32 document ids
// for scaled_dot_product_attention (a position 0 starts the next document of its row).
Tensor document_ids(const Tensor& positions);

// ids: (...) integer in [0, V); weight: (V, C) -> (..., C).
Tensor embedding(const Tensor& ids, const Tensor& weight);

}  // namespace loom::ops
