// llm.c GPT-2 model files (magic 20240326, version 3 = fp32): a 256 x int32 header, then the
// 16 parameter tensors stacked over layers, weights [out, in]. Read into and written from a
// GPT-2 ModelConfig and Loom state dict; a read-write round trip is byte-identical.
#pragma once

#include <filesystem>

#include "loom/io/hf_checkpoint.h"

namespace loom::io {

// Checks magic, version, sizes and that the file holds exactly 1024 + 4 x (parameter count)
// bytes before allocating anything.
ModelWeights read_llmc(const std::filesystem::path& path);

// config must be GPT-2 shaped with a tied head and intermediate = 4 x n_embd; state holds
// exactly its parameters. The file is replaced only once complete.
void write_llmc(const std::filesystem::path& path, const models::ModelConfig& config, const std::map<std::string, Tensor>& state);

}  // namespace loom::io
