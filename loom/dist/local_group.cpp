// LocalGroup: the one-rank group. With a single rank every reduction is the identity and every
// gather or scatter a copy; sends to itself wait in a mailbox until received.
#include "loom/dist/local_group.h"

#include <cstring>

namespace loom::dist {

namespace {

// The buffers may overlap (an in-place gather), hence memmove.
void copy_bytes(const Tensor& from, Tensor& to) {
  if (from.nbytes() > 0 && from.raw_data() != to.raw_data()) std::memmove(to.raw_data(), from.raw_data(), from.nbytes());
}

}  // namespace

LocalGroup::LocalGroup(std::string name, double timeout_s) : Group(std::move(name), 0, 1, timeout_s) {}

std::shared_ptr<Work> LocalGroup::do_all_reduce(Tensor&, ReduceOp) { return Work::completed(); }

std::shared_ptr<Work> LocalGroup::do_reduce_scatterv(const Tensor& in, Tensor& out, const std::vector<int64_t>&,
                                                     ReduceOp) {
  copy_bytes(in, out);
  return Work::completed();
}

std::shared_ptr<Work> LocalGroup::do_all_gatherv(const Tensor& in, Tensor& out, const std::vector<int64_t>&) {
  copy_bytes(in, out);
  return Work::completed();
}

std::shared_ptr<Work> LocalGroup::do_broadcast(Tensor&, int) { return Work::completed(); }

std::shared_ptr<Work> LocalGroup::do_send(const Tensor& t, int, int tag) {
  const auto* p = static_cast<const std::byte*>(t.raw_data());
  std::lock_guard lock(mutex_);
  mailbox_[tag].emplace_back(p, p + t.nbytes());
  return Work::completed();
}

std::shared_ptr<Work> LocalGroup::do_recv(Tensor& t, int, int tag) {
  std::lock_guard lock(mutex_);
  auto it = mailbox_.find(tag);
  LOOM_CHECK(it != mailbox_.end() && !it->second.empty(),
             "dist: {}.recv: nothing was sent to rank 0 (itself) with tag {}; in one process the send comes first",
             name(), tag);
  std::vector<std::byte> message = std::move(it->second.front());
  it->second.pop_front();
  LOOM_CHECK(message.size() == t.nbytes(), "dist: {}.recv: got {} bytes with tag {}, the tensor holds {}", name(),
             message.size(), tag, t.nbytes());
  if (!message.empty()) std::memcpy(t.raw_data(), message.data(), message.size());
  return Work::completed();
}

std::shared_ptr<Work> LocalGroup::do_all_to_all(const Tensor& in, Tensor& out) {
  copy_bytes(in, out);
  return Work::completed();
}

std::shared_ptr<Work> LocalGroup::do_barrier() { return Work::completed(); }

std::shared_ptr<Group> LocalGroup::do_split(int, int, const std::string& name) {
  return std::make_shared<LocalGroup>(name, timeout_s());
}

}  // namespace loom::dist
