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

// Whole-tensor collectives on autograd-free values.
Tensor all_reduce(const Tensor& x, dist::Group& g) {
  Tensor y = ops::clone(x.detach());  // contiguous, and never x's own memory
  if (g.size() > 1) g.all_reduce(y, dist::ReduceOp::sum)->wait();
  return y;
}

int64_t split_size(const Tensor& x, dist::Group& g, int64_t dim, const char* op) {
  LOOM_CHECK(x.size(dim) % g.size() == 0, "{}: size {} of dim {} does not split over {} ranks of {}", op, x.size(dim), dim, g.size(), g.name());
  return x.size(dim) / g.size();
}

// Runs collective(in, out) on flat buffers of x with dim moved to the front, where out's front
// dim holds `rows` entries, and moves dim back.
template <typename F>
Tensor through_front(const Tensor& x, int64_t dim, int64_t rows, F collective) {
  const int64_t n = x.ndim();
  Tensor front = ops::contiguous(ops::permute(x.detach(), front_order(dim, n)));
  Shape shape = front.shape();
  shape[0] = rows;
  Tensor out = Tensor::empty(shape, x.dtype());
  Tensor flat_in = ops::reshape(front, {-1}), flat_out = ops::reshape(out, {-1});
  collective(flat_in, flat_out)->wait();
  return ops::contiguous(ops::permute(out, back_order(dim, n)));
}

Tensor gather_along(const Tensor& x, dist::Group& g, int64_t dim) {
  return through_front(x, dim, x.size(dim) * g.size(), [&](const Tensor& in, Tensor& out) { return g.all_gather(in, out); });
}

Tensor reduce_scatter_along(const Tensor& x, dist::Group& g, int64_t dim, const char* op) {
  return through_front(x, dim, split_size(x, g, dim, op),
                       [&](const Tensor& in, Tensor& out) { return g.reduce_scatter(in, out, dist::ReduceOp::sum); });
}

Tensor chunk_along(const Tensor& x, dist::Group& g, int64_t dim, const char* op) {
  const int64_t len = split_size(x, g, dim, op);
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
  const int64_t d = normalize_dim(dim, x.ndim(), "scatter_to");
  return paired(chunk_along(x, *group, d, "scatter_to"), x, "scatter_to", [group, d](const Tensor& g) { return gather_along(g, *group, d); });
}

Tensor gather_from(const Tensor& x, const GroupPtr& group, int64_t dim) {
  const int64_t d = normalize_dim(dim, x.ndim(), "gather_from");
  return paired(gather_along(x, *group, d), x, "gather_from",
                [group, d](const Tensor& g) { return chunk_along(g, *group, d, "gather_from backward"); });
}

Tensor all_gather_to(const Tensor& x, const GroupPtr& group, int64_t dim) {
  const int64_t d = normalize_dim(dim, x.ndim(), "all_gather_to");
  return paired(gather_along(x, *group, d), x, "all_gather_to",
                [group, d](const Tensor& g) { return reduce_scatter_along(g, *group, d, "all_gather_to backward"); });
}

Tensor reduce_scatter_to(const Tensor& x, const GroupPtr& group, int64_t dim) {
  const int64_t d = normalize_dim(dim, x.ndim(), "reduce_scatter_to");
  return paired(reduce_scatter_along(x, *group, d, "reduce_scatter_to"), x, "reduce_scatter_to",
                [group, d](const Tensor& g) { return gather_along(g, *group, d); });
}

}  // namespace loom::parallel
