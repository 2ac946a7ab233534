// `loom prepare --tokenizer PATH --input FILE|DIR --output DIR [--separator TOKEN] [--val-fraction F]`.
#include "loom/cli/commands.h"
#include "loom/data/prepare.h"

namespace loom::cli {

Command add_prepare(CLI::App& app) {
  auto* cmd = app.add_subcommand("prepare", "tokenize .txt/.jsonl documents into llm.c token shards");
  auto opt = std::make_shared<data::PrepareOptions>();
  cmd->add_option("--tokenizer", opt->tokenizer, "tokenizer.json, or a directory with tokenizer.json, vocab.json+merges.txt or encoder.json+vocab.bpe")
      ->required();
  cmd->add_option("--input", opt->input, "a .txt file (one document), a .jsonl file (\"text\" per line) or a directory of them")->required();
  cmd->add_option("--output", opt->output, "directory for train_*.bin and val_*.bin shards")->required();
  cmd->add_option("--separator", opt->separator, "the token put before each document (default: the tokenizer's BOS when it adds one, else <|endoftext|>, else its EOS)");
  cmd->add_option("--val-fraction", opt->val_fraction, "fraction of documents for validation (0 = all train)");
  cmd->add_option("--shard-tokens", opt->shard_tokens, "tokens per shard");
  return {cmd, [opt](const std::shared_ptr<dist::Group>&) {
            data::PrepareStats s = data::prepare(*opt);
            fmt::print("prepared {} documents: {} train tokens in {} shards, {} val tokens in {} shards, in {}\n", s.documents, s.train_tokens,
                       s.train_shards, s.val_tokens, s.val_shards, opt->output);
            return 0;
          }};
}

}  // namespace loom::cli
