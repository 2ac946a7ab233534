// CUDA runtime queries (built only when nvcc is found).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "loom/backend/cuda/runtime.h"

namespace loom::cuda {

int device_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

void check_available() {
  if (device_count() == 0) throw std::runtime_error("cuda: no CUDA device is visible");
}

}  // namespace loom::cuda
