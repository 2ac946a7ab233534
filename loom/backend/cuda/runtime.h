// The CUDA runtime seen from the rest of Loom: how many devices there are, and a check that
// throws a clear error when CUDA is unavailable. Kernels arrive with the CUDA backend issue.
#pragma once

namespace loom::cuda {

int device_count();      // 0 without a CUDA build or without a GPU
void check_available();  // throws loom::Error unless a CUDA device can be used

}  // namespace loom::cuda
