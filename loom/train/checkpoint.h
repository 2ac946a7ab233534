// Training checkpoints: a directory per step (step_00000010/) holding the model as a Hugging
// Face directory would (config.json + model.safetensors, HF names), optimizer.safetensors
// (exp_avg.<name>, exp_avg_sq.<name>, Loom names), train_state.json and a COMPLETE marker
// written last. Each is written under a temporary name and renamed into place, so a
// crash never leaves a half checkpoint that looks whole, and older ones are pruned after.
#pragma once

#include <optional>
#include <string>

#include "loom/data/shards.h"
#include "loom/nn/transformer.h"
#include "loom/optim/adamw.h"

namespace loom::train {

struct TrainState {
  int64_t step = 0;           // optimizer updates done
  data::LoaderState loader;   // position of the training loader
  std::string config_toml;    // the run's config, for the record
};

// Writes root/step_<step>, then deletes all but the newest `keep` complete checkpoints.
std::string save_checkpoint(const std::string& root, const nn::TransformerLM& model, optim::AdamW& opt, const TrainState& state,
                            int64_t keep);
// Newest complete checkpoint under root, if any (directories without COMPLETE are ignored).
std::optional<std::string> latest_checkpoint(const std::string& root);
// Loads a checkpoint into model and optimizer; every tensor is checked against the model's shapes.
TrainState load_checkpoint(const std::string& dir, nn::TransformerLM& model, optim::AdamW& opt);

}  // namespace loom::train
