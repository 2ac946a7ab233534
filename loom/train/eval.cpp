// The evaluations' computations: batched forward passes whose head runs chunk by chunk, the
// windows of perplexity, lm-evaluation-harness's request layout for multiple choice, and
// generation compared with answers.
#include "loom/train/eval.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "loom/autograd/function.h"
#include "loom/chat/pystr.h"
#include "loom/ops/shape.h"
#include "loom/tokenizer/pipeline.h"

namespace loom::train {

namespace {

constexpr int64_t kLogitsBudget = int64_t(1) << 26;  // f32 logits per head chunk: 256 MiB
constexpr int64_t kIgnore = -100;

// The fraction of items for which pick(i) holds.
template <class F>
double fraction(size_t n, F pick) {
  size_t hits = 0;
  for (size_t i = 0; i < n; ++i) hits += pick(i) ? 1 : 0;
  return n == 0 ? 0.0 : double(hits) / double(n);
}

// The index of the largest value of f(i), the first one on ties (numpy's argmax).
template <class F>
int64_t argmax(size_t n, F f) {
  size_t best = 0;
  for (size_t i = 1; i < n; ++i)
    if (f(i) > f(best)) best = i;
  return int64_t(best);
}

}  // namespace

std::vector<double> row_nll(const nn::TransformerLM& model, const Tensor& ids, const Tensor& targets) {
  LOOM_CHECK(ids.ndim() == 2 && targets.shape() == ids.shape(), "eval: ids {} and targets {} must be (B, T) alike", ids.shape(),
             targets.shape());
  const int64_t B = ids.size(0), T = ids.size(1);
  LOOM_CHECK(T <= model.config().max_seq_len, "eval: a sequence of {} tokens exceeds the model's max_seq_len {}", T,
             model.config().max_seq_len);
  autograd::NoGradGuard no_grad;
  const Tensor pos = nn::TransformerLM::positions(T);
  const Tensor h = model.blocks(model.embed(ids, pos), pos, 0, model.layers.size());  // (B, T, C)
  const std::vector<double> tgt = targets.to_vector();
  const int64_t chunk = std::max<int64_t>(1, kLogitsBudget / (B * model.lm_head->weight.size(0)));
  std::vector<double> nll(size_t(B), 0.0);
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t n = std::min(chunk, T - t0);
    bool scored = false;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < n; ++j) scored = scored || tgt[size_t(b * T + t0 + j)] != kIgnore;
    if (!scored) continue;
    const Tensor logits = model.head(ops::narrow(h, 1, t0, n));  // (B, n, Vp)
    const std::vector<double> per = model.loss(logits, ops::narrow(targets, 1, t0, n), ops::Reduction::none).to_vector();  // (B, n)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < n; ++j) nll[size_t(b)] += per[size_t(b * n + j)];
  }
  return nll;
}

// ---- perplexity ----

double Perplexity::mean_nll() const { return nll / double(tokens); }
double Perplexity::ppl() const { return std::exp(mean_nll()); }
double Perplexity::bits_per_byte() const { return nll / std::log(2.0) / double(bytes); }

int64_t scored_bytes(const tokenizer::Tokenizer& tok, std::span<const int32_t> window) {
  int64_t bytes = 0;
  for (size_t i = 0; i < window.size();) {
    if (tok.is_special(window[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < window.size() && !tok.is_special(window[end])) ++end;
    bytes += int64_t(tok.decode(window.subspan(i, end - i)).size());
    if (i == 0) bytes -= int64_t(tok.decode(window.subspan(0, 1)).size());
    i = end;
  }
  return bytes;
}

Perplexity perplexity(const nn::TransformerLM& model, const tokenizer::Tokenizer& tok, std::span<const int32_t> stream, int64_t seq_len,
                      int64_t rows, const EvalProgress& progress) {
  LOOM_CHECK(seq_len >= 2 && seq_len <= model.config().max_seq_len, "eval: --seq-len {} must be in [2, max_seq_len {}]", seq_len,
             model.config().max_seq_len);
  LOOM_CHECK(rows >= 1, "eval: --batch-size {} must be positive", rows);
  std::vector<std::span<const int32_t>> windows;
  for (size_t s = 0; s + 1 < stream.size(); s += size_t(seq_len)) windows.push_back(stream.subspan(s, std::min(stream.size() - s, size_t(seq_len))));
  LOOM_CHECK(!windows.empty(), "eval: perplexity needs at least 2 tokens, the data holds {}", stream.size());
  Perplexity out;
  for (size_t w0 = 0; w0 < windows.size();) {
    const size_t len = windows[w0].size();  // only the last window may be shorter
    size_t w1 = w0;
    while (w1 < windows.size() && w1 - w0 < size_t(rows) && windows[w1].size() == len) ++w1;
    std::vector<int64_t> ids, targets;
    for (size_t w = w0; w < w1; ++w) {
      ids.insert(ids.end(), windows[w].begin(), windows[w].end() - 1);
      targets.insert(targets.end(), windows[w].begin() + 1, windows[w].end());
    }
    const Shape shape{int64_t(w1 - w0), int64_t(len) - 1};
    const std::vector<double> nll = row_nll(model, Tensor::from_ints(ids, shape), Tensor::from_ints(targets, shape));
    for (size_t w = w0; w < w1; ++w) {
      const WindowScore s{int64_t(len) - 1, scored_bytes(tok, windows[w]), nll[w - w0]};
      out.windows.push_back(s);
      out.tokens += s.tokens;
      out.bytes += s.bytes;
      out.nll += s.nll;
    }
    w0 = w1;
    if (progress) progress(int64_t(w0), int64_t(windows.size()));
  }
  return out;
}

// ---- multiple choice ----

EncodedPair encode_pair(const tokenizer::Tokenizer& tok, const std::string& context, const std::string& continuation, int32_t prefix) {
  if (context.empty()) return {{prefix}, tok.encode(continuation, true)};
  // context.rstrip() + (its trailing whitespace + continuation) is context + continuation.
  EncodedPair p{tok.encode(chat::str_strip(context, std::nullopt, false, true), true), {}};
  const std::vector<int32_t> whole = tok.encode(context + continuation, true);
  if (whole.size() > p.context.size()) p.continuation.assign(whole.begin() + std::ptrdiff_t(p.context.size()), whole.end());
  return p;
}

ChoiceResult multiple_choice(const nn::TransformerLM& model, const std::vector<Question>& questions, int64_t max_len, int64_t rows,
                             const EvalProgress& progress) {
  LOOM_CHECK(max_len >= 1 && max_len <= model.config().max_seq_len, "eval: --seq-len {} must be in [1, max_seq_len {}]", max_len,
             model.config().max_seq_len);
  LOOM_CHECK(rows >= 1, "eval: --batch-size {} must be positive", rows);
  // One request per choice: the last max_len + 1 tokens of context + continuation, the last of
  // them only a target.
  struct Request {
    size_t q, c;
    std::vector<int64_t> seq;
    size_t scored;  // the continuation's tokens, the last ones of seq
  };
  std::vector<Request> requests;
  ChoiceResult out;
  for (size_t q = 0; q < questions.size(); ++q) {
    out.questions.push_back({std::vector<double>(questions[q].choices.size()), 0, 0});
    for (size_t c = 0; c < questions[q].choices.size(); ++c) {
      const EncodedPair& p = questions[q].choices[c];
      LOOM_CHECK(!p.continuation.empty() && int64_t(p.continuation.size()) <= max_len,
                 "eval: question {} choice {} has {} continuation tokens; it needs 1 to --seq-len {}", q, c, p.continuation.size(), max_len);
      std::vector<int64_t> seq(p.context.begin(), p.context.end());
      seq.insert(seq.end(), p.continuation.begin(), p.continuation.end());
      if (int64_t(seq.size()) > max_len + 1) seq.erase(seq.begin(), seq.end() - (max_len + 1));
      requests.push_back({q, c, std::move(seq), p.continuation.size()});
    }
  }
  // Longest first, as the harness orders them: the padding in each batch stays small.
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return requests[a].seq.size() > requests[b].seq.size(); });
  for (size_t i0 = 0; i0 < order.size(); i0 += size_t(rows)) {
    const size_t i1 = std::min(order.size(), i0 + size_t(rows));
    const int64_t T = int64_t(requests[order[i0]].seq.size()) - 1;
    // Padding goes after each sequence: causal attention keeps it out of the scored positions.
    std::vector<int64_t> ids(size_t(i1 - i0) * size_t(T), 0), targets(ids.size(), kIgnore);
    for (size_t i = i0; i < i1; ++i) {
      const Request& r = requests[order[i]];
      const size_t n = r.seq.size() - 1, row = (i - i0) * size_t(T);
      std::copy(r.seq.begin(), r.seq.end() - 1, ids.begin() + std::ptrdiff_t(row));
      for (size_t j = n - r.scored; j < n; ++j) targets[row + j] = r.seq[j + 1];
    }
    const Shape shape{int64_t(i1 - i0), T};
    const std::vector<double> nll = row_nll(model, Tensor::from_ints(ids, shape), Tensor::from_ints(targets, shape));
    for (size_t i = i0; i < i1; ++i) out.questions[requests[order[i]].q].loglik[requests[order[i]].c] = -nll[i - i0];
    if (progress) progress(int64_t(i1), int64_t(order.size()));
  }
  for (size_t q = 0; q < questions.size(); ++q) {
    QuestionScore& s = out.questions[q];
    s.pred = argmax(s.loglik.size(), [&](size_t c) { return s.loglik[c]; });
    s.pred_norm = argmax(s.loglik.size(), [&](size_t c) { return s.loglik[c] / double(questions[q].lengths[c]); });
  }
  out.acc = fraction(questions.size(), [&](size_t q) { return out.questions[q].pred == questions[q].gold; });
  out.acc_norm = fraction(questions.size(), [&](size_t q) { return out.questions[q].pred_norm == questions[q].gold; });
  return out;
}

// ---- generation ----

GenerationResult exact_match(const nn::TransformerLM& model, const tokenizer::Tokenizer& tok, const std::vector<GenPrompt>& prompts,
                             const GenerateOptions& opt, const EvalProgress& progress) {
  GenerationResult out;
  for (const GenPrompt& p : prompts) {
    std::string text = tokenizer::valid_utf8(generate_text(model, tok, p.ids, opt));
    const bool match = chat::str_strip(text, std::nullopt, true, true) == chat::str_strip(p.answer, std::nullopt, true, true);
    out.items.push_back({std::move(text), match});
    if (progress) progress(int64_t(out.items.size()), int64_t(prompts.size()));
  }
  out.exact_match = fraction(out.items.size(), [&](size_t i) { return out.items[i].match; });
  return out;
}

}  // namespace loom::train
