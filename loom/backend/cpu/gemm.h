// GEMM through CBLAS (OpenBLAS): C = alpha * op(A) @ op(B) + beta * C, row-major, with the
// transposes passed to the BLAS instead of copied.
#pragma once

#include <cstdint>

namespace loom::cpu {

// op(A): (M, K), op(B): (K, N), C: (M, N); lda/ldb/ldc are the row strides of A, B, C as stored.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace loom::cpu
