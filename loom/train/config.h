// The training configuration: every key `loom train` accepts, its default, and the parser
// for TOML files and `--section.key=value` overrides. Unknown keys and bad values are errors
// that name the key (and the file).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom::train {

struct TrainConfig {
  // [model]
  std::string model_preset = "gpt2-tiny";
  std::string model_init;  // "" (random) | llmc:FILE | hf:DIR
  int64_t vocab_size = 0;  // 0 = the preset's; else resized to match a tokenizer
  int64_t n_layer = 0;     // 0 = the preset's; else that many blocks
  std::string adapter;     // a PEFT LoRA adapter directory to continue training (its settings replace [lora])
  std::string tokenizer;   // a tokenizer file or directory (loom sft); "" = model.init's directory
  // [data] (loom sft: JSON Lines examples; loom train: token shards)
  std::string data_train, data_val;
  bool data_shuffle = false;
  std::string replay;           // token shards mixed into training against forgetting; "" = none
  double replay_fraction = 0;   // of the sequences of each step that come from data.replay
  // [sft]
  std::string sft_train_on = "assistant";   // "assistant" | "last_assistant" | "all"
  bool sft_packing = false;
  std::string sft_truncation = "truncate";  // "truncate" | "drop"

  // [training]
  int64_t steps = 100, batch_size = 4, seq_len = 64, grad_accum = 1, threads = 0;  // threads 0 = the rank's share of the cores
  uint64_t seed = 1337;
  std::string recompute = "none";  // "none" | "blocks": activation recompute of each transformer block
  std::vector<std::string> trainable;  // parameter patterns to train ("layers.11", "norm"); empty = all
  // [lora] (r = 0: none). PEFT's LoRA on the Hugging Face modules named in targets.
  int64_t lora_r = 0;
  double lora_alpha = 16, lora_dropout = 0;
  std::vector<std::string> lora_targets = {"all-linear"};
  bool lora_rslora = false;
  // [quant] QLoRA: the frozen base's linears (all but the head) stored as "nf4" or "int8"; "" = float.
  std::string quant_base;
  // [optimizer]
  double lr = 6e-4, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, grad_clip = 1.0;
  std::string schedule = "cosine";
  int64_t warmup_steps = 0;
  double min_lr_ratio = 0.1;
  // [checkpoint]
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0, checkpoint_keep = 3;
  // [parallel], [dist]
  int64_t dp = 0;           // data-parallel ranks; 0 = the world size over tp
  int64_t tp = 1;           // tensor-parallel ranks (neighbouring ranks form a tp group)
  bool sequence_parallel = false;  // with tp: norms and residuals on T/tp positions per rank
  int64_t pp = 1;                  // pipeline stages (the slowest mesh dimension)
  std::string pp_schedule = "1f1b";  // "gpipe" | "1f1b" | "interleaved"
  int64_t virtual_stages = 1;      // model chunks per stage (interleaved)
  std::vector<int64_t> pp_layout;  // layers per stage; empty: even
  int64_t zero = 0;         // ZeRO stage (0 = DDP)
  double bucket_mb = 25.0;  // DDP bucket size
  double timeout_s = 300.0; // a collective slower than this aborts the job
  // [logging]
  std::string metrics;     // JSONL path, "" = none
  double peak_flops = 0;   // FLOP/s of all ranks together that MFU is relative to; 0 = derived from the CPU
  // [eval]
  int64_t eval_every = 0, eval_batches = 10;
  std::string eval_base;     // pre-training validation shards whose loss and perplexity are logged at each eval
  int64_t eval_patience = 0; // stop when the validation loss has not improved for this many evals (0 = never)
};

// Defaults, then the TOML file (if path non-empty), then each "section.key=value" override.
TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides);
// The same from TOML text; origin names it in error messages.
TrainConfig parse_config(const std::string& toml_text, const std::string& origin, const std::vector<std::string>& overrides);
// The config as TOML text (saved inside checkpoints).
std::string to_toml(const TrainConfig& c);
void validate(const TrainConfig& c);

}  // namespace loom::train
