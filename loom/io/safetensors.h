// safetensors (Hugging Face's tensor file format) read and write, and the sharded layout
// (`model.safetensors.index.json` + `model-0000i-of-0000n.safetensors`). The header is never
// trusted: every size, offset and type is checked before any tensor is made.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "loom/core/tensor.h"

namespace loom::io {

using TensorMap = std::map<std::string, Tensor>;
using Metadata = std::map<std::string, std::string>;  // the header's "__metadata__"

// Tensors (F32, F64, BF16, F16, I32, I64, U8) over a private copy-on-write mmap of the file:
// writing to one never changes the file, and the mapping lives while any tensor does.
// A tensor whose bytes are not aligned to its element size is copied out instead.
TensorMap read_safetensors(const std::filesystem::path& path, Metadata* metadata = nullptr);

// Writes what the reference writer (the safetensors crate) writes: compact JSON header,
// "__metadata__" first, then tensors ordered by element alignment (8, 4, 2, 1 bytes) and then
// name, so each tensor's data stays aligned; header padded with spaces to a multiple of 8.
// Tensors must be on the CPU; the file is replaced only once it is complete.
void write_safetensors(const std::filesystem::path& path, const TensorMap& tensors, const Metadata& metadata = {});

// A Hugging Face model directory: the shards named by `model.safetensors.index.json`
// ("weight_map": {tensor: file}) when that exists, else the single `model.safetensors`.
// Every shard tensor must be listed in the index under its own shard, and vice versa.
TensorMap read_safetensors_dir(const std::filesystem::path& dir);

}  // namespace loom::io
