// Storage allocation and release.
#include "loom/core/storage.h"

#include "loom/core/error.h"

namespace loom {

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  LOOM_CHECK(device.is_cpu(), "storage: device {} needs a CUDA build", device.str());
  std::shared_ptr<Storage> s(new Storage());
  s->block_ = CpuAllocator::instance().allocate(nbytes);
  s->nbytes_ = nbytes;
  s->device_ = device;
  return s;
}

std::shared_ptr<Storage> Storage::deferred(size_t nbytes) {
  std::shared_ptr<Storage> s(new Storage());
  s->nbytes_ = nbytes;
  return s;
}

std::shared_ptr<Storage> Storage::wrap(void* data, size_t nbytes, std::function<void()> on_free) {
  std::shared_ptr<Storage> s(new Storage());
  s->block_ = {data, nbytes};
  s->nbytes_ = nbytes;
  s->on_free_ = std::move(on_free);
  return s;
}

void Storage::release() {
  LOOM_CHECK(!on_free_, "storage: wrapped memory cannot be released");
  CpuAllocator::instance().release(block_);
  block_ = {};
}

void Storage::restore() {
  if (!resident()) block_ = CpuAllocator::instance().allocate(nbytes_);
}

Storage::~Storage() {
  if (on_free_)
    on_free_();
  else
    CpuAllocator::instance().release(block_);
}

}  // namespace loom
