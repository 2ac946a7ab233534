// Linked when Loom is built without CUDA: every CUDA entry point throws a clear error.
#include "loom/backend/cuda/runtime.h"

#include "loom/core/error.h"

namespace loom::cuda {

int device_count() { return 0; }
void check_available() { throw Error("cuda: this Loom was built without CUDA (nvcc not found at configure time)"); }

}  // namespace loom::cuda
