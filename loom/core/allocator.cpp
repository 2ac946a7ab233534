// CpuAllocator: best-fit reuse of freed blocks within 1/8 of the requested size.
#include "loom/core/allocator.h"

#include <cstdlib>
#include <new>

namespace loom {

CpuAllocator& CpuAllocator::instance() {
  static CpuAllocator* a = new CpuAllocator();  // never destroyed: tensors may outlive statics
  return *a;
}

size_t CpuAllocator::round_size(size_t nbytes) { return (nbytes + 63) / 64 * 64; }

CpuAllocator::Block CpuAllocator::allocate(size_t nbytes) {
  if (nbytes == 0) return {};
  size_t size = round_size(nbytes);
  std::lock_guard<std::mutex> lock(mu_);
  void* p = nullptr;
  auto it = free_.lower_bound(size);
  if (it != free_.end() && it->first <= size + size / 8) {
    size = it->first;
    p = it->second;
    free_.erase(it);
    stats_.cached_bytes -= size;
  } else {
    p = std::aligned_alloc(64, size);
    if (!p) {  // give the cache back and try once more before failing
      for (auto& [s, q] : free_) std::free(q);
      free_.clear();
      stats_.cached_bytes = 0;
      p = std::aligned_alloc(64, size);
      if (!p) throw std::bad_alloc();
    }
  }
  stats_.current_bytes += size;
  if (stats_.current_bytes > stats_.peak_bytes) stats_.peak_bytes = stats_.current_bytes;
  return {p, size};
}

void CpuAllocator::release(Block b) {
  if (!b.ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  stats_.current_bytes -= b.size;
  stats_.cached_bytes += b.size;
  free_.emplace(b.size, b.ptr);
}

MemoryStats CpuAllocator::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CpuAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_bytes = stats_.current_bytes;
}

void CpuAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [s, p] : free_) std::free(p);
  free_.clear();
  stats_.cached_bytes = 0;
}

}  // namespace loom
