// The one entry point that parallelizes a model from outside, by plan, in a fixed order: tensor
// parallelism (and sequence parallelism) over the mesh's tp group, activation recompute, the
// pipeline split over its pp group, then data parallelism / ZeRO over its dp group. The model
// code stays single-device; what was applied stays alive in the result.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "loom/data/loader.h"
#include "loom/dist/mesh.h"
#include "loom/nn/transformer.h"
#include "loom/parallel/data_parallel.h"
#include "loom/parallel/pipeline.h"

namespace loom::parallel {

struct ParallelConfig {
  // For a model built deferred (TransformerLM(config, true)): fills it once it is cut up, given
  // where each parameter this rank holds sits in the whole model — random init
  // (TransformerLM::init) or a checkpoint read block by block (TransformerLM::materialize).
  std::function<void(nn::TransformerLM&, const nn::TransformerLM::PlaceFn&)> materialize;
  bool sequence_parallel = false;  // with tp > 1
  bool recompute = false;          // activation recompute of every block
  PipelineOptions pipeline;        // with pp > 1 (sequence_split is set from the mesh)
  DataParallelOptions data;        // ZeRO stage, buckets, AdamW (tp and pp are set from the mesh)
};

class Parallelized {
 public:
  // One step's forward and backward over this data-parallel rank's micro-batches, each one's
  // summed loss times scale, and the gradient reduction (DataParallel::finish). Returns the
  // scaled losses summed over the micro-batches (and the stages: every rank gets them). LoRA
  // dropout is on at each micro-batch's Batch::first for its forward and backward (a pipeline
  // sets it for each action of its schedule) and off again on return.
  double forward_backward(const std::vector<data::Batch>& micro, double scale);
  // Forward only: the batches' losses summed over their tokens (on every rank).
  double evaluate(const std::vector<data::Batch>& batches);
  DataParallel& data() const { return *dp_; }
  const Pipeline* pipeline() const { return pipeline_.get(); }

 private:
  friend std::unique_ptr<Parallelized> parallelize(nn::TransformerLM& model, const dist::Mesh& mesh, ParallelConfig cfg);
  Parallelized(nn::TransformerLM& model, const dist::Mesh& mesh) : model_(model), mesh_(mesh) {}
  nn::TransformerLM& model_;
  const dist::Mesh& mesh_;
  HookHandle recompute_;
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<DataParallel> dp_;
};

// The model and mesh must outlive the result. Collective over the mesh's world.
std::unique_ptr<Parallelized> parallelize(nn::TransformerLM& model, const dist::Mesh& mesh, ParallelConfig cfg);

}  // namespace loom::parallel
