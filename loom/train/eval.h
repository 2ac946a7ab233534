// Evaluating a causal language model (`loom eval`): perplexity and bits per byte over a token
// stream, multiple-choice questions scored by log-likelihood as lm-evaluation-harness scores
// them, and greedy generation scored by exact match. Everything runs without autograd.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "loom/nn/transformer.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/config.h"
#include "loom/train/generate.h"

namespace loom::train {

// Called after each batch with the items done so far and their total (null: silent).
using EvalProgress = std::function<void(int64_t done, int64_t total)>;

// The negative log-likelihood of each row's targets, in nats, summed in double. ids, targets:
// (B, T) integer; a target of -100 is not scored. The head runs over chunks of positions that
// hold a scored target, so the logits never take more than about 256 MiB.
std::vector<double> row_nll(const nn::TransformerLM& model, const Tensor& ids, const Tensor& targets);

// ---- perplexity ----

struct WindowScore {
  int64_t tokens = 0, bytes = 0;  // tokens predicted, bytes of their text (scored_bytes)
  double nll = 0;                 // nats, summed
};

struct Perplexity {
  std::vector<WindowScore> windows;
  int64_t tokens = 0, bytes = 0;
  double nll = 0;  // nats, summed over every window
  double mean_nll() const;
  double ppl() const;            // exp(mean_nll)
  double bits_per_byte() const;  // nll / ln 2 / bytes
};

// The UTF-8 bytes of the text that tokens [1, n) of a window stand for. Special tokens
// (document separators, end markers) are not text. Each run of other tokens is decoded on its
// own, as a document decodes; from a run that starts the window, the text of its first token
// (context, not scored) is taken away.
int64_t scored_bytes(const tokenizer::Tokenizer& tok, std::span<const int32_t> window);

// Cuts `stream` into consecutive non-overlapping windows of seq_len tokens (the last one
// shorter: whatever remains, when that is at least 2 tokens); each window's tokens 1..N-1 are
// predicted from the ones before them. `rows` windows go through the model at once.
Perplexity perplexity(const nn::TransformerLM& model, const tokenizer::Tokenizer& tok, std::span<const int32_t> stream, int64_t seq_len,
                      int64_t rows, const EvalProgress& progress = nullptr);

// The token stream of `data`: a .jsonl file of {"text": ...} documents encoded as `loom
// prepare` encodes them (data::encode_documents: `separator` before each), or llm.c token shards
// (a file, a glob, or a directory: its val_*.bin when it has some, else all its *.bin) read one
// after the other. Every id must be in the tokenizer's vocabulary and below vocab_size.
std::vector<int32_t> read_token_stream(const std::string& data, const tokenizer::Tokenizer& tok, int32_t separator, int64_t vocab_size);

// ---- multiple choice ----

struct EncodedPair {
  std::vector<int32_t> context, continuation;
};

// A (context, continuation) pair encoded as lm-evaluation-harness does (TemplateLM.loglikelihood
// and _encode_pair): the context's trailing whitespace (str.isspace) moves to the front of the
// continuation; the continuation's ids are those of context + continuation past as many ids as
// the context alone has. An empty context is the one token `prefix`, and the continuation is
// encoded alone. Special strings in the text become their ids, as Hugging Face encodes.
EncodedPair encode_pair(const tokenizer::Tokenizer& tok, const std::string& context, const std::string& continuation, int32_t prefix);

struct Question {
  std::vector<EncodedPair> choices;
  std::vector<int64_t> lengths;  // each choice's length in characters (code points): acc_norm's divisor
  int64_t gold = 0;
};

// The questions of a JSON Lines file, {"context": str, "choices": [str, ...], "gold": int} a
// line (at least two non-empty choices). A bad line, or a choice whose continuation does not fit
// max_len tokens, is an error naming the file, the line and the field.
std::vector<Question> read_questions(const std::filesystem::path& file, const tokenizer::Tokenizer& tok, int32_t prefix, int64_t max_len);

struct QuestionScore {
  std::vector<double> loglik;  // per choice: the summed log-probability of its continuation
  int64_t pred = 0, pred_norm = 0;  // argmax of loglik, of loglik / length (the first on ties)
};

struct ChoiceResult {
  std::vector<QuestionScore> questions;
  double acc = 0, acc_norm = 0;
};

// Scores every choice as lm-evaluation-harness's _loglikelihood_tokens does: context +
// continuation, without its last token and cut to its last max_len tokens, goes through the
// model; the continuation's log-probabilities are summed. `rows` sequences at once.
ChoiceResult multiple_choice(const nn::TransformerLM& model, const std::vector<Question>& questions, int64_t max_len, int64_t rows,
                             const EvalProgress& progress = nullptr);

// ---- generation ----

struct GenPrompt {
  std::vector<int64_t> ids;
  std::string answer;
};

// The prompts of a JSON Lines file: {"prompt": str, "answer": str}, or {"messages": [...],
// "answer": str} rendered by the chat template of `cfg` with the generation prompt (the line's
// other keys are template variables, as for `loom tokenizer render`). Special strings become
// their ids. A prompt must leave room for max_new_tokens within max_seq_len.
std::vector<GenPrompt> read_prompts(const std::filesystem::path& file, const tokenizer::Tokenizer& tok, const tokenizer::TokenizerConfig& cfg,
                                    int64_t max_new_tokens, int64_t max_seq_len);

struct GenerationScore {
  std::string output;  // the generated text, invalid UTF-8 replaced
  bool match = false;
};

struct GenerationResult {
  std::vector<GenerationScore> items;
  double exact_match = 0;
};

// Generates for each prompt with `opt` (greedy: temperature 0) and compares the text with the
// answer, both stripped of whitespace on both sides (Python's str.strip).
GenerationResult exact_match(const nn::TransformerLM& model, const tokenizer::Tokenizer& tok, const std::vector<GenPrompt>& prompts,
                             const GenerateOptions& opt, const EvalProgress& progress = nullptr);

}  // namespace loom::train
