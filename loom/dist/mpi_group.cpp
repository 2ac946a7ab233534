// MpiGroup: collectives on a communication thread per group, point-to-point as MPI_Isend/Irecv
// completed by the same thread, every op timed by the watchdog. bf16/f16 reductions are done in
// f32 (convert, MPI_FLOAT reduce, round once); data movement sends their 16-bit patterns as is.
#include "loom/dist/mpi_group.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <optional>
#include <set>

namespace loom::dist {

namespace {

// The type MPI moves for a dtype; for bf16/f16 only their bits, never arithmetic.
MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::bf16:
    case DType::f16: return MPI_UINT16_T;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return MPI_UINT8_T;
  }
  throw Error("dist: bad dtype");
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::max ? MPI_MAX : MPI_SUM; }

std::vector<float> to_f32(const Tensor& t) {
  std::vector<float> out(size_t(t.numel()));
  if (t.dtype() == DType::bf16) {
    const bf16* p = t.data<bf16>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_f32(p[i]);
  } else {
    const f16* p = t.data<f16>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = f16_to_f32(p[i]);
  }
  return out;
}

void from_f32(const std::vector<float>& v, const Tensor& t) {
  if (t.dtype() == DType::bf16) {
    bf16* p = t.data<bf16>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = f32_to_bf16(v[i]);
  } else {
    f16* p = t.data<f16>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = f32_to_f16(v[i]);
  }
}

// avg = sum / size, on the reduced f32/f64 values.
void divide(void* data, int64_t n, DType t, int size) {
  dispatch_float(t, "dist: avg", [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(data);
    for (int64_t i = 0; i < n; ++i) p[i] /= T(size);
  });
}

bool overlaps(const Tensor& a, const Tensor& b) {
  if (a.nbytes() == 0 || b.nbytes() == 0) return false;
  auto* pa = static_cast<const char*>(a.raw_data());
  auto* pb = static_cast<const char*>(b.raw_data());
  return pa < pb + b.nbytes() && pb < pa + a.nbytes();
}

std::vector<std::byte> copy_of(const Tensor& t) {
  auto* p = static_cast<const std::byte*>(t.raw_data());
  return std::vector<std::byte>(p, p + t.nbytes());
}

std::string mpi_error_string(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return std::string(text, size_t(len));
}

int comm_rank(MPI_Comm comm) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  return r;
}

int comm_size(MPI_Comm comm) {
  int s = 0;
  MPI_Comm_size(comm, &s);
  return s;
}

// Live groups, so that dist::finalize() can stop their threads before MPI_Finalize.
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::set<MpiGroup*>& registry() {
  static std::set<MpiGroup*> groups;
  return groups;
}

// MPI counts and displacements are ints.
int checked_count(int64_t n, const std::string& group, const char* op) {
  LOOM_CHECK(n <= INT_MAX, "dist: {}.{}: {} elements exceed MPI's limit of {} per call; split the buffer", group, op,
             n, INT_MAX);
  return int(n);
}

struct IntCounts {
  std::vector<int> counts, displs;
  bool even;
};

IntCounts int_counts(const std::vector<int64_t>& counts, const std::string& group, const char* op) {
  IntCounts c;
  int64_t total = 0;
  for (int64_t n : counts) {
    c.counts.push_back(checked_count(n, group, op));
    c.displs.push_back(checked_count(total, group, op));
    total += n;
  }
  checked_count(total, group, op);
  c.even = std::all_of(c.counts.begin(), c.counts.end(), [&](int n) { return n == c.counts[0]; });
  return c;
}

}  // namespace

MpiGroup::MpiGroup(MPI_Comm comm, std::string name, double timeout_s, std::shared_ptr<Watchdog> watchdog)
    : Group(std::move(name), comm_rank(comm), comm_size(comm), timeout_s),
      comm_(comm),
      watchdog_(std::move(watchdog)),
      world_rank_(world_rank()) {
  // Errors become DistErrors on the op's Work instead of killing the job without a word.
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  {
    std::lock_guard lock(registry_mutex());
    registry().insert(this);
  }
  thread_ = std::thread([this] { loop(); });
}

MpiGroup::~MpiGroup() {
  {
    std::lock_guard lock(registry_mutex());
    registry().erase(this);
  }
  stop();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm_);
}

void MpiGroup::shutdown_all() {
  std::lock_guard lock(registry_mutex());
  for (MpiGroup* g : registry()) g->stop();
}

void MpiGroup::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void MpiGroup::check(int rc, const char* op) const {
  if (rc != MPI_SUCCESS)
    throw DistError(fmt::format("dist: rank {}: {}.{} failed: {}", world_rank_, name(), op, mpi_error_string(rc)));
}

std::shared_ptr<Work> MpiGroup::submit(Op op) {
  auto work = op.work;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw DistError(fmt::format("dist: {}.{}: the group was shut down by dist::finalize()", name(), op.name));
    queue_.push_back(std::move(op));
  }
  cv_.notify_all();
  return work;
}

void MpiGroup::loop() {
  const std::chrono::microseconds min_sleep{20}, max_sleep{250};
  std::chrono::microseconds sleep = min_sleep;
  for (;;) {
    std::optional<Op> op;
    {
      std::unique_lock lock(mutex_);
      auto ready = [&] { return !queue_.empty() || (stopping_ && pending_.empty()); };
      // With sends/recvs in flight the thread polls them, backing off while nothing completes.
      if (pending_.empty())
        cv_.wait(lock, ready);
      else
        cv_.wait_for(lock, sleep, ready);
      if (!queue_.empty()) {
        op.emplace(std::move(queue_.front()));
        queue_.pop_front();
      } else if (stopping_ && pending_.empty()) {
        return;
      }
    }
    if (op) start(*op);
    bool progressed = poll_pending();
    sleep = (op || progressed) ? min_sleep : std::min(sleep * 2, max_sleep);
  }
}

void MpiGroup::start(Op& op) {
  uint64_t id = watchdog_->start(name() + "." + op.name, timeout_s());
  if (op.run) {
    try {
      op.run();
      op.work->complete();
    } catch (...) {
      op.work->complete(std::current_exception());
    }
    watchdog_->finish(id);
    return;
  }
  try {
    MPI_Request request = op.post();
    pending_.push_back(Pending{request, std::move(op), id});
  } catch (...) {
    op.work->complete(std::current_exception());
    watchdog_->finish(id);
  }
}

bool MpiGroup::poll_pending() {
  if (pending_.empty()) return false;
  size_t n = pending_.size();
  std::vector<MPI_Request> requests;
  for (const Pending& p : pending_) requests.push_back(p.request);
  std::vector<int> indices(n);
  std::vector<MPI_Status> statuses(n);
  int count = 0;
  int rc = MPI_Testsome(int(n), requests.data(), &count, indices.data(), statuses.data());
  if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) {
    auto error = std::make_exception_ptr(
        DistError(fmt::format("dist: rank {}: {}: testing sends/recvs failed: {}", world_rank_, name(), mpi_error_string(rc))));
    for (Pending& p : pending_) {
      p.op.work->complete(error);
      watchdog_->finish(p.watch_id);
    }
    pending_.clear();
    return true;
  }
  if (count == MPI_UNDEFINED || count == 0) return false;
  std::vector<bool> finished(n, false);
  for (int k = 0; k < count; ++k) {
    size_t i = size_t(indices[size_t(k)]);
    const MPI_Status& status = statuses[size_t(k)];
    finish_pending(pending_[i], status, rc == MPI_ERR_IN_STATUS ? status.MPI_ERROR : MPI_SUCCESS);
    finished[i] = true;
  }
  std::vector<Pending> still;
  for (size_t i = 0; i < n; ++i)
    if (!finished[i]) still.push_back(std::move(pending_[i]));
  pending_ = std::move(still);
  return true;
}

void MpiGroup::finish_pending(Pending& p, const MPI_Status& status, int rc) {
  std::exception_ptr error;
  if (rc != MPI_SUCCESS) {
    error = std::make_exception_ptr(
        DistError(fmt::format("dist: rank {}: {}.{} failed: {}", world_rank_, name(), p.op.name, mpi_error_string(rc))));
  } else if (p.op.recv_count >= 0) {
    int got = 0;
    MPI_Get_count(&status, p.op.recv_type, &got);
    if (got != p.op.recv_count)
      error = std::make_exception_ptr(DistError(fmt::format("dist: rank {}: {}.recv from rank {} got {} elements, expected {}",
                                                            world_rank_, name(), status.MPI_SOURCE, got, p.op.recv_count)));
  }
  p.op.work->complete(error);
  watchdog_->finish(p.watch_id);
}

namespace {

void check_cpu(const Tensor& t, const std::string& group, const char* op) {
  LOOM_CHECK(t.device().is_cpu(), "dist: {}.{}: an MPI group needs CPU tensors, got one on {}", group, op,
             t.device().str());
}

}  // namespace

std::shared_ptr<Work> MpiGroup::do_all_reduce(Tensor& t, ReduceOp op) {
  check_cpu(t, name(), "all_reduce");
  int n = checked_count(t.numel(), name(), "all_reduce");
  Op o{"all_reduce"};
  o.run = [this, t, op, n] {
    if (is_half(t.dtype())) {
      std::vector<float> buf = to_f32(t);
      check(MPI_Allreduce(MPI_IN_PLACE, buf.data(), n, MPI_FLOAT, mpi_op(op), comm_), "all_reduce");
      if (op == ReduceOp::avg) divide(buf.data(), n, DType::f32, size());
      from_f32(buf, t);
      return;
    }
    check(MPI_Allreduce(MPI_IN_PLACE, t.raw_data(), n, mpi_type(t.dtype()), mpi_op(op), comm_), "all_reduce");
    if (op == ReduceOp::avg) divide(t.raw_data(), n, t.dtype(), size());
  };
  return submit(std::move(o));
}

std::shared_ptr<Work> MpiGroup::do_reduce_scatterv(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts,
                                                   ReduceOp op) {
  check_cpu(in, name(), "reduce_scatter");
  check_cpu(out, name(), "reduce_scatter");
  IntCounts c = int_counts(counts, name(), "reduce_scatter");
  Op o{"reduce_scatter"};
  o.run = [this, in, out, c, op] {
    bool half = is_half(in.dtype());
    MPI_Datatype type = half ? MPI_FLOAT : mpi_type(in.dtype());
    std::vector<float> in32, out32;
    std::vector<std::byte> staged;  // the result, when out aliases in
    const void* src = in.raw_data();
    void* dst = out.raw_data();
    if (half) {
      in32 = to_f32(in);
      out32.resize(size_t(out.numel()));
      src = in32.data();
      dst = out32.data();
    } else if (overlaps(in, out)) {
      staged.resize(out.nbytes());
      dst = staged.data();
    }
    check(c.even ? MPI_Reduce_scatter_block(src, dst, c.counts[0], type, mpi_op(op), comm_)
                 : MPI_Reduce_scatter(src, dst, c.counts.data(), type, mpi_op(op), comm_),
          "reduce_scatter");
    if (op == ReduceOp::avg) divide(dst, out.numel(), half ? DType::f32 : in.dtype(), size());
    if (half)
      from_f32(out32, out);
    else if (!staged.empty())
      std::memcpy(out.raw_data(), staged.data(), staged.size());
  };
  return submit(std::move(o));
}

std::shared_ptr<Work> MpiGroup::do_all_gatherv(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts) {
  check_cpu(in, name(), "all_gather");
  check_cpu(out, name(), "all_gather");
  IntCounts c = int_counts(counts, name(), "all_gather");
  Op o{"all_gather"};
  o.run = [this, in, out, c] {
    MPI_Datatype type = mpi_type(in.dtype());
    auto* own_chunk = static_cast<char*>(out.raw_data()) + size_t(c.displs[size_t(rank())]) * dtype_size(in.dtype());
    std::vector<std::byte> staged;
    const void* src = in.raw_data();
    if (src == own_chunk) {
      src = MPI_IN_PLACE;
    } else if (overlaps(in, out)) {
      staged = copy_of(in);
      src = staged.data();
    }
    int mine = c.counts[size_t(rank())];
    check(c.even ? MPI_Allgather(src, mine, type, out.raw_data(), mine, type, comm_)
                 : MPI_Allgatherv(src, mine, type, out.raw_data(), c.counts.data(), c.displs.data(), type, comm_),
          "all_gather");
  };
  return submit(std::move(o));
}

std::shared_ptr<Work> MpiGroup::do_broadcast(Tensor& t, int root) {
  check_cpu(t, name(), "broadcast");
  int n = checked_count(t.numel(), name(), "broadcast");
  Op o{"broadcast"};
  o.run = [this, t, n, root] { check(MPI_Bcast(t.raw_data(), n, mpi_type(t.dtype()), root, comm_), "broadcast"); };
  return submit(std::move(o));
}

std::shared_ptr<Work> MpiGroup::do_send(const Tensor& t, int peer, int tag) {
  check_cpu(t, name(), "send");
  int n = checked_count(t.numel(), name(), "send");
  Op o{"send"};
  o.post = [this, t, n, peer, tag] {
    MPI_Request r;
    check(MPI_Isend(t.raw_data(), n, mpi_type(t.dtype()), peer, tag, comm_, &r), "send");
    return r;
  };
  return submit(std::move(o));
}

std::shared_ptr<Work> MpiGroup::do_recv(Tensor& t, int peer, int tag) {
  check_cpu(t, name(), "recv");
  int n = checked_count(t.numel(), name(), "recv");
  Op o{"recv"};
  o.recv_count = n;
  o.recv_type = mpi_type(t.dtype());
  o.post = [this, t, n, peer, tag] {
    MPI_Request r;
    check(MPI_Irecv(t.raw_data(), n, mpi_type(t.dtype()), peer, tag, comm_, &r), "recv");
    return r;
  };
  return submit(std::move(o));
}

std::shared_ptr<Work> MpiGroup::do_all_to_all(const Tensor& in, Tensor& out) {
  check_cpu(in, name(), "all_to_all");
  check_cpu(out, name(), "all_to_all");
  int n = checked_count(in.numel() / size(), name(), "all_to_all");
  Op o{"all_to_all"};
  o.run = [this, in, out, n] {
    MPI_Datatype type = mpi_type(in.dtype());
    std::vector<std::byte> staged;
    const void* src = in.raw_data();
    if (src == out.raw_data()) {
      src = MPI_IN_PLACE;
    } else if (overlaps(in, out)) {
      staged = copy_of(in);
      src = staged.data();
    }
    check(MPI_Alltoall(src, n, type, out.raw_data(), n, type, comm_), "all_to_all");
  };
  return submit(std::move(o));
}

std::shared_ptr<Work> MpiGroup::do_barrier() {
  Op o{"barrier"};
  o.run = [this] { check(MPI_Barrier(comm_), "barrier"); };
  return submit(std::move(o));
}

std::shared_ptr<Group> MpiGroup::do_split(int color, int key, const std::string& name) {
  auto comm = std::make_shared<MPI_Comm>(MPI_COMM_NULL);
  Op o{"split"};
  o.run = [this, comm, color, key] { check(MPI_Comm_split(comm_, color, key, comm.get()), "split"); };
  submit(std::move(o))->wait();
  return std::make_shared<MpiGroup>(*comm, name, timeout_s(), watchdog_);
}

}  // namespace loom::dist
