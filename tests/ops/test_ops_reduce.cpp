// Op table rows for loom/ops/reduce.h: sum (all, dims, keepdim, no dims), mean, max, argmax,
// logsumexp and sum_to, on contiguous, transposed, strided and expanded inputs, against
// plain double loops.
#include <cmath>
#include <limits>

#include "op_testing.h"

namespace optest {
namespace {

namespace ops = loom::ops;

Tensors inputs_3d(DType dt, int v) {
  double lo = dt == DType::u8 ? 0 : is_int(dt) ? -10 : -2, hi = dt == DType::u8 ? 12 : is_int(dt) ? 10 : 2;
  switch (v) {
    case 0: return {gen({2, 3, 4}, dt, 31, lo, hi)};
    case 1: return {gen({2, 3, 4}, dt, 32, lo, hi, Layout::transposed)};
    case 2: return {gen({2, 3, 4}, dt, 33, lo, hi, Layout::strided)};
    default: return {gen({2, 3, 4}, dt, 34, lo, hi, Layout::expanded)};
  }
}
constexpr int kVariants = 4;

double plus(double a, double b) { return a + b; }

// One row over the 3-D inputs above.
OpEntry row(std::string name, std::vector<DType> dtypes, std::function<Tensor(const Tensor&)> op,
            std::function<Arr(const Arr&)> ref, double tol_scale = 1) {
  return {.name = std::move(name),
          .dtypes = std::move(dtypes),
          .variants = kVariants,
          .inputs = inputs_3d,
          .op = [op](const Tensors& x) { return Tensors{op(x[0])}; },
          .ref = [ref](const Arrs& x) { return Arrs{ref(x[0])}; },
          .tol_scale = tol_scale};
}

Arr mean_ref(const Arr& a, const std::vector<int64_t>& dims, bool keepdim) {
  double n = 1;
  for (int64_t d : dims) n *= double(a.shape[size_t(d)]);
  return map1(reduce(a, dims, keepdim, 0, plus), [n](double s) { return s / n; });
}

// Index of the first maximal element along dim, as a reduction over (best value, best index).
Arr argmax_ref(const Arr& a, int64_t dim, bool keepdim) {
  Shape kept = a.shape;
  kept[size_t(dim)] = 1;
  Arr best = filled(kept, -std::numeric_limits<double>::infinity()), arg = filled(kept, 0);
  for_each_index(a.shape, [&](const Index& i) {
    Index o = i;
    o[size_t(dim)] = 0;
    if (at(a, i) > at(best, o)) {
      at(best, o) = at(a, i);
      at(arg, o) = double(i[size_t(dim)]);
    }
  });
  if (!keepdim) arg.shape.erase(arg.shape.begin() + dim);
  return arg;
}

Arr logsumexp_ref(const Arr& a, int64_t dim, bool keepdim) {
  return map1(reduce(a, {dim}, keepdim, 0, [](double acc, double x) { return acc + std::exp(x); }), [](double s) { return std::log(s); });
}

std::vector<OpEntry> make_entries() {
  std::vector<OpEntry> t;
  t.push_back(row("sum_all", kAll, [](const Tensor& x) { return ops::sum(x); }, [](const Arr& a) { return reduce(a, {0, 1, 2}, false, 0, plus); }));
  t.push_back(row("sum_dims", kAll, [](const Tensor& x) { return ops::sum(x, {0, -1}); },
                  [](const Arr& a) { return reduce(a, {0, 2}, false, 0, plus); }));
  t.push_back(row("sum_keepdim", kAll, [](const Tensor& x) { return ops::sum(x, {1}, true); },
                  [](const Arr& a) { return reduce(a, {1}, true, 0, plus); }));
  t.push_back(row("sum_no_dims", kAll, [](const Tensor& x) { return ops::sum(x, {}); }, [](const Arr& a) { return a; }));
  t.push_back(row("mean_all", kFloat, [](const Tensor& x) { return ops::mean(x); }, [](const Arr& a) { return mean_ref(a, {0, 1, 2}, false); }, 2));
  t.push_back(row("mean_dims", kFloat, [](const Tensor& x) { return ops::mean(x, {2, 0}, true); },
                  [](const Arr& a) { return mean_ref(a, {0, 2}, true); }, 2));
  auto max_ref = [](int64_t dim, bool keepdim) {
    return [=](const Arr& a) {
      return reduce(a, {dim}, keepdim, -std::numeric_limits<double>::infinity(), [](double m, double x) { return std::max(m, x); });
    };
  };
  t.push_back(row("max", kAll, [](const Tensor& x) { return ops::max(x, 1); }, max_ref(1, false)));
  t.push_back(row("max_keepdim", kAll, [](const Tensor& x) { return ops::max(x, -1, true); }, max_ref(2, true)));
  for (bool keepdim : {false, true}) {
    OpEntry e = row(keepdim ? "argmax_keepdim" : "argmax", kAll, [keepdim](const Tensor& x) { return ops::argmax(x, keepdim ? -1 : 1, keepdim); },
                    [keepdim](const Arr& a) { return argmax_ref(a, keepdim ? 2 : 1, keepdim); });
    e.differentiable = false;
    e.out_dtype = DType::i64;
    t.push_back(e);
  }
  t.push_back(row("logsumexp", kFloat, [](const Tensor& x) { return ops::logsumexp(x, 1); },
                  [](const Arr& a) { return logsumexp_ref(a, 1, false); }, 2));
  t.push_back(row("logsumexp_keepdim", kFloat, [](const Tensor& x) { return ops::logsumexp(x, -1, true); },
                  [](const Arr& a) { return logsumexp_ref(a, 2, true); }, 2));
  t.push_back(row("sum_to", kAll, [](const Tensor& x) { return ops::sum_to(x, {3, 1}); },
                  [](const Arr& a) { return Arr{{3, 1}, reduce(a, {0, 2}, false, 0, plus).v}; }));
  return t;
}

const std::vector<OpEntry>& entries() {
  static const std::vector<OpEntry> t = make_entries();
  return t;
}

// max and argmax pick the first maximal element on ties, and max's gradient goes only there.
TEST(ReduceEdgeCases, MaxTiesGoToTheFirstMaximum) {
  Tensor x = Tensor::from_vector({1, 3, 3, 2, 5, 5, 5, 0}, {2, 4}, DType::f64);
  x.set_requires_grad(true);
  EXPECT_EQ(ops::argmax(x, 1).to_ints(), (std::vector<int64_t>{1, 0}));
  Tensor m = ops::max(x, 1);
  EXPECT_EQ(m.to_vector(), (std::vector<double>{3, 5}));
  ops::sum(m).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 1, 0, 0, 1, 0, 0, 0}));
}

// logsumexp shifts by the max: huge inputs do not overflow, and an all -inf slice gives -inf.
TEST(ReduceEdgeCases, LogsumexpLargeAndAllNegativeInfinity) {
  const double inf = std::numeric_limits<double>::infinity();
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = Tensor::from_vector({1000, 1000, -inf, -inf, -inf, 0}, {2, 3}, dt);
    std::vector<double> y = ops::logsumexp(x, 1).to_vector();
    EXPECT_NEAR(y[0], 1000 + std::log(2.0), 1e-3) << loom::dtype_name(dt);
    EXPECT_EQ(y[1], 0) << loom::dtype_name(dt);
    EXPECT_EQ(ops::logsumexp(Tensor::full({1, 4}, -inf, dt), 1).item(), -inf) << loom::dtype_name(dt);
  }
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Reduce, OpForward, ::testing::ValuesIn(cases(entries())), case_name);
INSTANTIATE_TEST_SUITE_P(Reduce, OpGrad, ::testing::ValuesIn(grad_cases(entries())), grad_case_name);

}  // namespace optest
