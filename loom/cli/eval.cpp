// `loom eval --model DIR [--adapter DIR] [--quant nf4|int8] [--tokenizer T] --task ppl|mc|gen --data PATH [--seq-len N] [--batch-size N]
// [--max-tokens N] [--samples OUT.jsonl]`: perplexity and bits per byte, multiple-choice accuracy
// (lm-evaluation-harness's acc and acc_norm) or greedy generation's exact match; see
// loom/train/eval.h. The result is one JSON object on stdout and a table on stderr; --samples
// writes one JSON line per window, question or prompt.
#include <nlohmann/json.hpp>

#include "loom/cli/commands.h"
#include "loom/io/file_util.h"
#include "loom/train/eval.h"
#include "loom/train/inference.h"

namespace loom::cli {

namespace {

using ojson = nlohmann::ordered_json;

struct EvalArgs {
  std::string model, tokenizer, adapter, quant, task, data, samples;
  int64_t seq_len = 0, batch_size = 0, max_tokens = 64;
};

// The result's fields (JSON and table) and one sample line per item.
struct Report {
  ojson result = ojson::object();
  std::vector<ojson> samples;
};

train::EvalProgress progress_line(const std::string& task) {
  return [task](int64_t done, int64_t total) {
    fmt::print(stderr, "\reval {}: {}/{}", task, done, total);
    if (done == total) fmt::print(stderr, "\n");
  };
}

Report run_ppl(const train::InferenceModel& m, const EvalArgs& a, int64_t seq_len, int64_t rows) {
  const int32_t separator = tokenizer::document_separator(m.tok, m.tok_config);
  const std::vector<int32_t> stream = train::read_token_stream(a.data, m.tok, separator, m.model->config().vocab_size);
  const train::Perplexity p = train::perplexity(*m.model, m.tok, stream, seq_len, rows, progress_line(a.task));
  Report r;
  r.result = {{"tokens", p.tokens}, {"bytes", p.bytes}, {"nll", p.mean_nll()}, {"ppl", p.ppl()}, {"bits_per_byte", p.bits_per_byte()}};
  for (const train::WindowScore& w : p.windows) r.samples.push_back({{"tokens", w.tokens}, {"bytes", w.bytes}, {"nll", w.nll}});
  return r;
}

Report run_mc(const train::InferenceModel& m, const EvalArgs& a, int64_t seq_len, int64_t rows) {
  const int32_t prefix = tokenizer::document_separator(m.tok, m.tok_config);
  const std::vector<train::Question> qs = train::read_questions(a.data, m.tok, prefix, seq_len);
  const train::ChoiceResult c = train::multiple_choice(*m.model, qs, seq_len, rows, progress_line(a.task));
  Report r;
  r.result = {{"acc", c.acc}, {"acc_norm", c.acc_norm}, {"n", qs.size()}};
  for (size_t q = 0; q < qs.size(); ++q)
    r.samples.push_back({{"loglikelihoods", c.questions[q].loglik}, {"pred", c.questions[q].pred}, {"pred_norm", c.questions[q].pred_norm},
                         {"gold", qs[q].gold}});
  return r;
}

Report run_gen(const train::InferenceModel& m, const EvalArgs& a) {
  const std::vector<train::GenPrompt> prompts = train::read_prompts(a.data, m.tok, m.tok_config, a.max_tokens, m.model->config().max_seq_len);
  train::GenerateOptions opt;
  opt.max_new_tokens = a.max_tokens;
  opt.temperature = 0;
  opt.stop_tokens = m.stop_tokens;
  const train::GenerationResult g = train::exact_match(*m.model, m.tok, prompts, opt, progress_line(a.task));
  Report r;
  r.result = {{"exact_match", g.exact_match}, {"n", prompts.size()}};
  for (size_t i = 0; i < prompts.size(); ++i)
    r.samples.push_back({{"output", g.items[i].output}, {"answer", prompts[i].answer}, {"match", g.items[i].match}});
  return r;
}

}  // namespace

Command add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "evaluate a model: perplexity, multiple-choice accuracy, generation exact match");
  auto a = std::make_shared<EvalArgs>();
  cmd->add_option("--model", a->model, "Hugging Face model directory or Loom checkpoint directory")->required();
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer file or directory (default: the model directory)");
  cmd->add_option("--adapter", a->adapter, "a PEFT LoRA adapter directory applied to the model");
  add_quant_option(cmd, a->quant);
  cmd->add_option("--task", a->task, "ppl, mc or gen")->required()->check(CLI::IsMember({"ppl", "mc", "gen"}));
  cmd->add_option("--data", a->data, "ppl: token shards or .jsonl {\"text\"}; mc: .jsonl {\"context\", \"choices\", \"gold\"}; "
                                      "gen: .jsonl {\"prompt\" or \"messages\", \"answer\"}")->required();
  cmd->add_option("--seq-len", a->seq_len, "ppl: tokens per window; mc: most tokens the model sees (default: the model's max_seq_len)");
  cmd->add_option("--batch-size", a->batch_size, "sequences per forward pass (default: about 8192 tokens' worth)");
  cmd->add_option("--max-tokens", a->max_tokens, "gen: most tokens generated per prompt");
  cmd->add_option("--samples", a->samples, "write one JSON line per window (ppl), question (mc) or prompt (gen) here");
  return {cmd, [a](const std::shared_ptr<dist::Group>&) {
            LOOM_CHECK(a->seq_len >= 0 && a->batch_size >= 0 && a->max_tokens >= 1,
                       "eval: --seq-len {}, --batch-size {} and --max-tokens {} must be positive", a->seq_len, a->batch_size, a->max_tokens);
            const train::InferenceModel m = train::load_for_inference(a->model, a->tokenizer, a->adapter, a->quant);
            const models::ModelConfig& mc = m.model->config();
            LOOM_CHECK(m.tok.vocab_size() <= mc.vocab_size, "eval: the tokenizer has {} ids, the model's vocabulary only {}: is it the model's?",
                       m.tok.vocab_size(), mc.vocab_size);
            const int64_t seq_len = a->seq_len > 0 ? a->seq_len : mc.max_seq_len;
            const int64_t rows = a->batch_size > 0 ? a->batch_size : std::max<int64_t>(1, 8192 / seq_len);
            const Report r = a->task == "ppl" ? run_ppl(m, *a, seq_len, rows) : a->task == "mc" ? run_mc(m, *a, seq_len, rows) : run_gen(m, *a);
            if (!a->samples.empty()) {
              std::string lines;
              for (const ojson& s : r.samples) lines += s.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
              io::AtomicFile f(a->samples);
              f.write(lines);
              f.commit();
            }
            fmt::print(stderr, "loom eval --task {} --data {}\n", a->task, a->data);
            for (const auto& [key, value] : r.result.items())
              fmt::print(stderr, "  {:<14}{}\n", key, value.is_number_float() ? fmt::format("{:.6g}", value.get<double>()) : value.dump());
            ojson out = {{"task", a->task}, {"model", a->model}, {"data", a->data}};
            out.update(r.result);
            fmt::print("{}\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
            return 0;
          }};
}

}  // namespace loom::cli
