// Hugging Face model directories (config.json + model.safetensors, or sharded safetensors
// with an index) <-> a ModelConfig and a Loom state dict, through the family's name map.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "loom/core/tensor.h"
#include "loom/models/config.h"

namespace loom::io {

// A model's weights outside any module: its config and Loom-named state dict.
struct ModelWeights {
  models::ModelConfig config;
  std::map<std::string, Tensor> state;  // names as TransformerLM::state_dict() gives them
};

// The config always comes from dir/config.json. The weights come from the safetensors files
// (HF names, mapped to Loom's), or, when dir is a sharded training checkpoint
// (is_sharded_checkpoint), from its tensors named "param.<Loom name>", read whole.
ModelWeights load_hf(const std::filesystem::path& dir);

// A model's weights read block by block, so that a rank of a tensor- or pipeline-parallel job
// reads only what it holds: the config, and for a Loom parameter name the block `box` at
// `offset` of the whole parameter (f32; rows past those stored — vocabulary padding — zero).
// Safetensors files are mapped and only the block's elements are read; a sharded training
// checkpoint is read by part.
struct WeightSource {
  models::ModelConfig config;
  std::function<Tensor(const std::string& name, const Shape& offset, const Shape& box)> block;
};
WeightSource open_weights(const std::filesystem::path& dir);

// Writes config.json and model.safetensors (metadata {"format": "pt"}, which transformers
// requires) into `dir.tmp.<pid>`, then renames that to dir. An existing non-empty dir is an
// error unless overwrite, and is replaced only once the new one is complete.
void save_hf(const std::filesystem::path& dir, const models::ModelConfig& config, const std::map<std::string, Tensor>& state,
             bool overwrite = false);

}  // namespace loom::io
