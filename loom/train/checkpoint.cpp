// Checkpoint writing (atomic rename), discovery and loading.
#include "loom/train/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "loom/io/file_util.h"
#include "loom/io/sharded_checkpoint.h"
#include "loom/models/hf_names.h"

namespace loom::train {

namespace fs = std::filesystem;

namespace {

std::string step_name(int64_t step) { return fmt::format("step_{:08d}", step); }

void write_text(const fs::path& path, const std::string& text) {
  io::AtomicFile f(path);
  f.write(text);
  f.commit();
}

// step_NNNNNNNN directories under root that carry COMPLETE, oldest first (the names sort by step).
std::vector<fs::path> complete_checkpoints(const std::string& root) {
  std::vector<fs::path> out;
  if (!fs::is_directory(root)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    const bool step_dir = name.size() == step_name(0).size() && name.rfind("step_", 0) == 0 &&
                          std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (e.is_directory() && step_dir && fs::exists(e.path() / "COMPLETE"))
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Runs filesystem work, reporting its failure as bad input that names the checkpoint root.
template <typename F>
void on_disk(const std::string& root, F&& f) {
  try {
    f();
  } catch (const fs::filesystem_error& e) {
    throw Error(fmt::format("checkpoint.dir {}: {}", root, e.what()));
  }
}

}  // namespace

std::string save_checkpoint(const std::string& root, const nn::TransformerLM& model, const parallel::DataParallel& dp,
                            const dist::Mesh& mesh, const TrainState& state, int64_t keep,
                            const std::function<void(const fs::path&)>& extra) {
  dist::Group& group = *mesh.world();
  const fs::path final_dir = fs::path(root) / step_name(state.step);
  const fs::path tmp = fs::path(root) / (step_name(state.step) + ".tmp.partial");  // one name for every rank
  if (group.rank() == 0)
    on_disk(root, [&] {
      fs::create_directories(root);
      fs::remove_all(tmp);
      fs::create_directories(tmp);
    });
  group.barrier()->wait();
  const auto mine = dp.checkpoint_state();
  if (!mine.empty()) io::write_rank_shard(tmp, group.rank(), mine);
  // Rank 0 learns what every rank wrote (pipeline stages hold different tensors).
  nlohmann::json written = {{"shapes", dp.checkpoint_shapes()}, {"slices", nlohmann::json::array()}};
  for (const auto& [slice, data] : mine)
    written["slices"].push_back({slice.name, slice.begin, slice.end, slice.offset, slice.box});
  const std::vector<std::string> all = dist::all_gather_text(group, written.dump());
  group.barrier()->wait();
  if (group.rank() == 0) {
    std::map<std::string, Shape> shapes;
    std::vector<std::vector<io::FlatSlice>> owned;
    for (const std::string& text : all) {
      const nlohmann::json j = nlohmann::json::parse(text);
      for (const auto& [name, shape] : j["shapes"].items()) {
        auto [it, added] = shapes.emplace(name, shape.get<Shape>());
        LOOM_CHECK(it->second == shape.get<Shape>(), "checkpoint: ranks disagree on the shape of {}", name);
      }
      owned.emplace_back();
      for (const nlohmann::json& e : j["slices"])
        owned.back().push_back({e[0].get<std::string>(), e[1].get<int64_t>(), e[2].get<int64_t>(), e[3].get<Shape>(), e[4].get<Shape>()});
    }
    io::write_shard_index(tmp, shapes, owned,
                          {{"dp", mesh.dims().dp}, {"tp", mesh.dims().tp}, {"pp", mesh.dims().pp}, {"zero", dp.zero_stage()}});
    write_text(tmp / "config.json", models::hf_config_json(model.config()).dump(2));
    TrainState s = state;
    s.optimizer_steps = dp.optimizer_steps();
    write_text(tmp / "train_state.json", train_state_json(s));
    if (extra) extra(tmp);
    write_text(tmp / "COMPLETE", "");
    on_disk(root, [&] {
      // A same-step checkpoint of an earlier run is set aside, not deleted, until the new one is in place.
      const fs::path old = fs::path(root) / (step_name(state.step) + ".tmp.old");
      fs::remove_all(old);
      if (fs::exists(final_dir)) fs::rename(final_dir, old);
      fs::rename(tmp, final_dir);
      fs::remove_all(old);
    });
  }
  group.barrier()->wait();
  if (group.rank() == 0)  // after the barrier: the other ranks need not wait for the deletions
    on_disk(root, [&] {
      std::vector<fs::path> complete = complete_checkpoints(root);
      const fs::path best = fs::is_symlink(fs::path(root) / "best") ? fs::path(root) / fs::read_symlink(fs::path(root) / "best") : fs::path();
      for (size_t i = 0; i + size_t(keep) < complete.size(); ++i)
        if (complete[i] != best) fs::remove_all(complete[i]);
      for (const auto& e : fs::directory_iterator(root)) {  // left by a save that crashed
        const std::string name = e.path().filename().string();
        if (name.rfind("step_", 0) == 0 && name.find(".tmp.") != std::string::npos) fs::remove_all(e.path());
      }
    });
  return final_dir.string();
}

void mark_best(const std::string& root, int64_t step) {
  on_disk(root, [&] {
    const fs::path link = fs::path(root) / "best", tmp = fs::path(root) / "best.tmp";
    fs::remove(tmp);
    fs::create_directory_symlink(step_name(step), tmp);
    fs::rename(tmp, link);
  });
}

std::optional<std::string> latest_checkpoint(const std::string& root, dist::Group& group) {
  int64_t step = -1;
  if (group.rank() == 0) {
    std::vector<fs::path> complete = complete_checkpoints(root);
    if (!complete.empty()) step = std::stoll(complete.back().filename().string().substr(5));
  }
  Tensor t = Tensor::full({1}, double(step), DType::i64);
  group.broadcast(t, 0)->wait();
  step = int64_t(t.item());
  if (step < 0) return std::nullopt;
  return (fs::path(root) / step_name(step)).string();
}

TrainState load_checkpoint(const std::string& dir, const nn::TransformerLM& model, parallel::DataParallel& dp) {
  LOOM_CHECK(fs::exists(fs::path(dir) / "COMPLETE"), "checkpoint: {} is incomplete (no COMPLETE marker)", dir);
  const fs::path config_file = fs::path(dir) / "config.json";
  const nlohmann::json have = io::parse_json(io::read_text_file(config_file), config_file.string());
  const nlohmann::json want = models::hf_config_json(model.config());
  LOOM_CHECK(models::hf_config_json(models::config_from_hf_json(have)) == want, "checkpoint {} holds a different model: {} (this run: {})",
             dir, have.dump(), want.dump());
  const fs::path state_file = fs::path(dir) / "train_state.json";
  TrainState s = parse_train_state(io::read_text_file(state_file), state_file.string());
  dp.load(io::ShardedCheckpoint(dir));
  dp.set_optimizer_steps(s.optimizer_steps);
  return s;
}

std::string train_state_json(const TrainState& s) {
  nlohmann::json j = {{"step", s.step},
                        {"optimizer_steps", s.optimizer_steps},
                        {"consumed_samples", s.consumed_samples},
                        {"global_batch", s.global_batch},
                        {"config", s.config_toml}};
  if (s.best.step > 0) j["best"] = {{"step", s.best.step}, {"val_loss", s.best.val_loss}, {"evals_since", s.best.evals_since}};
  return j.dump(2);
}

TrainState parse_train_state(const std::string& text, const std::string& origin) {
  const nlohmann::json js = io::parse_json(text, origin);
  LOOM_CHECK(js.is_object(), "checkpoint: {} is not a JSON object", origin);
  LOOM_CHECK(!js.contains("loader") || js.contains("consumed_samples"),
             "checkpoint: {} was written by an older Loom (its data position counts micro-batches, not sequences); it cannot be "
             "resumed, but its weights load with model.init = \"hf:DIR\"", origin);
  auto count = [&](const nlohmann::json& o, const char* key) {
    LOOM_CHECK(o.contains(key) && o[key].is_number_integer() && o[key].get<int64_t>() >= 0,
               "checkpoint: {}: field '{}' must be a non-negative integer, got {}", origin, key, o.contains(key) ? o[key].dump() : "nothing");
    return o[key].get<int64_t>();
  };
  TrainState s;
  s.step = count(js, "step");
  s.optimizer_steps = count(js, "optimizer_steps");
  s.consumed_samples = count(js, "consumed_samples");
  s.global_batch = count(js, "global_batch");
  if (js.contains("best")) {
    const nlohmann::json& b = js["best"];
    LOOM_CHECK(b.is_object() && b.contains("val_loss") && b["val_loss"].is_number(),
               "checkpoint: {}: field 'best' must be {{\"step\", \"val_loss\", \"evals_since\"}}, got {}", origin, b.dump());
    s.best = {count(b, "step"), b["val_loss"].get<double>(), count(b, "evals_since")};
  }
  LOOM_CHECK(js.contains("config") && js["config"].is_string(), "checkpoint: {}: field 'config' must be a string", origin);
  s.config_toml = js["config"].get<std::string>();
  return s;
}

}  // namespace loom::train
