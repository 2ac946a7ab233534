// The backward engine and activation checkpointing: shared subgraphs and diamonds, gradient
// accumulation across backward calls, post-accumulate hooks (once per leaf per backward, with
// the complete gradient, later layers first), no_grad, detach, retain_graph, and checkpoint()
// giving bit-identical gradients to the plain computation.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "loom/autograd/checkpoint.h"
#include "loom/autograd/engine.h"
#include "loom/autograd/function.h"
#include "loom/core/allocator.h"
#include "loom/core/rng.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/matmul.h"
#include "loom/ops/nn.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape.h"

namespace {

using namespace loom;
using std::vector;

Tensor leaf(const vector<double>& v, const Shape& s, DType dt = DType::f64) {
  Tensor t = Tensor::from_vector(v, s, dt);
  t.set_requires_grad(true);
  return t;
}
Tensor leaf_randn(const Shape& s, uint64_t seed) {
  Tensor t = randn(s, RngKey{seed, 0}, 0, 0.5, DType::f64);
  t.set_requires_grad(true);
  return t;
}

void expect_near_all(const Tensor& got, const vector<double>& want, double tol = 1e-12) {
  ASSERT_TRUE(got.defined());
  vector<double> g = got.to_vector();
  ASSERT_EQ(g.size(), want.size());
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], want[i], tol) << "element " << i;
}

TEST(Engine, SharedSubgraphSumsBothPaths) {
  Tensor x = leaf({-1.5, 0.5, 2}, {3});
  ops::sum(x * x + x).backward();  // d/dx (x² + x) = 2x + 1
  expect_near_all(x.grad(), {-2, 2, 5});
}

TEST(Engine, DiamondWithPathsOfDifferentLength) {
  // h1 = 2x feeds h3 directly and through h2 = h1 + 1: loss = sum((h1 + 1) h1 + h1) = sum(4x² + 4x).
  Tensor x = leaf({-1, 0.25, 3}, {3});
  Tensor h1 = x * 2.0;
  Tensor h2 = h1 + 1.0;
  ops::sum(h2 * h1 + h1).backward();
  expect_near_all(x.grad(), {-4, 6, 28});
}

TEST(Engine, DiamondThroughUnaryOps) {
  // h = 3x; loss = sum(exp(h) tanh(h)); d/dx = 3 exp(h) (tanh(h) + 1 - tanh²(h)).
  vector<double> xv = {-0.4, 0.1, 0.3};
  Tensor x = leaf(xv, {3});
  Tensor h = x * 3.0;
  ops::sum(ops::exp(h) * ops::tanh(h)).backward();
  vector<double> want;
  for (double v : xv) {
    double th = std::tanh(3 * v);
    want.push_back(3 * std::exp(3 * v) * (th + 1 - th * th));
  }
  expect_near_all(x.grad(), want);
}

TEST(Engine, LeafUsedTwiceInOneOpAndThroughViews) {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = ops::mul(x, x);                                   // 2x
  Tensor z = ops::sum(ops::transpose(x, 0, 1), {0});           // 1 per element, through a view
  ops::sum(y + ops::unsqueeze(z, 1)).backward();               // z broadcast over 3 columns: 3 per element
  ASSERT_EQ(x.grad().shape(), (Shape{2, 3}));
  expect_near_all(x.grad(), {5, 7, 9, 11, 13, 15});
}

TEST(Engine, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = leaf({1, -2}, {2});
  ops::sum(x * x).backward();
  expect_near_all(x.grad(), {2, -4});
  Tensor first = x.grad();
  ops::sum(x * 3.0).backward();
  expect_near_all(x.grad(), {5, -1});
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  ops::sum(x).backward();
  expect_near_all(x.grad(), {1, 1});
  EXPECT_NE(x.grad().storage(), first.storage()) << "zero_grad must start a fresh gradient";
}

TEST(Engine, AccumulatedGradientDoesNotAliasGraphTensors) {
  // The incoming gradient of an identity-like graph is the seed itself; the leaf must own a copy.
  Tensor x = leaf({1, 2}, {2});
  Tensor seed = Tensor::from_vector({10, 20}, {2}, DType::f64);
  ops::reshape(x, {2}).backward(seed);
  ops::reshape(x, {2}).backward(seed);
  expect_near_all(x.grad(), {20, 40});
  expect_near_all(seed, {10, 20});
}

TEST(Engine, ExplicitGradientAndNonScalarRoot) {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor y = x * x;
  EXPECT_THROW(y.backward(), Error) << "a non-scalar root needs an explicit gradient";
  y.backward(Tensor::from_vector({1, 0, -1}, {3}, DType::f64), true);
  expect_near_all(x.grad(), {2, 0, -6});
  EXPECT_THROW(y.backward(Tensor::from_vector({1, 0}, {2}, DType::f64)), Error);
}

TEST(Engine, PostAccumulateHookFiresOncePerBackwardWithCompleteGrad) {
  Tensor x = leaf({1, 2}, {2});
  Tensor w = leaf({3, -1}, {2});
  vector<vector<double>> seen_x;
  int calls_w = 0;
  HookHandle hx = x.register_post_accumulate_hook([&](const Tensor& t) { seen_x.push_back(t.grad().to_vector()); });
  HookHandle hw = w.register_post_accumulate_hook([&](const Tensor&) { ++calls_w; });
  // x is used by three ops: loss = sum(x*w + x*x + exp(x)).
  auto loss = [&] { return ops::sum(x * w + x * x + ops::exp(x)); };
  loss().backward();
  ASSERT_EQ(seen_x.size(), 1u);
  EXPECT_EQ(calls_w, 1);
  vector<double> full = {3 + 2 + std::exp(1.0), -1 + 4 + std::exp(2.0)};
  EXPECT_NEAR(seen_x[0][0], full[0], 1e-12);
  EXPECT_NEAR(seen_x[0][1], full[1], 1e-12);
  loss().backward();
  ASSERT_EQ(seen_x.size(), 2u);
  EXPECT_EQ(calls_w, 2);
  EXPECT_NEAR(seen_x[1][0], 2 * full[0], 1e-12) << "second backward's hook sees the accumulated gradient";
  // Removing (or destroying) the handle removes the hook; removing twice is harmless.
  hw.remove();
  hw.remove();
  { HookHandle gone = std::move(hx); }
  loss().backward();
  EXPECT_EQ(seen_x.size(), 2u);
  EXPECT_EQ(calls_w, 2);
  HookHandle late = w.register_post_accumulate_hook([&](const Tensor&) { ++calls_w; });
  loss().backward();
  EXPECT_EQ(calls_w, 3);
}

TEST(Engine, HookHandleOutlivingItsTensorIsHarmless) {
  HookHandle h;
  {
    Tensor w = leaf({1}, {1});
    h = w.register_post_accumulate_hook([](const Tensor&) {});
  }
  h.remove();
  EXPECT_FALSE(h.active());
}

TEST(Engine, HookFiresForALeafReachedWithoutAGradient) {
  // A backward that reaches w but whose every path returns no gradient for it still tells w's
  // hooks that its gradient for this pass is final (data parallelism counts on it).
  Tensor w = leaf({1, 2}, {2});
  Tensor y = ops::mul(w, 2.0);
  Tensor out = y.detach();
  autograd::attach(out, "drop", {y}, [](const Tensor&) { return vector<Tensor>{Tensor()}; });
  int calls = 0;
  HookHandle h = w.register_post_accumulate_hook([&](const Tensor&) { ++calls; });
  ops::sum(out).backward();
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(w.grad().defined());
}

TEST(Engine, AGradientOfTheWrongShapeOrDtypeNamesTheOp) {
  Tensor x = leaf({1, 2, 3}, {3});
  auto bad_backward = [&](Tensor g) {
    Tensor y = ops::mul(x, 1.0);
    Tensor out = y.detach();
    autograd::attach(out, "broken_op", {y}, [g](const Tensor&) { return vector<Tensor>{g}; });
    ops::sum(out).backward();
  };
  for (const Tensor& g : {Tensor::zeros({2}, DType::f64), Tensor::zeros({3}, DType::f32)}) {
    try {
      bad_backward(g);
      ADD_FAILURE() << "no error for a gradient of shape " << fmt::format("{}", g.shape());
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("backward: broken_op returned a gradient of shape"), std::string::npos) << e.what();
    }
  }
}

TEST(Engine, ReachableLeavesFollowsTheGraph) {
  Tensor a = leaf({1}, {1}), b = leaf({2}, {1}), unused = leaf({3}, {1});
  const auto reached = autograd::reachable_leaves(ops::sum(a * b));
  EXPECT_EQ(reached.size(), 2u);
  EXPECT_TRUE(reached.count(a.impl()) && reached.count(b.impl()));
  EXPECT_FALSE(reached.count(unused.impl()));
}

TEST(Engine, AddAndSubKeepNeitherInputAlive) {
  // Their backward needs no input values: the graph must not hold the inputs' memory.
  Tensor w = leaf({1, 2}, {2});
  std::weak_ptr<Storage> a_mem, b_mem;
  Tensor y;
  {
    Tensor a = ops::mul(w, 3.0), b = ops::mul(w, 4.0);
    a_mem = a.storage(), b_mem = b.storage();
    y = ops::sub(ops::add(a, b), b);
  }
  EXPECT_TRUE(a_mem.expired());
  EXPECT_TRUE(b_mem.expired());
  ops::sum(y).backward();
  expect_near_all(w.grad(), {3, 3});
}

TEST(Engine, HooksOfLaterLayersFireFirst) {
  // A chain x -> *w1 -> *w2 -> *w3: gradients become ready from the last layer back.
  Tensor x = Tensor::from_vector({1, 2}, {2}, DType::f64);
  Tensor w1 = leaf({1, 1}, {2}), w2 = leaf({2, 2}, {2}), w3 = leaf({3, 3}, {2});
  vector<int> order;
  HookHandle h1 = w1.register_post_accumulate_hook([&](const Tensor&) { order.push_back(1); });
  HookHandle h2 = w2.register_post_accumulate_hook([&](const Tensor&) { order.push_back(2); });
  HookHandle h3 = w3.register_post_accumulate_hook([&](const Tensor&) { order.push_back(3); });
  ops::sum(x * w1 * w2 * w3).backward();
  EXPECT_EQ(order, (vector<int>{3, 2, 1}));
}

TEST(Engine, NoGradBuildsNoGraph) {
  Tensor x = leaf({1, 2}, {2});
  {
    autograd::NoGradGuard ng;
    EXPECT_FALSE(autograd::grad_enabled());
    Tensor y = ops::exp(x * 2.0);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    Tensor s = ops::sum(ops::matmul(ops::unsqueeze(x, 0), ops::unsqueeze(x, 1)));
    EXPECT_FALSE(s.requires_grad());
    EXPECT_THROW(s.backward(), Error);
    {
      autograd::EnableGradGuard eg;
      EXPECT_TRUE(autograd::grad_enabled());
      EXPECT_TRUE((x * 2.0).requires_grad());
    }
    EXPECT_FALSE(autograd::grad_enabled());
  }
  EXPECT_TRUE(autograd::grad_enabled());
  EXPECT_TRUE((x * 2.0).requires_grad());
  EXPECT_FALSE(x.grad().defined());
}

TEST(Engine, DetachCutsTheGraph) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = x * x;
  Tensor d = y.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  EXPECT_EQ(d.storage(), y.storage());
  ops::sum(d * x + x).backward();  // d is a constant: grad = d + 1 = x² + 1
  expect_near_all(x.grad(), {2, 5});
}

TEST(Engine, RetainGraphAllowsASecondBackward) {
  Tensor x = leaf({0.5, -1}, {2});
  Tensor loss = ops::sum(ops::exp(x) * x);
  loss.backward(Tensor(), /*retain_graph=*/true);
  loss.backward();
  vector<double> want;
  for (double v : {0.5, -1.0}) want.push_back(2 * std::exp(v) * (1 + v));
  expect_near_all(x.grad(), want);
  try {
    loss.backward();
    ADD_FAILURE() << "a third backward over a freed graph must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("retain_graph"), std::string::npos) << e.what();
  }
}

TEST(Engine, SecondBackwardWithoutRetainGraphThrows) {
  Tensor x = leaf({1, 2}, {2});
  Tensor loss = ops::sum(x * x);
  loss.backward();
  EXPECT_THROW(loss.backward(), Error);
  expect_near_all(x.grad(), {2, 4});  // the failed backward accumulated nothing
}

// ---- checkpoint ----

// A small block with captured parameters: dropout(tanh(x W1ᵀ + b1)) W2ᵀ, then gelu.
struct Block {
  Tensor w1 = leaf_randn({6, 4}, 1), b1 = leaf_randn({6}, 2), w2 = leaf_randn({4, 6}, 3);
  double p = 0;
  RngKey key{77, 0};
  Tensor operator()(const vector<Tensor>& in) const {
    Tensor h = ops::tanh(ops::linear(in[0], w1, b1));
    if (p > 0) h = ops::dropout(h, p, key);
    return ops::gelu(ops::linear(h, w2)) * in[1];
  }
  vector<Tensor> params() const { return {w1, b1, w2}; }
};

// Gradients of sum(r * block(inputs)) for inputs and block parameters, with or without checkpointing.
vector<Tensor> block_grads(const Block& blk, const vector<Tensor>& inputs, bool use_checkpoint) {
  vector<Tensor> all = inputs;
  for (const Tensor& p : blk.params()) all.push_back(p);
  for (Tensor& t : all) t.zero_grad();
  Tensor y = use_checkpoint ? autograd::checkpoint([&blk](const vector<Tensor>& in) { return blk(in); }, inputs) : blk(inputs);
  Tensor r = randn(y.shape(), RngKey{5, 0}, 0, 1, DType::f64);
  ops::sum(y * r).backward();
  vector<Tensor> grads;
  for (const Tensor& t : all) grads.push_back(t.requires_grad() ? ops::clone(t.grad()) : Tensor());
  return grads;
}

void expect_bit_identical(const vector<Tensor>& a, const vector<Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].defined(), b[i].defined()) << "gradient " << i;
    if (!a[i].defined()) continue;
    EXPECT_EQ(a[i].to_vector(), b[i].to_vector()) << "gradient " << i << " differs";
  }
}

TEST(Checkpoint, GradientsBitIdenticalToPlainRun) {
  Block blk;
  vector<Tensor> in = {leaf_randn({3, 4}, 10), leaf_randn({3, 4}, 11)};
  expect_bit_identical(block_grads(blk, in, true), block_grads(blk, in, false));
}

TEST(Checkpoint, WithDropoutFromAFixedKey) {
  Block blk;
  blk.p = 0.4;
  vector<Tensor> in = {leaf_randn({2, 3, 4}, 12), leaf_randn({2, 3, 4}, 13)};
  expect_bit_identical(block_grads(blk, in, true), block_grads(blk, in, false));
}

TEST(Checkpoint, InputsWithoutGradButCapturedParamsWithGrad) {
  Block blk;
  blk.p = 0.25;
  vector<Tensor> in = {randn({3, 4}, RngKey{14, 0}, 0, 1, DType::f64), randn({3, 4}, RngKey{15, 0}, 0, 1, DType::f64)};
  vector<Tensor> ck = block_grads(blk, in, true), plain = block_grads(blk, in, false);
  expect_bit_identical(ck, plain);
  for (size_t i = 2; i < ck.size(); ++i) EXPECT_TRUE(ck[i].defined()) << "parameter " << i - 2 << " got no gradient";
}

TEST(Checkpoint, StackedCheckpointsAndANonLeafInput) {
  Block a, b;
  b.w1 = leaf_randn({6, 4}, 21);
  auto run = [&](bool ck) {
    Tensor x = leaf_randn({3, 4}, 16), m = leaf_randn({3, 4}, 17);
    for (Tensor t : {a.w1, a.b1, a.w2, b.w1, b.b1, b.w2}) t.zero_grad();
    Tensor x2 = x * 2.0;  // non-leaf input to the first block
    auto f = [](const Block& blk) { return [&blk](const vector<Tensor>& in) { return blk(in); }; };
    Tensor h = ck ? autograd::checkpoint(f(a), {x2, m}) : a({x2, m});
    Tensor y = ck ? autograd::checkpoint(f(b), {h, m}) : b({h, m});
    ops::sum(y * y).backward();
    vector<Tensor> g = {x.grad(), m.grad()};
    for (Tensor t : {a.w1, a.b1, a.w2, b.w1, b.b1, b.w2}) g.push_back(t.grad());
    return g;
  };
  expect_bit_identical(run(true), run(false));
}

TEST(Checkpoint, FunctionReturningItsInput) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = autograd::checkpoint([](const vector<Tensor>& in) { return in[0]; }, {x});
  EXPECT_NE(y.impl(), x.impl());
  ops::sum(y * 3.0).backward();
  expect_near_all(x.grad(), {3, 3});
}

TEST(Checkpoint, UnderNoGradReturnsAPlainTensor) {
  Block blk;
  vector<Tensor> in = {leaf_randn({3, 4}, 18), leaf_randn({3, 4}, 19)};
  autograd::NoGradGuard ng;
  Tensor y = autograd::checkpoint([&blk](const vector<Tensor>& x) { return blk(x); }, in);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.to_vector(), blk(in).to_vector());
}

TEST(Checkpoint, ParamHookFiresOnceWhenUsedInsideAndOutside) {
  // w is used inside the checkpointed function and again after it: DDP's bucket hook must see
  // w's gradient exactly once per backward, complete.
  Tensor w = leaf({0.5, -1.5}, {2});
  Tensor x = leaf({2, 3}, {2});
  vector<vector<double>> at_hook;
  HookHandle h = w.register_post_accumulate_hook([&](const Tensor& t) { at_hook.push_back(t.grad().to_vector()); });
  Tensor y = autograd::checkpoint([&w](const vector<Tensor>& in) { return in[0] * w; }, {x});
  ops::sum(y * w).backward();  // loss = sum(x w²): dL/dw = 2 x w
  expect_near_all(w.grad(), {2, -9});
  ASSERT_EQ(at_hook.size(), 1u) << "hook fired " << at_hook.size() << " times in one backward";
  EXPECT_EQ(at_hook[0], w.grad().to_vector()) << "hook saw an incomplete gradient";
}

// A tied embedding (GPT-2's wte, also the head): backward reaches the head first, and the
// embedding then adds its rows into that gradient instead of building a dense (V, C) one. The
// result equals the sum of the two gradients of untied copies, and backward's peak memory stays
// below two (V, C) buffers.
TEST(Engine, EmbeddingAddsItsRowsIntoATiedGradient) {
  const int64_t V = 4096, C = 64;
  Tensor ids = Tensor::from_ints({3, 7, 3, 4000, 0, 7}, {2, 3});
  Tensor r = randn({2, 3, V}, {11, 0});
  auto loss = [&](const Tensor& emb, const Tensor& head) { return ops::sum(ops::linear(ops::tanh(ops::embedding(ids, emb)), head) * r); };
  Tensor w = randn({V, C}, {12, 0}).set_requires_grad(true);
  Tensor tied = loss(w, w);
  auto& alloc = CpuAllocator::instance();
  alloc.reset_peak();
  const size_t before = alloc.stats().current_bytes;
  tied.backward();
  EXPECT_LT(alloc.stats().peak_bytes - before, size_t(V * C * 4) * 3 / 2);
  Tensor a = ops::clone(w.detach()).set_requires_grad(true), b = ops::clone(w.detach()).set_requires_grad(true);
  loss(a, b).backward();
  const std::vector<double> got = w.grad().to_vector(), ga = a.grad().to_vector(), gb = b.grad().to_vector();
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], ga[i] + gb[i], 1e-5 * (1 + std::abs(ga[i] + gb[i]))) << i;
}

}  // namespace
