// Op table rows for loom/ops/matmul.h: matmul (2-D, batched, broadcast batch, 3-D @ 2-D,
// 2-D @ 3-D, transposed / strided / expanded views) and linear (with and without bias, 3-D
// input, transposed weight view), against a naive triple loop.
#include "loom/ops/matmul.h"
#include "op_testing.h"

namespace optest {
namespace {

namespace ops = loom::ops;

// a: (..., M, K), b: (..., K, N) with broadcast batch dims.
Arr matmul_ref(const Arr& a, const Arr& b) {
  const size_t na = a.shape.size(), nb = b.shape.size();
  const int64_t M = a.shape[na - 2], K = a.shape[na - 1], N = b.shape[nb - 1];
  Shape batch = bcast_shape(Shape(a.shape.begin(), a.shape.end() - 2), Shape(b.shape.begin(), b.shape.end() - 2));
  Shape s = batch;
  s.insert(s.end(), {M, N});
  Arr out = filled(s);
  for_each_index(s, [&](const Index& i) {
    Index ia = i, ib = i;
    double acc = 0;
    for (int64_t k = 0; k < K; ++k) {
      ia[i.size() - 1] = k;
      ib[i.size() - 2] = k;
      acc += bcast_at(a, ia) * bcast_at(b, ib);
    }
    at(out, i) = acc;
  });
  return out;
}

// x: (..., in), w: (out, in), bias: (out) or absent.
Arr linear_ref(const Arrs& x) {
  const Arr &a = x[0], &w = x[1];
  const int64_t in = w.shape[1], out_f = w.shape[0];
  Shape s = a.shape;
  s.back() = out_f;
  Arr out = filled(s);
  for_each_index(s, [&](const Index& i) {
    int64_t o = i.back();
    double acc = x.size() > 2 ? x[2].v[size_t(o)] : 0;
    Index ia = i;
    for (int64_t k = 0; k < in; ++k) {
      ia.back() = k;
      acc += at(a, ia) * w.v[size_t(o * in + k)];
    }
    at(out, i) = acc;
  });
  return out;
}

using Gen = std::function<Tensors(DType, int)>;

OpEntry mm(std::string name, int variants, Gen inputs) {
  return {.name = std::move(name),
          .dtypes = kFloat,
          .variants = variants,
          .inputs = std::move(inputs),
          .op = [](const Tensors& x) { return Tensors{ops::matmul(x[0], x[1])}; },
          .ref = [](const Arrs& x) { return Arrs{matmul_ref(x[0], x[1])}; }};
}

OpEntry lin(std::string name, int variants, Gen inputs) {
  return {.name = std::move(name),
          .dtypes = kFloat,
          .variants = variants,
          .inputs = std::move(inputs),
          .op = [](const Tensors& x) { return Tensors{ops::linear(x[0], x[1], x.size() > 2 ? x[2] : Tensor())}; },
          .ref = [](const Arrs& x) { return Arrs{linear_ref(x)}; }};
}

Tensor g(const Shape& s, DType dt, uint64_t seed, Layout l = Layout::contiguous) { return gen(s, dt, seed, -1, 1, l); }

std::vector<OpEntry> make_entries() {
  using L = Layout;
  std::vector<OpEntry> t;
  t.push_back(mm("matmul_2d", 2, [](DType dt, int v) {
    if (v == 0) return Tensors{g({3, 4}, dt, 70), g({4, 5}, dt, 71)};
    return Tensors{g({1, 7}, dt, 72), g({7, 1}, dt, 73)};  // degenerate rows/cols
  }));
  t.push_back(mm("matmul_batched", 1, [](DType dt, int) { return Tensors{g({2, 3, 4}, dt, 74), g({2, 4, 5}, dt, 75)}; }));
  t.push_back(mm("matmul_broadcast_batch", 2, [](DType dt, int v) {
    if (v == 0) return Tensors{g({2, 1, 3, 4}, dt, 76), g({3, 4, 5}, dt, 77)};
    return Tensors{g({3, 4}, dt, 78), g({2, 2, 4, 5}, dt, 79)};  // 2-D @ 4-D
  }));
  t.push_back(mm("matmul_3d_2d", 2, [](DType dt, int v) {
    if (v == 0) return Tensors{g({2, 3, 4}, dt, 80), g({4, 5}, dt, 81)};
    return Tensors{g({2, 3, 4}, dt, 82, L::strided), g({4, 5}, dt, 83, L::transposed)};  // non-contiguous a
  }));
  t.push_back(mm("matmul_transposed_views", 3, [](DType dt, int v) {
    if (v == 0) return Tensors{g({3, 4}, dt, 84, L::transposed), g({4, 5}, dt, 85, L::transposed)};
    if (v == 1) return Tensors{g({2, 3, 4}, dt, 86, L::transposed), g({2, 4, 5}, dt, 87)};
    return Tensors{g({2, 3, 4}, dt, 88), g({2, 4, 5}, dt, 89, L::transposed)};
  }));
  t.push_back(mm("matmul_strided_views", 2, [](DType dt, int v) {
    if (v == 0) return Tensors{g({3, 4}, dt, 90, L::strided), g({4, 5}, dt, 91, L::strided)};
    // a column slice (ld > K) handed to the BLAS directly
    return Tensors{ops::narrow(g({3, 6}, dt, 92), 1, 1, 4).detach(), ops::narrow(g({4, 8}, dt, 93), 1, 2, 5).detach()};
  }));
  t.push_back(mm("matmul_expanded_batch", 2, [](DType dt, int v) {
    if (v == 0) return Tensors{g({2, 3, 4}, dt, 94, L::expanded), g({2, 4, 5}, dt, 95)};
    return Tensors{g({2, 3, 4}, dt, 96), g({2, 4, 5}, dt, 97, L::expanded)};
  }));

  t.push_back(lin("linear_bias", 2, [](DType dt, int v) {
    if (v == 0) return Tensors{g({3, 4}, dt, 100), g({5, 4}, dt, 101), g({5}, dt, 102)};
    return Tensors{g({3, 4}, dt, 103, L::transposed), g({5, 4}, dt, 104, L::transposed), g({5}, dt, 105, L::expanded)};
  }));
  t.push_back(lin("linear_no_bias", 2, [](DType dt, int v) {
    if (v == 0) return Tensors{g({3, 4}, dt, 106), g({5, 4}, dt, 107)};
    return Tensors{g({3, 4}, dt, 108, L::strided), g({5, 4}, dt, 109, L::strided)};
  }));
  t.push_back(lin("linear_3d", 2, [](DType dt, int v) {
    if (v == 0) return Tensors{g({2, 3, 4}, dt, 110), g({5, 4}, dt, 111), g({5}, dt, 112)};
    return Tensors{g({2, 3, 4}, dt, 113, L::expanded), g({5, 4}, dt, 114)};
  }));
  return t;
}

const std::vector<OpEntry>& entries() {
  static const std::vector<OpEntry> t = make_entries();
  return t;
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Matmul, OpForward, ::testing::ValuesIn(cases(entries())), case_name);
INSTANTIATE_TEST_SUITE_P(Matmul, OpGrad, ::testing::ValuesIn(grad_cases(entries())), grad_case_name);

}  // namespace optest
