// CPU caching allocator: 64-byte aligned blocks, freed blocks are kept and reused by later
// requests of (nearly) the same size, so a training step allocates from the OS only once.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>

namespace loom {

struct MemoryStats {
  size_t current_bytes = 0;  // handed out and not yet released
  size_t peak_bytes = 0;     // max of current_bytes since start or reset_peak()
  size_t cached_bytes = 0;   // held in the free lists
};

class CpuAllocator {
 public:
  static CpuAllocator& instance();
  struct Block {
    void* ptr = nullptr;
    size_t size = 0;  // the block's true size (>= the request)
  };
  Block allocate(size_t nbytes);
  void release(Block b);
  MemoryStats stats();
  void reset_peak();
  void empty_cache();  // returns cached blocks to the OS

 private:
  static size_t round_size(size_t nbytes);
  std::mutex mu_;
  std::multimap<size_t, void*> free_;  // rounded size -> block
  MemoryStats stats_;
};

}  // namespace loom
