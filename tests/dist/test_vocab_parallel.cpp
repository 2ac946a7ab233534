// Vocabulary-parallel cross-entropy on 1, 2 and 4 ranks equals ops::cross_entropy on the whole
// logits — loss and each rank's slice of the gradient — with a padded vocabulary, ignored
// targets and every reduction.
#include "loom/core/rng.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"
#include "loom/parallel/vocab_parallel.h"
#include "tests/dist/dist_test.h"

namespace loom::dist::test {
namespace {

TEST(VocabParallel, CrossEntropyMatchesTheWholeLogits) {
  const int size = world()->size(), rank = world()->rank();
  const int64_t Vp = 64, V = 61, Vl = Vp / size;  // the last 3 columns are padding
  Tensor whole = ops::mul(rand({3, 5, Vp}, {21, 0}), 8.0);
  Tensor targets = Tensor::from_ints({0, 60, 5, -100, 33, 17, 59, 1, 2, 3, 40, -100, 12, 31, 32}, {3, 5});
  for (ops::Reduction red : {ops::Reduction::mean, ops::Reduction::sum, ops::Reduction::none}) {
    Tensor a = whole.detach(), b = ops::contiguous(ops::narrow(whole, 2, rank * Vl, Vl));
    a.set_requires_grad(true);
    b.set_requires_grad(true);
    Tensor want = ops::cross_entropy(a, targets, -100, red, V);
    Tensor got = parallel::vocab_parallel_cross_entropy(b, targets, world(), V, -100, red);
    expect_values(got, want.to_vector());
    Tensor up = red == ops::Reduction::none ? ops::reshape(make(DType::f32, 7, 15), {3, 5}) : Tensor();
    want.backward(up);
    got.backward(up);
    expect_values(b.grad(), ops::narrow(a.grad(), 2, rank * Vl, Vl).to_vector());
  }
}

}  // namespace
}  // namespace loom::dist::test
