// Bad inputs to the ops: each must throw loom::Error (never crash or compute garbage) with a
// message that names the operation and the offending shape, dtype or value, so that the CLI's
// "error: <message>" is enough to find the mistake.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "loom/ops/elementwise.h"
#include "loom/ops/matmul.h"
#include "loom/ops/nn.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape.h"

namespace {

using namespace loom;
using ::testing::AllOf;
using ::testing::HasSubstr;

// The message of the loom::Error that f throws; fails the test when f does not throw one.
template <typename F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a loom::Error";
  return "";
}

Tensor t(const Shape& s, DType dt = DType::f32) { return Tensor::zeros(s, dt); }

TEST(BadInput, BroadcastMismatchNamesBothShapes) {
  EXPECT_THAT(error_of([] { ops::add(t({2, 3}), t({4, 3})); }), AllOf(HasSubstr("add"), HasSubstr("[2, 3]"), HasSubstr("[4, 3]")));
  EXPECT_THAT(error_of([] { ops::where(t({2}, DType::u8), t({3}), t({3})); }), AllOf(HasSubstr("where"), HasSubstr("[2]"), HasSubstr("[3]")));
}

TEST(BadInput, InPlaceOpsCheckShapesAndDtypes) {
  // A source that does not broadcast to the destination (smaller, larger, more dims) would read
  // or write out of bounds; a dtype mismatch would reinterpret memory.
  Tensor dst = t({2, 3});
  EXPECT_THAT(error_of([&] { ops::add_(dst, t({4})); }), AllOf(HasSubstr("add_"), HasSubstr("[4]"), HasSubstr("[2, 3]")));
  EXPECT_THAT(error_of([&] { ops::add_(dst, t({4, 3})); }), AllOf(HasSubstr("add_"), HasSubstr("[4, 3]")));
  EXPECT_THAT(error_of([&] { ops::add_(dst, t({1, 2, 3})); }), AllOf(HasSubstr("add_"), HasSubstr("[1, 2, 3]")));
  EXPECT_THAT(error_of([&] { ops::add_(dst, t({2, 3}, DType::f64)); }), AllOf(HasSubstr("add_"), HasSubstr("f64")));
  EXPECT_THAT(error_of([&] { ops::copy_(dst, t({3, 2})); }), AllOf(HasSubstr("copy_"), HasSubstr("[3, 2]")));
  EXPECT_THAT(error_of([&] { ops::copy_(dst, t({7, 2, 3})); }), AllOf(HasSubstr("copy_"), HasSubstr("[7, 2, 3]")));
  Tensor undefined;
  EXPECT_THAT(error_of([&] { ops::add_(dst, undefined); }), HasSubstr("add_: undefined tensor"));
  EXPECT_THAT(error_of([&] { ops::mul_(undefined, 2.0); }), HasSubstr("mul_: undefined tensor"));
  Tensor w = t({2});
  w.set_requires_grad(true);
  EXPECT_THAT(error_of([&] { ops::mul_(w, 2.0); }), HasSubstr("mul_: in-place update of a tensor that requires grad"));
  EXPECT_THAT(error_of([&] { ops::copy_(w, t({2})); }), HasSubstr("copy_: in-place update"));
  ops::add_(dst, t({3}));  // broadcasting sources stay fine
  ops::copy_(dst, t({2, 1}, DType::f64));
}

TEST(BadInput, UndefinedTensorIsAnError) {
  Tensor u;
  EXPECT_THAT(error_of([&] { (void)u.shape(); }), HasSubstr("undefined tensor"));
  EXPECT_THAT(error_of([&] { (void)u.data<float>(); }), HasSubstr("undefined tensor"));
  EXPECT_THAT(error_of([&] { (void)u.numel(); }), HasSubstr("undefined tensor"));
  EXPECT_THAT(error_of([&] { ops::add(u, t({1})); }), HasSubstr("undefined tensor"));
}

TEST(BadInput, MatmulInnerMismatch) {
  EXPECT_THAT(error_of([] { ops::matmul(t({2, 3}), t({4, 5})); }), AllOf(HasSubstr("matmul"), HasSubstr("[2, 3]"), HasSubstr("[4, 5]")));
  EXPECT_THAT(error_of([] { ops::matmul(t({2, 2, 3}), t({3, 3, 4})); }), AllOf(HasSubstr("matmul"), HasSubstr("[2]"), HasSubstr("[3]")));
  EXPECT_THAT(error_of([] { ops::matmul(t({3}), t({3, 4})); }), AllOf(HasSubstr("matmul"), HasSubstr("[3]")));
}

TEST(BadInput, LinearWeightOrBiasMismatch) {
  EXPECT_THAT(error_of([] { ops::linear(t({2, 3}), t({4, 5})); }), AllOf(HasSubstr("linear"), HasSubstr("[2, 3]"), HasSubstr("[4, 5]")));
  EXPECT_THAT(error_of([] { ops::linear(t({2, 3}), t({4, 3}), t({5})); }), AllOf(HasSubstr("linear"), HasSubstr("[5]"), HasSubstr("[4, 3]")));
}

TEST(BadInput, DtypeMismatchNamesBothDtypes) {
  EXPECT_THAT(error_of([] { ops::add(t({2}), t({2}, DType::f64)); }), AllOf(HasSubstr("add"), HasSubstr("f32"), HasSubstr("f64")));
  EXPECT_THAT(error_of([] { ops::matmul(t({2, 2}), t({2, 2}, DType::bf16)); }), AllOf(HasSubstr("matmul"), HasSubstr("f32"), HasSubstr("bf16")));
  EXPECT_THAT(error_of([] { ops::linear(t({2, 2}, DType::f64), t({2, 2})); }), AllOf(HasSubstr("linear"), HasSubstr("f64"), HasSubstr("f32")));
  EXPECT_THAT(error_of([] { ops::cat({t({2}), t({2}, DType::i64)}, 0); }), AllOf(HasSubstr("cat"), HasSubstr("i64")));
  EXPECT_THAT(error_of([] { ops::where(t({2}), t({2}), t({2})); }), AllOf(HasSubstr("where"), HasSubstr("f32")));
  EXPECT_THAT(error_of([] { ops::exp(t({2}, DType::i32)); }), AllOf(HasSubstr("exp"), HasSubstr("i32")));
}

TEST(BadInput, EmbeddingIdOutOfRange) {
  Tensor w = t({5, 3});
  EXPECT_THAT(error_of([&] { ops::embedding(Tensor::from_ints({1, 7, 2}, {3}), w); }),
              AllOf(HasSubstr("embedding"), HasSubstr("id 7"), HasSubstr("5")));
  EXPECT_THAT(error_of([&] { ops::embedding(Tensor::from_ints({0, -1}, {2}), w); }), AllOf(HasSubstr("embedding"), HasSubstr("-1")));
  EXPECT_THAT(error_of([&] { ops::embedding(Tensor::from_ints({5}, {1}, DType::i32), w); }), AllOf(HasSubstr("embedding"), HasSubstr("5")));
  EXPECT_THAT(error_of([&] { ops::embedding(t({2}), w); }), AllOf(HasSubstr("embedding"), HasSubstr("f32")));
}

TEST(BadInput, IndexSelectAndGatherOutOfRange) {
  Tensor x = t({4, 3});
  EXPECT_THAT(error_of([&] { ops::index_select(x, 0, Tensor::from_ints({0, 4}, {2})); }),
              AllOf(HasSubstr("index_select"), HasSubstr("index 4"), HasSubstr("[0, 4)")));
  EXPECT_THAT(error_of([&] { ops::index_select(x, 1, Tensor::from_ints({-1}, {1})); }), AllOf(HasSubstr("index_select"), HasSubstr("-1")));
  EXPECT_THAT(error_of([&] { ops::gather(x, 1, Tensor::from_ints({0, 1, 2, 3}, {4, 1})); }),
              AllOf(HasSubstr("gather"), HasSubstr("index 3"), HasSubstr("[0, 3)")));
  EXPECT_THAT(error_of([&] { ops::gather(x, 0, Tensor::from_ints({0, 1}, {2})); }), AllOf(HasSubstr("gather"), HasSubstr("[2]"), HasSubstr("[4, 3]")));
}

TEST(BadInput, CrossEntropyTargetOutOfRange) {
  Tensor logits = t({2, 5});
  // 3 is a valid column of the padded logits but not a class when num_classes is 3.
  EXPECT_THAT(error_of([&] { ops::cross_entropy(logits, Tensor::from_ints({0, 3}, {2}), -100, ops::Reduction::mean, 3); }),
              AllOf(HasSubstr("cross_entropy"), HasSubstr("target 3"), HasSubstr("[0, 3)")));
  EXPECT_THAT(error_of([&] { ops::cross_entropy(logits, Tensor::from_ints({5, 0}, {2})); }), AllOf(HasSubstr("cross_entropy"), HasSubstr("5")));
  EXPECT_THAT(error_of([&] { ops::cross_entropy(logits, Tensor::from_ints({-2, 0}, {2})); }), AllOf(HasSubstr("cross_entropy"), HasSubstr("-2")));
  EXPECT_THAT(error_of([&] { ops::cross_entropy(logits, Tensor::from_ints({0, 0, 0}, {3})); }),
              AllOf(HasSubstr("cross_entropy"), HasSubstr("[3]"), HasSubstr("[2, 5]")));
}

TEST(BadInput, AttentionHeadsNotAMultiple) {
  EXPECT_THAT(error_of([] { ops::scaled_dot_product_attention(t({1, 3, 4, 8}), t({1, 2, 4, 8}), t({1, 2, 4, 8}), true); }),
              AllOf(HasSubstr("attention"), HasSubstr("3"), HasSubstr("2")));
  EXPECT_THAT(error_of([] { ops::scaled_dot_product_attention(t({1, 2, 4, 8}), t({1, 2, 4, 6}), t({1, 2, 4, 6}), false); }),
              AllOf(HasSubstr("attention"), HasSubstr("[1, 2, 4, 6]")));
  EXPECT_THAT(error_of([] { ops::scaled_dot_product_attention(t({1, 2, 5, 8}), t({1, 2, 4, 8}), t({1, 2, 4, 8}), true); }),
              AllOf(HasSubstr("attention"), HasSubstr("5"), HasSubstr("4")));
}

TEST(BadInput, CheckFiniteNamesOpValueAndShape) {
  Tensor x = Tensor::from_vector({1, 2, NAN, 4}, {2, 2});
  EXPECT_THAT(error_of([&] { ops::check_finite(x, "loss"); }), AllOf(HasSubstr("loss"), HasSubstr("nan"), HasSubstr("[2, 2]")));
  Tensor y = Tensor::from_vector({1, -INFINITY}, {2}, DType::bf16);
  EXPECT_THAT(error_of([&] { ops::check_finite(y, "grad"); }), AllOf(HasSubstr("grad"), HasSubstr("inf"), HasSubstr("[2]")));
  EXPECT_NO_THROW(ops::check_finite(Tensor::from_vector({1, 2}, {2}), "ok"));
}

TEST(BadInput, ShapeOpsNameTheShape) {
  Tensor x = t({2, 3});
  EXPECT_THAT(error_of([&] { ops::reshape(x, {4, 2}); }), AllOf(HasSubstr("reshape"), HasSubstr("[2, 3]"), HasSubstr("[4, 2]")));
  EXPECT_THAT(error_of([&] { ops::narrow(x, 1, 2, 2); }), AllOf(HasSubstr("narrow"), HasSubstr("3")));
  EXPECT_THAT(error_of([&] { ops::squeeze(x, 0); }), AllOf(HasSubstr("squeeze"), HasSubstr("[2, 3]")));
  EXPECT_THAT(error_of([&] { ops::expand(x, {4, 3}); }), AllOf(HasSubstr("expand"), HasSubstr("[2, 3]"), HasSubstr("[4, 3]")));
  EXPECT_THAT(error_of([&] { ops::cat({x, t({2, 4})}, 0); }), AllOf(HasSubstr("cat"), HasSubstr("[2, 4]"), HasSubstr("[2, 3]")));
  EXPECT_THAT(error_of([&] { ops::transpose(x, 0, 2); }), AllOf(HasSubstr("transpose"), HasSubstr("2")));
  EXPECT_THAT(error_of([&] { ops::sum(x, {0, 0}); }), HasSubstr("sum"));
}

TEST(BadInput, NnOpsNameTheShape) {
  EXPECT_THAT(error_of([] { ops::layer_norm(t({2, 4}), t({3}), Tensor()); }), AllOf(HasSubstr("layer_norm"), HasSubstr("[3]"), HasSubstr("[2, 4]")));
  EXPECT_THAT(error_of([] { ops::rms_norm(t({2, 4}), t({5})); }), AllOf(HasSubstr("rms_norm"), HasSubstr("[5]")));
  EXPECT_THAT(error_of([] { ops::swiglu(t({2, 4}), t({2, 3})); }), AllOf(HasSubstr("swiglu"), HasSubstr("[2, 4]"), HasSubstr("[2, 3]")));
  EXPECT_THAT(error_of([] { ops::rope(t({1, 2, 2, 5}), 10000); }), AllOf(HasSubstr("rope"), HasSubstr("[1, 2, 2, 5]")));
  EXPECT_THAT(error_of([] { ops::dropout(t({2}), 1.0, RngKey{}); }), AllOf(HasSubstr("dropout"), HasSubstr("1")));
}

}  // namespace
