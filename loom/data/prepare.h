// `loom prepare`: tokenizes .txt files (one document each) and .jsonl files (one document per
// line, its "text" field) into llm.c token shards, each document preceded by the EOT token.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "loom/tokenizer/bpe.h"

namespace loom::data {

struct PrepareOptions {
  std::string tokenizer;  // tokenizer.json, or a directory with one of the supported layouts
  std::string input;      // a .txt/.jsonl file or a directory of them
  std::string output;     // directory for train_NNNNNN.bin / val_NNNNNN.bin
  std::string separator;  // the token before each document; "" = the tokenizer's (see document_separator)
  double val_fraction = 0.0;
  int64_t shard_tokens = 100'000'000;  // as llm.c's shards
  bool progress = true;
};

struct PrepareStats {
  int64_t documents = 0, train_tokens = 0, val_tokens = 0, train_shards = 0, val_shards = 0;
};

PrepareStats prepare(const PrepareOptions& opt);

// The documents of a .txt file (the whole file) or a .jsonl file (each line's "text"); a bad
// line is an error naming `what`, the file and the line.
std::vector<std::string> read_documents(const std::filesystem::path& file, const std::string& what);
// Each document's ids as prepare writes them: the separator, then its text (special strings
// stay text). Encoded in parallel.
std::vector<std::vector<int32_t>> encode_documents(const tokenizer::Tokenizer& tok, int32_t separator, const std::vector<std::string>& docs);

}  // namespace loom::data
