// The collective-communication interface all parallelism is built on: a Group of ranks whose
// collectives run asynchronously and return a Work to wait on. MpiGroup (CPU, any number of
// nodes) and LocalGroup (one process, no MPI) implement it; Mesh splits a world into sub-groups.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "loom/core/error.h"
#include "loom/core/tensor.h"

namespace loom::dist {

enum class ReduceOp { sum, avg, max };
const char* reduce_op_name(ReduceOp op);

// A distributed failure (an MPI error, a broken or missing peer); the CLI exits 3 for it.
struct DistError : Error {
  using Error::Error;
};

// Seconds a collective may take before the watchdog aborts the job (config `dist.timeout_s`).
inline constexpr double kDefaultTimeoutS = 300;

// Completion of one async op. wait() blocks until the op has finished and rethrows its failure;
// until then the op's tensors must stay alive and untouched.
class Work {
 public:
  void wait();
  bool done() const;
  // Called exactly once by the group that ran the op.
  void complete(std::exception_ptr error = nullptr);
  static std::shared_ptr<Work> completed();

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
};

// All ranks of a group must issue its collectives in the same order; ops of one group run in
// submission order, ops of different groups independently. Tensors are contiguous and have the
// same dtype on every rank; argument errors throw loom::Error before anything is sent.
// Sum/max work on every dtype; avg needs a floating dtype. bf16/f16 are reduced in f32 (converted,
// reduced, rounded once on the way back), because MPI has no 16-bit float type.
class Group {
 public:
  Group(std::string name, int rank, int size, double timeout_s);
  virtual ~Group() = default;
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Bytes of the tensors this rank has handed to the group's ops (a collective's input, a send's
  // tensor; receives are not counted): the traffic a benchmark compares with its analytical count.
  uint64_t bytes_handed() const { return bytes_.load(); }
  const std::string& name() const { return name_; }
  double timeout_s() const { return timeout_s_.load(); }
  void set_timeout_s(double seconds);  // groups split off later inherit it

  // t: (n) any shape; reduced in place across ranks.
  std::shared_ptr<Work> all_reduce(Tensor& t, ReduceOp op);
  // in: (size()·m), out: (m); rank r receives the reduction of chunk r. out may be a view into in
  // (a shard of a flat buffer); in's other elements keep their values.
  std::shared_ptr<Work> reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op);
  // Uneven chunks: in: (Σ counts), out: (counts[rank()]); chunk r starts at counts[0..r) summed.
  std::shared_ptr<Work> reduce_scatterv(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts, ReduceOp op);
  // in: (m), out: (size()·m) with rank r's input at chunk r. `in` may be out's own chunk (in place).
  std::shared_ptr<Work> all_gather(const Tensor& in, Tensor& out);
  // Uneven chunks: in: (counts[rank()]), out: (Σ counts).
  std::shared_ptr<Work> all_gatherv(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts);
  // t: root's values are copied to every rank, in place.
  std::shared_ptr<Work> broadcast(Tensor& t, int root);
  // Point to point; a send matches the recv of the same tag, whatever order the two were issued in.
  std::shared_ptr<Work> send(const Tensor& t, int peer, int tag);
  std::shared_ptr<Work> recv(Tensor& t, int peer, int tag);
  // in, out: (size()·m); chunk p of in goes to rank p, chunk p of out came from rank p.
  std::shared_ptr<Work> all_to_all(const Tensor& in, Tensor& out);
  std::shared_ptr<Work> barrier();
  // Collective and blocking: ranks passing the same color form a new group, ranked by key.
  std::shared_ptr<Group> split(int color, int key, const std::string& name);

 protected:
  // Arguments reaching these are validated; counts has size() entries.
  virtual std::shared_ptr<Work> do_all_reduce(Tensor& t, ReduceOp op) = 0;
  virtual std::shared_ptr<Work> do_reduce_scatterv(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts,
                                                   ReduceOp op) = 0;
  virtual std::shared_ptr<Work> do_all_gatherv(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts) = 0;
  virtual std::shared_ptr<Work> do_broadcast(Tensor& t, int root) = 0;
  virtual std::shared_ptr<Work> do_send(const Tensor& t, int peer, int tag) = 0;
  virtual std::shared_ptr<Work> do_recv(Tensor& t, int peer, int tag) = 0;
  virtual std::shared_ptr<Work> do_all_to_all(const Tensor& in, Tensor& out) = 0;
  virtual std::shared_ptr<Work> do_barrier() = 0;
  virtual std::shared_ptr<Group> do_split(int color, int key, const std::string& name) = 0;

 private:
  void check_tensor(const Tensor& t, const char* op, const char* what) const;
  void check_counts(const std::vector<int64_t>& counts, const char* op) const;
  void check_peer(int peer, const char* op, const char* what) const;

  std::string name_;
  int rank_;
  int size_;
  std::atomic<double> timeout_s_;
  std::atomic<uint64_t> bytes_{0};
};

// Collective: v reduced over the group's ranks (a loss, a token count, a norm's square).
double all_reduce_value(Group& group, double v, ReduceOp op = ReduceOp::sum);

// Collective: every rank's text, in rank order (say, what each rank wrote to a checkpoint).
std::vector<std::string> all_gather_text(Group& group, const std::string& text);

}  // namespace loom::dist
