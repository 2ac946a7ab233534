// Packed documents: a row holding several documents (positions restarting at 0 for each) gives
// each document the logits, and the summed loss the gradients, of running it alone — for rotary
// positions (LLaMA family, GQA) and learned ones (GPT-2).
#include <gtest/gtest.h>

#include <cmath>

#include "loom/autograd/function.h"
#include "loom/nn/transformer.h"
#include "loom/ops/nn.h"
#include "loom/ops/shape.h"

using namespace loom;

namespace {

void expect_close(const std::vector<double>& a, const std::vector<double>& b, double tol, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  double worst = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i])), scale = std::max(scale, std::abs(b[i]));
  EXPECT_LE(worst, tol * std::max(scale, 1.0)) << what;
}

void check_packing(const std::string& preset) {
  SCOPED_TRACE(preset);
  models::ModelConfig c = models::preset(preset);
  c.vocab_size = c.padded_vocab = 64;
  c.n_layer = 2;
  nn::TransformerLM m(c);
  m.init(3);
  // Two rows of T = 12: documents of 5, 4 and 3 tokens; 7 and 5.
  const std::vector<std::vector<int64_t>> docs = {{1, 5, 9, 2, 7}, {3, 3, 8, 1}, {4, 6, 2}, {9, 8, 7, 6, 5, 4, 3}, {2, 4, 6, 8, 10}};
  const std::vector<std::vector<size_t>> rows = {{0, 1, 2}, {3, 4}};
  std::vector<int64_t> ids, pos, tgt;
  for (const auto& row : rows)
    for (size_t d : row)
      for (size_t t = 0; t < docs[d].size(); ++t) {
        ids.push_back(docs[d][t]);
        pos.push_back(int64_t(t));
        tgt.push_back((docs[d][t] * 7 + 3) % 64);  // any targets
      }
  const int64_t T = 12;
  const Tensor packed_ids = Tensor::from_ints(ids, {2, T}), positions = Tensor::from_ints(pos, {2, T}), targets = Tensor::from_ints(tgt, {2, T});

  // Packed: logits, and the gradients of the summed loss.
  Tensor logits = m.forward(packed_ids, nullptr, positions);
  m.loss(logits, targets, ops::Reduction::sum).backward();
  std::map<std::string, std::vector<double>> packed_grads;
  for (auto& [name, p] : m.named_parameters()) {
    packed_grads[name] = p.grad().to_vector();
    p.set_grad(Tensor());
  }
  // Alone: each document its own forward; the summed losses' gradients add up.
  int64_t at = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    int64_t t0 = 0;
    for (size_t d : rows[r]) {
      const auto n = int64_t(docs[d].size());
      const Tensor alone = m.forward(Tensor::from_ints(docs[d], {1, n}));
      const Tensor slice = ops::contiguous(ops::narrow(ops::narrow(logits, 0, int64_t(r), 1), 1, t0, n));
      expect_close(slice.to_vector(), alone.to_vector(), 2e-6, "logits of document " + std::to_string(d));
      std::vector<int64_t> dt(tgt.begin() + at, tgt.begin() + at + n);
      m.loss(alone, Tensor::from_ints(dt, {1, n}), ops::Reduction::sum).backward();
      t0 += n;
      at += n;
    }
  }
  for (auto& [name, p] : m.named_parameters()) expect_close(packed_grads[name], p.grad().to_vector(), 1e-5, "gradient of " + name);
}

}  // namespace

TEST(Packing, PackedForwardEqualsEachDocumentAlone) {
  check_packing("llama-tiny");
  check_packing("qwen2-tiny");
  check_packing("qwen3-tiny");
  check_packing("gpt2-tiny");
}

TEST(Packing, DocumentIdsStartAtEachPositionZero) {
  const Tensor pos = Tensor::from_ints({0, 1, 2, 0, 1, 0, 0, 1, 2, 3}, {2, 5});
  EXPECT_EQ(ops::document_ids(pos).to_ints(), (std::vector<int64_t>{0, 0, 0, 1, 1, 0, 1, 1, 1, 1}));
  EXPECT_THROW(ops::document_ids(Tensor::from_ints({0, 1}, {2})), Error);
}
