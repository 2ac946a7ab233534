// Per-rank sharded training checkpoints: every rank saves the slices of the parameters and
// optimizer state it owns into its own safetensors file, and one index says which file holds
// which part of each tensor, so the checkpoint can be read back under any other layout
// (another world size, another sharding, tensor parallel or none) by asking for parts, not files.
//
// dir/index.json, written last (after every rank file), so its presence marks a complete set:
//   {"format": "loom-sharded", "version": 2, "metadata": <any JSON, the trainer's layout>,
//    "tensors": {"param.tok_emb.weight": {"shape": [256, 64], "dtype": "F32",
//                "shards": [{"file": "rank00000.safetensors", "begin": 0, "end": 8192}, ...]}, ...}}
// A shard is elements [begin, end) of the row-major flattening of the whole tensor or, when it
// has "offset" and "box" (version 2), of the N-D box of shape "box" at "offset" in the tensor (a
// tensor-parallel rank's block of a weight, cut further by ZeRO). Each tensor's shards cover it
// exactly, with no gap or overlap. A shard is stored in its file as the 1-D F32 tensor of
// end-begin values under the tensor's own name. Version 1 files (no boxes) read as before.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "loom/core/tensor.h"
#include "loom/io/safetensors.h"

namespace loom::io {

// A piece of a tensor: elements [begin, end) of the row-major flattening of the box of shape
// `box` at `offset` in the tensor; an empty box stands for the whole tensor.
struct FlatSlice {
  std::string name;  // e.g. "param.layers.0.attn.wq.weight", "exp_avg.layers.0.attn.wq.weight"
  int64_t begin = 0, end = 0;
  Shape offset = {}, box = {};
};

// "rank00003.safetensors"
std::string rank_file_name(int rank);

// Writes dir/rank_file_name(rank) (created if need be, replaced only once complete): each slice
// as a 1-D F32 tensor of end-begin values under the slice's name. data may have any shape; its
// element count must equal end-begin.
void write_rank_shard(const std::filesystem::path& dir, int rank, const std::vector<std::pair<FlatSlice, Tensor>>& slices);

// Writes dir/index.json atomically. shapes: the global shape of every tensor; owned[r]: the
// slices rank r wrote into rank_file_name(r) (a rank that owns nothing is not listed). Before
// writing, checks that every slice names a tensor in shapes, that its box lies inside the tensor
// and 0 <= begin < end <= its size, and that each tensor's slices cover it with no gap or overlap. The rank files themselves are
// not opened: on a filesystem that is not shared they are visible only to their own ranks.
void write_shard_index(const std::filesystem::path& dir, const std::map<std::string, Shape>& shapes,
                       const std::vector<std::vector<FlatSlice>>& owned, const nlohmann::json& metadata);

// True when dir/index.json exists and says "format": "loom-sharded". An index.json that is not
// valid JSON throws: a damaged checkpoint must not pass for some other kind of directory.
bool is_sharded_checkpoint(const std::filesystem::path& dir);

// Reads a directory written by the functions above, under any layout: a range is copied from
// whichever files hold it. Rank files are mapped lazily (read_safetensors mmaps them) and kept
// open; reads may come from several threads.
class ShardedCheckpoint {
 public:
  // Parses and fully validates index.json; throws naming the file, tensor and field.
  explicit ShardedCheckpoint(const std::filesystem::path& dir);

  const std::map<std::string, Shape>& shapes() const { return shapes_; }
  const nlohmann::json& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return shapes_.count(name) > 0; }

  // Copies the elements of `part` (of any box, whatever the boxes of the shards) into out, a
  // contiguous CPU F32 tensor (any shape) of end-begin elements. Every rank-file tensor used is
  // checked (present, F32, 1-D, as long as its shard); errors name the file and the tensor.
  void read(const FlatSlice& part, Tensor& out) const;
  // Elements [begin, end) of the flattening of the whole tensor.
  void read(const std::string& name, int64_t begin, int64_t end, Tensor& out) const { read(FlatSlice{name, begin, end}, out); }
  // The whole tensor, in its global shape.
  Tensor read(const std::string& name) const;

 private:
  struct Shard {
    size_t file;  // index into files_
    int64_t begin, end;
    Shape offset, box;  // empty: the whole tensor
  };

  // The validated tensor file[shard.file]/name for one shard.
  Tensor shard_tensor(const std::string& name, const Shard& shard) const;

  struct OpenFiles;  // the lazily mapped rank files, shared by copies of this reader

  std::filesystem::path dir_, index_path_;
  nlohmann::json metadata_;
  std::map<std::string, Shape> shapes_;
  std::map<std::string, std::vector<Shard>> shards_;  // per tensor, sorted by begin, tiling [0, numel)
  std::vector<std::string> files_;                    // plain file names within dir_
  std::shared_ptr<OpenFiles> open_;
};

}  // namespace loom::io
