// Elementwise ops: forward kernels on the strided loop, backward composed from other ops.
#include "loom/ops/elementwise.h"

#include <cmath>

#include "loom/autograd/function.h"
#include "loom/backend/cpu/loops.h"
#include "loom/ops/reduce.h"

namespace loom::ops {

using autograd::attach;

namespace {

template <typename To, typename From> To convert(From v) {
  if constexpr (std::is_same_v<From, bf16>) return convert<To>(bf16_to_f32(v));
  else if constexpr (std::is_same_v<From, f16>) return convert<To>(f16_to_f32(v));
  else if constexpr (std::is_same_v<To, bf16>) return f32_to_bf16(float(v));
  else if constexpr (std::is_same_v<To, f16>) return f32_to_f16(float(v));
  else return To(v);
}

// out[i] = f(a[i], b[i]) over the broadcast of a and b. Out/In are the C++ element types.
template <typename Out, typename In, typename F>
Tensor binary_kernel(const Tensor& a, const Tensor& b, DType out_dtype, const char* op, F f) {
  Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, out_dtype);
  Out* po = static_cast<Out*>(out.raw_data());
  const In* pa = static_cast<const In*>(a.raw_data());
  const In* pb = static_cast<const In*>(b.raw_data());
  cpu::for_each_run<3>(shape, {out.strides(), broadcast_strides(a.shape(), a.strides(), shape), broadcast_strides(b.shape(), b.strides(), shape)},
                       [&](auto off, int64_t n, auto st) {
                         Out* o = po + off[0];
                         const In* x = pa + off[1];
                         const In* y = pb + off[2];
                         if (st[1] == 1 && st[2] == 1) {
                           for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
                         } else if (st[1] == 1 && st[2] == 0) {
                           const In yv = *y;
                           for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], yv);
                         } else {
                           for (int64_t i = 0; i < n; ++i) o[i * st[0]] = f(x[i * st[1]], y[i * st[2]]);
                         }
                       });
  return out;
}

// Arithmetic in the operands' own dtype (numeric types; callers upcast half types first).
template <typename F> Tensor arith(const Tensor& a, const Tensor& b, const char* op, F f) {
  LOOM_CHECK(a.dtype() == b.dtype(), "{}: dtype mismatch {} vs {} (shapes {} and {})", op, dtype_name(a.dtype()),
             dtype_name(b.dtype()), a.shape(), b.shape());
  return dispatch_numeric(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    return binary_kernel<T, T>(a, b, a.dtype(), op, [&](T x, T y) { return T(f(x, y)); });
  });
}

template <typename F> Tensor compare(const Tensor& a, const Tensor& b, const char* op, F f) {
  if (is_half(a.dtype()) && a.dtype() == b.dtype()) return compare(cast(a, DType::f32), cast(b, DType::f32), op, f);
  LOOM_CHECK(a.dtype() == b.dtype(), "{}: dtype mismatch {} vs {}", op, dtype_name(a.dtype()), dtype_name(b.dtype()));
  return dispatch_numeric(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    return binary_kernel<uint8_t, T>(a, b, DType::u8, op, [&](T x, T y) { return uint8_t(f(x, y)); });
  });
}

// y[i] = f(x[i]) for f32/f64 x (callers upcast half types first); no autograd.
template <typename F> Tensor unary_kernel(const Tensor& x, const char* op, F f) {
  return dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    Tensor out = Tensor::empty(x.shape(), x.dtype());
    T* po = out.data<T>();
    const T* px = x.data<T>();
    cpu::for_each_run<2>(x.shape(), {out.strides(), x.strides()}, [&](auto off, int64_t n, auto st) {
      T* o = po + off[0];
      const T* v = px + off[1];
      if (st[1] == 1)
        for (int64_t i = 0; i < n; ++i) o[i] = T(f(v[i]));
      else
        for (int64_t i = 0; i < n; ++i) o[i] = T(f(v[i * st[1]]));
    });
    return out;
  });
}

Tensor scalar_like(double v, DType dtype) { return Tensor::full({}, v, dtype); }

// The shared shape of every differentiable unary op: upcast half, run the kernel, attach grad.
// What an op's backward reads besides the incoming gradient; only that is kept alive by the
// graph (the others reach grad() undefined).
enum Saves : unsigned { kNothing = 0, kInput = 1, kOutput = 2 };

template <typename F, typename G>
Tensor unary(const Tensor& x, const char* op, unsigned saves, F f, G grad) {
  if (is_half(x.dtype())) return cast(unary(cast(x, DType::f32), op, saves, f, grad), x.dtype());
  Tensor y = unary_kernel(x, op, f);
  attach(y, op, {x}, [x = saves & kInput ? x : Tensor(), y = saves & kOutput ? y.detach() : Tensor(), grad](const Tensor& g) -> std::vector<Tensor> {
    return {grad(g, x, y)};
  });
  return y;
}

// saves: kNothing or kInput (both inputs; mul keeps each only for the other's gradient).
template <typename F, typename G>
Tensor binary(const Tensor& a, const Tensor& b, const char* op, unsigned saves, F f, G grad) {
  if (is_half(a.dtype()) && a.dtype() == b.dtype())
    return cast(binary(cast(a, DType::f32), cast(b, DType::f32), op, saves, f, grad), a.dtype());
  Tensor y = arith(a, b, op, f);
  const bool keep = saves & kInput;
  attach(y, op, {a, b}, [a = keep ? a : Tensor(), b = keep ? b : Tensor(), sa = a.shape(), sb = b.shape(), grad](const Tensor& g) -> std::vector<Tensor> {
    auto [da, db] = grad(g, a, b);
    return {da.defined() ? sum_to(da, sa) : da, db.defined() ? sum_to(db, sb) : db};
  });
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  return binary(a, b, "add", kNothing, [](auto x, auto y) { return x + y; },
                [](const Tensor& g, const Tensor&, const Tensor&) { return std::pair{g, g}; });
}
Tensor sub(const Tensor& a, const Tensor& b) {
  return binary(a, b, "sub", kNothing, [](auto x, auto y) { return x - y; },
                [](const Tensor& g, const Tensor&, const Tensor&) { return std::pair{g, neg(g)}; });
}
Tensor mul(const Tensor& a, const Tensor& b) {
  if (is_half(a.dtype()) && a.dtype() == b.dtype()) return cast(mul(cast(a, DType::f32), cast(b, DType::f32)), a.dtype());
  Tensor y = arith(a, b, "mul", [](auto x, auto y) { return x * y; });
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();  // each is kept only for the other's gradient
  attach(y, "mul", {a, b}, [a = need_b ? a : Tensor(), b = need_a ? b : Tensor(), sa = a.shape(), sb = b.shape()](const Tensor& g) -> std::vector<Tensor> {
    return {b.defined() ? sum_to(mul(g, b), sa) : Tensor(), a.defined() ? sum_to(mul(g, a), sb) : Tensor()};
  });
  return y;
}
Tensor div(const Tensor& a, const Tensor& b) {
  return binary(a, b, "div", kInput, [](auto x, auto y) { return x / y; },
                [](const Tensor& g, const Tensor& x, const Tensor& y) {
                  return std::pair{div(g, y), neg(div(mul(g, x), mul(y, y)))};
                });
}
Tensor maximum(const Tensor& a, const Tensor& b) {
  return binary(a, b, "maximum", kInput, [](auto x, auto y) { return x >= y ? x : y; },
                [](const Tensor& g, const Tensor& x, const Tensor& y) {
                  Tensor pick_a = ge(x, y), zero = scalar_like(0, g.dtype());
                  return std::pair{where(pick_a, g, zero), where(pick_a, zero, g)};
                });
}
Tensor minimum(const Tensor& a, const Tensor& b) {
  return binary(a, b, "minimum", kInput, [](auto x, auto y) { return x <= y ? x : y; },
                [](const Tensor& g, const Tensor& x, const Tensor& y) {
                  Tensor pick_a = le(x, y), zero = scalar_like(0, g.dtype());
                  return std::pair{where(pick_a, g, zero), where(pick_a, zero, g)};
                });
}

Tensor add(const Tensor& a, double s) {
  return unary(a, "add_scalar", kNothing, [s](auto x) { return x + s; }, [](const Tensor& g, const Tensor&, const Tensor&) { return g; });
}
Tensor mul(const Tensor& a, double s) {
  return unary(a, "mul_scalar", kNothing, [s](auto x) { return x * s; },
               [s](const Tensor& g, const Tensor&, const Tensor&) { return mul(g, s); });
}
Tensor pow(const Tensor& a, double p) {
  return unary(a, "pow", kInput, [p](auto x) { return std::pow(x, decltype(x)(p)); },
               [p](const Tensor& g, const Tensor& x, const Tensor&) { return mul(g, mul(pow(x, p - 1), p)); });
}
Tensor neg(const Tensor& x) {
  return unary(x, "neg", kNothing, [](auto v) { return -v; }, [](const Tensor& g, const Tensor&, const Tensor&) { return neg(g); });
}
Tensor exp(const Tensor& x) {
  return unary(x, "exp", kOutput, [](auto v) { return std::exp(v); },
               [](const Tensor& g, const Tensor&, const Tensor& y) { return mul(g, y); });
}
Tensor log(const Tensor& x) {
  return unary(x, "log", kInput, [](auto v) { return std::log(v); },
               [](const Tensor& g, const Tensor& x, const Tensor&) { return div(g, x); });
}
Tensor sqrt(const Tensor& x) {
  return unary(x, "sqrt", kOutput, [](auto v) { return std::sqrt(v); },
               [](const Tensor& g, const Tensor&, const Tensor& y) { return div(mul(g, 0.5), y); });
}
Tensor rsqrt(const Tensor& x) {
  return unary(x, "rsqrt", kOutput, [](auto v) { return 1 / std::sqrt(v); },
               [](const Tensor& g, const Tensor&, const Tensor& y) { return mul(g, mul(mul(y, mul(y, y)), -0.5)); });
}
Tensor tanh(const Tensor& x) {
  return unary(x, "tanh", kOutput, [](auto v) { return std::tanh(v); },
               [](const Tensor& g, const Tensor&, const Tensor& y) { return mul(g, add(mul(mul(y, y), -1.0), 1.0)); });
}
Tensor sigmoid(const Tensor& x) {
  return unary(x, "sigmoid", kOutput, [](auto v) { return 1 / (1 + std::exp(-v)); },
               [](const Tensor& g, const Tensor&, const Tensor& y) { return mul(g, mul(y, add(mul(y, -1.0), 1.0))); });
}
Tensor relu(const Tensor& x) {
  return unary(x, "relu", kInput, [](auto v) { return v > 0 ? v : decltype(v)(0); },
               [](const Tensor& g, const Tensor& x, const Tensor&) {
                 return mul(g, unary_kernel(x, "relu", [](auto v) { return v > 0 ? 1 : 0; }));
               });
}
Tensor abs(const Tensor& x) {
  return unary(x, "abs", kInput, [](auto v) { return std::abs(v); },
               [](const Tensor& g, const Tensor& x, const Tensor&) {
                 return mul(g, unary_kernel(x, "abs", [](auto v) { return (v > 0) - (v < 0); }));
               });
}
Tensor clamp(const Tensor& x, double lo, double hi) {
  LOOM_CHECK(lo <= hi, "clamp: lower bound {} exceeds upper bound {}", lo, hi);
  return unary(x, "clamp", kInput, [lo, hi](auto v) { return std::min(std::max(double(v), lo), hi); },
               [lo, hi](const Tensor& g, const Tensor& x, const Tensor&) {
                 return mul(g, unary_kernel(x, "clamp", [lo, hi](auto v) { return v >= lo && v <= hi ? 1 : 0; }));
               });
}

Tensor eq(const Tensor& a, const Tensor& b) { return compare(a, b, "eq", [](auto x, auto y) { return x == y; }); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(a, b, "ne", [](auto x, auto y) { return x != y; }); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(a, b, "lt", [](auto x, auto y) { return x < y; }); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(a, b, "le", [](auto x, auto y) { return x <= y; }); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare(a, b, "gt", [](auto x, auto y) { return x > y; }); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(a, b, "ge", [](auto x, auto y) { return x >= y; }); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  LOOM_CHECK(cond.dtype() == DType::u8, "where: condition must be u8, got {}", dtype_name(cond.dtype()));
  LOOM_CHECK(a.dtype() == b.dtype(), "where: dtype mismatch {} vs {}", dtype_name(a.dtype()), dtype_name(b.dtype()));
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = Tensor::empty(shape, a.dtype());
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* po = out.data<T>();
    const uint8_t* pc = cond.data<uint8_t>();
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    cpu::for_each_run<4>(shape,
                         {out.strides(), broadcast_strides(cond.shape(), cond.strides(), shape),
                          broadcast_strides(a.shape(), a.strides(), shape), broadcast_strides(b.shape(), b.strides(), shape)},
                         [&](auto off, int64_t n, auto st) {
                           for (int64_t i = 0; i < n; ++i)
                             po[off[0] + i * st[0]] = pc[off[1] + i * st[1]] ? pa[off[2] + i * st[2]] : pb[off[3] + i * st[3]];
                         });
  });
  attach(out, "where", {a, b}, [cond, sa = a.shape(), sb = b.shape()](const Tensor& g) -> std::vector<Tensor> {
    Tensor zero = scalar_like(0, g.dtype());
    return {sum_to(where(cond, g, zero), sa), sum_to(where(cond, zero, g), sb)};
  });
  return out;
}

namespace {
// What every in-place op checks before writing: both tensors exist, src broadcasts to dst's shape
// (dst itself is never resized), and dst is not a tensor autograd tracks.
void check_inplace(const char* op, const Tensor& dst, const Tensor* src) {
  LOOM_CHECK(dst.defined() && (!src || src->defined()), "{}: undefined tensor", op);
  LOOM_CHECK(!(autograd::grad_enabled() && dst.requires_grad()), "{}: in-place update of a tensor that requires grad", op);
  if (!src) return;
  LOOM_CHECK(broadcast_shapes(src->shape(), dst.shape(), op) == dst.shape(), "{}: source of shape {} does not broadcast to destination shape {}",
             op, src->shape(), dst.shape());
}
}  // namespace

void copy_(Tensor& dst, const Tensor& src) {
  check_inplace("copy_", dst, &src);
  dispatch_all(dst.dtype(), [&](auto dtag) {
    using D = decltype(dtag);
    dispatch_all(src.dtype(), [&](auto stag) {
      using S = decltype(stag);
      D* pd = static_cast<D*>(dst.raw_data());
      const S* ps = static_cast<const S*>(src.raw_data());
      cpu::for_each_run<2>(dst.shape(), {dst.strides(), broadcast_strides(src.shape(), src.strides(), dst.shape())},
                           [&](auto off, int64_t n, auto st) {
                             if (st[0] == 1 && st[1] == 1)
                               for (int64_t i = 0; i < n; ++i) pd[off[0] + i] = convert<D>(ps[off[1] + i]);
                             else
                               for (int64_t i = 0; i < n; ++i) pd[off[0] + i * st[0]] = convert<D>(ps[off[1] + i * st[1]]);
                           });
    });
  });
}

Tensor cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor y = Tensor::empty(x.shape(), dtype);
  copy_(y, x);
  if (is_floating(dtype)) attach(y, "cast", {x}, [src = x.dtype()](const Tensor& g) -> std::vector<Tensor> { return {cast(g, src)}; });
  return y;
}

Tensor clone(const Tensor& x) {
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  copy_(y, x);
  attach(y, "clone", {x}, [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  return y;
}

void add_(Tensor& dst, const Tensor& src) {
  check_inplace("add_", dst, &src);
  LOOM_CHECK(dst.dtype() == src.dtype(), "add_: dtype mismatch {} vs {}", dtype_name(dst.dtype()), dtype_name(src.dtype()));
  if (is_half(dst.dtype())) {
    copy_(dst, arith(cast(dst, DType::f32), cast(src, DType::f32), "add_", [](auto x, auto y) { return x + y; }));
    return;
  }
  dispatch_numeric(dst.dtype(), "add_", [&](auto tag) {
    using T = decltype(tag);
    T* pd = dst.data<T>();
    const T* ps = src.data<T>();
    cpu::for_each_run<2>(dst.shape(), {dst.strides(), broadcast_strides(src.shape(), src.strides(), dst.shape())},
                         [&](auto off, int64_t n, auto st) {
                           if (st[0] == 1 && st[1] == 1)
                             for (int64_t i = 0; i < n; ++i) pd[off[0] + i] += ps[off[1] + i];
                           else
                             for (int64_t i = 0; i < n; ++i) pd[off[0] + i * st[0]] += ps[off[1] + i * st[1]];
                         });
  });
}

void mul_(Tensor& dst, double s) {
  check_inplace("mul_", dst, nullptr);
  if (is_half(dst.dtype())) {
    copy_(dst, unary_kernel(cast(dst, DType::f32), "mul_", [s](auto v) { return v * s; }));
    return;
  }
  dispatch_numeric(dst.dtype(), "mul_", [&](auto tag) {
    using T = decltype(tag);
    T* pd = dst.data<T>();
    cpu::for_each_run<1>(dst.shape(), {dst.strides()}, [&](auto off, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i) pd[off[0] + i * st[0]] = T(pd[off[0] + i * st[0]] * s);
    });
  });
}

void check_finite(const Tensor& x, const char* op) {
  if (!is_floating(x.dtype())) return;
  std::vector<double> v = x.to_vector();
  for (size_t i = 0; i < v.size(); ++i)
    LOOM_CHECK(std::isfinite(v[i]), "{}: non-finite value {} at flat index {} of a tensor of shape {}", op, v[i], i, x.shape());
}

}  // namespace loom::ops
