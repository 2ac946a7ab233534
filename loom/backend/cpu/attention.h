// Fused scaled-dot-product attention kernels for the CPU (flash-attention style).
// The forward never materialises the (Tq, Tk) score matrix; the backward recomputes it tile
// by tile from q, k and the saved logsumexp, so extra memory is O(T) per thread.
#pragma once

#include <cstdint>

namespace loom::cpu {

// Shapes (all contiguous, row-major):
//   q, out: (B, H, Tq, D)    k, v: (B, Hkv, Tk, D)    lse: (B, H, Tq)    doc: (B, Tk)
// Grouped-query attention: H is a multiple of Hkv and head h reads kv head h / (H / Hkv).
// causal: query i sits at absolute position Tk - Tq + i and sees keys j <= that position
//   (Tq < Tk is the KV-cache case).
// doc: optional document ids of packed sequences, only meaningful when Tq == Tk: query i sees
//   key j only if doc[b * Tk + i] == doc[b * Tk + j]. nullptr disables the document mask.
// lse receives the natural-log logsumexp of each row's scaled, masked scores. A row that sees
// no key gets out = 0 and lse = -inf.
// Results do not depend on the number of OpenMP threads.
template <typename T>
void attention_forward(const T* q, const T* k, const T* v, const int32_t* doc, T* out, T* lse, int64_t B, int64_t H,
                       int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D, T scale, bool causal);

// Gradients of attention_forward. out and lse are the forward's results; probabilities are
// recomputed from q, k and lse. dq: (B, H, Tq, D), dk, dv: (B, Hkv, Tk, D) are overwritten,
// not accumulated into.
template <typename T>
void attention_backward(const T* q, const T* k, const T* v, const int32_t* doc, const T* out, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv, int64_t B, int64_t H, int64_t Hkv, int64_t Tq, int64_t Tk,
                        int64_t D, T scale, bool causal);

}  // namespace loom::cpu
