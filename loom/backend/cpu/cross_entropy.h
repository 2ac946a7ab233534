// CPU kernels for the fused softmax cross-entropy loss of the LM head: (N, V) logits against (N)
// integer targets. Rows may be padded (ldv >= V, as llm.c's Vp), only the first V columns count.
#pragma once

#include <cstdint>

namespace loom::cpu {

// logits: (N, ldv), columns [0, V) used; targets: (N); loss, lse: (N).
// loss[i] = logsumexp(logits[i, :V]) - logits[i, targets[i]]; lse[i] is the logsumexp saved for
// backward. Rows whose target == ignore_index get loss 0 and lse 0 (they are skipped entirely).
// Throws loom::Error, before writing anything, if a non-ignored target lies outside [0, V).
// One pass over the logits with an online logsumexp: no (N, V) temporary.
template <typename T>
void cross_entropy_forward(const T* logits, const int64_t* targets, T* loss, T* lse, int64_t N, int64_t V,
                           int64_t ldv, int64_t ignore_index);

// logits, dlogits: (N, ldv); targets, lse, dloss: (N).
// dlogits[i, :V] = (softmax(logits[i, :V]) - onehot(targets[i])) * dloss[i], 0 for ignored rows;
// dlogits[i, V:ldv] = 0. dlogits may alias logits (the logits are not needed afterwards).
// Throws loom::Error like forward.
template <typename T>
void cross_entropy_backward(const T* logits, const int64_t* targets, const T* lse, const T* dloss, T* dlogits,
                            int64_t N, int64_t V, int64_t ldv, int64_t ignore_index);

}  // namespace loom::cpu
