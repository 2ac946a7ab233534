// Op table rows for loom/ops/shape.h: the views (reshape, flatten, transpose, permute, slice,
// narrow, expand, squeeze, unsqueeze), contiguous, and cat/split/stack/index_select/gather,
// with index-mapping references written as plain loops.
#include "op_testing.h"

namespace optest {
namespace {

namespace ops = loom::ops;

std::pair<double, double> range_of(DType dt) {
  if (dt == DType::u8) return {0, 200};
  if (is_int(dt)) return {-100, 100};
  return {-2, 2};
}
Tensor val(const Shape& s, DType dt, uint64_t seed, Layout l = Layout::contiguous) {
  auto [lo, hi] = range_of(dt);
  return gen(s, dt, seed, lo, hi, l);
}

// A (2, 3, 4) input in each layout.
Tensors inputs_3d(DType dt, int v) {
  const Layout layouts[] = {Layout::contiguous, Layout::transposed, Layout::strided, Layout::expanded};
  return {val({2, 3, 4}, dt, 40 + uint64_t(v), layouts[v])};
}
constexpr int kVariants = 4;

OpEntry row(std::string name, std::function<Tensor(const Tensor&)> op, std::function<Arr(const Arr&)> ref, View view) {
  return {.name = std::move(name),
          .dtypes = kAll,
          .variants = kVariants,
          .inputs = inputs_3d,
          .op = [op](const Tensors& x) { return Tensors{op(x[0])}; },
          .ref = [ref](const Arrs& x) { return Arrs{ref(x[0])}; },
          .view = view};
}

Arr reshaped(const Arr& a, const Shape& s) { return {s, a.v}; }

// out[i] = a[j] with j[order[k]] = i[k].
Arr permuted(const Arr& a, const std::vector<int64_t>& order) {
  Shape s;
  for (int64_t d : order) s.push_back(a.shape[size_t(d)]);
  Arr out = filled(s);
  for_each_index(s, [&](const Index& i) {
    Index j(i.size());
    for (size_t k = 0; k < order.size(); ++k) j[size_t(order[k])] = i[k];
    at(out, i) = at(a, j);
  });
  return out;
}

// Elements start, start + step, ... (< end) of dim.
Arr sliced(const Arr& a, size_t dim, int64_t start, int64_t end, int64_t step) {
  Shape s = a.shape;
  s[dim] = (end - start + step - 1) / step;
  Arr out = filled(s);
  for_each_index(s, [&](const Index& i) {
    Index j = i;
    j[dim] = start + i[dim] * step;
    at(out, i) = at(a, j);
  });
  return out;
}

Arr concat(const Arrs& xs, size_t dim) {
  Shape s = xs[0].shape;
  s[dim] = 0;
  for (const Arr& x : xs) s[dim] += x.shape[dim];
  Arr out = filled(s);
  int64_t off = 0;
  for (const Arr& x : xs) {
    for_each_index(x.shape, [&](const Index& i) {
      Index o = i;
      o[dim] += off;
      at(out, o) = at(x, i);
    });
    off += x.shape[dim];
  }
  return out;
}

std::vector<OpEntry> make_entries() {
  std::vector<OpEntry> t;
  t.push_back(row("reshape", [](const Tensor& x) { return ops::reshape(x, {4, -1}); }, [](const Arr& a) { return reshaped(a, {4, 6}); },
                  View::if_contiguous));
  t.push_back(row("flatten", ops::flatten, [](const Arr& a) { return reshaped(a, {24}); }, View::if_contiguous));
  t.push_back(row("transpose", [](const Tensor& x) { return ops::transpose(x, 0, -1); }, [](const Arr& a) { return permuted(a, {2, 1, 0}); },
                  View::always));
  t.push_back(row("permute", [](const Tensor& x) { return ops::permute(x, {2, 0, -2}); }, [](const Arr& a) { return permuted(a, {2, 0, 1}); },
                  View::always));
  t.push_back(row("slice_step", [](const Tensor& x) { return ops::slice(x, 2, 1, 100, 2); }, [](const Arr& a) { return sliced(a, 2, 1, 4, 2); },
                  View::always));
  t.push_back(row("slice_negative", [](const Tensor& x) { return ops::slice(x, -2, -2, 3); }, [](const Arr& a) { return sliced(a, 1, 1, 3, 1); },
                  View::always));
  t.push_back(row("narrow", [](const Tensor& x) { return ops::narrow(x, 0, 1, 1); }, [](const Arr& a) { return sliced(a, 0, 1, 2, 1); },
                  View::always));
  t.push_back(row("squeeze", [](const Tensor& x) { return ops::squeeze(ops::narrow(x, 1, 2, 1), 1); },
                  [](const Arr& a) { return reshaped(sliced(a, 1, 2, 3, 1), {2, 4}); }, View::always));
  t.push_back(row("unsqueeze", [](const Tensor& x) { return ops::unsqueeze(x, 1); }, [](const Arr& a) { return reshaped(a, {2, 1, 3, 4}); },
                  View::always));
  t.push_back(row("unsqueeze_last", [](const Tensor& x) { return ops::unsqueeze(x, -1); },
                  [](const Arr& a) { return reshaped(a, {2, 3, 4, 1}); }, View::always));
  t.push_back(row("contiguous",
                  [](const Tensor& x) {
                    Tensor y = ops::contiguous(x);
                    EXPECT_TRUE(y.is_contiguous());
                    return y;
                  },
                  [](const Arr& a) { return a; }, View::if_contiguous));

  t.push_back({.name = "expand",
               .dtypes = kAll,
               .variants = 2,
               .inputs = [](DType dt, int v) { return Tensors{v == 0 ? val({3, 1}, dt, 50) : val({3, 1}, dt, 51, Layout::strided)}; },
               .op = [](const Tensors& x) { return Tensors{ops::expand(x[0], {2, 3, 4})}; },
               .ref =
                   [](const Arrs& x) {
                     Arr out = filled({2, 3, 4});
                     for_each_index(out.shape, [&](const Index& i) { at(out, i) = bcast_at(x[0], i); });
                     return Arrs{out};
                   },
               .view = View::always});

  t.push_back({.name = "cat",
               .dtypes = kAll,
               .variants = 2,
               .inputs =
                   [](DType dt, int v) {
                     if (v == 0) return Tensors{val({2, 1, 4}, dt, 52), val({2, 3, 4}, dt, 53, Layout::transposed), val({2, 2, 4}, dt, 54, Layout::expanded)};
                     return Tensors{val({2, 3, 2}, dt, 55, Layout::strided), val({2, 3, 1}, dt, 56)};
                   },
               .op = [](const Tensors& x) { return Tensors{ops::cat(x, x[0].size(-1) == 4 ? 1 : -1)}; },
               .ref = [](const Arrs& x) { return Arrs{concat(x, x[0].shape[2] == 4 ? 1 : 2)}; }});

  t.push_back({.name = "split",
               .dtypes = kAll,
               .variants = kVariants,
               .inputs = inputs_3d,
               .op = [](const Tensors& x) { return ops::split(x[0], {1, 0, 3}, -1); },
               .ref = [](const Arrs& x) { return Arrs{sliced(x[0], 2, 0, 1, 1), sliced(x[0], 2, 1, 1, 1), sliced(x[0], 2, 1, 4, 1)}; },
               .view = View::always});

  for (int64_t dim : {0, 2}) {
    t.push_back({.name = "stack_dim" + std::to_string(dim),
                 .dtypes = kAll,
                 .inputs = [](DType dt, int) { return Tensors{val({3, 4}, dt, 57), val({3, 4}, dt, 58, Layout::transposed), val({3, 4}, dt, 59, Layout::strided)}; },
                 .op = [dim](const Tensors& x) { return Tensors{ops::stack(x, dim)}; },
                 .ref =
                     [dim](const Arrs& x) {
                       Arrs us;
                       for (const Arr& a : x) {
                         Shape s = a.shape;
                         s.insert(s.begin() + dim, 1);
                         us.push_back(reshaped(a, s));
                       }
                       return Arrs{concat(us, size_t(dim))};
                     }});
  }


  // Indices with repeats and skipped slices, i64 and i32, over three layouts of x.
  for (int64_t dim : {0, -2}) {
    t.push_back({.name = dim == 0 ? "index_select_dim0" : "index_select_dim1",
                 .dtypes = kAll,
                 .variants = 3,
                 .inputs =
                     [](DType dt, int v) {
                       const Layout layouts[] = {Layout::contiguous, Layout::transposed, Layout::expanded};
                       return Tensors{val({2, 3, 4}, dt, 60 + uint64_t(v), layouts[v]), ints({1, 0, 1, 1}, {4}, v == 1 ? DType::i32 : DType::i64)};
                     },
                 .op = [dim](const Tensors& x) { return Tensors{ops::index_select(x[0], dim, x[1])}; },
                 .ref =
                     [dim](const Arrs& x) {
                       size_t d = dim == 0 ? 0 : 1;
                       Shape s = x[0].shape;
                       s[d] = x[1].shape[0];
                       Arr out = filled(s);
                       for_each_index(s, [&](const Index& i) {
                         Index j = i;
                         j[d] = int64_t(x[1].v[size_t(i[d])]);
                         at(out, i) = at(x[0], j);
                       });
                       return Arrs{out};
                     }});
  }

  // idx has x's rank; along dim it may be longer or shorter than x and repeats entries.
  for (int64_t dim : {0, 1, -1}) {
    t.push_back({.name = "gather_dim" + std::to_string(dim < 0 ? 2 : dim),
                 .dtypes = kAll,
                 .variants = 3,
                 .inputs =
                     [dim](DType dt, int v) {
                       const Layout layouts[] = {Layout::contiguous, Layout::transposed, Layout::strided};
                       size_t d = size_t(dim < 0 ? 2 : dim);
                       Shape xs = {2, 3, 4}, is = xs;
                       is[d] = v == 2 ? 1 : 5;
                       return Tensors{val(xs, dt, 63 + uint64_t(v), layouts[v]), gen(is, v == 1 ? DType::i32 : DType::i64, 66 + uint64_t(v), 0, double(xs[d]))};
                     },
                 .op = [dim](const Tensors& x) { return Tensors{ops::gather(x[0], dim, x[1])}; },
                 .ref =
                     [dim](const Arrs& x) {
                       size_t d = size_t(dim < 0 ? 2 : dim);
                       Arr out = filled(x[1].shape);
                       for_each_index(out.shape, [&](const Index& i) {
                         Index j = i;
                         j[d] = int64_t(at(x[1], i));
                         at(out, i) = at(x[0], j);
                       });
                       return Arrs{out};
                     }});
  }
  return t;
}

const std::vector<OpEntry>& entries() {
  static const std::vector<OpEntry> t = make_entries();
  return t;
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Shape, OpForward, ::testing::ValuesIn(cases(entries())), case_name);
INSTANTIATE_TEST_SUITE_P(Shape, OpGrad, ::testing::ValuesIn(grad_cases(entries())), grad_case_name);

}  // namespace optest
