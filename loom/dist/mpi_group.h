// MpiGroup: a Group over an MPI communicator (OpenMPI, CPU tensors). Each group owns one
// communication thread that runs its ops in submission order while the caller computes;
// MPI is initialised with MPI_THREAD_MULTIPLE so the threads of different groups run at once.
#pragma once

#include <mpi.h>

#include <deque>
#include <functional>
#include <thread>

#include "loom/dist/group.h"
#include "loom/dist/watchdog.h"

namespace loom::dist {

class MpiGroup final : public Group {
 public:
  // Owns comm (freed on destruction) and times every op with the shared watchdog.
  MpiGroup(MPI_Comm comm, std::string name, double timeout_s, std::shared_ptr<Watchdog> watchdog);
  ~MpiGroup() override;

  // Drains and stops the communication thread of every live MpiGroup; dist::finalize() calls it
  // before MPI_Finalize. Ops submitted afterwards fail.
  static void shutdown_all();

 protected:
  std::shared_ptr<Work> do_all_reduce(Tensor& t, ReduceOp op) override;
  std::shared_ptr<Work> do_reduce_scatterv(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts,
                                           ReduceOp op) override;
  std::shared_ptr<Work> do_all_gatherv(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts) override;
  std::shared_ptr<Work> do_broadcast(Tensor& t, int root) override;
  std::shared_ptr<Work> do_send(const Tensor& t, int peer, int tag) override;
  std::shared_ptr<Work> do_recv(Tensor& t, int peer, int tag) override;
  std::shared_ptr<Work> do_all_to_all(const Tensor& in, Tensor& out) override;
  std::shared_ptr<Work> do_barrier() override;
  std::shared_ptr<Group> do_split(int color, int key, const std::string& name) override;

 private:
  // A collective runs to completion on the communication thread (`run`). Point-to-point ops are
  // only posted there (`post`) and completed later, so a send and a recv issued in either order
  // on two ranks cannot deadlock the queue.
  struct Op {
    explicit Op(const char* op_name) : name(op_name) {}
    const char* name;
    std::function<void()> run;
    std::function<MPI_Request()> post;
    int64_t recv_count = -1;  // recv only: the element count to expect
    MPI_Datatype recv_type = MPI_DATATYPE_NULL;
    std::shared_ptr<Work> work = std::make_shared<Work>();
  };
  struct Pending {
    MPI_Request request;
    Op op;
    uint64_t watch_id;
  };

  std::shared_ptr<Work> submit(Op op);
  void loop();
  void start(Op& op);
  bool poll_pending();
  void finish_pending(Pending& p, const MPI_Status& status, int rc);
  void stop();
  void check(int rc, const char* op) const;

  MPI_Comm comm_;
  std::shared_ptr<Watchdog> watchdog_;
  int world_rank_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Op> queue_;
  bool stopping_ = false;
  std::vector<Pending> pending_;  // the communication thread's own
  std::thread thread_;
};

}  // namespace loom::dist
