// Config parsing: one table maps every key to its field, so TOML files, overrides and the
// TOML dump all agree on the set of keys.
#include "loom/train/config.h"

// toml++ 3.3 asserts on some keys (a table header `[/x]`) that its parser goes on to reject with
// a proper parse error; the assertion would abort `loom train` on a bad config instead. This file
// is the only one that includes toml++, so its checks are off consistently.
#define TOML_ASSERT(expr) static_assert(true)
#include <toml++/toml.h>

#include <functional>
#include <sstream>
#include <variant>

#include "loom/core/error.h"
#include "loom/io/file_util.h"

namespace loom::train {

namespace {

using Field = std::variant<std::string*, int64_t*, uint64_t*, double*, bool*, std::vector<int64_t>*, std::vector<std::string>*>;

std::vector<std::pair<std::string, Field>> fields(TrainConfig& c) {
  return {{"model.preset", &c.model_preset},
          {"model.init", &c.model_init},
          {"model.vocab_size", &c.vocab_size},
          {"model.n_layer", &c.n_layer},
          {"model.adapter", &c.adapter},
          {"model.tokenizer", &c.tokenizer},
          {"data.train", &c.data_train},
          {"data.val", &c.data_val},
          {"data.shuffle", &c.data_shuffle},
          {"data.replay", &c.replay},
          {"data.replay_fraction", &c.replay_fraction},
          {"sft.train_on", &c.sft_train_on},
          {"sft.packing", &c.sft_packing},
          {"sft.truncation", &c.sft_truncation},
          {"training.steps", &c.steps},
          {"training.batch_size", &c.batch_size},
          {"training.seq_len", &c.seq_len},
          {"training.grad_accum", &c.grad_accum},
          {"training.seed", &c.seed},
          {"training.threads", &c.threads},
          {"training.recompute", &c.recompute},
          {"training.trainable", &c.trainable},
          {"lora.r", &c.lora_r},
          {"lora.alpha", &c.lora_alpha},
          {"lora.dropout", &c.lora_dropout},
          {"lora.targets", &c.lora_targets},
          {"lora.rslora", &c.lora_rslora},
          {"quant.base", &c.quant_base},
          {"optimizer.lr", &c.lr},
          {"optimizer.weight_decay", &c.weight_decay},
          {"optimizer.beta1", &c.beta1},
          {"optimizer.beta2", &c.beta2},
          {"optimizer.eps", &c.eps},
          {"optimizer.grad_clip", &c.grad_clip},
          {"optimizer.schedule", &c.schedule},
          {"optimizer.warmup_steps", &c.warmup_steps},
          {"optimizer.min_lr_ratio", &c.min_lr_ratio},
          {"checkpoint.dir", &c.checkpoint_dir},
          {"checkpoint.every", &c.checkpoint_every},
          {"checkpoint.keep", &c.checkpoint_keep},
          {"parallel.dp", &c.dp},
          {"parallel.tp", &c.tp},
          {"parallel.sequence_parallel", &c.sequence_parallel},
          {"parallel.pp", &c.pp},
          {"parallel.schedule", &c.pp_schedule},
          {"parallel.virtual_stages", &c.virtual_stages},
          {"parallel.pp_layout", &c.pp_layout},
          {"parallel.zero", &c.zero},
          {"parallel.bucket_mb", &c.bucket_mb},
          {"dist.timeout_s", &c.timeout_s},
          {"logging.metrics", &c.metrics},
          {"logging.peak_flops", &c.peak_flops},
          {"eval.every", &c.eval_every},
          {"eval.batches", &c.eval_batches},
          {"eval.base", &c.eval_base},
          {"eval.patience", &c.eval_patience}};
}

Field find_field(TrainConfig& c, const std::string& key, const std::string& where) {
  for (auto& [name, f] : fields(c))
    if (name == key) return f;
  throw Error(fmt::format("config: unknown key '{}'{}", key, where));
}

void set_from_toml(const Field& f, const toml::node& n, const std::string& key, const std::string& where) {
  auto bad = [&](const char* want) { return Error(fmt::format("config: key '{}'{} must be {}", key, where, want)); };
  std::visit(
      [&](auto* p) {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::string>) {
          if (!n.is_string()) throw bad("a string");
          *p = n.as_string()->get();
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!n.is_boolean()) throw bad("true or false");
          *p = n.as_boolean()->get();
        } else if constexpr (std::is_same_v<T, double>) {
          if (n.is_integer()) *p = double(n.as_integer()->get());
          else if (n.is_floating_point()) *p = n.as_floating_point()->get();
          else throw bad("a number");
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          if (n.is_string()) {  // names separated by commas (--lora.targets=q_proj,v_proj)
            p->clear();
            std::stringstream names(std::string(n.as_string()->get()));
            for (std::string name; std::getline(names, name, ',');)
              if (!name.empty()) p->push_back(name);
            return;
          }
          if (!n.is_array()) throw bad("a list of strings");
          p->clear();
          for (const toml::node& e : *n.as_array()) {
            if (!e.is_string()) throw bad("a list of strings");
            p->push_back(e.as_string()->get());
          }
        } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
          if (!n.is_array()) throw bad("a list of integers");
          p->clear();
          for (const toml::node& e : *n.as_array()) {
            if (!e.is_integer()) throw bad("a list of integers");
            p->push_back(e.as_integer()->get());
          }
        } else {
          if (!n.is_integer()) throw bad("an integer");
          int64_t v = n.as_integer()->get();
          if (std::is_same_v<T, uint64_t> && v < 0) throw bad("a non-negative integer");
          *p = T(v);
        }
      },
      f);
}

// True when s is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool is_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = uint8_t(s[i]);
    const size_t n = b < 0x80 ? 1 : (b >= 0xC2 && b <= 0xDF) ? 2 : (b >= 0xE0 && b <= 0xEF) ? 3 : (b >= 0xF0 && b <= 0xF4) ? 4 : 0;
    if (n == 0 || n > s.size() - i) return false;
    char32_t cp = n == 1 ? b : b & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      const auto c = uint8_t(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
    i += n;
  }
  return true;
}

void set_from_string(const Field& f, const std::string& text, const std::string& key) {
  // TOML is UTF-8: any other bytes would be saved (in checkpoints) as a different string.
  LOOM_CHECK(is_utf8(text), "config: key '{}' (command line): the value is not valid UTF-8", key);
  // Parse the value as a TOML value so both forms accept the same syntax; bare words are strings.
  toml::table t;
  try {
    t = toml::parse("v = " + text);
  } catch (const toml::parse_error&) {
    t.insert("v", text);
  }
  if (std::holds_alternative<std::string*>(f) && !t["v"].is_string()) t.insert_or_assign("v", text);
  set_from_toml(f, *t.get("v"), key, " (command line)");
}

void walk(const toml::table& table, const std::string& prefix, TrainConfig& c, const std::string& where) {
  for (const auto& [k, node] : table) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (node.is_table()) walk(*node.as_table(), key, c, where);
    else set_from_toml(find_field(c, key, where), node, key, where);
  }
}

}  // namespace

TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::string text;
  if (!path.empty()) text = io::read_text_file(path);
  return parse_config(text, path, overrides);
}

TrainConfig parse_config(const std::string& toml_text, const std::string& origin, const std::vector<std::string>& overrides) {
  TrainConfig c;
  toml::table t;
  try {
    t = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    throw Error(fmt::format("config: {}: {} (line {})", origin, std::string(e.description()), e.source().begin.line));
  }
  walk(t, "", c, " in " + origin);
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    LOOM_CHECK(eq != std::string::npos && eq > 0, "config: override '{}' must look like section.key=value", o);
    const std::string key = o.substr(0, eq);
    set_from_string(find_field(c, key, " (command line)"), o.substr(eq + 1), key);
  }
  validate(c);
  return c;
}

void validate(const TrainConfig& c) {
  auto positive = [](int64_t v, const char* key) { LOOM_CHECK(v >= 1, "config: {} must be at least 1, got {}", key, v); };
  positive(c.steps, "training.steps");
  positive(c.batch_size, "training.batch_size");
  positive(c.seq_len, "training.seq_len");
  positive(c.grad_accum, "training.grad_accum");
  positive(c.eval_batches, "eval.batches");
  positive(c.checkpoint_keep, "checkpoint.keep");
  LOOM_CHECK(c.vocab_size >= 0, "config: model.vocab_size must be >= 0, got {}", c.vocab_size);
  LOOM_CHECK(c.n_layer >= 0 && c.n_layer <= 1024, "config: model.n_layer must be in [0, 1024], got {}", c.n_layer);
  LOOM_CHECK(c.dp >= 0 && c.bucket_mb > 0 && c.timeout_s > 0, "config: parallel.dp must be >= 0, parallel.bucket_mb and dist.timeout_s > 0");
  LOOM_CHECK(c.tp >= 1, "config: parallel.tp must be >= 1, got {}", c.tp);
  LOOM_CHECK(c.pp >= 1 && c.virtual_stages >= 1, "config: parallel.pp and parallel.virtual_stages must be >= 1, got {} and {}", c.pp,
             c.virtual_stages);
  LOOM_CHECK(c.pp_schedule == "gpipe" || c.pp_schedule == "1f1b" || c.pp_schedule == "interleaved",
             "config: parallel.schedule must be gpipe, 1f1b or interleaved, got '{}'", c.pp_schedule);
  LOOM_CHECK((c.pp_schedule == "interleaved") == (c.virtual_stages > 1),
             "config: parallel.schedule = \"interleaved\" goes with parallel.virtual_stages > 1 (and only it), got {} and {}", c.pp_schedule,
             c.virtual_stages);
  LOOM_CHECK(c.pp_schedule != "interleaved" || c.grad_accum % c.pp == 0,
             "config: the interleaved schedule needs the micro-batches (training.grad_accum = {}) to be a multiple of the stages (parallel.pp = {})",
             c.grad_accum, c.pp);
  LOOM_CHECK(c.pp_layout.empty() || (int64_t(c.pp_layout.size()) == c.pp && c.virtual_stages == 1),
             "config: parallel.pp_layout lists the layers of each of the parallel.pp = {} stages (without virtual stages), got {} entries",
             c.pp, c.pp_layout.size());
  for (int64_t n : c.pp_layout) LOOM_CHECK(n >= 1, "config: parallel.pp_layout entries must be >= 1, got {}", n);
  LOOM_CHECK(!c.sequence_parallel || c.seq_len % c.tp == 0, "config: parallel.sequence_parallel splits training.seq_len {} over parallel.tp = {} ranks: it must divide",
             c.seq_len, c.tp);
  LOOM_CHECK(c.zero >= 0 && c.zero <= 3, "config: parallel.zero must be 0, 1, 2 or 3, got {}", c.zero);
  LOOM_CHECK(c.threads >= 0, "config: training.threads must be >= 0, got {}", c.threads);
  LOOM_CHECK(c.recompute == "none" || c.recompute == "blocks", "config: training.recompute must be none or blocks, got '{}'", c.recompute);
  LOOM_CHECK(c.peak_flops >= 0, "config: logging.peak_flops must be >= 0 (0 = derive from the CPU), got {}", c.peak_flops);
  LOOM_CHECK(c.lr > 0, "config: optimizer.lr must be positive, got {}", c.lr);
  LOOM_CHECK(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1, "config: optimizer.beta1/beta2 must be in [0, 1), got {} and {}",
             c.beta1, c.beta2);
  LOOM_CHECK(c.eps > 0 && c.weight_decay >= 0 && c.grad_clip >= 0, "config: optimizer.eps must be > 0, weight_decay and grad_clip >= 0");
  LOOM_CHECK(c.schedule == "constant" || c.schedule == "cosine" || c.schedule == "wsd",
             "config: optimizer.schedule must be constant, cosine or wsd, got '{}'", c.schedule);
  LOOM_CHECK(c.warmup_steps >= 0 && c.eval_every >= 0 && c.checkpoint_every >= 0,
             "config: warmup_steps, eval.every and checkpoint.every must be >= 0");
  LOOM_CHECK(c.min_lr_ratio >= 0 && c.min_lr_ratio <= 1, "config: optimizer.min_lr_ratio must be in [0, 1], got {}", c.min_lr_ratio);
  LOOM_CHECK(!c.data_train.empty(), "config: data.train is not set");
  LOOM_CHECK(c.eval_every == 0 || !c.data_val.empty(), "config: eval.every = {} needs data.val", c.eval_every);
  LOOM_CHECK(c.eval_patience >= 0, "config: eval.patience must be >= 0 (0 = never stop early), got {}", c.eval_patience);
  LOOM_CHECK(c.eval_patience == 0 || c.eval_every > 0, "config: eval.patience = {} needs eval.every and data.val", c.eval_patience);
  LOOM_CHECK(c.eval_base.empty() || c.eval_every > 0, "config: eval.base needs eval.every (it is evaluated with data.val)");
  LOOM_CHECK(c.replay_fraction >= 0 && c.replay_fraction < 1, "config: data.replay_fraction must be in [0, 1), got {}", c.replay_fraction);
  LOOM_CHECK(c.replay.empty() == (c.replay_fraction == 0), "config: data.replay and data.replay_fraction go together (got \"{}\" and {})",
             c.replay, c.replay_fraction);
  LOOM_CHECK(c.checkpoint_every == 0 || !c.checkpoint_dir.empty(), "config: checkpoint.every = {} needs checkpoint.dir", c.checkpoint_every);
  LOOM_CHECK(c.lora_r >= 0 && c.lora_alpha > 0, "config: lora.r must be >= 0 (0 = no LoRA) and lora.alpha > 0, got {} and {}", c.lora_r,
             c.lora_alpha);
  LOOM_CHECK(c.lora_dropout >= 0 && c.lora_dropout < 1, "config: lora.dropout must be in [0, 1), got {}", c.lora_dropout);
  LOOM_CHECK(!c.lora_targets.empty(), "config: lora.targets is empty");
  const bool adapting = c.lora_r > 0 || !c.adapter.empty();
  LOOM_CHECK(!adapting || c.trainable.empty(), "config: training.trainable and LoRA (lora.r, model.adapter) do not go together");
  LOOM_CHECK(c.quant_base.empty() || c.quant_base == "nf4" || c.quant_base == "int8",
             "config: quant.base must be \"\" (a float base), nf4 or int8, got '{}'", c.quant_base);
  LOOM_CHECK(c.quant_base.empty() || adapting, "config: quant.base = \"{}\" quantises the frozen base of LoRA (QLoRA): it needs lora.r > 0 "
             "or model.adapter", c.quant_base);
}

std::string to_toml(const TrainConfig& c_in) {
  TrainConfig c = c_in;
  toml::table root;
  for (auto& [key, f] : fields(c)) {
    const size_t dot = key.find('.');
    const std::string section = key.substr(0, dot), name = key.substr(dot + 1);
    if (!root.contains(section)) root.insert(section, toml::table{});
    toml::table& t = *root[section].as_table();
    std::visit(
        [&](auto* p) {
          using T = std::remove_pointer_t<decltype(p)>;
          if constexpr (std::is_same_v<T, uint64_t>) {
            t.insert(name, int64_t(*p));
          } else if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<std::string>>) {
            toml::array a;
            for (const auto& v : *p) a.push_back(v);
            t.insert(name, std::move(a));
          } else {
            t.insert(name, *p);
          }
        },
        f);
  }
  // Basic strings only: toml++ 3.3 writes a value that holds ''' and a newline as a multi-line
  // literal string, which that value ends early.
  toml::toml_formatter out(
      root, toml::toml_formatter::default_flags & ~(toml::format_flags::allow_literal_strings | toml::format_flags::allow_multi_line_strings));
  std::ostringstream os;
  os << out << "\n";
  return os.str();
}

}  // namespace loom::train
