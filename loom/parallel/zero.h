// ZeRO stages 1-3 over the data-parallel group. The parameters are grouped into units (each
// parameter outside the blocks — embeddings, final norm, head — on its own, then one unit per
// block), and each unit's parameters are rebound as views into one flat buffer that is split
// into chunks of ceil(numel / ranks), one per rank (the last ones shorter or empty).
// A rank keeps AdamW state for its chunk only (stage 1), and from stage 2 also only its chunk of
// the gradients: each unit's gradients are reduce-scattered once backward has produced them all,
// then freed. Units are reduced in one fixed order (the order backward completes them: head and
// final norm, the blocks from last to first, the embeddings), a unit waiting for those before
// it, so every rank issues the same reductions in the same order. Stage 3 keeps only the rank's
// chunk of the parameters too: a block's parameters are all-gathered just before its forward
// (the next block prefetched) and freed after it, gathered again when backward reaches the
// block (the previous one prefetched), and freed when backward reaches the block below. The
// units outside the blocks are gathered before the forward and freed when backward reaches the
// last block. Gathers run on a communicator of their own, so they never queue behind (or
// interleave differently with) the reductions.
// Destroying a Zero gives the model back whole parameters in memory of their own (stage 3
// gathers them first, a collective, unless an exception is unwinding) and removes its hooks.
#pragma once

#include <deque>

#include "loom/parallel/data_parallel.h"

namespace loom::parallel {

class Zero : public DataParallel {
 public:
  Zero(nn::TransformerLM& model, std::shared_ptr<dist::Group> group, const DataParallelOptions& options);
  ~Zero() override;
  void before_forward() override;
  void finish_reduction() override;
  void zero_grad() override;
  int zero_stage() const override { return stage_; }

 protected:
  std::vector<ParamRange> ranges(int rank) const override;
  void gather_params() override;

 private:
  struct Unit {
    std::vector<size_t> params;   // indices into named_
    std::vector<int64_t> offset;  // of each param in the flat buffer
    int64_t numel = 0, chunk = 0;  // rank r holds elements [r·chunk, r·chunk + counts[r])
    std::vector<int64_t> counts;   // per rank
    Tensor full;   // (numel) the parameters are views into it; stage 3: resident only while gathered
    Tensor own;    // (counts[rank]) this rank's chunk: a view into full (stages 1, 2) or a buffer of its own (stage 3)
    Tensor grad;   // (counts[rank]) the reduced gradient of own, summed over ranks and micro-steps
    size_t ready = 0;  // parameters whose gradient has arrived in this backward
    std::shared_ptr<dist::Work> gathering;
  };
  struct Reduction {
    size_t unit;
    Tensor flat, out;  // (numel) the unit's whole gradient, (counts[rank]) this rank's sum
    std::shared_ptr<dist::Work> work;
  };
  void on_grad_ready(size_t param) override;
  void flush();  // reduces, in order, the units this backward has not reduced yet
  void reduce(size_t unit);
  void drain(size_t keep);  // completes in-flight reductions until at most `keep` remain
  void gather(size_t unit);
  void wait_gathered(size_t unit);
  void release(size_t unit);
  Tensor wrap_block(size_t layer, const Tensor& x, const nn::TransformerLM::BlockFn& block);

  nn::TransformerLM& model_;
  int stage_;
  size_t roots_ = 0;  // units_[0, roots_) hold the parameters outside the blocks, one each
  std::vector<size_t> unit_of_layer_;  // the unit of each block the model holds (SIZE_MAX for the others)
  std::vector<Unit> units_;
  std::vector<size_t> unit_of_;  // per param
  std::vector<size_t> order_;    // units in reduction order
  size_t reduced_ = 0;           // order_[0, reduced_) are reduced in this backward
  bool active_ = false;          // a backward has counted gradients since the last flush
  std::deque<Reduction> inflight_;
  std::shared_ptr<dist::Group> gathers_;  // stage 3: the all-gathers of parameters
  HookHandle wrapper_;                    // stage 3: the block wrapper
};

}  // namespace loom::parallel
