// Checks the fused CPU attention kernels (loom/backend/cpu/attention.h) against a naive
// double-precision reference that materialises the score matrix, over causal, GQA, KV-cache,
// packed-document and odd-length cases, and checks that results ignore the thread count.
#include "loom/backend/cpu/attention.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

enum class DocPattern { none, packed, scattered };

struct Case {
  int64_t B, H, Hkv, Tq, Tk, D;
  bool causal;
  DocPattern docs;
};

std::string describe(const Case& c) {
  return "B=" + std::to_string(c.B) + " H=" + std::to_string(c.H) + " Hkv=" + std::to_string(c.Hkv) +
         " Tq=" + std::to_string(c.Tq) + " Tk=" + std::to_string(c.Tk) + " D=" + std::to_string(c.D) +
         (c.causal ? " causal" : "") +
         (c.docs == DocPattern::packed      ? " packed-docs"
          : c.docs == DocPattern::scattered ? " scattered-docs"
                                            : "");
}

// Inputs and outputs of one case, in the kernel's element type.
template <typename T>
struct Problem {
  Case c;
  std::vector<T> q, k, v, dout;  // (B, H, Tq, D), (B, Hkv, Tk, D) ×2, (B, H, Tq, D)
  std::vector<int32_t> doc;      // (B, Tk) or empty
  T scale;
};

template <typename T>
Problem<T> make_problem(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  auto fill = [&](std::vector<T>& x, int64_t n) {
    x.resize(n);
    for (auto& e : x) e = static_cast<T>(uni(rng));
  };
  Problem<T> p{c, {}, {}, {}, {}, {}, static_cast<T>(1.0 / std::sqrt(double(c.D)))};
  fill(p.q, c.B * c.H * c.Tq * c.D);
  fill(p.k, c.B * c.Hkv * c.Tk * c.D);
  fill(p.v, c.B * c.Hkv * c.Tk * c.D);
  fill(p.dout, c.B * c.H * c.Tq * c.D);
  if (c.docs == DocPattern::packed) {
    // 2 or 3 contiguous documents per batch row, with random boundaries.
    p.doc.resize(c.B * c.Tk);
    for (int64_t b = 0; b < c.B; ++b) {
      const int64_t n_docs = 2 + b % 2;
      std::vector<int64_t> cuts;
      for (int64_t d = 1; d < n_docs; ++d) cuts.push_back(1 + rng() % (c.Tk - 1));
      std::sort(cuts.begin(), cuts.end());
      for (int64_t t = 0; t < c.Tk; ++t) {
        int32_t id = 0;
        for (int64_t cut : cuts) id += t >= cut;
        p.doc[b * c.Tk + t] = id + 7 * static_cast<int32_t>(b);
      }
    }
  } else if (c.docs == DocPattern::scattered) {
    // Interleaved ids exercise the element-wise mask in every tile.
    p.doc.resize(c.B * c.Tk);
    for (auto& d : p.doc) d = static_cast<int32_t>(rng() % 3);
  }
  return p;
}

// Naive reference in double: scores, mask, softmax, and the analytic backward.
struct Reference {
  std::vector<double> out, lse, dq, dk, dv;
};

template <typename T>
Reference reference(const Problem<T>& p) {
  const Case& c = p.c;
  const int64_t group = c.H / c.Hkv;
  const double scale = p.scale;
  Reference r;
  r.out.assign(c.B * c.H * c.Tq * c.D, 0.0);
  r.lse.assign(c.B * c.H * c.Tq, 0.0);
  r.dq.assign(r.out.size(), 0.0);
  r.dk.assign(c.B * c.Hkv * c.Tk * c.D, 0.0);
  r.dv.assign(r.dk.size(), 0.0);
  std::vector<double> s(c.Tk), prob(c.Tk), dp(c.Tk);
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t h = 0; h < c.H; ++h) {
      const int64_t kvh = b * c.Hkv + h / group;
      for (int64_t i = 0; i < c.Tq; ++i) {
        const int64_t qrow = ((b * c.H + h) * c.Tq + i) * c.D;
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < c.Tk; ++j) {
          bool visible = !c.causal || j <= c.Tk - c.Tq + i;
          if (!p.doc.empty()) visible = visible && p.doc[b * c.Tk + i] == p.doc[b * c.Tk + j];
          double dot = 0;
          for (int64_t d = 0; d < c.D; ++d) dot += double(p.q[qrow + d]) * double(p.k[(kvh * c.Tk + j) * c.D + d]);
          s[j] = visible ? dot * scale : -std::numeric_limits<double>::infinity();
          mx = std::max(mx, s[j]);
        }
        const int64_t lrow = (b * c.H + h) * c.Tq + i;
        if (mx == -std::numeric_limits<double>::infinity()) {
          r.lse[lrow] = mx;
          continue;  // no visible key: out and gradients stay 0
        }
        double sum = 0;
        for (int64_t j = 0; j < c.Tk; ++j) sum += std::exp(s[j] - mx);
        r.lse[lrow] = mx + std::log(sum);
        for (int64_t j = 0; j < c.Tk; ++j) prob[j] = std::exp(s[j] - r.lse[lrow]);
        double pdp = 0;  // sum_j P_ij dP_ij
        for (int64_t j = 0; j < c.Tk; ++j) {
          const int64_t krow = (kvh * c.Tk + j) * c.D;
          double dpj = 0;
          for (int64_t d = 0; d < c.D; ++d) {
            r.out[qrow + d] += prob[j] * double(p.v[krow + d]);
            dpj += double(p.dout[qrow + d]) * double(p.v[krow + d]);
            r.dv[krow + d] += prob[j] * double(p.dout[qrow + d]);
          }
          dp[j] = dpj;
          pdp += prob[j] * dpj;
        }
        for (int64_t j = 0; j < c.Tk; ++j) {
          const double ds = prob[j] * (dp[j] - pdp) * scale;
          const int64_t krow = (kvh * c.Tk + j) * c.D;
          for (int64_t d = 0; d < c.D; ++d) {
            r.dq[qrow + d] += ds * double(p.k[krow + d]);
            r.dk[krow + d] += ds * double(p.q[qrow + d]);
          }
        }
      }
    }
  }
  return r;
}

// Outputs of the kernels under test.
template <typename T>
struct Result {
  std::vector<T> out, lse, dq, dk, dv;
};

template <typename T>
Result<T> run_kernels(const Problem<T>& p) {
  const Case& c = p.c;
  Result<T> r;
  r.out.assign(p.q.size(), T(-1));  // poisoned: the kernels must overwrite every element
  r.lse.assign(c.B * c.H * c.Tq, T(-1));
  r.dq.assign(p.q.size(), T(-1));
  r.dk.assign(p.k.size(), T(-1));
  r.dv.assign(p.v.size(), T(-1));
  const int32_t* doc = p.doc.empty() ? nullptr : p.doc.data();
  loom::cpu::attention_forward<T>(p.q.data(), p.k.data(), p.v.data(), doc, r.out.data(), r.lse.data(), c.B, c.H, c.Hkv,
                                  c.Tq, c.Tk, c.D, p.scale, c.causal);
  loom::cpu::attention_backward<T>(p.q.data(), p.k.data(), p.v.data(), doc, r.out.data(), r.lse.data(), p.dout.data(),
                                   r.dq.data(), r.dk.data(), r.dv.data(), c.B, c.H, c.Hkv, c.Tq, c.Tk, c.D, p.scale,
                                   c.causal);
  return r;
}

// |got - want| <= tol * (1 + |want|); -inf must match exactly.
template <typename T>
void expect_close(const std::vector<T>& got, const std::vector<double>& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  int64_t worst_at = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i])) {
      ASSERT_EQ(double(got[i]), want[i]) << what << " at " << i;
      continue;
    }
    ASSERT_TRUE(std::isfinite(double(got[i]))) << what << " at " << i;
    const double err = std::abs(double(got[i]) - want[i]) / (1.0 + std::abs(want[i]));
    if (err > worst) worst = err, worst_at = static_cast<int64_t>(i);
  }
  EXPECT_LE(worst, tol) << what << " worst at " << worst_at;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {2, 4, 4, 7, 7, 8, false, DocPattern::none},
      {2, 4, 4, 7, 7, 8, true, DocPattern::none},
      {1, 4, 2, 67, 67, 16, true, DocPattern::none},
      {2, 4, 1, 130, 130, 64, true, DocPattern::none},
      {1, 4, 2, 130, 130, 64, false, DocPattern::none},
      {1, 2, 1, 64, 64, 64, true, DocPattern::none},   // exactly one tile
      {1, 4, 2, 1, 1, 8, true, DocPattern::none},      // single token
      {1, 2, 1, 5, 67, 16, true, DocPattern::none},    // KV cache: Tq < Tk
      {1, 4, 2, 1, 130, 64, true, DocPattern::none},   // one decode step
      {1, 2, 2, 70, 140, 16, true, DocPattern::none},  // prefill chunk after a cached prefix
      {1, 2, 2, 90, 140, 8, false, DocPattern::none},  // Tq != Tk without mask
      {2, 4, 2, 130, 130, 16, true, DocPattern::packed},
      {3, 2, 2, 67, 67, 8, false, DocPattern::packed},
      {1, 4, 1, 130, 130, 8, true, DocPattern::scattered},
      {1, 2, 2, 67, 67, 16, false, DocPattern::scattered},
      {1, 2, 1, 9, 4, 8, true, DocPattern::none},  // Tq > Tk: first rows see no key
  };
  return all;
}

template <typename T>
void check_all_cases(double tol) {
  uint32_t seed = 1;
  for (const Case& c : cases()) {
    SCOPED_TRACE(describe(c));
    const Problem<T> p = make_problem<T>(c, seed++);
    const Reference want = reference(p);
    const Result<T> got = run_kernels(p);
    expect_close(got.out, want.out, tol, "out");
    expect_close(got.lse, want.lse, tol, "lse");
    expect_close(got.dq, want.dq, tol, "dq");
    expect_close(got.dk, want.dk, tol, "dk");
    expect_close(got.dv, want.dv, tol, "dv");
  }
}

TEST(AttentionKernel, FloatMatchesReference) {
  check_all_cases<float>(1e-5);
}

TEST(AttentionKernel, DoubleMatchesReference) {
  check_all_cases<double>(1e-12);
}

TEST(AttentionKernel, RowWithoutKeysIsZeroNotNan) {
  const Problem<float> p = make_problem<float>({1, 2, 1, 9, 4, 8, true, DocPattern::none}, 3);
  const Result<float> got = run_kernels(p);
  // Query i sits at position 4 - 9 + i, so rows 0..4 see nothing.
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < 5; ++i) {
      EXPECT_EQ(got.lse[h * 9 + i], -std::numeric_limits<float>::infinity());
      for (int64_t d = 0; d < 8; ++d) {
        EXPECT_EQ(got.out[(h * 9 + i) * 8 + d], 0.0f);
        EXPECT_EQ(got.dq[(h * 9 + i) * 8 + d], 0.0f);
      }
    }
  }
}

// Bitwise equality of every output with one and with two OpenMP threads.
template <typename T>
void check_thread_independence(const Case& c) {
  SCOPED_TRACE(describe(c));
  const Problem<T> p = make_problem<T>(c, 42);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const Result<T> one = run_kernels(p);
  omp_set_num_threads(2);
  const Result<T> two = run_kernels(p);
  omp_set_num_threads(saved);
  auto same = [](const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
  };
  EXPECT_TRUE(same(one.out, two.out));
  EXPECT_TRUE(same(one.lse, two.lse));
  EXPECT_TRUE(same(one.dq, two.dq));
  EXPECT_TRUE(same(one.dk, two.dk));
  EXPECT_TRUE(same(one.dv, two.dv));
}

TEST(AttentionKernel, ResultsIgnoreThreadCount) {
  check_thread_independence<float>({2, 4, 2, 200, 200, 64, true, DocPattern::none});
  check_thread_independence<float>({1, 4, 1, 130, 130, 16, false, DocPattern::packed});
  check_thread_independence<double>({2, 4, 2, 130, 130, 16, true, DocPattern::none});
}

}  // namespace
