// Fuzzes an llm.c token shard: header (magic, version, token count) against the file size. An
// accepted shard's tokens are all read, and a data loader draws a few batches from it.
#include "fuzz/harness.h"
#include "loom/data/loader.h"
#include "loom/data/shards.h"

void loom::fuzz::one_input(std::string_view input) {
  const std::string path = write_file("shard.bin", input);
  {
    const data::TokenShard shard(path);
    expect(shard.size() >= 0 && uint64_t(shard.size()) <= (input.size() - 1024) / 2, "the shard claims more tokens than the file holds");
    uint32_t sum = 0;
    for (int64_t i = 0; i < shard.size(); ++i) sum += shard.at(i);
    asm volatile("" : : "r"(sum));  // keep the reads
  }
  for (bool shuffle : {false, true}) {
    data::DataLoader loader(path, "fuzz", 2, 3, shuffle, 1, int64_t(1) << 32);
    for (int i = 0; i < 3; ++i) loader.next();
  }
}
