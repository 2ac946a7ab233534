// The world of a process started without mpirun: one rank, no MPI. Collectives are copies (or
// nothing), so every code path that takes a Group runs unchanged in a single process.
#pragma once

#include <cstddef>
#include <deque>
#include <map>
#include <mutex>

#include "loom/dist/group.h"

namespace loom::dist {

class LocalGroup final : public Group {
 public:
  explicit LocalGroup(std::string name, double timeout_s = kDefaultTimeoutS);

 protected:
  std::shared_ptr<Work> do_all_reduce(Tensor& t, ReduceOp op) override;
  std::shared_ptr<Work> do_reduce_scatterv(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts,
                                           ReduceOp op) override;
  std::shared_ptr<Work> do_all_gatherv(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts) override;
  std::shared_ptr<Work> do_broadcast(Tensor& t, int root) override;
  // A send to itself is buffered; the recv must come after it (nothing else could send).
  std::shared_ptr<Work> do_send(const Tensor& t, int peer, int tag) override;
  std::shared_ptr<Work> do_recv(Tensor& t, int peer, int tag) override;
  std::shared_ptr<Work> do_all_to_all(const Tensor& in, Tensor& out) override;
  std::shared_ptr<Work> do_barrier() override;
  std::shared_ptr<Group> do_split(int color, int key, const std::string& name) override;

 private:
  std::mutex mutex_;
  std::map<int, std::deque<std::vector<std::byte>>> mailbox_;  // by tag, oldest first
};

}  // namespace loom::dist
