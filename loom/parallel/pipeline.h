// Pipeline parallelism (Megatron's): the layer stack is cut into stages × virtual_stages chunks,
// chunk k held by stage k mod stages (so with virtual stages each stage holds every stages-th
// chunk). The embeddings sit with chunk 0 on the first stage, the final norm, head and loss with
// the last chunk on the last stage; a tied embedding/head is held by both, its gradient summed
// between them. A step's micro-batches (training.grad_accum) flow through the chunks by a
// schedule — GPipe (all forwards, then all backwards), 1F1B (warm-up forwards, then one forward
// and one backward in turn) or interleaved 1F1B over virtual stages — with activations and their
// gradients sent point to point on the stages' own communicator, never queued behind the
// collectives of another group. Applied after tensor parallelism and before recompute and data
// parallelism; a stage drops the layers and modules it does not run.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "loom/data/loader.h"
#include "loom/dist/group.h"
#include "loom/nn/transformer.h"
#include "loom/parallel/data_parallel.h"

namespace loom::parallel {

struct PipelineOptions {
  std::string schedule = "1f1b";  // "gpipe" | "1f1b" | "interleaved"
  int virtual_stages = 1;         // chunks per stage; > 1 only with "interleaved"
  std::vector<int64_t> layout;    // layers per stage (without virtual stages); empty: as even as can be
  int sequence_split = 1;         // the tp size under sequence parallelism: activations hold T / that positions
};

// One action of a stage's schedule: the forward or backward of one of its chunks (0 to
// virtual_stages - 1) on one micro-batch.
struct PipelineAction {
  bool forward;
  int chunk, micro;
  bool operator==(const PipelineAction&) const = default;
};

// The schedule of `stage` (of `stages`) over `micro` micro-batches. Interleaved needs micro to be
// a multiple of stages. Errors name the schedule and the sizes.
std::vector<PipelineAction> pipeline_schedule(const std::string& schedule, int stages, int stage, int chunks, int micro);

// The first layer of each chunk (and the layer count at the end): `layout` layers per stage, or
// layers spread evenly (the first chunks one more when they do not divide).
std::vector<size_t> pipeline_chunk_starts(size_t layers, int stages, int chunks, const std::vector<int64_t>& layout);

class Pipeline {
 public:
  // Collective over group (the stages, rank = stage). Cuts the model to this stage's chunks.
  Pipeline(nn::TransformerLM& model, std::shared_ptr<dist::Group> group, PipelineOptions options);
  // What data parallelism needs to know of the stages: the group, the tied embedding.
  void configure(DataParallelOptions& options) const;
  // Forward and backward of one step's micro-batches (of this data-parallel rank) by the
  // schedule, each micro-batch's summed loss times scale. Each action sets LoRA dropout's position
  // to its micro-batch's Batch::first (nn::set_lora_dropout; the caller clears it). Returns the
  // summed, scaled losses on the last stage, 0 elsewhere.
  double step(const std::vector<data::Batch>& micro, double scale, DataParallel& dp);
  // Forward only: the batches' losses summed over their tokens on the last stage, 0 elsewhere.
  double evaluate(const std::vector<data::Batch>& batches, DataParallel& dp);
  // Seconds spent waiting for activations or gradients from other stages, since construction:
  // the pipeline's bubble as this stage sees it.
  double idle_seconds() const { return idle_s_; }
  bool first() const { return stage_ == 0; }
  bool last() const { return stage_ == stages_ - 1; }

 private:
  int global_chunk(int chunk) const { return chunk * stages_ + stage_; }
  // Runs chunk `chunk`'s forward for a micro-batch: from the embeddings or the activation the
  // previous chunk sent; sends its output on, or returns the loss on the last chunk.
  Tensor forward(int chunk, const data::Batch& batch, double scale, Tensor* input);
  Tensor receive(int from_stage, int tag, const data::Batch& batch);
  void send(const Tensor& t, int to_stage, int tag);
  void wait_sends();  // at the end of a step: every send complete, its tensor free

  nn::TransformerLM& model_;
  std::shared_ptr<dist::Group> group_, tied_;
  PipelineOptions options_;
  int stages_, stage_, chunks_;
  std::vector<size_t> starts_;                  // first layer of each global chunk, then the layer count
  std::vector<std::vector<Tensor>> params_;     // per local chunk: its parameters (the scope of its backward)
  std::vector<std::pair<std::shared_ptr<dist::Work>, Tensor>> sends_;  // in flight until the step ends
  double idle_s_ = 0;
};

}  // namespace loom::parallel
