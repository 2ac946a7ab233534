// The collectives' autograd pairs (loom/parallel/mappings.h) on 1, 2 and 4 ranks: each op's
// forward and the gradient its backward hands to the input, against the same result built
// serially from every rank's inputs (each rank can compute all of them: they are pure functions
// of the rank), along the first and the last dim.
#include "loom/ops/elementwise.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape.h"
#include "loom/parallel/mappings.h"
#include "tests/dist/dist_test.h"

namespace loom::dist::test {
namespace {

// Rank r's input (4, 8) and the gradient it feeds into backward, of the output's shape.
Tensor input(int r) { return ops::reshape(make(DType::f32, r, 32), {4, 8}); }
Tensor upstream(int r, const Shape& shape) { return ops::reshape(make(DType::f32, r + 10, numel_of(shape)), shape); }

Tensor cat_over_ranks(int size, int64_t dim, const std::function<Tensor(int)>& f) {
  std::vector<Tensor> parts;
  for (int r = 0; r < size; ++r) parts.push_back(f(r));
  return ops::cat(parts, dim);
}
Tensor sum_over_ranks(int size, const std::function<Tensor(int)>& f) {
  Tensor acc = f(0);
  for (int r = 1; r < size; ++r) acc = ops::add(acc, f(r));
  return acc;
}
Tensor chunk(const Tensor& t, int size, int rank, int64_t dim) {
  const int64_t len = t.size(dim) / size;
  return ops::narrow(t, dim, rank * len, len);
}

using Op = std::function<Tensor(const Tensor&, const std::shared_ptr<Group>&, int64_t)>;

// Runs op on this rank's input and backward with its upstream gradient; checks both.
void check(const Op& op, int64_t dim, const Tensor& want_out, const std::function<Tensor(const Shape&)>& want_grad, const char* name) {
  const int rank = world()->rank();
  SCOPED_TRACE(std::string(name) + " dim " + std::to_string(dim));
  Tensor x = input(rank);
  x.set_requires_grad(true);
  Tensor y = op(x, world(), dim);
  ASSERT_EQ(y.shape(), want_out.shape());
  expect_values(y, want_out.to_vector());
  y.backward(upstream(rank, y.shape()));
  ASSERT_EQ(x.grad().shape(), x.shape());
  expect_values(x.grad(), want_grad(y.shape()).to_vector());
}

TEST(Mappings, EveryPairAlongEitherDim) {
  const int size = world()->size(), rank = world()->rank();
  for (int64_t dim : {0, 1}) {
    auto up = [&](const Shape& s) { return std::function<Tensor(int)>([s](int r) { return upstream(r, s); }); };
    check([](const Tensor& x, const auto& g, int64_t) { return parallel::copy_to(x, g); }, dim, input(rank),
          [&](const Shape& s) { return sum_over_ranks(size, up(s)); }, "copy_to");
    check([](const Tensor& x, const auto& g, int64_t) { return parallel::reduce_from(x, g); }, dim, sum_over_ranks(size, input),
          [&](const Shape& s) { return upstream(rank, s); }, "reduce_from");
    check(parallel::scatter_to, dim, chunk(input(rank), size, rank, dim),
          [&](const Shape& s) { return cat_over_ranks(size, dim, up(s)); }, "scatter_to");
    check(parallel::gather_from, dim, cat_over_ranks(size, dim, input),
          [&](const Shape& s) { return chunk(upstream(rank, s), size, rank, dim); }, "gather_from");
    check(parallel::all_gather_to, dim, cat_over_ranks(size, dim, input),
          [&](const Shape& s) { return chunk(sum_over_ranks(size, up(s)), size, rank, dim); }, "all_gather_to");
    check(parallel::reduce_scatter_to, dim, chunk(sum_over_ranks(size, input), size, rank, dim),
          [&](const Shape& s) { return cat_over_ranks(size, dim, up(s)); }, "reduce_scatter_to");
  }
}

TEST(Mappings, AnUnevenSplitNamesTheOp) {
  if (world()->size() == 1) GTEST_SKIP() << "every size splits over one rank";
  Tensor x = Tensor::zeros({3, 8});
  try {
    parallel::scatter_to(x, world(), 0);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("scatter_to: size 3 of dim 0 does not split over"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace loom::dist::test
