// Training checkpoints: a directory per step (step_00000010/) in the sharded layout of
// loom/io/sharded_checkpoint.h: each data-parallel rank writes what it owns (rank<R>.safetensors:
// parameters "param.<name>" and AdamW state "exp_avg.<name>", "exp_avg_sq.<name>", as slices of
// their flattening), and rank 0 adds index.json, config.json (the model, in Hugging Face form),
// train_state.json and a COMPLETE marker written last. The directory is built under a temporary
// name and renamed, so a crash never leaves a half checkpoint that looks whole; older ones are
// pruned after. A checkpoint loads under any (dp, zero) layout.
#pragma once

#include <filesystem>
#include <functional>

#include <optional>
#include <string>

#include "loom/data/shards.h"
#include "loom/nn/transformer.h"
#include "loom/dist/mesh.h"
#include "loom/parallel/data_parallel.h"

namespace loom::train {

struct TrainState {
  int64_t step = 0;              // updates done
  int64_t optimizer_steps = 0;   // AdamW's step count (bias correction)
  int64_t consumed_samples = 0;  // sequences the training loader has handed out, over all ranks
  int64_t global_batch = 0;      // sequences per update in the run that wrote it
  std::string config_toml;       // the run's config, for the record
  struct Best {                  // eval.patience: the best validation loss so far
    int64_t step = 0;            // 0: none yet
    double val_loss = 0;
    int64_t evals_since = 0;     // evaluations since it without improvement
  } best = {};
};

// train_state.json: {"step", "optimizer_steps", "consumed_samples", "global_batch", "config"},
// and "best": {"step", "val_loss", "evals_since"} once there is one.
// Bad text is a loom::Error naming origin and the field.
std::string train_state_json(const TrainState& s);
TrainState parse_train_state(const std::string& text, const std::string& origin);

// Collective over the mesh's world (dp's group lies in it): writes root/step_<step>, each rank its
// own file, then rank 0 deletes all but the newest `keep` complete checkpoints and the one
// root/best points to. Returns the directory.
// extra(dir): rank 0 writes more files into the checkpoint (a LoRA adapter) before it is complete.
std::string save_checkpoint(const std::string& root, const nn::TransformerLM& model, const parallel::DataParallel& dp,
                            const dist::Mesh& mesh, const TrainState& state, int64_t keep,
                            const std::function<void(const std::filesystem::path&)>& extra = {});
// Points root/best (a symbolic link, replaced atomically) at root/step_<step>. Rank 0 calls it.
void mark_best(const std::string& root, int64_t step);
// Newest complete checkpoint under root, if any (directories without COMPLETE are ignored).
// Collective: rank 0 of group looks, so every rank gets the same answer even where their views
// of the directory differ (a filesystem that is not coherent across nodes).
std::optional<std::string> latest_checkpoint(const std::string& root, dist::Group& group);
// Loads this rank's share of a checkpoint written under any layout; the model must match its config.json.
TrainState load_checkpoint(const std::string& dir, const nn::TransformerLM& model, parallel::DataParallel& dp);

}  // namespace loom::train
