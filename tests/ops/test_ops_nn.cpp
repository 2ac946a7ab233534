// Op table rows for loom/ops/nn.h: layer_norm (with/without weight and bias), rms_norm, gelu,
// silu, swiglu, softmax/log_softmax over any dim, cross_entropy (mean/sum/none, ignored targets,
// padded vocabulary), rope (with/without positions), attention (causal, GQA, doc_ids, Tq < Tk,
// explicit scale) and embedding, against references written from the formulas. Dropout has
// no naive reference; its mask semantics are tested on their own below.
#include <cmath>

#include "loom/ops/matmul.h"
#include "loom/ops/nn.h"
#include "op_testing.h"

namespace optest {
namespace {

namespace ops = loom::ops;
using loom::RngKey;
using L = Layout;

bool absent(const Arr& a) { return a.v.empty(); }
Tensor g(const Shape& s, DType dt, uint64_t seed, Layout l = L::contiguous, double lo = -1, double hi = 1) {
  return gen(s, dt, seed, lo, hi, l);
}

// ---- references ----

// Applies f(row) -> row to every row along the last dim.
template <typename F> Arr rowwise(const Arr& x, F&& f) {
  const int64_t C = x.shape.back(), N = count(x.shape) / C;
  Arr out = x;
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> row(x.v.begin() + n * C, x.v.begin() + (n + 1) * C);
    row = f(row);
    std::copy(row.begin(), row.end(), out.v.begin() + n * C);
  }
  return out;
}

Arr layer_norm_ref(const Arrs& x) {
  return rowwise(x[0], [&](std::vector<double> r) {
    double mean = 0, var = 0;
    for (double v : r) mean += v / double(r.size());
    for (double v : r) var += (v - mean) * (v - mean) / double(r.size());
    for (size_t c = 0; c < r.size(); ++c) {
      r[c] = (r[c] - mean) / std::sqrt(var + 1e-5);
      if (x.size() > 1 && !absent(x[1])) r[c] *= x[1].v[c];
      if (x.size() > 2 && !absent(x[2])) r[c] += x[2].v[c];
    }
    return r;
  });
}

Arr rms_norm_ref(const Arrs& x) {
  return rowwise(x[0], [&](std::vector<double> r) {
    double ms = 0;
    for (double v : r) ms += v * v / double(r.size());
    for (size_t c = 0; c < r.size(); ++c) r[c] = r[c] / std::sqrt(ms + 1e-6) * x[1].v[c];
    return r;
  });
}

double gelu_ref(double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }
double silu_ref(double x) { return x / (1 + std::exp(-x)); }

// softmax (or log_softmax) along dim, from the definition.
Arr softmax_ref(const Arr& x, size_t dim, bool log) {
  Arr out = x;
  for_each_index(x.shape, [&](const Index& i) {
    Index j = i;
    double m = -INFINITY, s = 0;
    for (j[dim] = 0; j[dim] < x.shape[dim]; ++j[dim]) m = std::max(m, at(x, j));
    for (j[dim] = 0; j[dim] < x.shape[dim]; ++j[dim]) s += std::exp(at(x, j) - m);
    at(out, i) = log ? at(x, i) - m - std::log(s) : std::exp(at(x, i) - m) / s;
  });
  return out;
}

// Per-position loss lse(logits[:V]) - logits[target]; ignored positions give 0.
Arr cross_entropy_ref(const Arr& logits, const Arr& t, ops::Reduction red, int64_t num_classes, int64_t ignore) {
  const int64_t Vp = logits.shape.back(), V = num_classes < 0 ? Vp : num_classes;
  Arr per = filled(t.shape);
  double total = 0, counted = 0;
  for (size_t n = 0; n < t.v.size(); ++n) {
    if (int64_t(t.v[n]) == ignore) continue;
    const double* row = logits.v.data() + n * size_t(Vp);
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < V; ++c) m = std::max(m, row[c]);
    for (int64_t c = 0; c < V; ++c) s += std::exp(row[c] - m);
    per.v[n] = m + std::log(s) - row[int64_t(t.v[n])];
    total += per.v[n];
    counted += 1;
  }
  if (red == ops::Reduction::none) return per;
  return {{}, {red == ops::Reduction::sum ? total : counted > 0 ? total / counted : 0.0}};
}

// x: (B, T, H, D); pairs (i, i + D/2) rotate by pos * theta^(-2i/D).
Arr rope_ref(const Arrs& x, double theta) {
  const Arr& a = x[0];
  const int64_t D = a.shape[3], half = D / 2;
  Arr out = a;
  for_each_index({a.shape[0], a.shape[1], a.shape[2], half}, [&](const Index& i) {
    double pos = x.size() > 1 ? x[1].v[size_t(i[1])] : double(i[1]);
    double ang = pos * std::pow(theta, -2.0 * double(i[3]) / double(D));
    Index lo = i, hi = i;
    hi[3] += half;
    at(out, lo) = at(a, lo) * std::cos(ang) - at(a, hi) * std::sin(ang);
    at(out, hi) = at(a, hi) * std::cos(ang) + at(a, lo) * std::sin(ang);
  });
  return out;
}

// q: (B, H, Tq, D), k, v: (B, Hkv, Tk, D), doc: (B, T) or absent.
Arr attention_ref(const Arrs& x, bool causal, double scale) {
  const Arr &q = x[0], &k = x[1], &v = x[2];
  const bool has_doc = x.size() > 3;
  const int64_t B = q.shape[0], H = q.shape[1], Tq = q.shape[2], D = q.shape[3], Hkv = k.shape[1], Tk = k.shape[2];
  const double s = scale == 0 ? 1 / std::sqrt(double(D)) : scale;
  Arr out = filled(q.shape);
  for_each_index({B, H, Tq}, [&](const Index& bhi) {
    const int64_t b = bhi[0], h = bhi[1], i = bhi[2], kh = h / (H / Hkv);
    std::vector<double> w(size_t(Tk), -INFINITY);
    double m = -INFINITY;
    for (int64_t j = 0; j < Tk; ++j) {
      if (causal && j > Tk - Tq + i) continue;
      if (has_doc && at(x[3], {b, i}) != at(x[3], {b, j})) continue;
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += at(q, {b, h, i, d}) * at(k, {b, kh, j, d});
      w[size_t(j)] = s * dot;
      m = std::max(m, w[size_t(j)]);
    }
    if (m == -INFINITY) return;  // sees no key: zeros
    double z = 0;
    for (double& e : w) z += (e = std::exp(e - m));
    for (int64_t d = 0; d < D; ++d) {
      double acc = 0;
      for (int64_t j = 0; j < Tk; ++j) acc += w[size_t(j)] / z * at(v, {b, kh, j, d});
      at(out, {b, h, i, d}) = acc;
    }
  });
  return out;
}

// ---- rows ----

OpEntry layer_norm_row(std::string name, bool weight, bool bias) {
  return {.name = std::move(name),
          .dtypes = kFloat,
          .variants = 3,
          .inputs =
              [weight, bias](DType dt, int v) {
                const Layout lx[] = {L::contiguous, L::transposed, L::expanded}, lp[] = {L::contiguous, L::strided, L::expanded};
                Tensors in = {g({2, 3, 8}, dt, 120 + uint64_t(v), lx[v], -2, 2)};
                in.push_back(weight ? g({8}, dt, 123, lp[v % 2], 0.5, 1.5) : Tensor());
                in.push_back(bias ? g({8}, dt, 124, lp[v % 2]) : Tensor());
                return in;
              },
          .op = [](const Tensors& x) { return Tensors{ops::layer_norm(x[0], x[1], x[2])}; },
          .ref = [](const Arrs& x) { return Arrs{layer_norm_ref(x)}; },
          .tol_scale = 2};
}

OpEntry activation_row(std::string name, Tensor (*op)(const Tensor&), double (*f)(double)) {
  return {.name = std::move(name),
          .dtypes = kFloat,
          .variants = 3,
          .inputs = [](DType dt, int v) { return Tensors{g({3, 2, 5}, dt, 130 + uint64_t(v), v == 0 ? L::contiguous : v == 1 ? L::transposed : L::expanded, -3, 3)}; },
          .op = [op](const Tensors& x) { return Tensors{op(x[0])}; },
          .ref = [f](const Arrs& x) { return Arrs{map1(x[0], f)}; }};
}

OpEntry softmax_row(std::string name, bool log, int64_t dim) {
  return {.name = std::move(name),
          .dtypes = kFloat,
          .variants = 3,
          .inputs = [](DType dt, int v) { return Tensors{g({2, 3, 5}, dt, 140 + uint64_t(v), v == 0 ? L::contiguous : v == 1 ? L::transposed : L::strided, -3, 3)}; },
          .op = [log, dim](const Tensors& x) { return Tensors{log ? ops::log_softmax(x[0], dim) : ops::softmax(x[0], dim)}; },
          .ref = [log, dim](const Arrs& x) { return Arrs{softmax_ref(x[0], size_t(dim < 0 ? dim + 3 : dim), log)}; },
          .tol_scale = 2};
}

// Targets include ignored positions; variant 1 uses i32 targets and 3-D transposed logits.
OpEntry cross_entropy_row(std::string name, ops::Reduction red, int64_t num_classes, int64_t ignore = -100) {
  return {.name = std::move(name),
          .dtypes = kFloat,
          .variants = 3,
          .inputs =
              [ignore](DType dt, int v) {
                const int64_t x = ignore;
                if (v == 0) return Tensors{g({5, 7}, dt, 150, L::contiguous, -3, 3), ints({0, 4, x, 2, 1}, {5})};
                if (v == 1) return Tensors{g({2, 3, 7}, dt, 151, L::transposed, -3, 3), ints({3, x, 0, 1, 4, 4}, {2, 3}, DType::i32)};
                return Tensors{g({2, 2, 7}, dt, 152, L::expanded, -3, 3), ints({x, 2, 0, x}, {2, 2})};
              },
          .op = [red, num_classes, ignore](const Tensors& x) { return Tensors{ops::cross_entropy(x[0], x[1], ignore, red, num_classes)}; },
          .ref = [red, num_classes, ignore](const Arrs& x) { return Arrs{cross_entropy_ref(x[0], x[1], red, num_classes, ignore)}; },
          .tol_scale = 2};
}

OpEntry rope_row(std::string name, bool positions) {
  return {.name = std::move(name),
          .dtypes = kFloat,
          .variants = 2,
          .inputs =
              [positions](DType dt, int v) {
                Tensors in = {g({2, 4, 3, 6}, dt, 160 + uint64_t(v), v == 0 ? L::contiguous : L::transposed)};
                if (positions) in.push_back(ints({3, 17, 42, 0}, {4}, v == 0 ? DType::i64 : DType::i32));
                return in;
              },
          .op = [](const Tensors& x) { return Tensors{ops::rope(x[0], 10000, x.size() > 1 ? x[1] : Tensor())}; },
          .ref = [](const Arrs& x) { return Arrs{rope_ref(x, 10000)}; },
          .tol_scale = 3};
}

struct AttnShape {
  int64_t B, H, Hkv, Tq, Tk, D;
};
// Variant 0 contiguous; variant 1 q transposed in memory, k strided, v broadcast over batch.
OpEntry attention_row(std::string name, AttnShape s, bool causal, std::vector<int64_t> doc = {}, double scale = 0) {
  return {.name = std::move(name),
          .dtypes = kFloat,
          .variants = 2,
          .inputs =
              [s, doc](DType dt, int v) {
                Layout lq = v ? L::transposed : L::contiguous, lk = v ? L::strided : L::contiguous, lv = v ? L::expanded : L::contiguous;
                Tensors in = {g({s.B, s.H, s.Tq, s.D}, dt, 170, lq), g({s.B, s.Hkv, s.Tk, s.D}, dt, 171, lk), g({s.B, s.Hkv, s.Tk, s.D}, dt, 172, lv)};
                if (!doc.empty()) in.push_back(ints(doc, {s.B, s.Tk}, v ? DType::i32 : DType::i64));
                return in;
              },
          .op = [causal, scale](const Tensors& x) {
            return Tensors{ops::scaled_dot_product_attention(x[0], x[1], x[2], causal, x.size() > 3 ? x[3] : Tensor(), scale)};
          },
          .ref = [causal, scale](const Arrs& x) { return Arrs{attention_ref(x, causal, scale)}; },
          .tol_scale = 2};
}

std::vector<OpEntry> make_entries() {
  std::vector<OpEntry> t;
  t.push_back(layer_norm_row("layer_norm", true, true));
  t.push_back(layer_norm_row("layer_norm_no_affine", false, false));
  t.push_back(layer_norm_row("layer_norm_weight_only", true, false));
  t.push_back(layer_norm_row("layer_norm_bias_only", false, true));
  t.push_back({.name = "rms_norm",
               .dtypes = kFloat,
               .variants = 3,
               .inputs =
                   [](DType dt, int v) {
                     const Layout lx[] = {L::contiguous, L::transposed, L::expanded};
                     return Tensors{g({2, 3, 8}, dt, 125 + uint64_t(v), lx[v], -2, 2), g({8}, dt, 128, v == 1 ? L::strided : L::contiguous, 0.5, 1.5)};
                   },
               .op = [](const Tensors& x) { return Tensors{ops::rms_norm(x[0], x[1])}; },
               .ref = [](const Arrs& x) { return Arrs{rms_norm_ref(x)}; },
               .tol_scale = 2});

  t.push_back(activation_row("gelu", ops::gelu, gelu_ref));
  t.push_back(activation_row("silu", ops::silu, silu_ref));
  t.push_back({.name = "swiglu",
               .dtypes = kFloat,
               .variants = 2,
               .inputs =
                   [](DType dt, int v) {
                     return Tensors{g({3, 4}, dt, 135, v ? L::transposed : L::contiguous, -3, 3), g({3, 4}, dt, 136, v ? L::strided : L::contiguous, -2, 2)};
                   },
               .op = [](const Tensors& x) { return Tensors{ops::swiglu(x[0], x[1])}; },
               .ref = [](const Arrs& x) { return Arrs{map2(x[0], x[1], [](double a, double b) { return silu_ref(a) * b; })}; }});

  t.push_back(softmax_row("softmax", false, -1));
  t.push_back(softmax_row("softmax_dim0", false, 0));
  t.push_back(softmax_row("softmax_dim1", false, 1));
  t.push_back(softmax_row("log_softmax", true, -1));
  t.push_back(softmax_row("log_softmax_dim0", true, 0));

  t.push_back(cross_entropy_row("cross_entropy_mean", ops::Reduction::mean, -1));
  t.push_back(cross_entropy_row("cross_entropy_sum", ops::Reduction::sum, -1));
  t.push_back(cross_entropy_row("cross_entropy_none", ops::Reduction::none, -1));
  t.push_back(cross_entropy_row("cross_entropy_mean_padded_vocab", ops::Reduction::mean, 5));
  t.push_back(cross_entropy_row("cross_entropy_none_padded_vocab", ops::Reduction::none, 5));
  t.push_back(cross_entropy_row("cross_entropy_ignore_index_4", ops::Reduction::mean, 6, 4));
  t.push_back({.name = "cross_entropy_all_ignored",
               .dtypes = kFloat,
               .inputs = [](DType dt, int) { return Tensors{g({3, 4}, dt, 153), ints({-100, -100, -100}, {3})}; },
               .op = [](const Tensors& x) { return Tensors{ops::cross_entropy(x[0], x[1])}; },
               .ref = [](const Arrs& x) { return Arrs{cross_entropy_ref(x[0], x[1], ops::Reduction::mean, -1, -100)}; }});

  t.push_back(rope_row("rope", false));
  t.push_back(rope_row("rope_positions", true));

  t.push_back(attention_row("attention", {2, 2, 2, 5, 5, 4}, false));
  t.push_back(attention_row("attention_causal", {2, 2, 2, 5, 5, 4}, true));
  t.push_back(attention_row("attention_gqa", {1, 4, 2, 5, 5, 4}, false));
  t.push_back(attention_row("attention_gqa_causal", {2, 4, 2, 5, 5, 4}, true));
  t.push_back(attention_row("attention_doc_ids", {2, 2, 1, 6, 6, 4}, false, {0, 0, 0, 1, 1, 2, 5, 7, 7, 7, 7, 7}));
  t.push_back(attention_row("attention_doc_ids_causal", {2, 4, 2, 6, 6, 4}, true, {0, 0, 0, 1, 1, 2, 5, 7, 7, 7, 7, 7}));
  t.push_back(attention_row("attention_kv_cache_causal", {2, 4, 2, 2, 5, 4}, true));
  t.push_back(attention_row("attention_tq_lt_tk_scale", {1, 2, 2, 3, 6, 4}, false, {}, 0.3));

  t.push_back({.name = "embedding",
               .dtypes = kFloat,
               .variants = 3,
               .inputs =
                   [](DType dt, int v) {
                     if (v == 0) return Tensors{ints({3, 0, 3, 5}, {4}), g({6, 4}, dt, 180)};
                     if (v == 1) return Tensors{ints({1, 1, 2, 0, 5, 4}, {2, 3}, DType::i32), g({6, 4}, dt, 181, L::transposed)};
                     return Tensors{ints({2}, {1}, DType::u8), g({6, 4}, dt, 182, L::strided)};
                   },
               .op = [](const Tensors& x) { return Tensors{ops::embedding(x[0], x[1])}; },
               .ref =
                   [](const Arrs& x) {
                     const int64_t C = x[1].shape[1];
                     Shape s = x[0].shape;
                     s.push_back(C);
                     Arr out = filled(s);
                     for (size_t n = 0; n < x[0].v.size(); ++n)
                       for (int64_t c = 0; c < C; ++c) out.v[n * size_t(C) + size_t(c)] = x[1].v[size_t(int64_t(x[0].v[n]) * C + c)];
                     return Arrs{out};
                   }});
  return t;
}

const std::vector<OpEntry>& entries() {
  static const std::vector<OpEntry> t = make_entries();
  return t;
}

INSTANTIATE_TEST_SUITE_P(Nn, OpForward, ::testing::ValuesIn(cases(entries())), case_name);
INSTANTIATE_TEST_SUITE_P(Nn, OpGrad, ::testing::ValuesIn(grad_cases(entries())), grad_case_name);

// ---- dropout: no naive reference, so its contract is checked directly ----

class Dropout : public ::testing::TestWithParam<DType> {};

// Each output is 0 or x / (1 - p); the dropped fraction is near p; the same key gives the same
// mask and another key another one.
TEST_P(Dropout, ForwardMaskSemantics) {
  const DType dt = GetParam();
  const double p = 0.3;
  Tensor x = gen({40, 50}, dt, 190, 0.5, 2);
  std::vector<double> xv = x.to_vector(), y = ops::dropout(x, p, RngKey{7, 100}).to_vector();
  int dropped = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (y[i] == 0) {
      ++dropped;
      continue;
    }
    ASSERT_NEAR(y[i], xv[i] / (1 - p), tol_of(dt) * (1 + xv[i] / (1 - p))) << "element " << i;
  }
  EXPECT_NEAR(double(dropped) / double(y.size()), p, 0.03);
  EXPECT_EQ(ops::dropout(x, p, RngKey{7, 100}).to_vector(), y);
  EXPECT_NE(ops::dropout(x, p, RngKey{8, 100}).to_vector(), y);
  EXPECT_NE(ops::dropout(x, p, RngKey{7, 101}).to_vector(), y);
}

// The mask is a function of (seed, offset + logical index): shifting the offset by one shifts
// the mask by one element, and a non-contiguous input uses its logical order.
TEST_P(Dropout, MaskFollowsKeyOffsetAndLogicalOrder) {
  const DType dt = GetParam();
  Tensor x = gen({64}, dt, 191, 0.5, 2);
  std::vector<double> full = ops::dropout(x, 0.5, RngKey{3, 10}).to_vector();
  std::vector<double> tail = ops::dropout(ops::slice(x, 0, 1, 64), 0.5, RngKey{3, 11}).to_vector();
  for (size_t i = 0; i < tail.size(); ++i) EXPECT_EQ(tail[i] == 0, full[i + 1] == 0) << "element " << i + 1;
  Tensor xt = gen({6, 5}, dt, 192, 0.5, 2, L::transposed);
  EXPECT_EQ(ops::dropout(xt, 0.5, RngKey{4, 0}).to_vector(), ops::dropout(ops::contiguous(xt), 0.5, RngKey{4, 0}).to_vector());
  EXPECT_EQ(ops::dropout(x, 0.0, RngKey{3, 10}).to_vector(), x.to_vector());
}

// A block of columns of a wider tensor (a tensor-parallel rank's features) takes the whole's mask
// there, in forward and backward.
TEST_P(Dropout, AColumnBlockTakesTheWholesMask) {
  const DType dt = GetParam();
  Tensor x = gen({3, 4, 20}, dt, 195, 0.5, 2);
  const std::vector<double> whole = ops::contiguous(ops::narrow(ops::dropout(x, 0.5, RngKey{5, 40}), 2, 7, 9)).to_vector();
  Tensor block = ops::contiguous(ops::narrow(x, 2, 7, 9));
  block.set_requires_grad(true);
  Tensor y = ops::dropout(block, 0.5, RngKey{5, 40}, 20, 7);
  EXPECT_EQ(y.to_vector(), whole);
  ops::sum(y).backward();
  const std::vector<double> g = block.grad().to_vector();
  for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(g[i] == 0, whole[i] == 0) << "element " << i;
  EXPECT_THROW(ops::dropout(block, 0.5, RngKey{5, 40}, 20, 12), loom::Error);  // columns past the row
}

// The gradient is the same mask times 1/(1-p).
TEST_P(Dropout, GradientIsMaskTimesScale) {
  const DType dt = GetParam();
  const double p = 0.4;
  Tensor x = gen({10, 12}, dt, 193, 0.5, 2);
  x.set_requires_grad(true);
  Tensor y = ops::dropout(x, p, RngKey{9, 0});
  Tensor r = loom::rand({10, 12}, RngKey{194, 0}, -1, 1, dt);
  ops::sum(ops::mul(y, r)).backward();
  std::vector<double> yv = y.to_vector(), rv = r.to_vector(), gv = x.grad().to_vector();
  for (size_t i = 0; i < gv.size(); ++i) {
    double want = yv[i] == 0 ? 0 : rv[i] / (1 - p);
    EXPECT_NEAR(gv[i], want, 2 * tol_of(dt) * (1 + std::abs(want))) << "element " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Nn, Dropout, ::testing::ValuesIn(kFloat), [](const auto& i) { return std::string(loom::dtype_name(i.param)); });

// Row maxima are subtracted: logits far outside exp's range give exact probabilities and losses.
TEST(NnEdgeCases, SoftmaxAndCrossEntropyStableForLargeLogits) {
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    Tensor x = Tensor::from_vector({1000, 1000, -1000, 0}, {2, 2}, dt);
    std::vector<double> p = ops::softmax(x).to_vector(), lp = ops::log_softmax(x).to_vector();
    EXPECT_EQ(p, (std::vector<double>{0.5, 0.5, 0, 1})) << loom::dtype_name(dt);
    EXPECT_NEAR(lp[0], -std::log(2.0), 1e-2) << loom::dtype_name(dt);
    EXPECT_EQ(lp[3], 0) << loom::dtype_name(dt);
    Tensor loss = ops::cross_entropy(x, ints({1, 1}, {2}), -100, ops::Reduction::none);
    EXPECT_NEAR(loss.to_vector()[0], std::log(2.0), 1e-2) << loom::dtype_name(dt);
    EXPECT_EQ(loss.to_vector()[1], 0) << loom::dtype_name(dt);
  }
}

TEST(DropoutGrad, MatchesFiniteDifferences) {
  for (Layout l : {L::contiguous, L::transposed}) {
    expect_fd_grads([](const Tensors& x) { return Tensors{ops::dropout(x[0], 0.35, RngKey{11, 5})}; }, {gen({6, 7}, DType::f64, 195, -1, 1, l)});
  }
}

}  // namespace
}  // namespace optest

// The backward writes the gradient over the saved logits only when nothing else can see them:
// a caller that keeps the logits keeps their values, and both paths give the same gradient.
TEST(CrossEntropy, GradientReusesTheLogitsOnlyWhenNoOneElseHoldsThem) {
  loom::Tensor w = loom::rand({6, 4}, {3, 0});
  w.set_requires_grad(true);
  loom::Tensor x = loom::rand({5, 6}, {4, 0}), targets = loom::Tensor::from_ints({0, 3, 1, 2, -100}, {5});
  loom::ops::cross_entropy(loom::ops::matmul(x, w), targets).backward();  // logits are a temporary
  const std::vector<double> temp_grad = w.grad().to_vector();
  w.zero_grad();
  loom::Tensor logits = loom::ops::matmul(x, w);
  const std::vector<double> before = logits.to_vector();
  loom::ops::cross_entropy(logits, targets).backward();
  EXPECT_EQ(logits.to_vector(), before) << "the caller's logits were overwritten";
  EXPECT_EQ(w.grad().to_vector(), temp_grad);
}
