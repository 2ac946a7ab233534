// Fuzzes a checkpoint's train_state.json. A state it accepts must write back to the same
// state, and a data loader must resume from its position as the trainer does.
#include "fuzz/harness.h"
#include "loom/data/loader.h"
#include "loom/train/checkpoint.h"

void loom::fuzz::one_input(std::string_view input) {
  const train::TrainState s = train::parse_train_state(std::string(input), "train_state.json");
  const train::TrainState back = must_accept([&] { return train::parse_train_state(train::train_state_json(s), "written"); });
  expect(back.step == s.step && back.optimizer_steps == s.optimizer_steps && back.consumed_samples == s.consumed_samples &&
             back.global_batch == s.global_batch && back.config_toml == s.config_toml,
         "train_state.json does not round-trip");
  static const std::string shard = [] {
    const std::string path = write_file("train.bin", "");
    data::write_shard(path, std::vector<uint32_t>(64, 7), false);
    return path;
  }();
  data::DataLoader loader(shard, "fuzz", 2, 3, true, 1, 8, 1, 2);
  loader.set_consumed(s.consumed_samples);
  loader.next();
}
