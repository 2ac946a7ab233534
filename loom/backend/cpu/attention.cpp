// Fused scaled-dot-product attention on the CPU, flash-attention style: queries and keys are
// cut into tiles, the forward keeps a running max and sum per query row (online softmax), and
// the backward recomputes probabilities tile by tile from the saved logsumexp. Tile products
// go through CBLAS; OpenMP spreads independent work items over threads.
#include "loom/backend/cpu/attention.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "loom/backend/cpu/gemm.h"

namespace loom::cpu {
namespace {

// Tile products go through loom::cpu::gemm (CBLAS) from inside OpenMP parallel regions, where
// the OpenMP build of OpenBLAS runs single-threaded: each product is then one fixed sequence
// of operations whatever the thread count.
//
// Tile sizes (rows of q × rows of k), multiples of the pack width. 64 × 64 keeps a score
// tile in L1 between its CBLAS products and wastes little work on the causal diagonal;
// 128-row tiles measured no faster at B=8, H=12, T=1024, D=64 on 2 cores.
constexpr int64_t fwd_q_tile = 64;
constexpr int64_t fwd_k_tile = 64;
constexpr int64_t bwd_q_tile = 64;
constexpr int64_t bwd_k_tile = 64;

// Elementwise row work goes through packs: 8 floats (one AVX2 register) with GCC vector
// extensions, so it vectorises at any optimisation level; double, the accuracy reference,
// stays scalar. Score tiles hold whole packs: columns past the real width carry -inf
// (probability 0), so no loop needs a scalar tail.
using f32x8 = float __attribute__((vector_size(32)));
using i32x8 = int32_t __attribute__((vector_size(32)));

template <typename T>
struct PackOf;
template <>
struct PackOf<float> {
  using type = f32x8;
  static constexpr int64_t lanes = 8;
};
template <>
struct PackOf<double> {
  using type = double;
  static constexpr int64_t lanes = 1;
};
template <typename T>
using Pack = typename PackOf<T>::type;
template <typename T>
constexpr int64_t lanes = PackOf<T>::lanes;

template <typename T>
int64_t round_to_packs(int64_t n) {
  return (n + lanes<T> - 1) / lanes<T> * lanes<T>;
}

template <typename T>
Pack<T> load(const T* p) {
  Pack<T> x;
  std::memcpy(&x, p, sizeof x);
  return x;
}

template <typename T>
void store(T* p, Pack<T> x) {
  std::memcpy(p, &x, sizeof x);
}

template <typename T>
Pack<T> splat(T x) {
  return Pack<T>{} + x;
}

// Work lane-wise on packs and plainly on scalars.
template <typename P>
P lane_max(P a, P b) {
  return a > b ? a : b;
}
template <typename P>
P lane_min(P a, P b) {
  return a < b ? a : b;
}

inline double reduce_max(double x) {
  return x;
}
inline double reduce_add(double x) {
  return x;
}
inline float reduce_max(f32x8 x) {
  float m = x[0];
  for (int i = 1; i < 8; ++i) m = std::max(m, x[i]);
  return m;
}
inline float reduce_add(f32x8 x) {
  float s = x[0];
  for (int i = 1; i < 8; ++i) s += x[i];
  return s;
}

// exp for softmax arguments (<= ~0) in about 2 ulp. Cephes range reduction:
// exp(x) = 2^n exp(r) with |r| <= ln2 / 2. Arguments below -87 (including -inf from masked
// scores) give exactly 0.
inline f32x8 exp_pack(f32x8 x) {
  const f32x8 round_magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to integer
  const f32x8 lo = splat(-87.0f);
  const f32x8 hi = splat(88.0f);
  const f32x8 xc = lane_min(lane_max(x, lo), hi);
  const f32x8 shifted = xc * 1.44269504088896341f + round_magic;
  const f32x8 n = shifted - round_magic;
  const f32x8 r = xc - n * 0.693359375f - n * -2.12194440e-4f;
  f32x8 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // The low mantissa bits of `shifted` hold n; build 2^n directly in the exponent field.
  const i32x8 n_int = std::bit_cast<i32x8>(shifted) - std::bit_cast<i32x8>(round_magic);
  const f32x8 two_n = std::bit_cast<f32x8>((n_int + 127) << 23);
  return x < lo ? f32x8{} : p * two_n;
}

inline double exp_pack(double x) {
  return std::exp(x);
}

enum class TileKind { empty, full, partial };

// Visibility of keys to queries within one batch row.
struct Mask {
  bool causal;
  int64_t offset;  // Tk - Tq: absolute position of query 0
  int64_t tk;
  const int32_t* doc;  // (Tk) document ids of this batch row, or nullptr

  // Keys [0, causal_end(i)) pass the causal test for query i; non-decreasing in i.
  int64_t causal_end(int64_t i) const { return causal ? std::clamp<int64_t>(offset + i + 1, 0, tk) : tk; }

  // Classifies the tile of queries [i0, i0 + nq) × keys [j0, j0 + nk): empty tiles are
  // skipped and full ones need no masking. A doc tile is empty when the id ranges of its
  // rows and columns do not overlap (always the case away from the diagonal for packing).
  TileKind classify(int64_t i0, int64_t nq, int64_t j0, int64_t nk) const {
    bool partial = false;
    if (causal) {
      if (causal_end(i0 + nq - 1) <= j0) return TileKind::empty;
      partial = causal_end(i0) < j0 + nk;
    }
    if (doc != nullptr) {
      const auto [q_lo, q_hi] = std::minmax_element(doc + i0, doc + i0 + nq);
      const auto [k_lo, k_hi] = std::minmax_element(doc + j0, doc + j0 + nk);
      if (*q_hi < *k_lo || *k_hi < *q_lo) return TileKind::empty;
      partial = partial || *q_lo != *q_hi || *k_lo != *k_hi || *q_lo != *k_lo;
    }
    return partial ? TileKind::partial : TileKind::full;
  }

  // Sets the invisible entries of the score tile s: (nq, nk), row stride lds, to -inf.
  template <typename T>
  void apply(T* s, int64_t lds, int64_t i0, int64_t nq, int64_t j0, int64_t nk) const {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    for (int64_t r = 0; r < nq; ++r) {
      T* row = s + r * lds;
      const int64_t end = causal_end(i0 + r) - j0;  // columns >= end are in the future
      if (doc != nullptr) {
        const int32_t own = doc[i0 + r];
        const int32_t* key_doc = doc + j0;
#pragma omp simd
        for (int64_t c = 0; c < nk; ++c) row[c] = (c >= end || key_doc[c] != own) ? neg_inf : row[c];
      } else {
        for (int64_t c = std::max<int64_t>(end, 0); c < nk; ++c) row[c] = neg_inf;
      }
    }
  }
};

// Per-thread scratch of the forward. Invariant per query row r of the tile, after each key
// tile: m[r] is the running max of scores seen, l[r] the sum of exp(score - m[r]), and the
// output row holds the matching unnormalised sum of exp(score - m[r]) * v.
template <typename T>
struct ForwardScratch {
  std::vector<T> s = std::vector<T>(fwd_q_tile * fwd_k_tile);  // (q tile, k tile)
  std::vector<T> m = std::vector<T>(fwd_q_tile);
  std::vector<T> l = std::vector<T>(fwd_q_tile);
};

// Sets columns [nk, round_to_packs(nk)) of the tile s: (nq, ld) to -inf, so that whole-pack
// row loops see probability 0 there.
template <typename T>
void pad_columns(T* s, int64_t ld, int64_t nq, int64_t nk) {
  const int64_t width = round_to_packs<T>(nk);
  for (int64_t r = 0; r < nq && width > nk; ++r)
    std::fill(s + r * ld + nk, s + r * ld + width, -std::numeric_limits<T>::infinity());
}

// Folds one padded score tile s: (nq, nk) into the running softmax state, leaving the tile's
// probabilities exp(s - m) in s and rescaling the output rows o: (nq, D) to the new max.
template <typename T>
void online_softmax_step(T* s, int64_t nq, int64_t nk, T* m, T* l, T* o, int64_t D) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  const int64_t width = round_to_packs<T>(nk);
  for (int64_t r = 0; r < nq; ++r) {
    T* row = s + r * fwd_k_tile;
    Pack<T> pack_max = splat(m[r]);
    for (int64_t c = 0; c < width; c += lanes<T>) pack_max = lane_max(pack_max, load(row + c));
    const T row_max = reduce_max(pack_max);
    if (row_max == neg_inf) {  // nothing visible to this row yet
      std::fill(row, row + nk, T(0));
      continue;
    }
    Pack<T> pack_sum{};
    for (int64_t c = 0; c < width; c += lanes<T>) {
      const Pack<T> p = exp_pack(load(row + c) - row_max);
      store(row + c, p);
      pack_sum += p;
    }
    const T alpha = std::exp(m[r] - row_max);  // 0 when m[r] was -inf
    l[r] = l[r] * alpha + reduce_add(pack_sum);
    m[r] = row_max;
    if (alpha != T(1)) {
      T* orow = o + r * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) orow[d] *= alpha;
    }
  }
}

// One query tile of one head: q, o: (nq, D) starting at query i0; k, v: (Tk, D); lse: (nq).
template <typename T>
void forward_tile(const T* q, const T* k, const T* v, const Mask& mask, T* o, T* lse, int64_t i0, int64_t nq, int64_t D,
                  T scale, ForwardScratch<T>& ws) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  std::fill(ws.m.begin(), ws.m.begin() + nq, neg_inf);
  std::fill(ws.l.begin(), ws.l.begin() + nq, T(0));
  std::fill(o, o + nq * D, T(0));
  const int64_t k_end = mask.causal_end(i0 + nq - 1);  // no row of the tile sees beyond
  for (int64_t j0 = 0; j0 < k_end; j0 += fwd_k_tile) {
    const int64_t nk = std::min(fwd_k_tile, k_end - j0);
    const TileKind kind = mask.classify(i0, nq, j0, nk);
    if (kind == TileKind::empty) continue;
    T* s = ws.s.data();
    gemm(false, true, nq, nk, D, scale, q, D, k + j0 * D, D, T(0), s, fwd_k_tile);
    if (kind == TileKind::partial) mask.apply(s, fwd_k_tile, i0, nq, j0, nk);
    pad_columns(s, fwd_k_tile, nq, nk);
    online_softmax_step(s, nq, nk, ws.m.data(), ws.l.data(), o, D);
    gemm(false, false, nq, D, nk, T(1), s, fwd_k_tile, v + j0 * D, D, T(1), o, D);
  }
  for (int64_t r = 0; r < nq; ++r) {
    const T l = ws.l[r];
    // l == 0 only for a row that saw no key: its output stays 0.
    const T inv = l > T(0) ? T(1) / l : T(0);
    T* orow = o + r * D;
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) orow[d] *= inv;
    lse[r] = l > T(0) ? ws.m[r] + std::log(l) : neg_inf;
  }
}

// Per-thread scratch of the backward.
template <typename T>
struct BackwardScratch {
  explicit BackwardScratch(int64_t group, int64_t Tq) : delta(group * Tq) {}
  std::vector<T> p = std::vector<T>(bwd_q_tile * bwd_k_tile);   // (q tile, k tile) probs
  std::vector<T> dp = std::vector<T>(bwd_q_tile * bwd_k_tile);  // (q tile, k tile) dP, dS
  std::vector<T> delta;  // (group, Tq): rowwise dot(dout, out) of the unit's heads
};

// Pointers of one (b, kv head) unit: its query heads share k, v, dk, dv.
template <typename T>
struct BackwardUnit {
  const T* q;     // (group, Tq, D)
  const T* out;   // (group, Tq, D)
  const T* dout;  // (group, Tq, D)
  const T* lse;   // (group, Tq)
  const T* k;     // (Tk, D)
  const T* v;     // (Tk, D)
  T* dq;          // (group, Tq, D)
  T* dk;          // (Tk, D)
  T* dv;          // (Tk, D)
};

// Accumulates the contribution of the tile queries [i0, i0 + nq) of one head × keys
// [j0, j0 + nk) to dq (those query rows) and to dk, dv (those key rows). Pointers are
// already offset to the head and to rows i0 / j0.
template <typename T>
void backward_tile(const T* q, const T* dout, const T* lse, const T* delta, const T* k, const T* v, T* dq, T* dk, T* dv,
                   const Mask& mask, TileKind kind, int64_t i0, int64_t nq, int64_t j0, int64_t nk, int64_t D, T scale,
                   BackwardScratch<T>& ws) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  constexpr int64_t ld = bwd_k_tile;
  T* p = ws.p.data();
  T* ds = ws.dp.data();
  gemm(false, true, nq, nk, D, scale, q, D, k, D, T(0), p, ld);  // scores
  if (kind == TileKind::partial) mask.apply(p, ld, i0, nq, j0, nk);
  pad_columns(p, ld, nq, nk);
  const int64_t width = round_to_packs<T>(nk);
  for (int64_t r = 0; r < nq; ++r) {
    T* row = p + r * ld;
    const T row_lse = lse[r];
    if (row_lse == neg_inf) {  // row saw no key: no probability mass, no gradient
      std::fill(row, row + width, T(0));
      continue;
    }
    for (int64_t c = 0; c < width; c += lanes<T>) store(row + c, exp_pack(load(row + c) - row_lse));
  }
  gemm(true, false, nk, D, nq, T(1), p, ld, dout, D, T(1), dv, D);  // dv += Pᵀ dO
  gemm(false, true, nq, nk, D, T(1), dout, D, v, D, T(0), ds, ld);  // dP = dO Vᵀ
  // dS = P ∘ (dP - delta); the pad columns of ds are never read.
  for (int64_t r = 0; r < nq; ++r) {
    const T* prow = p + r * ld;
    T* dsrow = ds + r * ld;
    const T row_delta = delta[r];
    for (int64_t c = 0; c < width; c += lanes<T>) store(dsrow + c, load(prow + c) * (load(dsrow + c) - row_delta));
  }
  gemm(false, false, nq, D, nk, scale, ds, ld, k, D, T(1), dq, D);  // dq += scale dS K
  gemm(true, false, nk, D, nq, scale, ds, ld, q, D, T(1), dk, D);   // dk += scale dSᵀ Q
}

// All gradient work of one (b, kv head) unit. Every dq row of the unit's query heads and
// every dk, dv row of its kv head is written by this unit only, so units run in parallel
// without races, and each element is accumulated in a fixed order (key tiles, then heads,
// then query tiles).
template <typename T>
void backward_unit(const BackwardUnit<T>& u, const Mask& mask, int64_t group, int64_t Tq, int64_t Tk, int64_t D,
                   T scale, BackwardScratch<T>& ws) {
  for (int64_t g = 0; g < group; ++g) {
    for (int64_t i = 0; i < Tq; ++i) {
      const T* o_row = u.out + (g * Tq + i) * D;
      const T* do_row = u.dout + (g * Tq + i) * D;
      T dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t d = 0; d < D; ++d) dot += o_row[d] * do_row[d];
      ws.delta[g * Tq + i] = dot;
    }
  }
  std::fill(u.dq, u.dq + group * Tq * D, T(0));
  std::fill(u.dk, u.dk + Tk * D, T(0));
  std::fill(u.dv, u.dv + Tk * D, T(0));
  for (int64_t j0 = 0; j0 < Tk; j0 += bwd_k_tile) {
    const int64_t nk = std::min(bwd_k_tile, Tk - j0);
    // Queries before i_begin cannot see key j0 or any later key.
    const int64_t i_begin = mask.causal ? std::max<int64_t>(0, j0 - mask.offset) : 0;
    for (int64_t g = 0; g < group; ++g) {
      for (int64_t i0 = i_begin; i0 < Tq; i0 += bwd_q_tile) {
        const int64_t nq = std::min(bwd_q_tile, Tq - i0);
        const TileKind kind = mask.classify(i0, nq, j0, nk);
        if (kind == TileKind::empty) continue;
        const int64_t row = g * Tq + i0;
        backward_tile(u.q + row * D, u.dout + row * D, u.lse + row, &ws.delta[row], u.k + j0 * D, u.v + j0 * D,
                      u.dq + row * D, u.dk + j0 * D, u.dv + j0 * D, mask, kind, i0, nq, j0, nk, D, scale, ws);
      }
    }
  }
}

}  // namespace

// Below about a million multiply-adds a parallel region costs more than it saves.
constexpr int64_t kParallelWork = int64_t(1) << 20;

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, const int32_t* doc, T* out, T* lse, int64_t B, int64_t H,
                       int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D, T scale, bool causal) {
  const int64_t group = H / Hkv;
  const int64_t q_tiles = (Tq + fwd_q_tile - 1) / fwd_q_tile;
  const int64_t items = B * H * q_tiles;
#pragma omp parallel if (B * H * Tq * Tk * D > kParallelWork)
  {
    ForwardScratch<T> ws;
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < items; ++item) {
      // Last query tiles first: under a causal mask they are the most expensive, and
      // handing them out early balances the dynamic schedule.
      const int64_t qt = q_tiles - 1 - item % q_tiles;
      const int64_t bh = item / q_tiles;  // b * H + h
      const int64_t b = bh / H;
      const int64_t kv_head = b * Hkv + (bh % H) / group;
      const int64_t i0 = qt * fwd_q_tile;
      const int64_t nq = std::min(fwd_q_tile, Tq - i0);
      const Mask mask{causal, Tk - Tq, Tk, doc != nullptr ? doc + b * Tk : nullptr};
      forward_tile(q + (bh * Tq + i0) * D, k + kv_head * Tk * D, v + kv_head * Tk * D, mask, out + (bh * Tq + i0) * D,
                   lse + bh * Tq + i0, i0, nq, D, scale, ws);
    }
  }
}

template <typename T>
void attention_backward(const T* q, const T* k, const T* v, const int32_t* doc, const T* out, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv, int64_t B, int64_t H, int64_t Hkv, int64_t Tq, int64_t Tk,
                        int64_t D, T scale, bool causal) {
  const int64_t group = H / Hkv;
  const int64_t units = B * Hkv;
#pragma omp parallel if (B * H * Tq * Tk * D > kParallelWork)
  {
    BackwardScratch<T> ws(group, Tq);
#pragma omp for schedule(dynamic)
    for (int64_t unit = 0; unit < units; ++unit) {  // unit = b * Hkv + kv head
      const int64_t b = unit / Hkv;
      const int64_t first_head = b * H + (unit % Hkv) * group;  // b * H + h
      const int64_t qo = first_head * Tq * D;
      const BackwardUnit<T> u{
          q + qo,  out + qo,           dout + qo,         lse + first_head * Tq, k + unit * Tk * D, v + unit * Tk * D,
          dq + qo, dk + unit * Tk * D, dv + unit * Tk * D};
      const Mask mask{causal, Tk - Tq, Tk, doc != nullptr ? doc + b * Tk : nullptr};
      backward_unit(u, mask, group, Tq, Tk, D, scale, ws);
    }
  }
}

template void attention_forward<float>(const float*, const float*, const float*, const int32_t*, float*, float*,
                                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, bool);
template void attention_forward<double>(const double*, const double*, const double*, const int32_t*, double*, double*,
                                        int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, bool);
template void attention_backward<float>(const float*, const float*, const float*, const int32_t*, const float*,
                                        const float*, const float*, float*, float*, float*, int64_t, int64_t, int64_t,
                                        int64_t, int64_t, int64_t, float, bool);
template void attention_backward<double>(const double*, const double*, const double*, const int32_t*, const double*,
                                         const double*, const double*, double*, double*, double*, int64_t, int64_t,
                                         int64_t, int64_t, int64_t, int64_t, double, bool);

}  // namespace loom::cpu
