// Corpus preparation: read documents, encode them in parallel (the tokenizer is thread-safe),
// split train/val by a seeded per-document draw, and write shards as they fill.
#include "loom/data/prepare.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/core/rng.h"
#include "loom/data/shards.h"
#include "loom/io/file_util.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/config.h"

namespace loom::data {

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> input_files(const std::string& input) {
  std::vector<fs::path> files;
  auto wanted = [](const fs::path& p) { return p.extension() == ".txt" || p.extension() == ".jsonl"; };
  if (fs::is_directory(input)) {
    for (const auto& e : fs::recursive_directory_iterator(input))
      if (e.is_regular_file() && wanted(e.path())) files.push_back(e.path());
  } else {
    LOOM_CHECK(fs::is_regular_file(input), "prepare: --input {} does not exist", input);
    LOOM_CHECK(wanted(input), "prepare: --input {} must be a .txt or .jsonl file (or a directory of them)", input);
    files.push_back(input);
  }
  LOOM_CHECK(!files.empty(), "prepare: no .txt or .jsonl files under {}", input);
  std::sort(files.begin(), files.end());
  return files;
}

// Accumulates tokens of one split and flushes a shard each time shard_tokens are reached.
struct ShardWriter {
  std::string dir, split;
  int64_t limit;
  bool wide;
  std::vector<uint32_t> buf;
  int64_t shards = 0, total = 0;
  void add(const std::vector<int32_t>& ids) {
    for (int32_t id : ids) {
      buf.push_back(uint32_t(id));
      if (int64_t(buf.size()) == limit) flush();
    }
    total += int64_t(ids.size());
  }
  void flush() {
    if (buf.empty()) return;
    write_shard((fs::path(dir) / fmt::format("{}_{:06d}.bin", split, shards++)).string(), buf, wide);
    buf.clear();
  }
};

}  // namespace

std::vector<std::string> read_documents(const fs::path& file, const std::string& what) {
  if (file.extension() == ".txt") return {io::read_text_file(file)};
  std::vector<std::string> docs;
  io::for_each_json_line(file, what, [&](const nlohmann::ordered_json& j, int64_t) { docs.push_back(io::text_field(j)); });
  return docs;
}

std::vector<std::vector<int32_t>> encode_documents(const tokenizer::Tokenizer& tok, int32_t separator, const std::vector<std::string>& docs) {
  std::vector<std::vector<int32_t>> encoded(docs.size());
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < docs.size(); ++i) {
    encoded[i].push_back(separator);
    std::vector<int32_t> ids = tok.encode(docs[i]);
    encoded[i].insert(encoded[i].end(), ids.begin(), ids.end());
  }
  return encoded;
}

PrepareStats prepare(const PrepareOptions& opt) {
  LOOM_CHECK(opt.val_fraction >= 0 && opt.val_fraction < 1, "prepare: --val-fraction {} must be in [0, 1)", opt.val_fraction);
  LOOM_CHECK(opt.shard_tokens > 0, "prepare: shard size {} must be positive", opt.shard_tokens);
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(opt.tokenizer);
  const int32_t separator = tokenizer::document_separator(tok, tokenizer::load_tokenizer_config(opt.tokenizer), opt.separator);
  const bool wide = tok.vocab_size() > 65536;
  const std::vector<fs::path> files = input_files(opt.input);
  uintmax_t total_bytes = 0, done_bytes = 0;
  for (const auto& f : files) total_bytes += fs::file_size(f);
  fs::create_directories(opt.output);
  ShardWriter train{opt.output, "train", opt.shard_tokens, wide, {}}, val{opt.output, "val", opt.shard_tokens, wide, {}};
  PrepareStats st;
  for (const fs::path& file : files) {
    for (const auto& ids : encode_documents(tok, separator, read_documents(file, "prepare"))) {
      // A fixed draw per document index decides its split, so reruns give the same shards.
      const bool to_val = uniform_at(0x5eed, uint64_t(st.documents)) < opt.val_fraction;
      (to_val ? val : train).add(ids);
      ++st.documents;
    }
    done_bytes += fs::file_size(file);
    if (opt.progress)
      fmt::print(stderr, "\rprepare: {:5.1f}% ({} documents, {} tokens)", 100.0 * double(done_bytes) / double(std::max<uintmax_t>(total_bytes, 1)),
                 st.documents, train.total + val.total);
  }
  if (opt.progress) fmt::print(stderr, "\n");
  train.flush();
  val.flush();
  st.train_tokens = train.total;
  st.val_tokens = val.total;
  st.train_shards = train.shards;
  st.val_shards = val.shards;
  return st;
}

}  // namespace loom::data
