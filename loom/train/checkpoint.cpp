// Checkpoint writing (atomic rename), discovery and loading.
#include "loom/train/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "loom/io/file_util.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/io/safetensors.h"
#include "loom/models/hf_names.h"
#include "loom/ops/elementwise.h"

namespace loom::train {

namespace fs = std::filesystem;

namespace {

std::string step_name(int64_t step) { return fmt::format("step_{:08d}", step); }

std::map<std::string, Tensor> optimizer_tensors(const nn::TransformerLM& model, optim::AdamW& opt) {
  std::map<std::string, Tensor> out;
  auto named = model.named_parameters();
  for (size_t i = 0; i < named.size(); ++i) {
    out.emplace("exp_avg." + named[i].first, opt.exp_avg()[i]);
    out.emplace("exp_avg_sq." + named[i].first, opt.exp_avg_sq()[i]);
  }
  return out;
}

void write_text(const fs::path& path, const std::string& text) {
  io::AtomicFile f(path);
  f.write(text);
  f.commit();
}

// step_* directories under root that carry COMPLETE, oldest first (the names sort by step).
std::vector<fs::path> complete_checkpoints(const std::string& root) {
  std::vector<fs::path> out;
  if (!fs::is_directory(root)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind("step_", 0) == 0 && name.find(".tmp.") == std::string::npos && fs::exists(e.path() / "COMPLETE"))
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::string save_checkpoint(const std::string& root, const nn::TransformerLM& model, optim::AdamW& opt, const TrainState& state,
                            int64_t keep) {
  fs::create_directories(root);
  const fs::path final_dir = fs::path(root) / step_name(state.step);
  const fs::path tmp = io::temp_path_for(final_dir);
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  // The model part is a plain Hugging Face directory (config.json + model.safetensors), so a
  // checkpoint loads anywhere an HF model does.
  write_text(tmp / "config.json", models::hf_config_json(model.config()).dump(2));
  io::write_safetensors((tmp / "model.safetensors").string(), models::to_hf_tensors(model.config(), model.state_dict()), {{"format", "pt"}});
  io::write_safetensors((tmp / "optimizer.safetensors").string(), optimizer_tensors(model, opt), {{"format", "loom"}});
  nlohmann::json js = {{"step", state.step},
                       {"optimizer_steps", opt.steps()},
                       {"loader", {{"epoch", state.loader.epoch}, {"index", state.loader.index}}},
                       {"config", state.config_toml}};
  write_text(tmp / "train_state.json", js.dump(2));
  write_text(tmp / "COMPLETE", "");
  if (fs::exists(final_dir)) fs::remove_all(final_dir);  // a same-step checkpoint from an earlier run
  fs::rename(tmp, final_dir);

  std::vector<fs::path> complete = complete_checkpoints(root);
  for (size_t i = 0; i + size_t(keep) < complete.size(); ++i) fs::remove_all(complete[i]);
  return final_dir.string();
}

std::optional<std::string> latest_checkpoint(const std::string& root) {
  std::vector<fs::path> complete = complete_checkpoints(root);
  if (complete.empty()) return std::nullopt;
  return complete.back().string();
}

TrainState load_checkpoint(const std::string& dir, nn::TransformerLM& model, optim::AdamW& opt) {
  LOOM_CHECK(fs::exists(fs::path(dir) / "COMPLETE"), "checkpoint: {} is incomplete (no COMPLETE marker)", dir);
  io::ModelWeights w = io::load_hf(dir);
  const nlohmann::json have = models::hf_config_json(w.config), want = models::hf_config_json(model.config());
  LOOM_CHECK(have == want, "checkpoint {} holds a different model: {} (this run: {})", dir, have.dump(), want.dump());
  model.load_state_dict(w.state);
  auto opt_state = io::read_safetensors((fs::path(dir) / "optimizer.safetensors").string());
  auto named = model.named_parameters();
  for (size_t i = 0; i < named.size(); ++i) {
    for (auto [prefix, dst] : {std::pair{"exp_avg.", opt.exp_avg()[i]}, std::pair{"exp_avg_sq.", opt.exp_avg_sq()[i]}}) {
      auto it = opt_state.find(prefix + named[i].first);
      LOOM_CHECK(it != opt_state.end() && it->second.shape() == dst.shape() && it->second.dtype() == DType::f32,
                 "checkpoint {}: optimizer state {}{} is missing or has the wrong shape", dir, prefix, named[i].first);
      Tensor d = dst;
      ops::copy_(d, it->second);
    }
  }
  const fs::path state_file = fs::path(dir) / "train_state.json";
  TrainState s;
  try {
    nlohmann::json js = io::parse_json(io::read_text_file(state_file), state_file.string());
    s.step = js.at("step").get<int64_t>();
    s.loader = {js.at("loader").at("epoch").get<int64_t>(), js.at("loader").at("index").get<int64_t>()};
    s.config_toml = js.at("config").get<std::string>();
    opt.set_steps(js.at("optimizer_steps").get<int64_t>());
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("checkpoint: {}/train_state.json is corrupt: {}", dir, e.what()));
  }
  return s;
}

}  // namespace loom::train
