// CPU kernel for one fused AdamW step (decoupled weight decay, PyTorch torch.optim.AdamW
// semantics) over a contiguous fp32 parameter and its gradient and moment buffers.
#pragma once

#include <cstdint>

namespace loom::cpu {

// p, g, m, v: (n). step counts from 1 (the update being applied). With g' = grad_scale * g
// (gradient clipping, folded into this pass instead of a pass of its own over the gradients):
// p -= lr*wd*p; m = b1*m + (1-b1)*g'; v = b2*v + (1-b2)*g'*g';
// p -= lr * (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps).
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps,
                float weight_decay, int64_t step, float grad_scale = 1.0f);

}  // namespace loom::cpu
