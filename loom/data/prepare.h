// `loom prepare`: tokenizes .txt files (one document each) and .jsonl files (one document per
// line, its "text" field) into llm.c token shards, each document preceded by the EOT token.
#pragma once

#include <string>

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

}  // namespace loom::data
