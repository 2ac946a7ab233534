// Sampling: logits -> temperature -> top-k -> top-p -> one uniform draw keyed by (seed, step).
#include "loom/train/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "loom/autograd/function.h"
#include "loom/core/rng.h"
#include "loom/ops/shape.h"

namespace loom::train {

int64_t sample_token(const std::vector<double>& logits, int64_t vocab_size, const GenerateOptions& opt, uint64_t draw) {
  LOOM_CHECK(vocab_size >= 1 && size_t(vocab_size) <= logits.size(), "generate: vocab_size {} does not fit {} logits", vocab_size,
             logits.size());
  LOOM_CHECK(opt.temperature >= 0 && opt.top_p > 0 && opt.top_p <= 1 && opt.top_k >= 0,
             "generate: temperature {} must be >= 0, top_p {} in (0, 1], top_k {} >= 0", opt.temperature, opt.top_p, opt.top_k);
  std::vector<int64_t> idx(static_cast<size_t>(vocab_size));
  std::iota(idx.begin(), idx.end(), 0);
  auto by_logit = [&](int64_t a, int64_t b) { return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b); };
  if (opt.temperature == 0) return *std::min_element(idx.begin(), idx.end(), by_logit);
  std::sort(idx.begin(), idx.end(), by_logit);
  size_t keep = opt.top_k > 0 ? std::min(idx.size(), size_t(opt.top_k)) : idx.size();
  std::vector<double> p(keep);
  const double top = logits[size_t(idx[0])];
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += p[i] = std::exp((logits[size_t(idx[i])] - top) / opt.temperature);
  if (opt.top_p < 1) {  // smallest prefix whose probability reaches top_p
    double acc = 0;
    for (size_t i = 0; i < keep; ++i)
      if ((acc += p[i] / total) >= opt.top_p) {
        keep = i + 1;
        break;
      }
    total = std::accumulate(p.begin(), p.begin() + long(keep), 0.0);
  }
  const double u = double(uniform_at(opt.seed, draw)) * total;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i)
    if ((acc += p[i]) > u) return idx[i];
  return idx[keep - 1];
}

std::vector<int64_t> generate(const nn::TransformerLM& model, const std::vector<int64_t>& prompt, const GenerateOptions& opt) {
  LOOM_CHECK(!prompt.empty(), "generate: the prompt is empty");
  LOOM_CHECK(int64_t(prompt.size()) + opt.max_new_tokens <= model.config().max_seq_len,
             "generate: prompt of {} tokens plus {} new tokens exceeds the model's max_seq_len {}", prompt.size(), opt.max_new_tokens,
             model.config().max_seq_len);
  autograd::NoGradGuard no_grad;
  nn::KVCache cache;
  std::vector<int64_t> out;
  Tensor ids = Tensor::from_ints(prompt, {1, int64_t(prompt.size())});
  for (int64_t step = 0; step < opt.max_new_tokens; ++step) {
    Tensor logits = model.forward(ids, &cache);  // (1, t, Vp)
    std::vector<double> last = ops::narrow(logits, 1, logits.size(1) - 1, 1).to_vector();
    const int64_t next = sample_token(last, model.config().vocab_size, opt, uint64_t(step));
    out.push_back(next);
    if (std::ranges::find(opt.stop_tokens, next) != opt.stop_tokens.end()) break;
    ids = Tensor::from_ints({next}, {1, 1});
  }
  return out;
}

std::string generate_text(const nn::TransformerLM& model, const tokenizer::Tokenizer& tok, const std::vector<int64_t>& prompt,
                          const GenerateOptions& opt) {
  std::vector<int64_t> out = generate(model, prompt, opt);
  if (!out.empty() && std::ranges::find(opt.stop_tokens, out.back()) != opt.stop_tokens.end()) out.pop_back();
  const std::vector<int32_t> ids(out.begin(), out.end());
  return tok.decode(ids);
}

}  // namespace loom::train
