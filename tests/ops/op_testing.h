// Shared machinery of the op table: OpEntry (one row: inputs, Loom op, naive reference), the
// double-precision array helpers the references are written with, input generators with
// non-contiguous layouts, and the checks the table runs (forward vs reference per dtype,
// backward per dtype vs f64, f64 backward vs central finite differences).
#pragma once

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "loom/autograd/function.h"
#include "loom/core/rng.h"
#include "loom/core/tensor.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape.h"

namespace optest {

using loom::DType;
using loom::Shape;
using loom::Tensor;
using Tensors = std::vector<Tensor>;
using Index = std::vector<int64_t>;

inline const std::vector<DType> kFloat = {DType::f32, DType::f64, DType::bf16, DType::f16};
inline const std::vector<DType> kAll = {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8};

// ---- naive row-major arrays of doubles, for the references ----

struct Arr {
  Shape shape;
  std::vector<double> v;
};
using Arrs = std::vector<Arr>;

inline int64_t count(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}
inline Arr arr_of(const Tensor& t) { return {t.shape(), t.to_vector()}; }
inline Arr filled(const Shape& s, double value = 0) { return {s, std::vector<double>(size_t(count(s)), value)}; }
inline int64_t flat(const Shape& s, const Index& idx) {
  int64_t f = 0;
  for (size_t i = 0; i < s.size(); ++i) f = f * s[i] + idx[i];
  return f;
}
inline double& at(Arr& a, const Index& idx) { return a.v[size_t(flat(a.shape, idx))]; }
inline double at(const Arr& a, const Index& idx) { return a.v[size_t(flat(a.shape, idx))]; }

// Calls f(idx) for every index of s in row-major order.
template <typename F> void for_each_index(const Shape& s, F&& f) {
  if (count(s) == 0) return;
  Index idx(s.size(), 0);
  while (true) {
    f(const_cast<const Index&>(idx));
    int64_t d = int64_t(s.size()) - 1;
    while (d >= 0 && ++idx[size_t(d)] == s[size_t(d)]) idx[size_t(d--)] = 0;
    if (d < 0) return;
  }
}

// NumPy broadcasting from first principles: align right, size-1 dims stretch.
inline Shape bcast_shape(const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i + a.size() >= n ? a[i + a.size() - n] : 1;
    int64_t db = i + b.size() >= n ? b[i + b.size() - n] : 1;
    out[i] = da == 1 ? db : da;
  }
  return out;
}
// Element of a at the index `out_idx` of a broadcast result.
inline double bcast_at(const Arr& a, const Index& out_idx) {
  size_t lead = out_idx.size() - a.shape.size();
  int64_t f = 0;
  for (size_t i = 0; i < a.shape.size(); ++i) f = f * a.shape[i] + (a.shape[i] == 1 ? 0 : out_idx[lead + i]);
  return a.v[size_t(f)];
}
template <typename F> Arr map1(const Arr& a, F&& f) {
  Arr out = a;
  for (double& x : out.v) x = f(x);
  return out;
}
template <typename F> Arr map2(const Arr& a, const Arr& b, F&& f) {
  Arr out = filled(bcast_shape(a.shape, b.shape));
  for_each_index(out.shape, [&](const Index& i) { at(out, i) = f(bcast_at(a, i), bcast_at(b, i)); });
  return out;
}

// Reduces a over dims (sorted, non-negative) with acc = f(acc, x) from init.
template <typename F> Arr reduce(const Arr& a, const std::vector<int64_t>& dims, bool keepdim, double init, F&& f) {
  Shape kept = a.shape;
  for (int64_t d : dims) kept[size_t(d)] = 1;
  Arr out = filled(kept, init);
  for_each_index(a.shape, [&](const Index& i) {
    Index o = i;
    for (int64_t d : dims) o[size_t(d)] = 0;
    double& acc = at(out, o);
    acc = f(acc, at(a, i));
  });
  if (!keepdim) {
    Shape s;
    for (size_t d = 0; d < kept.size(); ++d)
      if (std::find(dims.begin(), dims.end(), int64_t(d)) == dims.end()) s.push_back(kept[d]);
    out.shape = s;
  }
  return out;
}

// ---- inputs ----

// Memory layout of a generated input. transposed: the last two dims swapped in memory;
// strided: every other element of a base twice as long in the last dim, at offset 1;
// expanded: dim 0 broadcast from size 1 (stride 0).
enum class Layout { contiguous, transposed, strided, expanded };

inline bool is_int(DType dt) { return !loom::is_floating(dt); }

// A leaf tensor of logical shape `shape`, values uniform in [lo, hi) (floored for integer
// dtypes or when `integral`) drawn with loom::rand at RngKey{seed}, laid out as `layout`.
inline Tensor gen(const Shape& shape, DType dt, uint64_t seed, double lo = -1, double hi = 1,
                  Layout layout = Layout::contiguous, bool integral = false) {
  Shape base = shape;
  if (layout == Layout::transposed) std::swap(base[base.size() - 1], base[base.size() - 2]);
  if (layout == Layout::strided) base.back() *= 2;
  if (layout == Layout::expanded) base[0] = 1;
  std::vector<double> vals = loom::rand(base, loom::RngKey{seed, 0}, lo, hi, DType::f64).to_vector();
  if (integral || is_int(dt))
    for (double& v : vals) v = std::floor(v);
  Tensor t = Tensor::from_vector(vals, base, dt);
  switch (layout) {
    case Layout::contiguous: break;
    case Layout::transposed: t = loom::ops::transpose(t, -1, -2); break;
    case Layout::strided: t = loom::ops::slice(t, -1, 1, base.back(), 2); break;
    case Layout::expanded: t = loom::ops::expand(t, shape); break;
  }
  return t.detach();
}
inline Tensor ints(const std::vector<int64_t>& v, const Shape& shape, DType dt = DType::i64) {
  return Tensor::from_ints(v, shape, dt);
}

// ---- one row of the table ----

enum class View { no, always, if_contiguous };  // does output 0 share input 0's storage?

struct OpEntry {
  std::string name;
  std::vector<DType> dtypes;
  bool differentiable = true;
  int variants = 1;
  std::function<Tensors(DType, int variant)> inputs;  // leaves, fixed seeds
  std::function<Tensors(const Tensors&)> op;           // the Loom op under test
  std::function<Arrs(const Arrs&)> ref;                // naive reference, in double
  std::optional<DType> out_dtype = std::nullopt;       // default: the case's dtype
  double tol_scale = 1;  // forward tolerance factor (gradients use max(1, tol_scale))
  View view = View::no;
  bool fd = true;  // false where f64 finite differences are meaningless (casts to a narrower float)
};

struct OpCase {
  const OpEntry* entry;
  DType dtype;
};
inline void PrintTo(const OpCase& c, std::ostream* os) { *os << c.entry->name << "/" << loom::dtype_name(c.dtype); }
inline void PrintTo(const OpEntry* e, std::ostream* os) { *os << e->name; }

// Every (entry, dtype) pair of a family, and the differentiable entries.
inline std::vector<OpCase> cases(const std::vector<OpEntry>& entries) {
  std::vector<OpCase> out;
  for (const OpEntry& e : entries)
    for (DType dt : e.dtypes) out.push_back({&e, dt});
  return out;
}
inline std::vector<const OpEntry*> grad_cases(const std::vector<OpEntry>& entries) {
  std::vector<const OpEntry*> out;
  for (const OpEntry& e : entries)
    if (e.differentiable && e.fd) out.push_back(&e);
  return out;
}
inline std::string case_name(const ::testing::TestParamInfo<OpCase>& i) {
  return i.param.entry->name + "_" + loom::dtype_name(i.param.dtype);
}
inline std::string grad_case_name(const ::testing::TestParamInfo<const OpEntry*>& i) { return i.param->name; }

class OpForward : public ::testing::TestWithParam<OpCase> {};
class OpGrad : public ::testing::TestWithParam<const OpEntry*> {};

// ---- comparisons ----

inline double tol_of(DType dt) {
  switch (dt) {
    case DType::f64: return 1e-12;
    case DType::f32: return 1e-5;
    case DType::bf16: return 1e-2;
    case DType::f16: return 1e-3;
    default: return 0;
  }
}
// The value an integer result of dtype dt holds for the exact integer v (wrap-around).
inline double wrap(DType dt, double v) {
  switch (dt) {
    case DType::i32: return double(int32_t(int64_t(v)));
    case DType::u8: return double(uint8_t(int64_t(v)));
    default: return v;
  }
}
// |got - want| <= tol (1 + |want|) elementwise; integer dtypes compare exactly (after wrap).
inline void expect_close(const Tensor& got, const Arr& want, double tol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape) << what;
  std::vector<double> g = got.to_vector();
  int bad = 0;
  std::string first;
  for (size_t i = 0; i < g.size(); ++i) {
    double w = is_int(got.dtype()) ? wrap(got.dtype(), want.v[i]) : want.v[i];
    double err = std::abs(g[i] - w);
    if (!(err <= tol * (1 + std::abs(w)))) {
      if (bad++ == 0) first = "flat index " + std::to_string(i) + ": got " + std::to_string(g[i]) + ", want " + std::to_string(w);
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.size() << " elements off (tol " << tol << "), first at " << first;
}

// ---- gradients ----

inline void require_grad_on_floats(Tensors& xs) {
  for (Tensor& x : xs)
    if (x.defined() && loom::is_floating(x.dtype())) x.set_requires_grad(true);
}
// A fixed weight per output, values in [-1, 1) rounded to the output's dtype.
inline Tensors weights_for(const Tensors& outs) {
  Tensors r;
  for (size_t j = 0; j < outs.size(); ++j) {
    DType dt = loom::is_floating(outs[j].dtype()) ? outs[j].dtype() : DType::f64;
    r.push_back(loom::rand(outs[j].shape(), loom::RngKey{9000 + j, 0}, -1, 1, dt));
  }
  return r;
}
// Gradients of sum_j sum(op(xs)_j * r_j) w.r.t. each xs (undefined where not floating; zeros
// when the op does not reach the input).
inline Tensors grads_of(const std::function<Tensors(const Tensors&)>& op, Tensors xs, const Tensors* r_in = nullptr) {
  require_grad_on_floats(xs);
  Tensors outs = op(xs);
  Tensors r = r_in ? *r_in : weights_for(outs);
  Tensor loss;
  for (size_t j = 0; j < outs.size(); ++j) {
    if (!outs[j].requires_grad()) continue;
    Tensor term = loom::ops::sum(loom::ops::mul(outs[j], loom::ops::cast(r[j], outs[j].dtype())));
    loss = loss.defined() ? loom::ops::add(loss, term) : term;
  }
  if (loss.defined()) loss.backward();
  Tensors g;
  for (const Tensor& x : xs) {
    if (!x.defined() || !x.requires_grad()) g.emplace_back();
    else g.push_back(x.grad().defined() ? x.grad() : Tensor::zeros(x.shape(), x.dtype()));
  }
  return g;
}

// Compares each floating input's .grad() of sum_j sum(op(xs)_j * R_j) with central finite
// differences (f64, eps 1e-6). Perturbs storage elements, so stride-0 (expanded) inputs are
// handled: the derivative w.r.t. a storage element is the sum over the logical elements on it.
inline void expect_fd_grads(const std::function<Tensors(const Tensors&)>& op, const Tensors& xs_in, double tol = 1e-6,
                            const std::string& what = "") {
  Tensors xs = xs_in;
  Tensors probe;
  {
    loom::autograd::NoGradGuard ng;
    probe = op(xs);
  }
  Tensors r = weights_for(probe);
  Tensors g = grads_of(op, xs, &r);
  std::vector<std::vector<double>> rv;
  for (const Tensor& t : r) rv.push_back(t.to_vector());
  // The loss is evaluated twice per storage element on tiny inputs: run it on one thread so
  // that OpenMP region start-up (slow on a loaded machine) does not dominate the test's time.
  auto loss = [&] {
    loom::autograd::NoGradGuard ng;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    Tensors outs = op(xs);
    omp_set_num_threads(threads);
    double l = 0;
    for (size_t j = 0; j < outs.size(); ++j) {
      if (!loom::is_floating(outs[j].dtype())) continue;
      std::vector<double> o = outs[j].to_vector();
      for (size_t k = 0; k < o.size(); ++k) l += o[k] * rv[j][k];
    }
    return l;
  };
  const double eps = 1e-6;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!g[i].defined()) continue;
    const Tensor& x = xs[i];
    ASSERT_EQ(x.dtype(), DType::f64) << what;
    ASSERT_EQ(g[i].shape(), x.shape()) << what << ": gradient shape of input " << i;
    ASSERT_EQ(g[i].dtype(), x.dtype()) << what << ": gradient dtype of input " << i;
    std::vector<double> gv = g[i].to_vector();
    std::map<int64_t, double> analytic;  // storage element -> summed gradient
    Shape s = x.shape();
    for_each_index(s, [&](const Index& idx) {
      int64_t off = x.offset();
      for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * x.strides()[d];
      analytic[off] += gv[size_t(flat(s, idx))];
    });
    double* base = static_cast<double*>(x.storage()->data());
    int bad = 0;
    std::string first;
    for (auto [off, an] : analytic) {
      double saved = base[off];
      base[off] = saved + eps;
      double lp = loss();
      base[off] = saved - eps;
      double lm = loss();
      base[off] = saved;
      double fd = (lp - lm) / (2 * eps);
      if (!(std::abs(fd - an) <= tol * (1 + std::abs(fd))) && bad++ == 0)
        first = "storage element " + std::to_string(off) + ": analytic " + std::to_string(an) + ", numeric " + std::to_string(fd);
    }
    EXPECT_EQ(bad, 0) << what << ": input " << i << ", " << bad << " of " << analytic.size() << " gradients off, first at " << first;
  }
}

// Inputs of dtype dt copied to f64 (integer inputs shared).
inline Tensors to_f64(const Tensors& xs) {
  Tensors out;
  for (const Tensor& x : xs)
    out.push_back(x.defined() && loom::is_floating(x.dtype()) ? Tensor::from_vector(x.to_vector(), x.shape(), DType::f64) : x);
  return out;
}

// Backward in dt must match backward in f64 on the same (rounded) input values and weights.
inline void expect_grads_match_f64(const OpEntry& e, const Tensors& xs, DType dt, const std::string& what) {
  Tensors x64 = to_f64(xs);
  Tensors outs;
  {
    loom::autograd::NoGradGuard ng;
    outs = e.op(xs);
  }
  Tensors r = weights_for(outs);
  Tensors g = grads_of(e.op, xs, &r);
  Tensors g64 = grads_of(e.op, x64, &r);
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!g[i].defined()) continue;
    EXPECT_EQ(g[i].dtype(), dt) << what << ": gradient dtype of input " << i;
    expect_close(g[i], arr_of(g64[i]), 2 * tol_of(dt) * std::max(1.0, e.tol_scale), what + ": gradient of input " + std::to_string(i));
  }
}

inline void check_forward(const OpEntry& e, DType dt) {
  for (int v = 0; v < e.variants; ++v) {
    std::string what = e.name + "/" + loom::dtype_name(dt) + " variant " + std::to_string(v);
    Tensors in = e.inputs(dt, v);
    Tensors out = e.op(in);
    Arrs ins;
    for (const Tensor& t : in) ins.push_back(t.defined() ? arr_of(t) : Arr{});
    Arrs want = e.ref(ins);
    ASSERT_EQ(out.size(), want.size()) << what;
    for (size_t j = 0; j < out.size(); ++j) {
      EXPECT_EQ(out[j].dtype(), e.out_dtype.value_or(dt)) << what << ": dtype of output " << j;
      expect_close(out[j], want[j], tol_of(out[j].dtype()) * e.tol_scale, what + ": output " + std::to_string(j));
    }
    if (e.view == View::always || (e.view == View::if_contiguous && in[0].is_contiguous())) {
      EXPECT_EQ(out[0].storage(), in[0].storage()) << what << ": expected a view";
    }
    if (e.differentiable && loom::is_floating(dt) && dt != DType::f64) expect_grads_match_f64(e, in, dt, what);
  }
}

inline void check_grad(const OpEntry& e) {
  for (int v = 0; v < e.variants; ++v)
    expect_fd_grads(e.op, e.inputs(DType::f64, v), 1e-6, e.name + " variant " + std::to_string(v));
}

}  // namespace optest
