// Hugging Face model directory load (whole, or block by block) and atomic save.
#include "loom/io/hf_checkpoint.h"

#include <unistd.h>

#include <algorithm>

#include "loom/io/file_util.h"
#include "loom/io/safetensors.h"
#include "loom/io/sharded_checkpoint.h"
#include "loom/models/hf_names.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"

namespace loom::io {

namespace fs = std::filesystem;

namespace {

// Prefixes a conversion error with the file or directory it came from.
template <typename F>
auto naming(const fs::path& where, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", where.string(), e.what()));
  }
}

void rename_or_throw(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  LOOM_CHECK(!ec, "hf: cannot move {} to {}: {}", from.string(), to.string(), ec.message());
}

// Moves the complete `tmp` to `dir`; an existing dir is set aside first and restored on failure.
void install_dir(const fs::path& tmp, const fs::path& dir) {
  if (!fs::exists(dir)) return rename_or_throw(tmp, dir);
  fs::path old = dir;
  old += ".old." + std::to_string(::getpid());
  rename_or_throw(dir, old);
  try {
    rename_or_throw(tmp, dir);
  } catch (const Error&) {
    std::error_code ec;
    fs::rename(old, dir, ec);
    throw;
  }
  std::error_code ec;
  fs::remove_all(old, ec);
}

models::ModelConfig read_config(const fs::path& dir) {
  LOOM_CHECK(fs::is_directory(dir), "hf: {} is not a directory", dir.string());
  const fs::path config_path = dir / "config.json";
  LOOM_CHECK(fs::exists(config_path), "hf: {} has no config.json", dir.string());
  const nlohmann::json j = parse_json(read_text_file(config_path), "hf: " + config_path.string());
  return naming(config_path, [&] { return models::config_from_hf_json(j); });
}

}  // namespace

WeightSource open_weights(const fs::path& dir) {
  WeightSource src{read_config(dir), nullptr};
  // The block of a tensor whose first `rows` rows are stored (read by `read` in f32), zero below.
  auto padded = [](const Shape& offset, const Shape& box, int64_t rows, const std::function<Tensor(const Shape&)>& read) {
    Tensor out = Tensor::zeros(box);
    Shape have = box;
    have[0] = std::clamp<int64_t>(rows - offset[0], 0, box[0]);
    if (numel_of(have) > 0) {
      Tensor dst = ops::narrow(out, 0, 0, have[0]);
      ops::copy_(dst, read(have));
    }
    return out;
  };
  if (is_sharded_checkpoint(dir)) {
    auto ck = std::make_shared<ShardedCheckpoint>(dir);
    src.block = [ck, padded](const std::string& name, const Shape& offset, const Shape& box) {
      const std::string key = "param." + name;
      LOOM_CHECK(ck->has(key), "checkpoint: tensor {} is missing", key);
      return padded(offset, box, ck->shapes().at(key)[0], [&](const Shape& have) {
        Tensor t = Tensor::empty(have);
        ck->read(FlatSlice{key, 0, numel_of(have), offset, have}, t);
        return t;
      });
    };
    return src;
  }
  auto views = std::make_shared<std::map<std::string, Tensor>>(
      naming(dir, [&] { return models::hf_views(src.config, read_safetensors_dir(dir)); }));  // the views keep the mappings
  src.block = [views, padded](const std::string& name, const Shape& offset, const Shape& box) {
    auto it = views->find(name);
    LOOM_CHECK(it != views->end(), "hf: no tensor holds parameter {}", name);
    const Tensor& v = it->second;
    return padded(offset, box, v.size(0), [&](const Shape& have) {
      Tensor b = v;
      for (size_t d = 0; d < have.size(); ++d) b = ops::narrow(b, int64_t(d), offset[d], have[d]);
      return b.dtype() == DType::f32 ? b : ops::cast(b, DType::f32);
    });
  };
  return src;
}

ModelWeights load_hf(const fs::path& dir) {
  ModelWeights w;
  w.config = read_config(dir);
  if (is_sharded_checkpoint(dir)) {
    // A training checkpoint already holds Loom names; its optimizer state is skipped.
    const std::string prefix = "param.";
    const ShardedCheckpoint ckpt(dir);
    for (const auto& [name, shape] : ckpt.shapes())
      if (name.starts_with(prefix)) w.state.emplace(name.substr(prefix.size()), ckpt.read(name));
    return w;
  }
  const TensorMap tensors = read_safetensors_dir(dir);
  w.state = naming(dir, [&] { return models::from_hf_tensors(w.config, tensors); });
  return w;
}

void save_hf(const fs::path& dir_arg, const models::ModelConfig& config, const std::map<std::string, Tensor>& state, bool overwrite) {
  const fs::path dir = dir_arg.has_filename() ? dir_arg : dir_arg.parent_path();  // "out/" -> "out"
  if (fs::exists(dir)) {
    LOOM_CHECK(fs::is_directory(dir), "hf: {} exists and is not a directory", dir.string());
    LOOM_CHECK(overwrite || fs::is_empty(dir), "hf: {} exists and is not empty (ask to overwrite it to replace it)", dir.string());
  }
  // Convert (and so validate) everything before touching the disk.
  const TensorMap hf = models::to_hf_tensors(config, state);
  const std::string config_text = models::hf_config_json(config).dump(2) + "\n";

  const fs::path tmp = temp_path_for(dir);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  LOOM_CHECK(!ec, "hf: cannot create {}: {}", tmp.string(), ec.message());
  try {
    write_safetensors(tmp / "model.safetensors", hf, {{"format", "pt"}});
    AtomicFile file(tmp / "config.json");
    file.write(config_text);
    file.commit();
    install_dir(tmp, dir);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace loom::io
