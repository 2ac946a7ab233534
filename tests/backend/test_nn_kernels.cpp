// Tests for the CPU neural-net kernels in loom/backend/cpu: every kernel against a naive
// double-precision reference written here, every backward against central finite differences of
// that reference, and the row reductions for bit-identical results under 1, 2 and 3 threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "loom/backend/cpu/activation.h"
#include "loom/backend/cpu/adamw.h"
#include "loom/backend/cpu/cross_entropy.h"
#include "loom/backend/cpu/embedding.h"
#include "loom/backend/cpu/norm.h"
#include "loom/backend/cpu/rope.h"
#include "loom/backend/cpu/softmax.h"
#include "loom/core/error.h"

namespace loom::cpu {
namespace {

using Vec = std::vector<double>;
using Fn = std::function<Vec(const Vec&)>;

Vec randn(size_t n, uint64_t seed, double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(0.0, scale);
  Vec v(n);
  for (double& e : v) e = dist(rng);
  return v;
}

// Values exactly representable in float, so float and double kernels see the same input.
Vec randn_f(size_t n, uint64_t seed, double scale = 1.0) {
  Vec v = randn(n, seed, scale);
  for (double& e : v) e = double(float(e));
  return v;
}

template <typename T>
std::vector<T> as(const Vec& v) {
  return std::vector<T>(v.begin(), v.end());
}

// |actual - expected| <= tol * (1 + |expected|): relative for large values, absolute near zero.
template <typename T>
void expect_close(const std::vector<T>& actual, const Vec& expected, double tol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double err = std::abs(double(actual[i]) - expected[i]);
    if (!(err <= tol * (1.0 + std::abs(expected[i]))) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: got " << double(actual[i]) << ", expected " << expected[i];
  }
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Gradient of L(x) = dot(dy, f(x)) by central differences: the vector-Jacobian product a backward
// kernel must produce.
Vec numeric_vjp(const Fn& f, const Vec& x, const Vec& dy, double eps = 1e-6) {
  Vec g(x.size()), xp = x;
  for (size_t i = 0; i < x.size(); ++i) {
    xp[i] = x[i] + eps;
    const double lp = dot(dy, f(xp));
    xp[i] = x[i] - eps;
    const double lm = dot(dy, f(xp));
    xp[i] = x[i];
    g[i] = (lp - lm) / (2 * eps);
  }
  return g;
}

constexpr double kFdTol = 1e-6;      // backward (double) vs finite differences
constexpr double kDoubleTol = 1e-12;  // double kernel vs double reference
constexpr double kFloatTol = 1e-5;    // float kernel vs double reference

// Runs fn under 1, 2 and 3 OpenMP threads and expects bit-identical outputs.
template <typename T>
void expect_thread_independent(const std::function<std::vector<T>()>& fn, const std::string& what) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<T> ref = fn();
  for (int threads : {2, 3}) {
    omp_set_num_threads(threads);
    const std::vector<T> got = fn();
    ASSERT_EQ(got.size(), ref.size());
    EXPECT_EQ(std::memcmp(got.data(), ref.data(), ref.size() * sizeof(T)), 0) << what << " with " << threads;
  }
  omp_set_num_threads(saved);
}

// ---- norms -----------------------------------------------------------------------------------

// x: (N, C); w, b: (C) or empty for none.
Vec ref_layer_norm(const Vec& x, const Vec& w, const Vec& b, int64_t N, int64_t C, double eps) {
  Vec y(x.size());
  for (int64_t i = 0; i < N; ++i) {
    double mu = 0, var = 0;
    for (int64_t j = 0; j < C; ++j) mu += x[i * C + j] / C;
    for (int64_t j = 0; j < C; ++j) var += (x[i * C + j] - mu) * (x[i * C + j] - mu) / C;
    for (int64_t j = 0; j < C; ++j)
      y[i * C + j] = (x[i * C + j] - mu) / std::sqrt(var + eps) * (w.empty() ? 1 : w[j]) + (b.empty() ? 0 : b[j]);
  }
  return y;
}

Vec ref_rms_norm(const Vec& x, const Vec& w, int64_t N, int64_t C, double eps) {
  Vec y(x.size());
  for (int64_t i = 0; i < N; ++i) {
    double ms = 0;
    for (int64_t j = 0; j < C; ++j) ms += x[i * C + j] * x[i * C + j] / C;
    for (int64_t j = 0; j < C; ++j) y[i * C + j] = x[i * C + j] / std::sqrt(ms + eps) * w[j];
  }
  return y;
}

template <typename T>
void check_layer_norm_forward(int64_t N, int64_t C, bool affine, double tol) {
  const double eps = 1e-5;
  const Vec x = randn_f(N * C, 1, 2.0), w = randn_f(C, 2), b = randn_f(C, 3);
  const Vec wr = affine ? w : Vec{}, br = affine ? b : Vec{};
  const std::vector<T> xt = as<T>(x), wt = as<T>(w), bt = as<T>(b);
  std::vector<T> y(N * C), mean(N), rstd(N);
  layer_norm_forward<T>(xt.data(), affine ? wt.data() : nullptr, affine ? bt.data() : nullptr, y.data(), mean.data(),
                        rstd.data(), N, C, T(eps));
  expect_close(y, ref_layer_norm(x, wr, br, N, C, eps), tol, "layer_norm y");
  Vec ref_mean(N), ref_rstd(N);
  for (int64_t i = 0; i < N; ++i) {
    double mu = 0, var = 0;
    for (int64_t j = 0; j < C; ++j) mu += x[i * C + j] / C;
    for (int64_t j = 0; j < C; ++j) var += (x[i * C + j] - mu) * (x[i * C + j] - mu) / C;
    ref_mean[i] = mu;
    ref_rstd[i] = 1 / std::sqrt(var + eps);
  }
  expect_close(mean, ref_mean, tol, "layer_norm mean");
  expect_close(rstd, ref_rstd, tol, "layer_norm rstd");
}

TEST(LayerNorm, ForwardMatchesReference) {
  for (bool affine : {true, false}) {
    check_layer_norm_forward<double>(5, 37, affine, kDoubleTol);
    check_layer_norm_forward<double>(300, 129, affine, kDoubleTol);  // parallel path
    check_layer_norm_forward<float>(300, 129, affine, kFloatTol);
  }
}

TEST(LayerNorm, BackwardMatchesFiniteDifferences) {
  const int64_t N = 150, C = 11;  // 3 row chunks: dw, db cross chunk boundaries
  const double eps = 1e-5;
  const Vec x = randn(N * C, 4), w = randn(C, 5), b = randn(C, 6), dy = randn(N * C, 7);
  for (bool affine : {true, false}) {
    const Vec wr = affine ? w : Vec{}, br = affine ? b : Vec{};
    std::vector<double> y(N * C), mean(N), rstd(N), dx(N * C), dw(C), db(C);
    layer_norm_forward<double>(x.data(), affine ? w.data() : nullptr, affine ? b.data() : nullptr, y.data(),
                               mean.data(), rstd.data(), N, C, eps);
    layer_norm_backward<double>(dy.data(), x.data(), affine ? w.data() : nullptr, mean.data(), rstd.data(), dx.data(),
                                dw.data(), db.data(), N, C);
    expect_close(dx, numeric_vjp([&](const Vec& v) { return ref_layer_norm(v, wr, br, N, C, eps); }, x, dy), kFdTol,
                 "layer_norm dx");
    expect_close(dw, numeric_vjp([&](const Vec& v) { return ref_layer_norm(x, v, b, N, C, eps); }, w, dy), kFdTol,
                 "layer_norm dw");
    expect_close(db, numeric_vjp([&](const Vec& v) { return ref_layer_norm(x, w, v, N, C, eps); }, b, dy), kFdTol,
                 "layer_norm db");

    // dw, db = nullptr: dx alone, unchanged.
    std::vector<double> dx_only(N * C);
    layer_norm_backward<double>(dy.data(), x.data(), affine ? w.data() : nullptr, mean.data(), rstd.data(),
                                dx_only.data(), nullptr, nullptr, N, C);
    EXPECT_EQ(dx_only, dx);
  }
}

// Backward in float against the double backward, on a size that takes the chunked parallel path.
template <typename T>
std::vector<T> layer_norm_grads(const Vec& x, const Vec& w, const Vec& dy, int64_t N, int64_t C) {
  const std::vector<T> xt = as<T>(x), wt = as<T>(w), dyt = as<T>(dy), bt(C, T(0));
  std::vector<T> y(N * C), mean(N), rstd(N), out(N * C + 2 * C);
  layer_norm_forward<T>(xt.data(), wt.data(), bt.data(), y.data(), mean.data(), rstd.data(), N, C, T(1e-5));
  layer_norm_backward<T>(dyt.data(), xt.data(), wt.data(), mean.data(), rstd.data(), out.data(), out.data() + N * C,
                         out.data() + N * C + C, N, C);
  return out;  // dx | dw | db
}

TEST(LayerNorm, FloatBackwardMatchesDouble) {
  const int64_t N = 300, C = 129;
  const Vec x = randn_f(N * C, 8), w = randn_f(C, 9), dy = randn_f(N * C, 10);
  const std::vector<double> ref = layer_norm_grads<double>(x, w, dy, N, C);
  // dw and db sum N = 300 rows: allow the tolerance to grow with them.
  const std::vector<float> got = layer_norm_grads<float>(x, w, dy, N, C);
  expect_close(std::vector<float>(got.begin(), got.begin() + N * C), Vec(ref.begin(), ref.begin() + N * C), kFloatTol,
               "layer_norm dx f32");
  expect_close(std::vector<float>(got.begin() + N * C, got.end()), Vec(ref.begin() + N * C, ref.end()), 10 * kFloatTol,
               "layer_norm dw,db f32");
}

TEST(LayerNorm, BackwardIsThreadIndependent) {
  const int64_t N = 1000, C = 96;
  const Vec x = randn_f(N * C, 11), w = randn_f(C, 12), dy = randn_f(N * C, 13);
  expect_thread_independent<float>([&] { return layer_norm_grads<float>(x, w, dy, N, C); }, "layer_norm f32");
  expect_thread_independent<double>([&] { return layer_norm_grads<double>(x, w, dy, N, C); }, "layer_norm f64");
}

template <typename T>
std::vector<T> rms_norm_run(const Vec& x, const Vec& w, const Vec& dy, int64_t N, int64_t C, double eps) {
  const std::vector<T> xt = as<T>(x), wt = as<T>(w), dyt = as<T>(dy);
  std::vector<T> out(2 * N * C + C), rstd(N);  // y | dx | dw
  rms_norm_forward<T>(xt.data(), wt.data(), out.data(), rstd.data(), N, C, T(eps));
  rms_norm_backward<T>(dyt.data(), xt.data(), wt.data(), rstd.data(), out.data() + N * C, out.data() + 2 * N * C, N, C);
  return out;
}

TEST(RmsNorm, ForwardMatchesReference) {
  for (int64_t N : {5, 300}) {
    const int64_t C = 129;
    const Vec x = randn_f(N * C, 14, 3.0), w = randn_f(C, 15), dy(N * C, 0.0);
    const Vec ref = ref_rms_norm(x, w, N, C, 1e-6);
    const std::vector<double> d = rms_norm_run<double>(x, w, dy, N, C, 1e-6);
    const std::vector<float> f = rms_norm_run<float>(x, w, dy, N, C, 1e-6);
    expect_close(std::vector<double>(d.begin(), d.begin() + N * C), ref, kDoubleTol, "rms_norm y f64");
    expect_close(std::vector<float>(f.begin(), f.begin() + N * C), ref, kFloatTol, "rms_norm y f32");
  }
}

TEST(RmsNorm, BackwardMatchesFiniteDifferences) {
  const int64_t N = 150, C = 11;  // 3 row chunks: dw, db cross chunk boundaries
  const double eps = 1e-6;
  const Vec x = randn(N * C, 16), w = randn(C, 17), dy = randn(N * C, 18);
  const std::vector<double> out = rms_norm_run<double>(x, w, dy, N, C, eps);
  expect_close(std::vector<double>(out.begin() + N * C, out.begin() + 2 * N * C),
               numeric_vjp([&](const Vec& v) { return ref_rms_norm(v, w, N, C, eps); }, x, dy), kFdTol, "rms dx");
  expect_close(std::vector<double>(out.begin() + 2 * N * C, out.end()),
               numeric_vjp([&](const Vec& v) { return ref_rms_norm(x, v, N, C, eps); }, w, dy), kFdTol, "rms dw");

  // dw = nullptr: dx alone, unchanged.
  std::vector<double> y(N * C), rstd(N), dx(N * C);
  rms_norm_forward<double>(x.data(), w.data(), y.data(), rstd.data(), N, C, eps);
  rms_norm_backward<double>(dy.data(), x.data(), w.data(), rstd.data(), dx.data(), nullptr, N, C);
  EXPECT_EQ(dx, std::vector<double>(out.begin() + N * C, out.begin() + 2 * N * C));
}

TEST(RmsNorm, FloatBackwardMatchesDoubleAndIsThreadIndependent) {
  const int64_t N = 1000, C = 96;
  const Vec x = randn_f(N * C, 19), w = randn_f(C, 20), dy = randn_f(N * C, 21);
  const std::vector<double> d = rms_norm_run<double>(x, w, dy, N, C, 1e-6);
  const std::vector<float> f = rms_norm_run<float>(x, w, dy, N, C, 1e-6);
  expect_close(std::vector<float>(f.begin() + N * C, f.begin() + 2 * N * C),
               Vec(d.begin() + N * C, d.begin() + 2 * N * C), kFloatTol, "rms dx f32");
  expect_close(std::vector<float>(f.begin() + 2 * N * C, f.end()), Vec(d.begin() + 2 * N * C, d.end()),
               10 * kFloatTol, "rms dw f32");
  expect_thread_independent<float>([&] { return rms_norm_run<float>(x, w, dy, N, C, 1e-6); }, "rms_norm f32");
  expect_thread_independent<double>([&] { return rms_norm_run<double>(x, w, dy, N, C, 1e-6); }, "rms_norm f64");
}

// ---- softmax ---------------------------------------------------------------------------------

Vec ref_softmax(const Vec& x, int64_t N, int64_t C, bool log) {
  Vec y(x.size());
  for (int64_t i = 0; i < N; ++i) {
    double mx = -INFINITY, s = 0;
    for (int64_t j = 0; j < C; ++j) mx = std::max(mx, x[i * C + j]);
    for (int64_t j = 0; j < C; ++j) s += std::exp(x[i * C + j] - mx);
    for (int64_t j = 0; j < C; ++j)
      y[i * C + j] = log ? x[i * C + j] - mx - std::log(s) : std::exp(x[i * C + j] - mx) / s;
  }
  return y;
}

template <typename T>
std::vector<T> softmax_run(const Vec& x, int64_t N, int64_t C, bool log) {
  const std::vector<T> xt = as<T>(x);
  std::vector<T> y(N * C);
  (log ? log_softmax_forward<T> : softmax_forward<T>)(xt.data(), y.data(), N, C);
  return y;
}

TEST(Softmax, ForwardMatchesReference) {
  for (bool log : {false, true}) {
    for (int64_t N : {3, 400}) {
      const int64_t C = 101;
      Vec x = randn_f(N * C, 22, 4.0);
      x[0] = 1000;  // would overflow exp without max subtraction
      const Vec ref = ref_softmax(x, N, C, log);
      expect_close(softmax_run<double>(x, N, C, log), ref, kDoubleTol, log ? "log_softmax f64" : "softmax f64");
      expect_close(softmax_run<float>(x, N, C, log), ref, kFloatTol, log ? "log_softmax f32" : "softmax f32");
    }
  }
}

TEST(Softmax, InPlace) {
  const int64_t N = 3, C = 17;
  const Vec x = randn(N * C, 23);
  for (bool log : {false, true}) {
    std::vector<double> y = x;
    (log ? log_softmax_forward<double> : softmax_forward<double>)(y.data(), y.data(), N, C);
    EXPECT_EQ(y, softmax_run<double>(x, N, C, log));
  }
}

TEST(Softmax, BackwardMatchesFiniteDifferences) {
  const int64_t N = 3, C = 9;
  const Vec x = randn(N * C, 24, 2.0), dy = randn(N * C, 25);
  for (bool log : {false, true}) {
    const std::vector<double> y = softmax_run<double>(x, N, C, log);
    std::vector<double> dx(N * C);
    (log ? log_softmax_backward<double> : softmax_backward<double>)(y.data(), dy.data(), dx.data(), N, C);
    expect_close(dx, numeric_vjp([&](const Vec& v) { return ref_softmax(v, N, C, log); }, x, dy), kFdTol,
                 log ? "log_softmax dx" : "softmax dx");
  }
}

TEST(Softmax, FloatBackwardMatchesDouble) {
  const int64_t N = 400, C = 101;
  const Vec x = randn_f(N * C, 26, 3.0), dy = randn_f(N * C, 27);
  for (bool log : {false, true}) {
    const auto bwd = [&]<typename T>(T) {
      const std::vector<T> y = softmax_run<T>(x, N, C, log), dyt = as<T>(dy);
      std::vector<T> dx(N * C);
      (log ? log_softmax_backward<T> : softmax_backward<T>)(y.data(), dyt.data(), dx.data(), N, C);
      return dx;
    };
    const std::vector<double> ref = bwd(0.0);
    expect_close(bwd(0.0f), Vec(ref.begin(), ref.end()), kFloatTol, "softmax backward f32");
  }
}

// ---- cross-entropy ---------------------------------------------------------------------------

constexpr int64_t kIgnore = -100;

// logits: (N, ldv); per-row loss, 0 for ignored rows.
Vec ref_cross_entropy(const Vec& logits, const std::vector<int64_t>& targets, int64_t N, int64_t V, int64_t ldv) {
  Vec loss(N, 0.0);
  for (int64_t i = 0; i < N; ++i) {
    if (targets[i] == kIgnore) continue;
    double mx = -INFINITY, s = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, logits[i * ldv + j]);
    for (int64_t j = 0; j < V; ++j) s += std::exp(logits[i * ldv + j] - mx);
    loss[i] = mx + std::log(s) - logits[i * ldv + targets[i]];
  }
  return loss;
}

// Padding columns [V, ldv) hold NaN: any read of them would poison the results.
Vec padded_logits(int64_t N, int64_t V, int64_t ldv, uint64_t seed, double scale) {
  const Vec raw = randn_f(N * V, seed, scale);
  Vec logits(N * ldv, std::numeric_limits<double>::quiet_NaN());
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < V; ++j) logits[i * ldv + j] = raw[i * V + j];
  return logits;
}

template <typename T>
std::pair<std::vector<T>, std::vector<T>> ce_forward(const Vec& logits, const std::vector<int64_t>& targets, int64_t N,
                                                     int64_t V, int64_t ldv) {
  const std::vector<T> lt = as<T>(logits);
  std::vector<T> loss(N, T(-1)), lse(N, T(-1));
  cross_entropy_forward<T>(lt.data(), targets.data(), loss.data(), lse.data(), N, V, ldv, kIgnore);
  return {loss, lse};
}

template <typename T>
std::vector<T> ce_backward(const Vec& logits, const std::vector<int64_t>& targets, const Vec& dloss, int64_t N,
                           int64_t V, int64_t ldv) {
  const std::vector<T> lt = as<T>(logits), dlt = as<T>(dloss);
  const std::vector<T> lse = ce_forward<T>(logits, targets, N, V, ldv).second;
  std::vector<T> dlogits(N * ldv, std::numeric_limits<T>::quiet_NaN());
  cross_entropy_backward<T>(lt.data(), targets.data(), lse.data(), dlt.data(), dlogits.data(), N, V, ldv, kIgnore);
  return dlogits;
}

TEST(CrossEntropy, ForwardMatchesReferenceWithPaddingAndIgnoredRows) {
  // V spans several vocab chunks, and a later chunk holds the row max, so the running sum is rescaled.
  const int64_t N = 24, V = 5003, ldv = 5120;
  Vec logits = padded_logits(N, V, ldv, 28, 3.0);
  logits[1 * ldv + 4500] = 60;  // row 1: the max sits in the third chunk
  std::vector<int64_t> targets(N);
  for (int64_t i = 0; i < N; ++i) targets[i] = (i * 977) % V;
  targets[2] = kIgnore;
  targets[N - 1] = kIgnore;
  const Vec ref = ref_cross_entropy(logits, targets, N, V, ldv);
  const auto [loss_d, lse_d] = ce_forward<double>(logits, targets, N, V, ldv);
  const auto [loss_f, lse_f] = ce_forward<float>(logits, targets, N, V, ldv);
  expect_close(loss_d, ref, kDoubleTol, "ce loss f64");
  expect_close(loss_f, ref, kFloatTol, "ce loss f32");
  EXPECT_EQ(loss_d[2], 0.0);
  EXPECT_EQ(loss_f[N - 1], 0.0f);
  for (int64_t i = 0; i < N; ++i)
    if (targets[i] != kIgnore) {
      EXPECT_NEAR(lse_d[i], ref[i] + logits[i * ldv + targets[i]], 1e-12);
    }
}

TEST(CrossEntropy, ForwardIsStableForHugeLogits) {
  const int64_t N = 2, V = 3000;
  Vec logits = randn_f(N * V, 29);
  for (double& e : logits) e += 1e4;
  const std::vector<int64_t> targets = {5, 2999};
  const Vec ref = ref_cross_entropy(logits, targets, N, V, V);
  // float has ~1e-3 absolute resolution at 1e4, so compare against the scale of the logits.
  const std::vector<float> loss = ce_forward<float>(logits, targets, N, V, V).first;
  for (int64_t i = 0; i < N; ++i) EXPECT_NEAR(loss[i], ref[i], 1e4 * 1e-6);
}

TEST(CrossEntropy, BackwardMatchesFiniteDifferences) {
  const int64_t N = 4, V = 7, ldv = 9;
  const Vec logits = padded_logits(N, V, ldv, 30, 2.0), dloss = randn(N, 31);
  const std::vector<int64_t> targets = {3, kIgnore, 0, 6};
  const std::vector<double> dlogits = ce_backward<double>(logits, targets, dloss, N, V, ldv);

  // Finite differences over the used columns only (the NaN padding stays untouched).
  Vec used, fd_dlogits(N * ldv, 0.0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < V; ++j) used.push_back(logits[i * ldv + j]);
  const auto unpack = [&](const Vec& u) {
    Vec l = logits;
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < V; ++j) l[i * ldv + j] = u[i * V + j];
    return ref_cross_entropy(l, targets, N, V, ldv);
  };
  const Vec fd = numeric_vjp(unpack, used, dloss);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < V; ++j) fd_dlogits[i * ldv + j] = fd[i * V + j];
  expect_close(dlogits, fd_dlogits, kFdTol, "ce dlogits");  // also checks the padding and ignored row are 0
  for (int64_t j = 0; j < ldv; ++j) EXPECT_EQ(dlogits[1 * ldv + j], 0.0);
}

TEST(CrossEntropy, FloatBackwardMatchesDouble) {
  const int64_t N = 16, V = 4100, ldv = 4160;
  const Vec logits = padded_logits(N, V, ldv, 32, 3.0), dloss = randn_f(N, 33);
  std::vector<int64_t> targets(N);
  for (int64_t i = 0; i < N; ++i) targets[i] = i % 3 == 1 ? kIgnore : (i * 331) % V;
  const std::vector<double> ref = ce_backward<double>(logits, targets, dloss, N, V, ldv);
  expect_close(ce_backward<float>(logits, targets, dloss, N, V, ldv), Vec(ref.begin(), ref.end()), kFloatTol,
               "ce dlogits f32");
}

TEST(CrossEntropy, RejectsOutOfRangeTargets) {
  const int64_t N = 3, V = 5;
  const std::vector<float> logits(N * V, 0.0f), dloss(N, 1.0f);
  std::vector<float> loss(N), lse(N), dlogits(N * V);
  for (int64_t bad : {int64_t(5), int64_t(-1), int64_t(1) << 40}) {
    const std::vector<int64_t> targets = {0, kIgnore, bad};
    try {
      cross_entropy_forward<float>(logits.data(), targets.data(), loss.data(), lse.data(), N, V, V, kIgnore);
      ADD_FAILURE() << "forward accepted target " << bad;
    } catch (const loom::Error& e) {
      EXPECT_EQ(std::string(e.what()),
                "cross_entropy: target " + std::to_string(bad) + " at row 2 is out of range [0, 5)");
    }
    EXPECT_THROW(cross_entropy_backward<float>(logits.data(), targets.data(), lse.data(), dloss.data(),
                                               dlogits.data(), N, V, V, kIgnore),
                 loom::Error);
  }
}

// ---- activations -----------------------------------------------------------------------------

double ref_gelu(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
double ref_silu(double x) { return x / (1 + std::exp(-x)); }

Vec map(const Vec& x, double (*f)(double)) {
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = f(x[i]);
  return y;
}

template <typename T>
using Unary = void (*)(const T*, T*, int64_t);
template <typename T>
using UnaryBackward = void (*)(const T*, const T*, T*, int64_t);

template <typename T>
std::vector<T> run_unary(Unary<T> f, const Vec& x) {
  const std::vector<T> xt = as<T>(x);
  std::vector<T> y(x.size());
  f(xt.data(), y.data(), int64_t(x.size()));
  return y;
}

template <typename T>
std::vector<T> run_unary_backward(UnaryBackward<T> f, const Vec& x, const Vec& dy) {
  const std::vector<T> xt = as<T>(x), dyt = as<T>(dy);
  std::vector<T> dx(x.size());
  f(xt.data(), dyt.data(), dx.data(), int64_t(x.size()));
  return dx;
}

TEST(Activation, GeluAndSiluMatchReference) {
  struct Case {
    const char* name;
    double (*ref)(double);
    Unary<double> fd;
    Unary<float> ff;
    UnaryBackward<double> bd;
    UnaryBackward<float> bf;
  };
  const Case cases[] = {
      {"gelu", ref_gelu, gelu_forward<double>, gelu_forward<float>, gelu_backward<double>, gelu_backward<float>},
      {"silu", ref_silu, silu_forward<double>, silu_forward<float>, silu_backward<double>, silu_backward<float>},
  };
  for (const Case& c : cases) {
    for (size_t n : {size_t(37), size_t(100003)}) {  // serial and parallel paths
      Vec x = randn_f(n, 34, 3.0);
      x[0] = -200;  // saturated tails
      x[1] = 200;
      const Vec dy = randn_f(n, 35);
      const Vec ref = map(x, c.ref);
      expect_close(run_unary<double>(c.fd, x), ref, kDoubleTol, std::string(c.name) + " f64");
      expect_close(run_unary<float>(c.ff, x), ref, kFloatTol, std::string(c.name) + " f32");
      const std::vector<double> dx = run_unary_backward<double>(c.bd, x, dy);
      expect_close(run_unary_backward<float>(c.bf, x, dy), Vec(dx.begin(), dx.end()), kFloatTol,
                   std::string(c.name) + " backward f32");
    }
    // Fixed SIMD blocks: the lane/tail split, and so every bit, is the same for any thread count.
    const Vec xl = randn_f(100003, 36);
    expect_thread_independent<float>([&] { return run_unary<float>(c.ff, xl); }, std::string(c.name) + " threads");
    const Vec x = randn(50, 36, 3.0), dy = randn(50, 37);
    expect_close(run_unary_backward<double>(c.bd, x, dy), numeric_vjp([&](const Vec& v) { return map(v, c.ref); }, x, dy),
                 kFdTol, std::string(c.name) + " backward vs fd");
  }
}

template <typename T>
std::vector<T> swiglu_run(const Vec& gate, const Vec& up, const Vec& dy) {
  const int64_t n = int64_t(gate.size());
  const std::vector<T> gt = as<T>(gate), ut = as<T>(up), dyt = as<T>(dy);
  std::vector<T> out(3 * n);  // y | dgate | dup
  swiglu_forward<T>(gt.data(), ut.data(), out.data(), n);
  swiglu_backward<T>(gt.data(), ut.data(), dyt.data(), out.data() + n, out.data() + 2 * n, n);
  return out;
}

TEST(Activation, SwigluMatchesReferenceAndFiniteDifferences) {
  for (size_t n : {size_t(37), size_t(100003)}) {
    const Vec gate = randn_f(n, 38, 3.0), up = randn_f(n, 39), dy = randn_f(n, 40);
    Vec ref(n);
    for (size_t i = 0; i < n; ++i) ref[i] = ref_silu(gate[i]) * up[i];
    const std::vector<double> d = swiglu_run<double>(gate, up, dy);
    const std::vector<float> f = swiglu_run<float>(gate, up, dy);
    expect_close(std::vector<double>(d.begin(), d.begin() + n), ref, kDoubleTol, "swiglu f64");
    expect_close(std::vector<float>(f.begin(), f.begin() + n), ref, kFloatTol, "swiglu f32");
    expect_close(std::vector<float>(f.begin() + n, f.end()), Vec(d.begin() + n, d.end()), kFloatTol,
                 "swiglu backward f32");
  }
  const size_t n = 30;
  const Vec gate = randn(n, 41, 3.0), up = randn(n, 42), dy = randn(n, 43);
  const std::vector<double> d = swiglu_run<double>(gate, up, dy);
  const auto fwd = [&](const Vec& g, const Vec& u) {
    Vec y(n);
    for (size_t i = 0; i < n; ++i) y[i] = ref_silu(g[i]) * u[i];
    return y;
  };
  expect_close(std::vector<double>(d.begin() + n, d.begin() + 2 * n),
               numeric_vjp([&](const Vec& v) { return fwd(v, up); }, gate, dy), kFdTol, "swiglu dgate");
  expect_close(std::vector<double>(d.begin() + 2 * n, d.end()),
               numeric_vjp([&](const Vec& v) { return fwd(gate, v); }, up, dy), kFdTol, "swiglu dup");
}

// ---- rope ------------------------------------------------------------------------------------

// x: (B, T, H, D); angles in double straight from the definition.
Vec ref_rope(const Vec& x, const std::vector<int64_t>& pos, int64_t B, int64_t T, int64_t H, int64_t D, double theta) {
  Vec y(x.size());
  const int64_t half = D / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t j = 0; j < half; ++j) {
          const double angle = double(pos[t]) * std::pow(theta, -2.0 * j / D);
          const int64_t o = ((b * T + t) * H + h) * D;
          y[o + j] = x[o + j] * std::cos(angle) - x[o + j + half] * std::sin(angle);
          y[o + j + half] = x[o + j + half] * std::cos(angle) + x[o + j] * std::sin(angle);
        }
  return y;
}

template <typename T>
std::vector<T> rope_run(const Vec& x, const int64_t* pos, int64_t B, int64_t T_, int64_t H, int64_t D, double theta,
                        bool inverse) {
  const std::vector<T> xt = as<T>(x);
  std::vector<T> y(x.size());
  rope_forward<T>(xt.data(), y.data(), pos, B, T_, H, D, theta, inverse);
  return y;
}

TEST(Rope, MatchesReferenceWithAndWithoutPositions) {
  const int64_t B = 3, T = 40, H = 5, D = 64;  // B*T*H*D > grain: parallel path
  const double theta = 10000.0;
  const Vec x = randn_f(B * T * H * D, 44);
  std::vector<int64_t> iota(T), shifted(T);
  for (int64_t t = 0; t < T; ++t) {
    iota[t] = t;
    shifted[t] = 17 + 2 * t;
  }
  EXPECT_EQ(rope_run<double>(x, nullptr, B, T, H, D, theta, false), rope_run<double>(x, iota.data(), B, T, H, D, theta, false));
  EXPECT_EQ(rope_run<float>(x, nullptr, B, T, H, D, theta, false), rope_run<float>(x, iota.data(), B, T, H, D, theta, false));
  for (const auto& pos : {iota, shifted}) {
    const Vec ref = ref_rope(x, pos, B, T, H, D, theta);
    expect_close(rope_run<double>(x, pos.data(), B, T, H, D, theta, false), ref, kDoubleTol, "rope f64");
    expect_close(rope_run<float>(x, pos.data(), B, T, H, D, theta, false), ref, kFloatTol, "rope f32");
  }
}

// The fp32 recipe of HF's LlamaRotaryEmbedding, step by step, at positions where float rounding
// of the angle matters: the float kernel must follow it to ~1e-6.
TEST(Rope, FloatFollowsHuggingFaceFp32Recipe) {
  const int64_t T = 3, D = 128, half = D / 2;
  const double theta = 500000.0;
  const std::vector<int64_t> pos = {0, 4095, 131071};
  const Vec x = randn_f(T * D, 45);
  const std::vector<float> xf = as<float>(x);
  std::vector<float> expected(T * D);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < half; ++j) {
      const float inv_freq = 1.0f / std::pow(float(theta), float(2 * j) / float(D));
      const float angle = float(pos[t]) * inv_freq;
      const float c = std::cos(angle), s = std::sin(angle);
      expected[t * D + j] = xf[t * D + j] * c - xf[t * D + j + half] * s;
      expected[t * D + j + half] = xf[t * D + j + half] * c + xf[t * D + j] * s;
    }
  expect_close(rope_run<float>(x, pos.data(), 1, T, 1, D, theta, false), Vec(expected.begin(), expected.end()), 1e-6,
               "rope hf fp32");
}

TEST(Rope, InverseUndoesForwardAndIsTheBackward) {
  const int64_t B = 2, T = 6, H = 3, D = 8;
  const double theta = 10000.0;
  const Vec x = randn(B * T * H * D, 46);
  std::vector<int64_t> pos = {3, 9, 0, 100, 7, 2};
  for (const int64_t* p : {static_cast<const int64_t*>(nullptr), static_cast<const int64_t*>(pos.data())}) {
    const std::vector<double> y = rope_run<double>(x, p, B, T, H, D, theta, false);
    expect_close(rope_run<double>(Vec(y.begin(), y.end()), p, B, T, H, D, theta, true), x, kDoubleTol, "rope inv f64");
    const std::vector<float> yf = rope_run<float>(x, p, B, T, H, D, theta, false);
    expect_close(rope_run<float>(Vec(yf.begin(), yf.end()), p, B, T, H, D, theta, true), x, 1e-6, "rope inv f32");
  }
  // Backward = inverse rotation of dy, checked against finite differences of the forward.
  const Vec dy = randn(x.size(), 47);
  const std::vector<double> dx = rope_run<double>(dy, pos.data(), B, T, H, D, theta, true);
  expect_close(dx, numeric_vjp([&](const Vec& v) { return ref_rope(v, pos, B, T, H, D, theta); }, x, dy), kFdTol,
               "rope dx");
}

TEST(Rope, InPlace) {
  const int64_t B = 1, T = 4, H = 2, D = 16;
  const Vec x = randn(B * T * H * D, 48);
  std::vector<double> y = x;
  rope_forward<double>(y.data(), y.data(), nullptr, B, T, H, D, 10000.0, false);
  EXPECT_EQ(y, rope_run<double>(x, nullptr, B, T, H, D, 10000.0, false));
}

TEST(Rope, RejectsOddHeadSize) {
  std::vector<float> x(3), y(3);
  EXPECT_THROW(rope_forward<float>(x.data(), y.data(), nullptr, 1, 1, 1, 3, 10000.0, false), loom::Error);
}

// ---- embedding -------------------------------------------------------------------------------

template <typename T>
std::vector<T> embedding_grad(const std::vector<int64_t>& ids, const Vec& dy, const Vec& dw0, int64_t C) {
  const std::vector<T> dyt = as<T>(dy);
  std::vector<T> dW = as<T>(dw0);
  embedding_backward<T>(ids.data(), dyt.data(), dW.data(), int64_t(ids.size()), C);
  return dW;
}

TEST(Embedding, ForwardGathersRows) {
  const int64_t V = 10, C = 70, N = 600;
  std::vector<int64_t> ids(N);
  for (int64_t i = 0; i < N; ++i) ids[i] = (i * 7) % V;
  const Vec W = randn(V * C, 49);
  std::vector<double> y(N * C);
  embedding_forward<double>(ids.data(), W.data(), y.data(), N, C);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < C; ++j) ASSERT_EQ(y[i * C + j], W[ids[i] * C + j]);
}

TEST(Embedding, BackwardAccumulatesRepeatedIdsInRowOrder) {
  const int64_t V = 10, C = 150, N = 700;  // C spans several column blocks; N * C > grain
  std::vector<int64_t> ids(N);
  for (int64_t i = 0; i < N; ++i) ids[i] = (i * i + 3) % V;
  const Vec dy = randn_f(N * C, 50), dw0 = randn_f(V * C, 51);  // accumulates onto existing values
  // Scalar loop in row order: the same summation order, so float must match bit for bit too.
  const auto naive = [&]<typename T>(T) {
    std::vector<T> dW = as<T>(dw0);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < C; ++j) dW[ids[i] * C + j] += T(dy[i * C + j]);
    return dW;
  };
  EXPECT_EQ(embedding_grad<double>(ids, dy, dw0, C), naive(0.0));
  EXPECT_EQ(embedding_grad<float>(ids, dy, dw0, C), naive(0.0f));
  expect_thread_independent<float>([&] { return embedding_grad<float>(ids, dy, dw0, C); }, "embedding f32");
  expect_thread_independent<double>([&] { return embedding_grad<double>(ids, dy, dw0, C); }, "embedding f64");
}

// ---- adamw -----------------------------------------------------------------------------------

TEST(AdamW, MatchesScalarLoop) {
  const float lr = 3e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, wd = 0.1f;
  for (int64_t n : {int64_t(37), int64_t(200003)}) {
    const std::vector<float> p0 = as<float>(randn(n, 52)), m0 = as<float>(randn(n, 53, 0.1));
    std::vector<float> v0 = as<float>(randn(n, 54, 0.1));
    for (float& e : v0) e = e * e;
    std::vector<float> p = p0, m = m0, v = v0;
    Vec pr(p0.begin(), p0.end()), mr(m0.begin(), m0.end()), vr(v0.begin(), v0.end());
    for (int64_t step = 1; step <= 3; ++step) {
      const std::vector<float> g = as<float>(randn(n, 55 + step));
      const float scale = step == 2 ? 0.37f : 1.0f;  // clipping folded into the update
      adamw_step(p.data(), g.data(), m.data(), v.data(), n, lr, beta1, beta2, eps, wd, step, scale);
      // The documented update, in double, one element at a time.
      for (int64_t i = 0; i < n; ++i) {
        pr[i] -= lr * wd * pr[i];
        const double gi = double(g[i]) * scale;
        mr[i] = beta1 * mr[i] + (1.0 - beta1) * gi;
        vr[i] = beta2 * vr[i] + (1.0 - beta2) * gi * gi;
        const double mhat = mr[i] / (1 - std::pow(double(beta1), double(step)));
        const double vhat = vr[i] / (1 - std::pow(double(beta2), double(step)));
        pr[i] -= lr * mhat / (std::sqrt(vhat) + eps);
      }
      expect_close(p, pr, 1e-6, "adamw p");
      expect_close(m, mr, 1e-6, "adamw m");
      expect_close(v, vr, 1e-6, "adamw v");
    }
  }
}

}  // namespace
}  // namespace loom::cpu
