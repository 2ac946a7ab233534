// Byte-level BPE on a tiny hand-made vocabulary: the byte map, the pre-tokenizer, merge order,
// special tokens, the three file layouts loading alike, saving, and bad files failing with
// an error that names the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "loom/core/error.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/pretokenize.h"

namespace loom::tokenizer {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;
using Pieces = std::vector<std::string_view>;
using namespace std::string_literals;

TEST(ByteMap, MatchesGpt2) {
  int remapped = 0;
  for (int b = 0; b < 256; ++b) {
    const std::string byte(1, char(b));
    const std::string u = to_byte_level(byte);
    const bool same = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    // decode the code point of u
    char32_t cp = uint8_t(u[0]);
    if (u.size() == 2) cp = (char32_t(uint8_t(u[0]) & 0x1F) << 6) | (uint8_t(u[1]) & 0x3F);
    EXPECT_EQ(cp, same ? char32_t(b) : char32_t(256 + remapped)) << "byte " << b;
    remapped += !same;
    EXPECT_EQ(from_byte_level(u), byte);
  }
  EXPECT_EQ(remapped, 68);
  EXPECT_EQ(to_byte_level("\n hi"), "\u010A\u0120hi");
  EXPECT_EQ(from_byte_level("日"), std::nullopt);
  EXPECT_EQ(from_byte_level("\xC4"), std::nullopt);
}

TEST(Pretokenize, FollowsTheRegex) {
  EXPECT_EQ(pretokenize("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(pretokenize("I'm it's"), (Pieces{"I", "'m", " it", "'s"}));
  EXPECT_EQ(pretokenize("IT'S"), (Pieces{"IT", "'", "S"}));
  EXPECT_EQ(pretokenize("''s 's"), (Pieces{"''", "s", " '", "s"}));
  EXPECT_EQ(pretokenize("a   b"), (Pieces{"a", "  ", " b"}));
  EXPECT_EQ(pretokenize("a\n\nb"), (Pieces{"a", "\n", "\n", "b"}));
  EXPECT_EQ(pretokenize("a \n b"), (Pieces{"a", " \n", " b"}));
  EXPECT_EQ(pretokenize("end  "), (Pieces{"end", "  "}));
  EXPECT_EQ(pretokenize("x1.5y"), (Pieces{"x", "1", ".", "5", "y"}));
  EXPECT_EQ(pretokenize(" 123 ..."), (Pieces{" 123", " ..."}));
  EXPECT_EQ(pretokenize("caf\u00E9 \u65E5\u672C"), (Pieces{"caf\u00E9", " \u65E5\u672C"}));
  EXPECT_EQ(pretokenize("a\u00A0b"), (Pieces{"a", "\u00A0", "b"}));  // U+00A0 is \s
  EXPECT_EQ(pretokenize("a\u0085b"), (Pieces{"a", "\u0085", "b"}));  // NEL is not \s in JS
  EXPECT_EQ(pretokenize("\xFF\xFEok\xC3"), (Pieces{"\xFF\xFE", "ok", "\xC3"}));
  EXPECT_TRUE(pretokenize("").empty());
}

TEST(Pretokenize, CharClasses) {
  EXPECT_EQ(char_class(U'a'), CharClass::letter);
  EXPECT_EQ(char_class(U'\u00E9'), CharClass::letter);
  EXPECT_EQ(char_class(U'\u65E5'), CharClass::letter);
  EXPECT_EQ(char_class(U'\u0663'), CharClass::number);   // Arabic-Indic three
  EXPECT_EQ(char_class(U'\u216B'), CharClass::number);   // Roman numeral twelve (Nl)
  EXPECT_EQ(char_class(U'\u3000'), CharClass::space);
  EXPECT_EQ(char_class(U'\uFEFF'), CharClass::space);
  EXPECT_EQ(char_class(U'\u2028'), CharClass::space);
  EXPECT_EQ(char_class(U'\u0301'), CharClass::other);    // combining mark
  EXPECT_EQ(char_class(U'\U0001F600'), CharClass::other);
  EXPECT_EQ(char_class(U'\u001C'), CharClass::other);    // Python's isspace, not JS's \s
  const auto ranges = code_ranges();
  for (size_t i = 1; i < ranges.size(); ++i) ASSERT_LT(ranges[i - 1].hi, ranges[i].lo);
}

// Bytes, then " t", "he", " the", "ll", "ell" and a special token.
struct Tiny {
  std::vector<std::string> tokens;
  std::vector<std::pair<std::string, std::string>> merges;  // byte-level strings
  Tiny() {
    for (int b = 0; b < 256; ++b) tokens.emplace_back(1, char(b));
    merges = {{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"l", "l"}, {"e", "ll"}};
    for (const auto& [a, b] : merges) tokens.push_back(*from_byte_level(a + b));
    tokens.push_back("<|endoftext|>");
  }
  std::vector<Tokenizer::Merge> merge_ids() const {
    auto id = [&](const std::string& s) {
      return int32_t(std::find(tokens.begin(), tokens.end(), *from_byte_level(s)) - tokens.begin());
    };
    std::vector<Tokenizer::Merge> out;
    for (const auto& [a, b] : merges) out.push_back({id(a), id(b)});
    return out;
  }
  nlohmann::json vocab_json() const {
    nlohmann::json v = nlohmann::json::object();
    for (size_t id = 0; id + 1 < tokens.size(); ++id) v[to_byte_level(tokens[id])] = id;
    v["<|endoftext|>"] = tokens.size() - 1;
    return v;
  }
  std::string merges_txt() const {
    std::string s = "#version: 0.2\n";
    for (const auto& [a, b] : merges) s += a + " " + b + "\n";
    return s;
  }
  nlohmann::json tokenizer_json(bool pair_form) const {
    nlohmann::json m = nlohmann::json::array();
    for (const auto& [a, b] : merges)
      m.push_back(pair_form ? nlohmann::json::array({a, b}) : nlohmann::json(a + " " + b));
    return {{"version", "1.0"},
            {"added_tokens", {{{"id", 261}, {"content", "<|endoftext|>"}, {"special", true}}}},
            {"normalizer", nullptr},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
            {"model", {{"type", "BPE"}, {"vocab", vocab_json()}, {"merges", m}}}};
  }
};

class TempDir : public ::testing::Test {
 protected:
  fs::path dir_;
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("loom_tok_" + std::to_string(getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& text) {
    fs::create_directories((dir_ / name).parent_path());
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return dir_ / name;
  }
};

using Layouts = TempDir;

TEST_F(Layouts, AllLoadAlike) {
  const Tiny t;
  write("hf/tokenizer.json", t.tokenizer_json(false).dump());
  write("hf_pairs/tokenizer.json", t.tokenizer_json(true).dump(2));
  write("gpt2/vocab.json", t.vocab_json().dump());
  write("gpt2/merges.txt", t.merges_txt());
  write("openai/encoder.json", t.vocab_json().dump());
  write("openai/vocab.bpe", t.merges_txt());
  const Tokenizer ref = Tokenizer::load(dir_ / "gpt2");
  EXPECT_EQ(ref.vocab_size(), 262);
  EXPECT_EQ(ref.merges().size(), 5u);
  EXPECT_EQ(ref.specials().size(), 1u);
  for (const fs::path& p : {dir_ / "hf", dir_ / "hf/tokenizer.json", dir_ / "hf_pairs", dir_ / "openai"}) {
    const Tokenizer tok = Tokenizer::load(p);
    EXPECT_EQ(tok.vocab_size(), ref.vocab_size()) << p;
    EXPECT_TRUE(std::ranges::equal(tok.merges(), ref.merges())) << p;
    EXPECT_TRUE(std::ranges::equal(tok.specials(), ref.specials())) << p;
    for (int32_t id = 0; id < ref.vocab_size(); ++id) EXPECT_EQ(tok.token(id), ref.token(id));
  }
  // Saved and reloaded, it is the same again.
  ref.save(dir_ / "saved.json");
  const Tokenizer saved = Tokenizer::load(dir_ / "saved.json");
  EXPECT_TRUE(std::ranges::equal(saved.merges(), ref.merges()));
  EXPECT_EQ(saved.special_id("<|endoftext|>"), 261);
  EXPECT_EQ(saved.encode("hello the<|endoftext|>", true), ref.encode("hello the<|endoftext|>", true));
}

TEST(Tiny, MergesLowestRankFirst) {
  const Tiny t;
  const std::vector<Tokenizer::Merge> merges = t.merge_ids();
  const Tokenizer tok(t.tokens, merges, {261});
  // " the" = (" t" + "he"); "hello" = h e l l o → "he" (rank 1) beats "ll" (rank 3): he ll o.
  EXPECT_EQ(tok.encode(" the"), (Ids{258}));
  EXPECT_EQ(tok.encode("hello"), (Ids{257, 259, 'o'}));
  EXPECT_EQ(tok.encode("bell"), (Ids{'b', 260}));
  EXPECT_EQ(tok.encode("hellllll"), (Ids{257, 259, 259, 259}));
  EXPECT_EQ(tok.encode("x<|endoftext|>"), tok.encode("x<|endoftext|>", false));
  EXPECT_EQ(tok.encode("x<|endoftext|><|endoftext|>", true), (Ids{'x', 261, 261}));
  EXPECT_EQ(tok.encode("<|endoftext|"), tok.encode("<|endoftext|", true));
  EXPECT_EQ(tok.decode(Ids{258, 261, 'a'}), " the<|endoftext|>a");
  EXPECT_THROW(tok.decode(Ids{262}), Error);
  EXPECT_THROW(tok.decode(Ids{-1}), Error);
  // Any bytes round-trip, valid UTF-8 or not.
  const std::string junk = "\xFF\xC3(\xE2\x82 the\x00\x80 hello"s;
  EXPECT_EQ(tok.decode(tok.encode(junk)), junk);
  // A long pre-token (one run of letters) takes the heap path without quadratic time.
  const std::string longword(200000, 'l');
  const Ids ids = tok.encode(longword);
  EXPECT_EQ(ids.size(), 100000u);
  EXPECT_EQ(tok.decode(ids), longword);
}

// encode() is const and keeps its memo per thread: threads sharing one tokenizer, and one
// thread alternating between two, get the same ids as a single thread.
TEST(Tiny, ThreadsAndAlternatingTokenizers) {
  const Tiny t;
  const std::vector<Tokenizer::Merge> merges = t.merge_ids();
  const Tokenizer with(t.tokens, merges, {261}), without(t.tokens, {}, {261});
  std::string text;
  for (int i = 0; i < 2000; ++i) text += i % 3 ? " the hello bell" : " tell\n";
  const Ids want = with.encode(text), bytes = without.encode(text);
  EXPECT_EQ(bytes.size(), text.size());
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(with.encode(text), want);
    EXPECT_EQ(without.encode(text), bytes);
  }
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] { ok[i] = with.encode(text) == want && without.encode(text) == bytes; });
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok, std::vector<int>(4, 1));
}

TEST(Tiny, LongestSpecialWins) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(1, char(b));
  tokens.push_back("<a>");
  tokens.push_back("<a><b>");
  const Tokenizer tok(tokens, {}, {256, 257});
  EXPECT_EQ(tok.encode("<a><b><a>x", true), (Ids{257, 256, 'x'}));
  EXPECT_EQ(tok.special_id("<a><b>"), 257);
  EXPECT_EQ(tok.special_id("<b>"), std::nullopt);
}

TEST(Tiny, ConstructorChecks) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 255; ++b) tokens.emplace_back(1, char(b));
  EXPECT_THROW(Tokenizer(tokens, {}, {}), Error);  // byte 0xFF missing
  tokens.emplace_back(1, char(255));
  EXPECT_THROW(Tokenizer(tokens, {{'a', 'b'}}, {}), Error);  // "ab" is not a token
  EXPECT_THROW(Tokenizer(tokens, {}, {300}), Error);
  tokens.push_back("a");
  EXPECT_THROW(Tokenizer(tokens, {}, {}), Error);  // two tokens with the same bytes
}

using BadFiles = TempDir;

// Runs f, which must throw loom::Error with a message containing every one of `parts`.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST_F(BadFiles, FailWithTheFileName) {
  const Tiny t;
  expect_error([&] { Tokenizer::load(dir_ / "nope"); }, {(dir_ / "nope").string()});
  expect_error([&] { Tokenizer::load(dir_); }, {dir_.string(), "holds none"});
  const auto garbled = write("garbled/tokenizer.json", "{\"model\": {\"vocab\": ");
  expect_error([&] { Tokenizer::load(garbled); }, {garbled.string(), "invalid JSON"});
  // A merge nested a million deep: quoting it in the error message overflowed the stack.
  const auto deep = write("deep.json", "{\"model\": {\"vocab\": {}, \"merges\": [" +
                                           std::string(1'000'000, '[') + std::string(1'000'000, ']') + "]}}");
  expect_error([&] { Tokenizer::load(deep); }, {deep.string(), "nested deeper"});
  const auto not_tok = write("not_tok.json", "[1, 2]");
  expect_error([&] { Tokenizer::load(not_tok); }, {not_tok.string(), "model"});

  const auto vocab = write("v/vocab.json", t.vocab_json().dump());
  const auto bad_line = write("v/merges.txt", "#version: 0.2\nĠ t\nh e x\n");
  expect_error([&] { Tokenizer::load(dir_ / "v"); },
               {bad_line.string() + " line 3", "expected two tokens", "h e x"});
  const auto unknown = write("v/merges.txt", "Ġ t\nq z\n");
  expect_error([&] { Tokenizer::load(dir_ / "v"); },
               {unknown.string() + " line 2", "\"qz\"", "not in the vocabulary"});
  expect_error([&] { Tokenizer::load_vocab_merges(vocab, dir_ / "v/missing.txt"); },
               {(dir_ / "v/missing.txt").string(), "cannot open"});

  nlohmann::json j = t.tokenizer_json(false);
  j["model"]["vocab"]["日"] = 300;
  const auto non_byte = write("nb.json", j.dump());
  expect_error([&] { Tokenizer::load(non_byte); }, {non_byte.string(), "not byte-level"});

  j = t.tokenizer_json(false);
  j["model"]["merges"][1] = "he";
  const auto bad_merge = write("bm.json", j.dump());
  expect_error([&] { Tokenizer::load(bad_merge); }, {bad_merge.string() + " model.merges[1]", "\"he\""});

  j = t.tokenizer_json(false);
  j["model"]["type"] = 5;
  const auto bad_type = write("bt.json", j.dump());
  expect_error([&] { Tokenizer::load(bad_type); }, {bad_type.string()});

  j = t.tokenizer_json(false);
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  const auto other_pre = write("op.json", j.dump());
  expect_error([&] { Tokenizer::load(other_pre); }, {other_pre.string(), "pre_tokenizer"});

  j = t.tokenizer_json(false);
  j["model"]["vocab"]["x"] = 1000000;  // tokens are kept by id: a table of a million for 262 tokens
  const auto sparse = write("sparse.json", j.dump());
  expect_error([&] { Tokenizer::load(sparse); }, {sparse.string(), "ids run up to 1000000"});

  j = t.tokenizer_json(false);
  j["model"]["vocab"].erase("\xC3\xBF");  // the byte 0xFF
  const auto no_byte = write("nobyte.json", j.dump());
  expect_error([&] { Tokenizer::load(no_byte); }, {no_byte.string(), "byte 0xFF"});
}

TEST_F(BadFiles, FailedSaveKeepsTheOldFile) {
  const Tiny t;
  const auto good = write("tok/tokenizer.json", t.tokenizer_json(false).dump());
  const Tokenizer tok = Tokenizer::load(good);
  fs::create_directories(dir_ / "tok/tokenizer.json.tmp");  // blocks the temporary file
  EXPECT_THROW(tok.save(good), Error);
  EXPECT_EQ(Tokenizer::load(good).vocab_size(), tok.vocab_size());
}

}  // namespace
}  // namespace loom::tokenizer
