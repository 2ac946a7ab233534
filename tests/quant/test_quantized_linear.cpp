// Nf4Linear and Int8Linear: forward equals linear(x, dequantised W); the input's gradient equals
// linear's and finite differences; nothing of the base is a parameter or gets a gradient; module
// surgery puts them in a model's Linear slots and the model equals one whose weights are the
// dequantised ones. A block of one (a tensor-parallel rank's part) dequantises to exactly the
// whole's block.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "loom/autograd/engine.h"
#include "loom/autograd/function.h"
#include "loom/core/rng.h"
#include "loom/nn/transformer.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape.h"
#include "loom/quant/linear.h"

using namespace loom;

namespace {

Tensor random(const Shape& s, uint64_t seed, double std = 1.0) { return randn(s, RngKey{seed, 0}, 0.0, std); }

std::shared_ptr<nn::Linear> random_linear(int64_t in, int64_t out, bool bias, uint64_t seed) {
  auto lin = std::make_shared<nn::Linear>(in, out, bias);
  autograd::NoGradGuard no_grad;
  ops::copy_(lin->weight, random({out, in}, seed, 0.05));
  if (bias) ops::copy_(lin->bias, random({out}, seed + 1, 0.1));
  return lin;
}

// sum(y · r): its gradient with respect to y is r.
Tensor weighted_sum(const Tensor& y, const Tensor& r) { return ops::sum(ops::mul(y, r)); }

void expect_near(const std::vector<double>& a, const std::vector<double>& b, double tol, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  double scale = 0;
  for (double v : b) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol * scale) << what << " at " << i;
}

Tensor dequantize(const quant::Nf4Weight& w) { return quant::dequantize_nf4(w); }
Tensor dequantize(const quant::Int8Weight& w) { return quant::dequantize_int8(w); }

template <typename Q> class QuantizedLinearTest : public ::testing::Test {};
using Kinds = ::testing::Types<nn::Nf4Linear, nn::Int8Linear>;
struct KindNames {
  template <typename T> static std::string GetName(int) { return std::is_same_v<T, nn::Nf4Linear> ? "Nf4Linear" : "Int8Linear"; }
};
TYPED_TEST_SUITE(QuantizedLinearTest, Kinds, KindNames);

}  // namespace

TYPED_TEST(QuantizedLinearTest, HoldsNoParameterAndAWeightShapeWithoutMemory) {
  auto base = random_linear(96, 80, true, 1);
  TypeParam q(*base);
  EXPECT_TRUE(q.named_parameters().empty());
  EXPECT_TRUE(q.state_dict().empty());
  EXPECT_EQ(q.weight.shape(), Shape({80, 96}));
  EXPECT_FALSE(q.weight.has_memory());
  EXPECT_FALSE(q.bias.requires_grad());
  EXPECT_EQ(q.bias.to_vector(), base->bias.to_vector());
  EXPECT_NE(q.bias.impl(), base->bias.impl());  // a copy: the base may go
  EXPECT_EQ(q.dense_weight().to_vector(), dequantize(q.quantized()).to_vector());
  EXPECT_EQ(q.quantized().shape, Shape({80, 96}));
  EXPECT_THROW(TypeParam(nn::Linear(8, 8, false, true)), Error);  // a deferred base has no values
}

TYPED_TEST(QuantizedLinearTest, ForwardAndInputGradientAreLinearsWithTheDequantisedWeight) {
  for (bool bias : {true, false}) {
    SCOPED_TRACE(bias ? "bias" : "no bias");
    auto base = random_linear(96, 80, bias, 2);
    TypeParam q(*base);
    const Tensor w = q.dense_weight();
    Tensor x = random({3, 7, 96}, 3);
    x.set_requires_grad(true);
    Tensor x_ref = ops::clone(x.detach());
    x_ref.set_requires_grad(true);
    const Tensor r = random({3, 7, 80}, 4);

    const Tensor y = q.forward(x), y_ref = ops::linear(x_ref, w, q.bias);
    EXPECT_EQ(y.to_vector(), y_ref.to_vector());  // the same GEMM on the same values
    Tensor loss = weighted_sum(y, r);
    EXPECT_EQ(autograd::reachable_leaves(loss), (std::unordered_set<const TensorImpl*>{x.impl()}));  // x only
    loss.backward();
    weighted_sum(y_ref, r).backward();
    expect_near(x.grad().to_vector(), x_ref.grad().to_vector(), 1e-6, "x grad");
    EXPECT_FALSE(q.bias.defined() && q.bias.grad().defined());
    EXPECT_FALSE(base->weight.grad().defined());
  }
}

TYPED_TEST(QuantizedLinearTest, InputGradientMatchesFiniteDifferences) {
  auto base = random_linear(16, 12, true, 5);
  TypeParam q(*base);
  Tensor x = random({2, 16}, 6);
  x.set_requires_grad(true);
  const Tensor r = random({2, 12}, 7);
  weighted_sum(q.forward(x), r).backward();
  const std::vector<double> g = x.grad().to_vector();
  autograd::NoGradGuard no_grad;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float eps = 1e-2f, v = x.data<float>()[i];
    x.data<float>()[i] = v + eps;
    const double up = weighted_sum(q.forward(x), r).item();
    x.data<float>()[i] = v - eps;
    const double down = weighted_sum(q.forward(x), r).item();
    x.data<float>()[i] = v;
    EXPECT_NEAR((up - down) / (2 * eps), g[size_t(i)], 2e-3) << "element " << i;
  }
}

TYPED_TEST(QuantizedLinearTest, Bf16InputComputesInBf16) {
  auto base = random_linear(64, 32, true, 8);
  TypeParam q(*base);
  Tensor x = ops::cast(random({4, 64}, 9), DType::bf16);
  x.set_requires_grad(true);
  const Tensor y = q.forward(x);
  EXPECT_EQ(y.dtype(), DType::bf16);
  const Tensor y_ref = ops::linear(x.detach(), ops::cast(q.dense_weight(), DType::bf16), ops::cast(q.bias, DType::bf16));
  EXPECT_EQ(y.to_vector(), y_ref.to_vector());
  ops::sum(ops::cast(y, DType::f32)).backward();
  EXPECT_EQ(x.grad().dtype(), DType::bf16);
}

// Every Linear of the blocks swapped for a quantised one by module surgery: the model loses exactly
// their parameters, and its logits and the remaining parameters' gradients equal those of the
// same model whose linears hold the dequantised weights.
TYPED_TEST(QuantizedLinearTest, ModuleSurgeryInATransformer) {
  for (const char* preset : {"llama-tiny", "gpt2-tiny"}) {
    SCOPED_TRACE(preset);
    nn::TransformerLM qlora(models::preset(preset)), ref(models::preset(preset));
    qlora.init(10);
    ref.init(10);
    std::vector<std::string> swapped;
    for (const auto& [path, m] : qlora.named_modules())
      if (path.rfind("layers.", 0) == 0 && std::dynamic_pointer_cast<nn::Linear>(m)) swapped.push_back(path);
    ASSERT_GE(swapped.size(), 8u);
    const int64_t before = qlora.num_parameters();
    int64_t removed = 0;
    for (const std::string& path : swapped) {
      auto& lin = dynamic_cast<nn::Linear&>(*qlora.module_at(path));
      removed += lin.weight.numel() + (lin.bias.defined() ? lin.bias.numel() : 0);
      auto q = std::make_shared<TypeParam>(lin);
      auto& target = dynamic_cast<nn::Linear&>(*ref.module_at(path));
      autograd::NoGradGuard no_grad;
      ops::copy_(target.weight, q->dense_weight());
      qlora.replace_module(path, q);
    }
    EXPECT_EQ(qlora.num_parameters(), before - removed);
    for (const auto& [name, t] : qlora.named_parameters())
      for (const std::string& path : swapped) EXPECT_NE(name.rfind(path + ".", 0), 0u) << name;

    const Tensor ids = Tensor::from_ints({3, 17, 100, 5, 9, 250, 1, 7}, {2, 4});
    const Tensor logits = qlora.forward(ids), logits_ref = ref.forward(ids);
    EXPECT_EQ(logits.to_vector(), logits_ref.to_vector());
    qlora.loss(logits, ids).backward();
    ref.loss(logits_ref, ids).backward();
    const auto ref_params = ref.state_dict();
    for (const auto& [name, t] : qlora.named_parameters()) {
      ASSERT_TRUE(t.grad().defined()) << name;
      expect_near(t.grad().to_vector(), ref_params.at(name).grad().to_vector(), 1e-4, name);
    }
  }
}

// Blocks of rows and of columns whose elements lie across the quantisation's 64-blocks (and, for
// int8, its rows): the same values as the whole's dequantisation, bit for bit, the rows' bias.
TYPED_TEST(QuantizedLinearTest, ABlockDequantisesToTheWholesBlock) {
  auto base = random_linear(100, 30, true, 5);
  TypeParam q(*base);
  const Tensor w = q.dense_weight();
  for (const auto& [dim, start, size] : {std::tuple{0, 7, 11}, std::tuple{1, 13, 45}, std::tuple{1, 50, 50}}) {
    const auto b = q.block(dim, start, size);
    EXPECT_EQ(b->dense_weight().to_vector(), ops::contiguous(ops::narrow(w, dim, start, size)).to_vector()) << dim << " " << start;
    EXPECT_EQ(b->weight.shape(), ops::narrow(w, dim, start, size).shape());
    EXPECT_TRUE(b->named_parameters().empty());
    if (dim == 0) EXPECT_EQ(b->bias.to_vector(), ops::narrow(q.bias, 0, start, size).to_vector());
    else EXPECT_FALSE(b->bias.defined());
    EXPECT_THROW(b->block(0, 0, 1), Error);  // not a block of a block
  }
  EXPECT_THROW(q.block(1, 60, 50), Error);
}
