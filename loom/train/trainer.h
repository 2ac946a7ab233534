// The pre-training loop behind `loom train`: model, optimizer, data, gradient accumulation,
// clipping, LR schedule, evaluation, progress line, metrics JSONL, checkpoints and resume,
// a clean save-and-exit on SIGINT/SIGTERM, and data parallelism over the ranks of the job.
#pragma once

#include <memory>

#include "loom/data/loader.h"
#include "loom/dist/mesh.h"
#include "loom/nn/lora.h"
#include "loom/nn/transformer.h"
#include "loom/parallel/parallelize.h"
#include "loom/train/checkpoint.h"
#include "loom/train/config.h"

namespace loom::train {

// The model a config asks for: a preset with random init, or weights from model.init
// (llmc:FILE | hf:DIR), whose own shape then wins over the preset. Presets and hf:DIR are built
// deferred (no memory), with `materialize` to fill them once parallelism has cut them up — each
// rank initialising, or reading from the checkpoint, only what it holds; llmc:FILE is read whole.
struct ModelBuild {
  std::unique_ptr<nn::TransformerLM> model;
  std::function<void(nn::TransformerLM&, const nn::TransformerLM::PlaceFn&)> materialize;  // null: filled already
};
ModelBuild build_model(const TrainConfig& cfg);

// Parameters of the whole model its config defines (a deferred twin's), whatever this process
// holds of them (a tensor- or pipeline-parallel part) and however (a quantised base registers
// none); LoRA's adapters are not counted.
int64_t whole_parameters(const nn::TransformerLM& model);

// FLOPs of one training token: 6N + 6·L·H·D·T, N = whole_parameters (PaLM's estimate, attention
// included; H·D is C unless head_dim differs from C/H, as Qwen3's does).
double flops_per_token(const nn::TransformerLM& model, int64_t T);

// What the data is: token shards to pre-train on (`loom train`), or JSON Lines examples for
// supervised fine-tuning (`loom sft`: chat messages, prompt/completion or text, see data/sft.h).
enum class Task { pretrain, sft };

class Trainer {
 public:
  // With resume, continues from the newest complete checkpoint in checkpoint.dir (if any).
  // world: all ranks of the job (a one-rank group without mpirun); they train data-parallel,
  // groups of parallel.tp neighbouring ranks tensor-parallel, parallel.pp stages pipelined.
  Trainer(TrainConfig cfg, bool resume, std::shared_ptr<dist::Group> world, Task task = Task::pretrain);
  // Returns the process exit code (0, also after a signal-triggered save).
  int run();

 private:
  // The mean loss over the trained tokens of eval.batches batches of `loader`, over all ranks.
  double evaluate(data::DataLoader& loader);
  void make_loaders(Task task);
  int64_t global_batch() const { return cfg_.batch_size * cfg_.grad_accum * mesh_->dims().dp; }  // sequences per update
  TrainConfig cfg_;
  std::shared_ptr<dist::Group> world_;
  std::unique_ptr<dist::Mesh> mesh_;
  bool main_rank_ = true;  // rank 0 prints and writes metrics
  std::unique_ptr<nn::TransformerLM> model_;
  nn::LoraConfig lora_;  // r = 0: no LoRA
  std::unique_ptr<parallel::Parallelized> par_;  // tp, recompute, pipeline, data parallelism: gradient sync and the optimizer
  std::unique_ptr<data::DataLoader> train_, val_, base_;  // base_: eval.base
  int64_t start_step_ = 0;
  TrainState::Best best_;  // eval.patience
  double peak_flops_ = 0;       // of all ranks together, for MFU
  double flops_per_token_ = 0;  // of the whole model
  int64_t params_ = 0;          // of the whole model
};

}  // namespace loom::train
