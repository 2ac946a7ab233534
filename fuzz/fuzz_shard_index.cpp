// Fuzzes a sharded checkpoint's index.json (version 1 ranges and version 2 N-D boxes). When the
// index is accepted, a read of a few elements of each tensor goes through the shard lookup, as a
// range of the flattening and as a box (the row-by-row path); with no rank files present it must
// fail with an error naming the missing file (or succeed for an empty range).
#include <algorithm>

#include "fuzz/harness.h"
#include "loom/io/sharded_checkpoint.h"

void loom::fuzz::one_input(std::string_view input) {
  const std::filesystem::path dir = write_file("checkpoint/index.json", input).parent_path();
  const io::ShardedCheckpoint ckpt(dir);
  expect(io::is_sharded_checkpoint(dir), "an accepted index is not recognised as a sharded checkpoint");
  for (const auto& [name, shape] : ckpt.shapes()) {
    const int64_t n = std::min<int64_t>(numel_of(shape), 4);
    Tensor out = Tensor::empty({n});
    try {
      ckpt.read(name, 0, n, out);
      expect(n == 0, "a read succeeded without rank files");
    } catch (const Error&) {
    }
    if (shape.empty()) continue;
    try {
      ckpt.read(io::FlatSlice{name, 0, n, Shape(shape.size(), 0), shape}, out);
      expect(n == 0, "a box read succeeded without rank files");
    } catch (const Error&) {
    }
  }
}
