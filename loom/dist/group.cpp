// Work completion and the argument checks every Group backend shares, so a bad call fails the
// same way (a loom::Error naming group, op and values) on MPI, on one process and on NCCL.
#include "loom/dist/group.h"

#include <cstring>

#include <numeric>

namespace loom::dist {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::avg: return "avg";
    case ReduceOp::max: return "max";
  }
  return "?";
}

void Work::wait() {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] { return done_; });
  if (error_) std::rethrow_exception(error_);
}

bool Work::done() const {
  std::lock_guard lock(mutex_);
  return done_;
}

void Work::complete(std::exception_ptr error) {
  {
    std::lock_guard lock(mutex_);
    done_ = true;
    error_ = std::move(error);
  }
  cv_.notify_all();
}

std::shared_ptr<Work> Work::completed() {
  auto w = std::make_shared<Work>();
  w->complete();
  return w;
}

Group::Group(std::string name, int rank, int size, double timeout_s)
    : name_(std::move(name)), rank_(rank), size_(size), timeout_s_(timeout_s) {}

void Group::set_timeout_s(double seconds) {
  LOOM_CHECK(seconds > 0, "dist: {}: timeout must be positive, got {} s", name_, seconds);
  timeout_s_.store(seconds);
}

void Group::check_tensor(const Tensor& t, const char* op, const char* what) const {
  LOOM_CHECK(t.defined(), "dist: {}.{}: {} is undefined", name_, op, what);
  LOOM_CHECK(t.is_contiguous(), "dist: {}.{}: {} of shape {} must be contiguous", name_, op, what, t.shape());
}

void Group::check_counts(const std::vector<int64_t>& counts, const char* op) const {
  LOOM_CHECK(int64_t(counts.size()) == size_, "dist: {}.{}: {} counts for a group of {} ranks", name_, op,
             counts.size(), size_);
  for (int64_t c : counts) LOOM_CHECK(c >= 0, "dist: {}.{}: negative count in {}", name_, op, counts);
}

void Group::check_peer(int peer, const char* op, const char* what) const {
  LOOM_CHECK(peer >= 0 && peer < size_, "dist: {}.{}: {} {} is not a rank of a group of {}", name_, op, what, peer,
             size_);
}

std::shared_ptr<Work> Group::all_reduce(Tensor& t, ReduceOp op) {
  check_tensor(t, "all_reduce", "tensor");
  LOOM_CHECK(op != ReduceOp::avg || is_floating(t.dtype()), "dist: {}.all_reduce: avg needs a floating dtype, got {}",
             name_, dtype_name(t.dtype()));
  bytes_ += t.nbytes();
  return do_all_reduce(t, op);
}

std::shared_ptr<Work> Group::reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) {
  check_tensor(in, "reduce_scatter", "in");
  check_tensor(out, "reduce_scatter", "out");
  LOOM_CHECK(in.numel() == int64_t(size_) * out.numel(),
             "dist: {}.reduce_scatter: in has {} elements, expected size() * out.numel() = {} * {}", name_, in.numel(),
             size_, out.numel());
  return reduce_scatterv(in, out, std::vector<int64_t>(size_t(size_), out.numel()), op);
}

std::shared_ptr<Work> Group::reduce_scatterv(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts,
                                             ReduceOp op) {
  check_tensor(in, "reduce_scatter", "in");
  check_tensor(out, "reduce_scatter", "out");
  check_counts(counts, "reduce_scatter");
  LOOM_CHECK(in.dtype() == out.dtype(), "dist: {}.reduce_scatter: in is {} but out is {}", name_,
             dtype_name(in.dtype()), dtype_name(out.dtype()));
  LOOM_CHECK(op != ReduceOp::avg || is_floating(in.dtype()),
             "dist: {}.reduce_scatter: avg needs a floating dtype, got {}", name_, dtype_name(in.dtype()));
  int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t(0));
  LOOM_CHECK(in.numel() == total, "dist: {}.reduce_scatter: in has {} elements but the counts {} sum to {}", name_,
             in.numel(), counts, total);
  LOOM_CHECK(out.numel() == counts[size_t(rank_)], "dist: {}.reduce_scatter: out has {} elements, rank {} expects {}",
             name_, out.numel(), rank_, counts[size_t(rank_)]);
  bytes_ += in.nbytes();
  return do_reduce_scatterv(in, out, counts, op);
}

std::shared_ptr<Work> Group::all_gather(const Tensor& in, Tensor& out) {
  check_tensor(in, "all_gather", "in");
  check_tensor(out, "all_gather", "out");
  LOOM_CHECK(out.numel() == int64_t(size_) * in.numel(),
             "dist: {}.all_gather: out has {} elements, expected size() * in.numel() = {} * {}", name_, out.numel(),
             size_, in.numel());
  return all_gatherv(in, out, std::vector<int64_t>(size_t(size_), in.numel()));
}

std::shared_ptr<Work> Group::all_gatherv(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts) {
  check_tensor(in, "all_gather", "in");
  check_tensor(out, "all_gather", "out");
  check_counts(counts, "all_gather");
  LOOM_CHECK(in.dtype() == out.dtype(), "dist: {}.all_gather: in is {} but out is {}", name_, dtype_name(in.dtype()),
             dtype_name(out.dtype()));
  int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t(0));
  LOOM_CHECK(out.numel() == total, "dist: {}.all_gather: out has {} elements but the counts {} sum to {}", name_,
             out.numel(), counts, total);
  LOOM_CHECK(in.numel() == counts[size_t(rank_)], "dist: {}.all_gather: in has {} elements, rank {} sends {}", name_,
             in.numel(), rank_, counts[size_t(rank_)]);
  bytes_ += in.nbytes();
  return do_all_gatherv(in, out, counts);
}

std::shared_ptr<Work> Group::broadcast(Tensor& t, int root) {
  check_tensor(t, "broadcast", "tensor");
  check_peer(root, "broadcast", "root");
  if (rank_ == root) bytes_ += t.nbytes();
  return do_broadcast(t, root);
}

std::shared_ptr<Work> Group::send(const Tensor& t, int peer, int tag) {
  check_tensor(t, "send", "tensor");
  check_peer(peer, "send", "peer");
  LOOM_CHECK(tag >= 0 && tag <= 32767, "dist: {}.send: tag {} is outside [0, 32767]", name_, tag);
  bytes_ += t.nbytes();
  return do_send(t, peer, tag);
}

std::shared_ptr<Work> Group::recv(Tensor& t, int peer, int tag) {
  check_tensor(t, "recv", "tensor");
  check_peer(peer, "recv", "peer");
  LOOM_CHECK(tag >= 0 && tag <= 32767, "dist: {}.recv: tag {} is outside [0, 32767]", name_, tag);
  return do_recv(t, peer, tag);
}

std::shared_ptr<Work> Group::all_to_all(const Tensor& in, Tensor& out) {
  check_tensor(in, "all_to_all", "in");
  check_tensor(out, "all_to_all", "out");
  LOOM_CHECK(in.dtype() == out.dtype(), "dist: {}.all_to_all: in is {} but out is {}", name_, dtype_name(in.dtype()),
             dtype_name(out.dtype()));
  LOOM_CHECK(in.numel() == out.numel() && in.numel() % size_ == 0,
             "dist: {}.all_to_all: in ({}) and out ({}) must have the same number of elements, a multiple of {}",
             name_, in.numel(), out.numel(), size_);
  bytes_ += in.nbytes();
  return do_all_to_all(in, out);
}

std::shared_ptr<Work> Group::barrier() { return do_barrier(); }

std::shared_ptr<Group> Group::split(int color, int key, const std::string& name) {
  LOOM_CHECK(color >= 0, "dist: {}.split: color must be non-negative, got {}", name_, color);
  auto group = do_split(color, key, name);
  group->set_timeout_s(timeout_s());
  return group;
}

double all_reduce_value(Group& group, double v, ReduceOp op) {
  if (group.size() == 1) return v;
  Tensor t = Tensor::full({1}, v, DType::f64);
  group.all_reduce(t, op)->wait();
  return t.item();
}

std::vector<std::string> all_gather_text(Group& group, const std::string& text) {
  const int n = group.size();
  Tensor lengths = Tensor::zeros({n}, DType::i64), mine = Tensor::full({1}, double(text.size()), DType::i64);
  group.all_gather(mine, lengths)->wait();
  std::vector<int64_t> counts = lengths.to_ints();
  Tensor in = Tensor::empty({int64_t(text.size())}, DType::u8), out = Tensor::empty({std::accumulate(counts.begin(), counts.end(), int64_t(0))}, DType::u8);
  if (!text.empty()) std::memcpy(in.raw_data(), text.data(), text.size());
  group.all_gatherv(in, out, counts)->wait();
  std::vector<std::string> texts;
  const char* at = static_cast<const char*>(out.raw_data());
  for (int64_t c : counts) {
    texts.push_back(c > 0 ? std::string(at, size_t(c)) : std::string());
    at += c;
  }
  return texts;
}

}  // namespace loom::dist
