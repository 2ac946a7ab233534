// Fuzzes Hugging Face config.json -> ModelConfig, read as load_hf reads it. A config it accepts
// must survive the trip back to config.json and in again unchanged (checkpoints compare
// configs this way).
#include "fuzz/harness.h"
#include "loom/io/file_util.h"
#include "loom/models/hf_names.h"

void loom::fuzz::one_input(std::string_view input) {
  const models::ModelConfig c = models::config_from_hf_json(io::parse_json(input, "config.json"));
  const nlohmann::json j = models::hf_config_json(c);
  expect(must_accept([&] { return models::hf_config_json(models::config_from_hf_json(j)); }) == j, "config.json does not round-trip");
}
