// What training reads: an indexed set of sequences (windows of token shards, or fine-tuning
// examples), and the loader that streams them in batches, epoch after epoch, split over ranks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::data {

struct Batch {
  Tensor inputs, targets;  // (B, T) i64 each; a target of -100 takes no part in the loss
  // (B, T) i64 when documents are packed into rows: each document's positions start at 0, and
  // attention stays within the document (a position 0 starts one). Undefined: 0..T-1 in every row.
  Tensor positions = {};
  int64_t first = -1;  // the place in the stream of row 0's sequence (rows follow on; LoRA dropout's masks); -1: none
};

// A fixed set of sequences of T inputs and T targets.
class Sequences {
 public:
  virtual ~Sequences() = default;
  virtual int64_t size() const = 0;
  virtual int64_t seq_len() const = 0;
  virtual bool packed() const { return false; }  // whether a row may hold several documents
  // Sequence i: T inputs, T targets and T positions.
  virtual void read(int64_t i, int64_t* inputs, int64_t* targets, int64_t* positions) const = 0;
};

// The windows of a shard file, directory or glob (expand_paths): T+1 tokens at multiples of T
// in each shard (a shard's tail shorter than a window is skipped), shard after shard. Every
// token is checked against vocab_size when read; key names the config key in errors.
std::shared_ptr<const Sequences> shard_windows(const std::string& spec, const std::string& key, int64_t T, int64_t vocab_size);

// Sequences mixed into the stream at a fixed rate (data.replay: pre-training data against
// forgetting).
struct Replay {
  std::shared_ptr<const Sequences> seqs;  // null: none
  double fraction = 0;                    // of all sequences, in [0, 1)
};

// The stream of sequences: without shuffle an epoch reads them in order (for shards, llm.c's:
// batch k of B rows reads tokens [k·B·T, k·B·T + B·T + 1)); with shuffle in a seeded permutation,
// re-drawn every epoch. With replay, sequence k of the stream is a replay sequence when
// ⌊(k+1)·f⌋ > ⌊k·f⌋ (the ⌊k·f⌋-th of the replay stream, itself shuffled and repeated the same
// way), else the (k − ⌊k·f⌋)-th of the main one. The position is the number of sequences
// consumed so far (Megatron's consumed_samples): each next() takes the following B·parts
// sequences, and part p receives rows [p·B, (p+1)·B) of them. What a run sees therefore depends
// only on how many sequences came before, never on how a global batch is split into ranks,
// micro-batches and rows.
class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Sequences> seqs, const std::string& key, int64_t B, bool shuffle, uint64_t seed, int64_t part = 0,
             int64_t parts = 1, Replay replay = {});
  // Token shards: the loader over shard_windows(spec, key, T, vocab_size).
  DataLoader(const std::string& spec, const std::string& key, int64_t B, int64_t T, bool shuffle, uint64_t seed, int64_t vocab_size,
             int64_t part = 0, int64_t parts = 1);
  Batch next();
  int64_t consumed() const { return consumed_; }  // sequences taken by every part together
  void set_consumed(int64_t n);
  void reset() { consumed_ = 0; }
  int64_t sequences_per_epoch() const { return main_.seqs->size(); }  // of the main sequences

 private:
  struct Stream {
    std::shared_ptr<const Sequences> seqs;
    uint64_t seed = 0;
    std::vector<int64_t> order = {};  // of order_epoch (shuffle only)
    int64_t order_epoch = -1;
    int64_t index(int64_t k, bool shuffle);  // the sequence read k-th
  };
  Stream main_, replay_;
  double fraction_ = 0;
  std::string key_;
  int64_t B_, part_, parts_;
  bool shuffle_;
  int64_t consumed_ = 0;
};

}  // namespace loom::data
