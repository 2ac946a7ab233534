// The paired collectives. Every collective along a dim moves that dim to the front first, so
// each rank's chunk is one contiguous block of the flat buffer the group sends.
#include "loom/parallel/mappings.h"

#include "loom/autograd/function.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"

namespace loom::parallel {

namespace {

using GroupPtr = std::shared_ptr<dist::Group>;

std::vector<int64_t> front_order(int64_t dim, int64_t ndim) {  // dim first, the others in order
  std::vector<int64_t> order{dim};
  for (int64_t d = 0; d < ndim; ++d)
    if (d != dim) order.push_back(d);
  return order;
}
std::vector<int64_t> back_order(int64_t dim, int64_t ndim) {  // the inverse of front_order
  std::vector<int64_t> order;
  for (int64_t d = 1; d <= dim; ++d) order.push_back(d);
  order.insert(order.begin() + dim, 0);
  for (int64_t d = dim + 1; d < ndim; ++d) order.push_back(d);
  return order;
}

int64_t check_dim(const Tensor& x, int64_t dim, const char* op) {
  const int64_t d = dim < 0 ? dim + x.ndim() : dim;
  LOOM_CHECK(d >= 0 && d < x.ndim(), "{}: dim {} is out of range for shape {}", op, dim, x.shape());
  return d;
}

// Whole-tensor collectives on autograd-free values.
Tensor all_reduce(const Tensor& x, dist::Group& g) {
  Tensor y = ops::clone(x.detach());  // contiguous, and never x's own memory
  if (g.size() > 1) g.all_reduce(y, dist::ReduceOp::sum)->wait();
  return y;
}

Tensor gather_along(const Tensor& x, dist::Group& g, int64_t dim) {
  const int64_t n = x.ndim();
  Tensor front = ops::contiguous(ops::permute(x.detach(), front_order(dim, n)));
  Shape shape = front.shape();
  shape[0] *= g.size();
  Tensor out = Tensor::empty(shape, x.dtype());
  Tensor flat_in = ops::reshape(front, {-1}), flat_out = ops::reshape(out, {-1});
  g.all_gather(flat_in, flat_out)->wait();
  return ops::contiguous(ops::permute(out, back_order(dim, n)));
}

Tensor reduce_scatter_along(const Tensor& x, dist::Group& g, int64_t dim, const char* op) {
  const int64_t n = x.ndim();
  LOOM_CHECK(x.size(dim) % g.size() == 0, "{}: size {} of dim {} does not split over {} ranks of {}", op, x.size(dim), dim, g.size(), g.name());
  Tensor front = ops::contiguous(ops::permute(x.detach(), front_order(dim, n)));
  Shape shape = front.shape();
  shape[0] /= g.size();
  Tensor out = Tensor::empty(shape, x.dtype());
  Tensor flat_in = ops::reshape(front, {-1}), flat_out = ops::reshape(out, {-1});
  g.reduce_scatter(flat_in, flat_out, dist::ReduceOp::sum)->wait();
  return ops::contiguous(ops::permute(out, back_order(dim, n)));
}

Tensor chunk_along(const Tensor& x, dist::Group& g, int64_t dim, const char* op) {
  LOOM_CHECK(x.size(dim) % g.size() == 0, "{}: size {} of dim {} does not split over {} ranks of {}", op, x.size(dim), dim, g.size(), g.name());
  const int64_t len = x.size(dim) / g.size();
  return ops::contiguous(ops::narrow(x.detach(), dim, g.rank() * len, len));
}

// out's gradient flows to x through backward(grad).
Tensor paired(Tensor out, const Tensor& x, const char* op, std::function<Tensor(const Tensor&)> backward) {
  autograd::attach(out, op, {x}, [backward = std::move(backward)](const Tensor& g) { return std::vector<Tensor>{backward(g)}; });
  return out;
}

}  // namespace

Tensor copy_to(const Tensor& x, const GroupPtr& group) {
  return paired(x.detach(), x, "copy_to", [group](const Tensor& g) { return all_reduce(g, *group); });
}

Tensor reduce_from(const Tensor& x, const GroupPtr& group) {
  return paired(all_reduce(x, *group), x, "reduce_from", [](const Tensor& g) { return g; });
}

Tensor scatter_to(const Tensor& x, const GroupPtr& group, int64_t dim) {
  const int64_t d = check_dim(x, dim, "scatter_to");
  return paired(chunk_along(x, *group, d, "scatter_to"), x, "scatter_to", [group, d](const Tensor& g) { return gather_along(g, *group, d); });
}

Tensor gather_from(const Tensor& x, const GroupPtr& group, int64_t dim) {
  const int64_t d = check_dim(x, dim, "gather_from");
  return paired(gather_along(x, *group, d), x, "gather_from",
                [group, d](const Tensor& g) { return chunk_along(g, *group, d, "gather_from backward"); });
}

Tensor all_gather_to(const Tensor& x, const GroupPtr& group, int64_t dim) {
  const int64_t d = check_dim(x, dim, "all_gather_to");
  return paired(gather_along(x, *group, d), x, "all_gather_to",
                [group, d](const Tensor& g) { return reduce_scatter_along(g, *group, d, "all_gather_to backward"); });
}

Tensor reduce_scatter_to(const Tensor& x, const GroupPtr& group, int64_t dim) {
  const int64_t d = check_dim(x, dim, "reduce_scatter_to");
  return paired(reduce_scatter_along(x, *group, d, "reduce_scatter_to"), x, "reduce_scatter_to",
                [group, d](const Tensor& g) { return gather_along(g, *group, d); });
}

}  // namespace loom::parallel
