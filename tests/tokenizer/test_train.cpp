// BPE training: byte tokens first, frequent words end up as single tokens, special tokens come
// last and are cut out of the corpus, any text round-trips, and the result is deterministic.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "loom/core/error.h"
#include "loom/tokenizer/train.h"

namespace loom::tokenizer {
namespace {

std::vector<std::string> corpus() {
  const std::vector<std::string> words = {
      "the", "of", "and", "to", "in", "is", "that", "it", "was", "for", "on", "are", "with",
      "as", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by",
      "word", "but", "what", "some", "we", "can", "out", "other", "were", "all", "there",
      "when", "up", "use", "your", "how", "said", "an", "each", "she", "which", "do", "their"};
  std::mt19937 rng(7);
  std::vector<std::string> texts;
  for (int doc = 0; doc < 50; ++doc) {
    std::string t;
    for (int i = 0; i < 200; ++i) {
      // Zipf-like: low indices are much more frequent.
      const size_t k = size_t(words.size() * std::pow(double(rng()) / rng.max(), 3.0));
      t += (i % 12 == 0 ? "The" : (t.empty() ? "" : " ") + words[std::min(k, words.size() - 1)]);
      if (i % 12 == 11) t += ".\n";
    }
    texts.push_back(t + "<|endoftext|>");
  }
  return texts;
}

TEST(Train, LearnsFrequentWords) {
  const auto texts = corpus();
  const Tokenizer tok = train(texts, 320, std::vector<std::string>{"<|endoftext|>"});
  EXPECT_EQ(tok.vocab_size(), 320);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(tok.token(b), std::string(1, char(b)));
  EXPECT_EQ(tok.special_id("<|endoftext|>"), 319);
  EXPECT_EQ(tok.merges().size(), 319u - 256u);
  for (const char* w : {" the", " of", " and", " to", " in", "The"}) {
    const auto id = tok.token_id(w);
    ASSERT_TRUE(id) << w;
    EXPECT_EQ(tok.encode(w), std::vector<int32_t>{*id}) << w;
  }
  // No learned token spans the special token.
  for (int32_t id = 256; id < 319; ++id)
    EXPECT_EQ(tok.token(id).find("<|"), std::string_view::npos) << tok.token(id);
  for (const auto& t : texts) {
    const auto ids = tok.encode(t, true);
    EXPECT_EQ(ids.back(), 319);
    EXPECT_EQ(tok.decode(ids), t);
    EXPECT_LT(ids.size(), t.size() / 2);
  }
  const std::string unseen = "Zebras über 42 ☃ naïve\t\n  xyz\xFF";
  EXPECT_EQ(tok.decode(tok.encode(unseen)), unseen);
}

TEST(Train, IsDeterministicAndSaves) {
  const auto texts = corpus();
  const Tokenizer a = train(texts, 300), b = train(texts, 300);
  EXPECT_TRUE(std::ranges::equal(a.merges(), b.merges()));
  const auto file = std::filesystem::temp_directory_path() /
                    ("loom_tok_train_" + std::to_string(getpid()) + ".json");
  a.save(file);
  const Tokenizer c = Tokenizer::load(file);
  std::filesystem::remove(file);
  EXPECT_TRUE(std::ranges::equal(a.merges(), c.merges()));
  for (const auto& t : texts) EXPECT_EQ(c.encode(t), a.encode(t));
}

TEST(Train, StopsWhenNoPairsAreLeft) {
  const Tokenizer tok = train(std::vector<std::string>{"abab"}, 1000);
  EXPECT_EQ(tok.vocab_size(), 256 + 2);  // "ab", then "abab"
  EXPECT_EQ(tok.encode("abab"), std::vector<int32_t>{257});
}

TEST(Train, RejectsTooSmallVocab) {
  EXPECT_THROW(train(std::vector<std::string>{"x"}, 256, std::vector<std::string>{"<s>"}), Error);
}

}  // namespace
}  // namespace loom::tokenizer
