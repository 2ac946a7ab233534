// The training loop.
#include "loom/train/trainer.h"

#include "loom/io/peft.h"
#include "loom/tokenizer/config.h"

#include <omp.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "loom/autograd/function.h"
#include "loom/data/sft.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/io/llmc.h"
#include "loom/io/sharded_checkpoint.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/nn.h"
#include "loom/quant/linear.h"
#include "loom/train/resources.h"

namespace loom::train {

namespace {

std::atomic<int> g_signal{0};
void on_signal(int sig) { g_signal = sig; }

// The targets of a batch that take part in the loss, on this rank.
int64_t trained_targets(const data::Batch& b) {
  int64_t n = 0;
  for (int64_t t : b.targets.to_ints()) n += t != -100;
  return n;
}

std::string format_eta(double secs) {
  const auto s = int64_t(secs);
  return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
}

}  // namespace

ModelBuild build_model(const TrainConfig& cfg) {
  const std::string& init = cfg.model_init;
  if (init.empty()) {
    models::ModelConfig mc = models::preset(cfg.model_preset);
    if (cfg.vocab_size > 0) {
      mc.vocab_size = cfg.vocab_size;
      mc.padded_vocab = mc.family == "gpt2" ? models::pad_vocab(cfg.vocab_size) : cfg.vocab_size;
    }
    if (cfg.n_layer > 0) mc.n_layer = cfg.n_layer;
    const uint64_t seed = cfg.seed;
    return {std::make_unique<nn::TransformerLM>(mc, true),
            [seed](nn::TransformerLM& m, const nn::TransformerLM::PlaceFn& place) { m.init(seed, place); }};
  }
  const size_t colon = init.find(':');
  const std::string kind = colon == std::string::npos ? "" : init.substr(0, colon), path = init.substr(colon + 1);
  LOOM_CHECK(kind == "llmc" || kind == "hf", "config: model.init '{}' must be llmc:FILE or hf:DIR", init);
  auto check = [&](const models::ModelConfig& c) {
    LOOM_CHECK(cfg.vocab_size == 0 || cfg.vocab_size == c.vocab_size, "config: model.vocab_size {} differs from {}'s vocabulary of {}",
               cfg.vocab_size, init, c.vocab_size);
    LOOM_CHECK(cfg.n_layer == 0 || cfg.n_layer == c.n_layer, "config: model.n_layer {} differs from {}'s {} layers", cfg.n_layer, init,
               c.n_layer);
  };
  if (kind == "hf") {
    io::WeightSource src = io::open_weights(path);
    check(src.config);
    auto block = src.block;
    return {std::make_unique<nn::TransformerLM>(src.config, true),
            [block](nn::TransformerLM& m, const nn::TransformerLM::PlaceFn& place) {
              m.materialize(place, [&](const std::string& name, const Shape&, const Shape& offset, const Shape& box) {
                return block(name, offset, box);
              });
            }};
  }
  io::ModelWeights w = io::read_llmc(path);
  check(w.config);
  auto model = std::make_unique<nn::TransformerLM>(w.config);
  model->load_state_dict(w.state);
  return {std::move(model), nullptr};
}

int64_t whole_parameters(const nn::TransformerLM& model) { return nn::TransformerLM(model.config(), true).num_parameters(); }

double flops_per_token(const nn::TransformerLM& model, int64_t T) {
  const auto& c = model.config();
  return 6.0 * double(whole_parameters(model)) + 6.0 * double(c.n_layer) * double(c.n_head * c.head_dim) * double(T);
}

Trainer::Trainer(TrainConfig cfg, bool resume, std::shared_ptr<dist::Group> world, Task task) : cfg_(std::move(cfg)), world_(std::move(world)) {
  const int threads = cfg_.threads > 0 ? int(cfg_.threads) : threads_per_rank();
  omp_set_num_threads(threads);
  world_->set_timeout_s(cfg_.timeout_s);
  const int tp = int(cfg_.tp), pp = int(cfg_.pp);
  LOOM_CHECK(cfg_.dp > 0 || world_->size() % (tp * pp) == 0, "config: parallel.tp × parallel.pp = {} × {} does not divide the {} ranks of the job",
             tp, pp, world_->size());
  mesh_ = std::make_unique<dist::Mesh>(world_, dist::ParallelDims{cfg_.dp > 0 ? int(cfg_.dp) : world_->size() / (tp * pp), tp, pp});
  main_rank_ = world_->rank() == 0;
  ModelBuild built = build_model(cfg_);  // filled by parallelize once cut up, unless read whole
  model_ = std::move(built.model);
  if (cfg_.lora_r > 0 || !cfg_.adapter.empty() || !cfg_.trainable.empty()) {
    // Adapters, quantisation and freezing act on the whole model, before tensor and pipeline parallelism cut it up.
    if (built.materialize) {
      built.materialize(*model_, [](const std::string&, const Tensor& p) { return nn::TransformerLM::Placement{p.shape(), Shape(p.shape().size(), 0)}; });
      built.materialize = nullptr;
    }
    // QLoRA: the base's linears quantised first (deterministic: a resumed run rebuilds the same
    // base), then LoRA wraps them.
    if (!cfg_.quant_base.empty()) nn::quantize_base(*model_, cfg_.quant_base);
    if (!cfg_.adapter.empty()) {
      lora_ = io::read_adapter_config(cfg_.adapter);
      io::load_adapter(cfg_.adapter, *model_, cfg_.seed);
    } else if (cfg_.lora_r > 0) {
      lora_ = {.r = cfg_.lora_r, .alpha = cfg_.lora_alpha, .dropout = cfg_.lora_dropout, .targets = cfg_.lora_targets, .rslora = cfg_.lora_rslora};
      nn::apply_lora(*model_, lora_, cfg_.seed);
    } else {
      nn::freeze_all_but(*model_, cfg_.trainable);
    }
  }
  LOOM_CHECK(cfg_.seq_len <= model_->config().max_seq_len, "config: training.seq_len {} exceeds the model's max_seq_len {}", cfg_.seq_len,
             model_->config().max_seq_len);
  flops_per_token_ = flops_per_token(*model_, cfg_.seq_len);  // of the whole model
  params_ = whole_parameters(*model_);
  parallel::ParallelConfig pc;
  pc.materialize = built.materialize;
  pc.sequence_parallel = cfg_.sequence_parallel;
  pc.recompute = cfg_.recompute == "blocks";
  pc.pipeline = {cfg_.pp_schedule, int(cfg_.virtual_stages), cfg_.pp_layout};
  pc.data = {int(cfg_.zero), cfg_.bucket_mb, {cfg_.lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay}};
  par_ = parallel::parallelize(*model_, *mesh_, pc);
  make_loaders(task);
  const PeakFlops peak = cpu_peak_flops(threads);
  peak_flops_ = cfg_.peak_flops > 0 ? cfg_.peak_flops : dist::all_reduce_value(*world_, peak.flops);
  if (main_rank_)
    fmt::print("MFU is relative to {:.0f} GFLOP/s ({})\n", peak_flops_ / 1e9,
               cfg_.peak_flops > 0 ? "logging.peak_flops" : world_->size() == 1 ? peak.how : fmt::format("summed over {} ranks of {}", world_->size(), peak.how));
  if (resume) {
    LOOM_CHECK(!cfg_.checkpoint_dir.empty(), "config: --resume needs checkpoint.dir");
    if (auto dir = latest_checkpoint(cfg_.checkpoint_dir, *world_)) {
      TrainState s = load_checkpoint(*dir, *model_, par_->data());
      start_step_ = s.step;
      best_ = s.best;
      train_->set_consumed(s.consumed_samples);
      if (main_rank_) {
        fmt::print("resumed from {} (step {}, {} sequences consumed)\n", *dir, s.step, s.consumed_samples);
        if (s.global_batch != global_batch())
          fmt::print("the global batch changed from {} to {} sequences per step; the data continues from sequence {}\n", s.global_batch,
                     global_batch(), s.consumed_samples);
      }
    } else if (main_rank_) {
      fmt::print("no checkpoint in {}; starting from scratch\n", cfg_.checkpoint_dir);
    }
  }
}

void Trainer::make_loaders(Task task) {
  const int64_t V = model_->config().vocab_size, part = mesh_->coords().dp, parts = mesh_->dims().dp, B = cfg_.batch_size, T = cfg_.seq_len;
  auto loader = [&](std::shared_ptr<const data::Sequences> seqs, const std::string& key, bool shuffle, data::Replay replay = {}) {
    return std::make_unique<data::DataLoader>(std::move(seqs), key, B, shuffle, cfg_.seed, part, parts, std::move(replay));
  };
  data::Replay replay;
  if (!cfg_.replay.empty()) replay = {data::shard_windows(cfg_.replay, "data.replay", T, V), cfg_.replay_fraction};
  for (const auto& [key, path] : {std::pair{"data.train", cfg_.data_train}, std::pair{"data.val", cfg_.data_val}}) {
    const bool jsonl = std::filesystem::path(path).extension() == ".jsonl";
    LOOM_CHECK(path.empty() || jsonl == (task == Task::sft), "config: {} '{}': {}", key, path,
               jsonl ? "loom train reads token shards (loom prepare makes them from JSON Lines); loom sft reads JSON Lines examples"
                     : "loom sft reads JSON Lines examples (a .jsonl file); loom train reads token shards");
  }
  if (task == Task::pretrain) {
    train_ = loader(data::shard_windows(cfg_.data_train, "data.train", T, V), "data.train", cfg_.data_shuffle, replay);
    if (!cfg_.data_val.empty()) val_ = loader(data::shard_windows(cfg_.data_val, "data.val", T, V), "data.val", false);
  } else {
    const std::string model_dir = cfg_.model_init.starts_with("hf:") ? cfg_.model_init.substr(3) : "";
    const std::string tok_path = cfg_.tokenizer.empty() ? model_dir : cfg_.tokenizer;
    LOOM_CHECK(!tok_path.empty(), "config: model.tokenizer is not set, and model.init is not hf:DIR (whose tokenizer would be used)");
    const data::SftTokenizer tok = data::load_sft_tokenizer(tok_path, model_dir.empty() ? tok_path : model_dir);
    const data::SftOptions options{cfg_.sft_train_on, cfg_.sft_packing, cfg_.sft_truncation, T};
    auto examples = [&](const std::string& key, const std::string& path) {
      data::SftStats st;
      auto seqs = data::sft_sequences(path, key, tok, options, V, &st);
      if (main_rank_)
        fmt::print("{}: {} examples -> {} sequences of {} ({}), {} trained tokens of {}; {} truncated, {} dropped as too long, {} dropped "
                   "without a trained token\n",
                   key, st.examples, st.sequences, T, cfg_.sft_packing ? "packed" : "padded", st.trained_tokens, st.tokens, st.truncated,
                   st.too_long, st.untrained);
      return seqs;
    };
    train_ = loader(examples("data.train", cfg_.data_train), "data.train", cfg_.data_shuffle, replay);
    if (!cfg_.data_val.empty()) val_ = loader(examples("data.val", cfg_.data_val), "data.val", false);
  }
  if (!cfg_.eval_base.empty()) base_ = loader(data::shard_windows(cfg_.eval_base, "eval.base", T, V), "eval.base", false);
}

double Trainer::evaluate(data::DataLoader& loader) {
  loader.reset();
  std::vector<data::Batch> batches;
  int64_t counted = 0;
  for (int64_t i = 0; i < cfg_.eval_batches; ++i) {
    batches.push_back(loader.next());
    counted += trained_targets(batches.back());
  }
  const double sum = dist::all_reduce_value(*mesh_->dp(), par_->evaluate(batches));
  return sum / std::max(1.0, dist::all_reduce_value(*mesh_->dp(), double(counted)));
}

int Trainer::run() {
  g_signal = 0;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGUSR1, on_signal);  // what mpirun forwards to its ranks without killing them
  std::ofstream metrics;
  if (!cfg_.metrics.empty() && main_rank_) {
    const std::filesystem::path parent = std::filesystem::path(cfg_.metrics).parent_path();
    std::error_code ec;  // its directory is made, as checkpoint.dir is; a failure is the open's error below
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    metrics.open(cfg_.metrics, start_step_ > 0 ? std::ios::app : std::ios::trunc);
    LOOM_CHECK(metrics.good(), "config: cannot open logging.metrics file {}", cfg_.metrics);
  }
  const auto& mc = model_->config();
  const double fpt = flops_per_token_;
  const int64_t tokens_per_step = global_batch() * cfg_.seq_len;
  optim::Schedule sched{cfg_.schedule, cfg_.lr, cfg_.min_lr_ratio, cfg_.warmup_steps, cfg_.steps};
  if (main_rank_)
    fmt::print("model {} ({} layers, C={}, {:.2f}M params), {} tokens/step over {} data-parallel ranks{}, {} steps\n",
               cfg_.model_init.empty() ? cfg_.model_preset : cfg_.model_init, mc.n_layer, mc.n_embd, double(params_) / 1e6, tokens_per_step,
               mesh_->dims().dp,
               (mesh_->dims().tp > 1 ? fmt::format(" × {} tensor-parallel", mesh_->dims().tp) : "") +
                   (mesh_->dims().pp > 1 ? fmt::format(" × {} pipeline stages ({})", mesh_->dims().pp, cfg_.pp_schedule) : ""),
               cfg_.steps);
  int64_t saved = start_step_;  // the newest step on disk (a resumed run's is already there)
  auto save = [&](int64_t step) {
    if (cfg_.checkpoint_dir.empty() || step == saved) return;
    // The checkpoint keeps the tokenizer files of the Hugging Face directory it started from and
    // of model.tokenizer beside the weights (generate and eval need only --model).
    auto extra = [&](const std::filesystem::path& dir) {
      if (lora_.r > 0) {  // the whole adapter (what trains), from the shards just written: ZeRO-3, tp and pp leave a part on each rank
        const io::ShardedCheckpoint ck(dir);
        std::map<std::string, Tensor> adapter;
        for (const auto& [name, shape] : ck.shapes())
          if (name.starts_with("param.")) adapter[name.substr(6)] = ck.read(name);
        io::save_adapter(dir, model_->config(), adapter, lora_, cfg_.model_init);
      }
      if (cfg_.model_init.starts_with("hf:")) tokenizer::copy_tokenizer_files(cfg_.model_init.substr(3), dir);
      if (!cfg_.tokenizer.empty())
        tokenizer::copy_tokenizer_files(std::filesystem::is_directory(cfg_.tokenizer) ? std::filesystem::path(cfg_.tokenizer)
                                                                                       : std::filesystem::path(cfg_.tokenizer).parent_path(),
                                        dir);
    };
    save_checkpoint(cfg_.checkpoint_dir, *model_, par_->data(), *mesh_, {step, 0, train_->consumed(), global_batch(), to_toml(cfg_), best_},
                    cfg_.checkpoint_keep, extra);
    saved = step;
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = start_step_ + 1; step <= cfg_.steps; ++step) {
    const auto ts = std::chrono::steady_clock::now();
    std::vector<data::Batch> micro;
    int64_t counted = 0;
    for (int64_t i = 0; i < cfg_.grad_accum; ++i) {
      micro.push_back(train_->next());
      counted += trained_targets(micro.back());
    }
    counted = int64_t(dist::all_reduce_value(*mesh_->dp(), double(counted)));  // tp ranks see the same tokens
    // Each micro-batch contributes its summed loss over the step's total token count, so the
    // accumulated gradient is that of the mean over the whole step (all ranks' tokens).
    const double loss = dist::all_reduce_value(*mesh_->dp(), par_->forward_backward(micro, 1.0 / double(std::max<int64_t>(counted, 1))));
    const double norm = par_->data().clip_grad_norm(cfg_.grad_clip);
    const double lr = sched.at(step);
    par_->data().step(lr);
    par_->data().zero_grad();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
    const double tps = double(tokens_per_step) / dt;
    nlohmann::json rec = {{"step", step}, {"loss", loss}, {"lr", lr}, {"grad_norm", norm}, {"tokens_per_s", tps}, {"mfu", fpt * tps / peak_flops_}};
    std::string val_text;
    bool improved = false;
    if (val_ && cfg_.eval_every > 0 && (step % cfg_.eval_every == 0 || step == cfg_.steps)) {
      const double vl = evaluate(*val_);
      rec["val_loss"] = vl;
      val_text = fmt::format("  val {:.4f}", vl);
      if (base_) {
        const double bl = evaluate(*base_);
        rec["base_loss"] = bl;
        rec["base_ppl"] = std::exp(bl);
        val_text += fmt::format("  base ppl {:.2f}", std::exp(bl));
      }
      improved = best_.step == 0 || vl < best_.val_loss;
      best_ = improved ? TrainState::Best{step, vl, 0} : TrainState::Best{best_.step, best_.val_loss, best_.evals_since + 1};
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double eta = elapsed / double(step - start_step_) * double(cfg_.steps - step);
    if (main_rank_)
      fmt::print("step {:>5}/{}  loss {:.4f}{}  lr {:.2e}  norm {:.3f}  {:.0f} tok/s  MFU {:.1f}%  ETA {}\n", step, cfg_.steps, loss, val_text, lr,
               norm, tps, 100.0 * fpt * tps / peak_flops_, format_eta(eta));
    std::fflush(stdout);
    if (metrics.is_open()) metrics << rec.dump() << "\n" << std::flush;
    if (cfg_.checkpoint_every > 0 && step % cfg_.checkpoint_every == 0 && step != cfg_.steps) save(step);
    if (cfg_.eval_patience > 0 && improved && !cfg_.checkpoint_dir.empty()) {  // the best so far is kept
      save(step);
      if (main_rank_) mark_best(cfg_.checkpoint_dir, step);
    }
    if (cfg_.eval_patience > 0 && best_.evals_since >= cfg_.eval_patience) {
      if (main_rank_)
        fmt::print("stopping early at step {}: the validation loss has not improved for {} evaluations; the best was {:.4f} at step {}{}\n",
                   step, best_.evals_since, best_.val_loss, best_.step,
                   cfg_.checkpoint_dir.empty() ? "" : fmt::format(" ({}/best)", cfg_.checkpoint_dir));
      return 0;
    }
    if (dist::all_reduce_value(*world_, g_signal != 0 ? 1.0 : 0.0) > 0) {  // every rank stops at the same step
      save(step);
      if (main_rank_)
        fmt::print("stopped by signal {} at step {}{}\n", int(g_signal), step, cfg_.checkpoint_dir.empty() ? "" : "; checkpoint saved");
      return 0;
    }
  }
  if (cfg_.steps > start_step_) save(cfg_.steps);  // a run resumed past its end saves nothing
  return 0;
}

}  // namespace loom::train
