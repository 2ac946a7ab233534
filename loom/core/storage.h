// A flat buffer of bytes on one device, shared by a tensor and all its views.
// Owned memory comes from the caching allocator; wrapped memory (an mmap, say) is released
// through the callback given to wrap().
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "loom/core/allocator.h"
#include "loom/core/device.h"

namespace loom {

class Storage {
 public:
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device = Device::cpu());
  static std::shared_ptr<Storage> wrap(void* data, size_t nbytes, std::function<void()> on_free);
  // Of nbytes but without memory yet, as if released (deferred initialisation): restore() allocates it.
  static std::shared_ptr<Storage> deferred(size_t nbytes);
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();

  void* data() const { return block_.ptr; }
  // For sharded parameters (ZeRO-3), whose full data exists only while gathered: release() frees
  // the memory but keeps this object, so every tensor and saved view of it stays valid;
  // restore() allocates it again with undefined contents. Owned memory only.
  void release();
  void restore();
  bool resident() const { return block_.ptr != nullptr; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  Storage() = default;
  CpuAllocator::Block block_;
  size_t nbytes_ = 0;
  Device device_;
  std::function<void()> on_free_;  // set for wrapped memory only
};

}  // namespace loom
