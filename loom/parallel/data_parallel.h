// Data parallelism as the trainer sees it, whatever the ZeRO stage: gradient synchronisation,
// the AdamW update of what this rank owns, global-norm clipping, and the rank's share of a
// sharded checkpoint. Stage 0 is DDP (below); stages 1-3 are in zero.h. Every layout computes
// the update of one process on the same global batch.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <vector>

#include "loom/core/tensor.h"
#include "loom/dist/group.h"
#include "loom/io/sharded_checkpoint.h"
#include "loom/nn/transformer.h"
#include "loom/optim/adamw.h"
#include "loom/parallel/tensor_parallel.h"

namespace loom::parallel {

struct DataParallelOptions {
  int zero = 0;             // ZeRO stage: 0 DDP, 1 optimizer state, 2 + gradients, 3 + parameters
  double bucket_mb = 25.0;  // DDP bucket size
  optim::AdamWConfig adamw;
  // The model's tensor-parallel split, if any: the group passed to create() then holds the ranks
  // with this rank's tp coordinate. Clipping counts each element of the whole model once, and
  // checkpoints hold whole-model tensors, each rank writing its blocks.
  TensorParallelLayout tp = {};
  // Pipeline parallelism: the group of the stages (the gradient norm is summed over it), the
  // parameters this stage holds as copies of another stage's (the tied embedding on the last
  // stage: not counted in the norm, not written to checkpoints), and for each parameter shared
  // between stages the group over which finish() sums its gradient.
  std::shared_ptr<dist::Group> pp = nullptr;
  std::set<std::string> copies = {};
  std::map<std::string, std::shared_ptr<dist::Group>> tied = {};
};

// A piece of one parameter: elements [begin, end) of its row-major flattening.
struct ParamRange {
  size_t param;  // index into the model's named_parameters()
  int64_t begin, end;
};

class DataParallel {
 public:
  // The model must outlive the result; its parameters may be rebound into flat buffers.
  static std::unique_ptr<DataParallel> create(nn::TransformerLM& model, std::shared_ptr<dist::Group> group,
                                              const DataParallelOptions& options);
  virtual ~DataParallel() = default;
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Call before each forward pass (training or evaluation).
  virtual void before_forward() {}
  // Runs one micro-step's backward from loss; sync is false on the inner micro-steps of gradient
  // accumulation. A parameter loss does not depend on (a branch this rank did not take) counts
  // as having a zero gradient, so every rank reduces the same buckets or units, in the same
  // fixed order, whatever its graph. A pipeline stage's backward starts from its output with
  // the gradient the next stage sent (grad), and concerns only the parameters of the model chunk
  // it ran (scope; empty: all).
  void backward(const Tensor& loss, bool sync) { backward(loss, Tensor(), sync, {}); }
  void backward(const Tensor& root, const Tensor& grad, bool sync, const std::vector<Tensor>& scope);
  // After the last micro-step's backward: the gradients of what this rank owns hold the sum over
  // ranks (and over the stages sharing a parameter).
  void finish();
  // Returns the global gradient norm (over all ranks' pieces) and has the next step() scale the
  // gradients so that it is at most max_norm (0: no clipping), inside the AdamW pass.
  double clip_grad_norm(double max_norm);
  // One AdamW update of this rank's pieces with learning rate lr; every rank then sees the new parameters.
  void step(double lr);
  virtual void zero_grad();

  // Sharded checkpoints of the whole model. Tensor names are "param.<name>", "exp_avg.<name>",
  // "exp_avg_sq.<name>"; shapes are those of the whole model.
  std::map<std::string, Shape> checkpoint_shapes() const;
  // What this rank writes, with the data: nothing for the replicas of DDP, a whole parameter of
  // tensor parallelism only from tp rank 0, nothing of a copy of another stage's parameter.
  std::vector<std::pair<io::FlatSlice, Tensor>> checkpoint_state() const;
  // Reads this rank's pieces from a checkpoint written under any layout.
  void load(const io::ShardedCheckpoint& ck);
  int64_t optimizer_steps() const { return opt_->steps(); }
  void set_optimizer_steps(int64_t s) { opt_->set_steps(s); }
  dist::Group& group() const { return *group_; }
  virtual int zero_stage() const = 0;

 protected:
  DataParallel(nn::TransformerLM& model, std::shared_ptr<dist::Group> group, bool sharded, const DataParallelOptions& options);
  // Call once at the end of the subclass constructor: pieces are this rank's ranges(rank()),
  // contiguous f32 tensors whose grad() holds their gradient after finish().
  void init_optimizer(std::vector<Tensor> pieces, const optim::AdamWConfig& cfg);
  // The pieces rank r updates.
  virtual std::vector<ParamRange> ranges(int rank) const = 0;
  // After each update and after load: bring every rank's parameters up to date.
  virtual void gather_params() {}
  // finish()'s reduction over the group.
  virtual void finish_reduction() = 0;
  // The gradient of parameter `param` is final for this backward pass (also when none arrived).
  virtual void on_grad_ready(size_t param) = 0;
  // Call at the end of the subclass constructor: each parameter's post-accumulate hook calls
  // on_grad_ready; the hooks go when this object does.
  void register_hooks();

  std::vector<std::pair<std::string, Tensor>> named_;  // the model's trainable parameters (requires_grad)
  std::shared_ptr<dist::Group> group_;
  bool sync_ = true;

 private:
  // The checkpoint slice of kind ("param.", ...) that range r is on the rank of tp coordinate
  // tp_rank: its range of its block of the whole tensor, cut short where the block reaches into
  // the vocabulary padding for tp (end == begin when all of it does).
  io::FlatSlice slice_of(const ParamRange& r, int tp_rank, const char* kind) const;
  // Whether the rank at (dp_rank, tp_rank) writes range r.
  bool writes(int dp_rank, int tp_rank, const ParamRange& r) const;

  std::vector<HookHandle> hooks_;
  bool sharded_;  // pieces differ between ranks (ZeRO) rather than being replicas (DDP)
  TensorParallelLayout tp_;
  std::vector<TensorParallelLayout::Split> split_;  // per parameter
  std::shared_ptr<dist::Group> pp_;
  std::vector<bool> copy_;                                  // per parameter: options.copies
  std::vector<std::shared_ptr<dist::Group>> tied_;          // per parameter: options.tied, or null
  double grad_scale_ = 1.0;  // from clip_grad_norm, applied by the next step()
  std::vector<Tensor> pieces_;
  std::unique_ptr<optim::AdamW> opt_;
};

// ZeRO stage 0: gradients live in buckets (about bucket_mb each) in the order backward
// produces them (reverse registration order). The buckets' all-reduces start on the group's
// communication thread in bucket order, each as soon as it and every bucket before it are
// complete, overlapping the rest of the backward pass: the order is the same on every rank
// whatever order its gradients completed in. Every rank then updates the whole model; rank 0
// writes checkpoints.
class Ddp : public DataParallel {
 public:
  Ddp(nn::TransformerLM& model, std::shared_ptr<dist::Group> group, const DataParallelOptions& options);
  void zero_grad() override;
  int zero_stage() const override { return 0; }
  size_t buckets() const { return buckets_.size(); }

 protected:
  std::vector<ParamRange> ranges(int rank) const override;
  void on_grad_ready(size_t param) override;
  void finish_reduction() override;

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into named_
    int64_t numel = 0;
    Tensor flat;                 // (numel) the gradients of params, which are views into it (more than one rank)
    size_t ready = 0;
    std::shared_ptr<dist::Work> work;
  };
  void launch(size_t bucket);

  std::vector<size_t> bucket_of_;  // per param
  std::vector<Bucket> buckets_;
  size_t launched_ = 0;  // buckets [0, launched_) are being reduced
};

}  // namespace loom::parallel
