// Op table rows for loom/ops/elementwise.h: arithmetic with broadcasting, scalar ops, unary
// math, comparisons, where, clamp, cast and clone, on contiguous, transposed, strided and
// expanded inputs. References are plain double loops (see op_testing.h).
#include <cmath>

#include "op_testing.h"

namespace optest {
namespace {

namespace ops = loom::ops;

// Value range [lo, hi) for a dtype: integer dtypes get small integers (u8: non-negative).
struct Range {
  double lo, hi;
};
Range range_for(DType dt, Range floats) {
  if (dt == DType::u8) return {0, 12};
  if (is_int(dt)) return {-10, 10};
  return floats;
}

// Operand pairs: same shape, broadcast both ways, transposed × strided, expanded × vector.
Tensors binary_inputs(DType dt, int v, Range ra, Range rb, bool integral = false) {
  ra = range_for(dt, ra);
  rb = range_for(dt, rb);
  auto a = [&](const Shape& s, uint64_t seed, Layout l = Layout::contiguous) { return gen(s, dt, seed, ra.lo, ra.hi, l, integral); };
  auto b = [&](const Shape& s, uint64_t seed, Layout l = Layout::contiguous) { return gen(s, dt, seed, rb.lo, rb.hi, l, integral); };
  switch (v) {
    case 0: return {a({3, 4}, 1), b({3, 4}, 2)};
    case 1: return {a({2, 3, 4}, 3), b({3, 1}, 4)};
    case 2: return {a({3, 1}, 5), b({2, 1, 4}, 6)};
    case 3: return {a({4, 3}, 7, Layout::transposed), b({4, 3}, 8, Layout::strided)};
    default: return {a({2, 3, 4}, 9, Layout::expanded), b({4}, 10)};
  }
}
constexpr int kBinaryVariants = 5;

Tensors unary_inputs(DType dt, int v, Range r) {
  switch (v) {
    case 0: return {gen({3, 5}, dt, 11, r.lo, r.hi)};
    case 1: return {gen({4, 3}, dt, 12, r.lo, r.hi, Layout::transposed)};
    case 2: return {gen({2, 3, 4}, dt, 13, r.lo, r.hi, Layout::strided)};
    case 3: return {gen({2, 3}, dt, 14, r.lo, r.hi, Layout::expanded)};
    default: return {gen({}, dt, 15, r.lo, r.hi)};
  }
}
constexpr int kUnaryVariants = 5;

using Fn2 = double (*)(double, double);
using BinaryOp = Tensor (*)(const Tensor&, const Tensor&);

OpEntry binary(std::string name, BinaryOp op, Fn2 f, std::vector<DType> dtypes, Range ra = {-1, 1}, Range rb = {-1, 1}) {
  return {.name = std::move(name),
          .dtypes = std::move(dtypes),
          .variants = kBinaryVariants,
          .inputs = [ra, rb](DType dt, int v) { return binary_inputs(dt, v, ra, rb); },
          .op = [op](const Tensors& x) { return Tensors{op(x[0], x[1])}; },
          .ref = [f](const Arrs& x) { return Arrs{map2(x[0], x[1], f)}; }};
}

OpEntry unary(std::string name, std::function<Tensor(const Tensor&)> op, std::function<double(double)> f, Range r = {-2, 2},
              double tol_scale = 1) {
  return {.name = std::move(name),
          .dtypes = kFloat,
          .variants = kUnaryVariants,
          .inputs = [r](DType dt, int v) { return unary_inputs(dt, v, r); },
          .op = [op](const Tensors& x) { return Tensors{op(x[0])}; },
          .ref = [f](const Arrs& x) { return Arrs{map1(x[0], f)}; },
          .tol_scale = tol_scale};
}

OpEntry compare(std::string name, BinaryOp op, Fn2 f) {
  return {.name = std::move(name),
          .dtypes = kAll,
          .differentiable = false,
          .variants = kBinaryVariants,
          .inputs = [](DType dt, int v) { return binary_inputs(dt, v, {0, 4}, {0, 4}, /*integral=*/true); },
          .op = [op](const Tensors& x) { return Tensors{op(x[0], x[1])}; },
          .ref = [f](const Arrs& x) { return Arrs{map2(x[0], x[1], f)}; },
          .out_dtype = DType::u8};
}

// Nearest value with `mantissa` explicit bits (ties to even), exponents clamped below at
// min_exp (subnormals): bf16 is (7, -126), f16 is (10, -14).
double round_to_bits(double x, int mantissa, int min_exp) {
  if (x == 0) return 0;
  double q = std::ldexp(1.0, std::max(std::ilogb(x), min_exp) - mantissa);
  return std::nearbyint(x / q) * q;
}

OpEntry cast_to(DType to, std::function<double(double)> f, std::vector<DType> from, bool differentiable, double tol_scale) {
  return {.name = std::string("cast_to_") + loom::dtype_name(to),
          .dtypes = std::move(from),
          .differentiable = differentiable,
          .variants = kUnaryVariants,
          .inputs = [](DType dt, int v) { return unary_inputs(dt, v, range_for(dt, {-5, 5})); },
          .op = [to](const Tensors& x) { return Tensors{ops::cast(x[0], to)}; },
          .ref = [f](const Arrs& x) { return Arrs{map1(x[0], f)}; },
          .out_dtype = to,
          .tol_scale = tol_scale,
          .fd = to == DType::f64};
}

std::vector<OpEntry> make_entries() {
  std::vector<OpEntry> t;
  t.push_back(binary("add", ops::add, [](double a, double b) { return a + b; }, kAll));
  t.push_back(binary("sub", ops::sub, [](double a, double b) { return a - b; }, kAll));
  t.push_back(binary("mul", ops::mul, [](double a, double b) { return a * b; }, kAll));
  t.push_back(binary("div", ops::div, [](double a, double b) { return a / b; }, kFloat, {-2, 2}, {0.5, 2}));
  t.push_back(binary("maximum", ops::maximum, [](double a, double b) { return std::max(a, b); }, kAll));
  t.push_back(binary("minimum", ops::minimum, [](double a, double b) { return std::min(a, b); }, kAll));

  t.push_back(unary("add_scalar", [](const Tensor& x) { return ops::add(x, 2.5); }, [](double x) { return x + 2.5; }));
  t.push_back(unary("mul_scalar", [](const Tensor& x) { return ops::mul(x, -1.5); }, [](double x) { return x * -1.5; }));
  t.push_back(unary("pow_3", [](const Tensor& x) { return ops::pow(x, 3); }, [](double x) { return x * x * x; }));
  t.push_back(unary("pow_half", [](const Tensor& x) { return ops::pow(x, 0.5); }, [](double x) { return std::sqrt(x); }, {0.5, 3}));
  t.push_back(unary("pow_neg", [](const Tensor& x) { return ops::pow(x, -1.5); }, [](double x) { return 1 / (x * std::sqrt(x)); }, {0.5, 3}));
  t.push_back(unary("neg", ops::neg, [](double x) { return -x; }));
  t.push_back(unary("exp", ops::exp, [](double x) { return std::exp(x); }));
  t.push_back(unary("log", ops::log, [](double x) { return std::log(x); }, {0.2, 4}));
  t.push_back(unary("sqrt", ops::sqrt, [](double x) { return std::sqrt(x); }, {0.2, 4}));
  t.push_back(unary("rsqrt", ops::rsqrt, [](double x) { return 1 / std::sqrt(x); }, {0.2, 4}));
  t.push_back(unary("tanh", ops::tanh, [](double x) { return std::tanh(x); }));
  t.push_back(unary("sigmoid", ops::sigmoid, [](double x) { return 1 / (1 + std::exp(-x)); }));
  t.push_back(unary("relu", ops::relu, [](double x) { return x > 0 ? x : 0.0; }));
  t.push_back(unary("abs", ops::abs, [](double x) { return x < 0 ? -x : x; }));
  t.push_back(unary("clamp", [](const Tensor& x) { return ops::clamp(x, -0.5, 0.7); },
                    [](double x) { return x < -0.5 ? -0.5 : x > 0.7 ? 0.7 : x; }));

  t.push_back(compare("eq", ops::eq, [](double a, double b) { return double(a == b); }));
  t.push_back(compare("ne", ops::ne, [](double a, double b) { return double(a != b); }));
  t.push_back(compare("lt", ops::lt, [](double a, double b) { return double(a < b); }));
  t.push_back(compare("le", ops::le, [](double a, double b) { return double(a <= b); }));
  t.push_back(compare("gt", ops::gt, [](double a, double b) { return double(a > b); }));
  t.push_back(compare("ge", ops::ge, [](double a, double b) { return double(a >= b); }));

  t.push_back({.name = "where",
               .dtypes = kAll,
               .variants = 3,
               .inputs =
                   [](DType dt, int v) {
                     Range r = range_for(dt, {-1, 1});
                     switch (v) {
                       case 0: return Tensors{gen({3, 4}, DType::u8, 21, 0, 2), gen({3, 4}, dt, 22, r.lo, r.hi), gen({3, 4}, dt, 23, r.lo, r.hi)};
                       case 1:
                         return Tensors{gen({3, 1}, DType::u8, 24, 0, 2), gen({2, 3, 4}, dt, 25, r.lo, r.hi, Layout::strided),
                                        gen({4}, dt, 26, r.lo, r.hi)};
                       default:
                         return Tensors{gen({2, 4, 3}, DType::u8, 27, 0, 2, Layout::expanded), gen({4, 1}, dt, 28, r.lo, r.hi),
                                        gen({4, 3}, dt, 29, r.lo, r.hi, Layout::transposed)};
                     }
                   },
               .op = [](const Tensors& x) { return Tensors{ops::where(x[0], x[1], x[2])}; },
               .ref =
                   [](const Arrs& x) {
                     Arr out = filled(bcast_shape(bcast_shape(x[0].shape, x[1].shape), x[2].shape));
                     for_each_index(out.shape, [&](const Index& i) { at(out, i) = bcast_at(x[0], i) != 0 ? bcast_at(x[1], i) : bcast_at(x[2], i); });
                     return Arrs{out};
                   }});

  auto bf16_round = [](double x) { return round_to_bits(x, 7, -126); };
  auto f16_round = [](double x) { return round_to_bits(x, 10, -14); };
  auto f32_round = [](double x) { return double(float(x)); };
  t.push_back(cast_to(DType::f64, [](double x) { return x; }, kFloat, true, 1));
  t.push_back(cast_to(DType::f32, f32_round, kFloat, true, 1e-2));
  t.push_back(cast_to(DType::bf16, bf16_round, kFloat, true, 1e-2));
  t.push_back(cast_to(DType::f16, f16_round, kFloat, true, 1e-2));
  t.push_back(cast_to(DType::i32, [](double x) { return std::trunc(x); }, kFloat, false, 1));
  t.push_back(cast_to(DType::i64, [](double x) { return x; }, {DType::i32, DType::u8}, false, 1));
  t.push_back(cast_to(DType::u8, [](double x) { return x; }, {DType::i32, DType::i64}, false, 1));
  t.push_back({.name = "cast_int_to_f32",
               .dtypes = {DType::i32, DType::i64, DType::u8},
               .differentiable = false,
               .variants = kUnaryVariants,
               .inputs = [](DType dt, int v) { return unary_inputs(dt, v, range_for(dt, {0, 0})); },
               .op = [](const Tensors& x) { return Tensors{ops::cast(x[0], DType::f32)}; },
               .ref = [](const Arrs& x) { return Arrs{x[0]}; },
               .out_dtype = DType::f32});

  t.push_back({.name = "clone",
               .dtypes = kAll,
               .variants = kUnaryVariants,
               .inputs = [](DType dt, int v) { return unary_inputs(dt, v, range_for(dt, {-2, 2})); },
               .op =
                   [](const Tensors& x) {
                     Tensor y = ops::clone(x[0]);
                     EXPECT_TRUE(y.is_contiguous());
                     EXPECT_NE(y.storage(), x[0].storage());
                     return Tensors{y};
                   },
               .ref = [](const Arrs& x) { return Arrs{x[0]}; }});
  return t;
}

const std::vector<OpEntry>& entries() {
  static const std::vector<OpEntry> t = make_entries();
  return t;
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Elementwise, OpForward, ::testing::ValuesIn(cases(entries())), case_name);
INSTANTIATE_TEST_SUITE_P(Elementwise, OpGrad, ::testing::ValuesIn(grad_cases(entries())), grad_case_name);

}  // namespace optest
