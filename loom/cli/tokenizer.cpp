// `loom tokenizer train --input FILE|DIR --vocab-size N --output tokenizer.json`: learns a
// byte-level BPE vocabulary (with <|endoftext|> as a special token) from .txt/.jsonl files.
#include <filesystem>

#include "loom/cli/commands.h"
#include "loom/io/file_util.h"
#include "loom/tokenizer/train.h"

namespace loom::cli {

Command add_tokenizer(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer", "tokenizer tools");
  auto* tr = cmd->add_subcommand("train", "learn a byte-level BPE vocabulary from text files");
  cmd->require_subcommand(1);
  struct Args {
    std::string input, output;
    int32_t vocab_size = 4096;
  };
  auto a = std::make_shared<Args>();
  tr->add_option("--input", a->input, "a text file or a directory of .txt files")->required();
  tr->add_option("--vocab-size", a->vocab_size, "vocabulary size including the 256 bytes and <|endoftext|>");
  tr->add_option("--output", a->output, "tokenizer.json to write")->required();
  return {cmd, [a](const std::shared_ptr<dist::Group>&) {
            namespace fs = std::filesystem;
            std::vector<std::string> texts;
            std::vector<fs::path> files;
            if (fs::is_directory(a->input)) {
              for (const auto& e : fs::recursive_directory_iterator(a->input))
                if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
            } else {
              files.push_back(a->input);
            }
            LOOM_CHECK(!files.empty(), "tokenizer train: no .txt files under {}", a->input);
            for (const fs::path& f : files) texts.push_back(io::read_text_file(f));
            const std::vector<std::string> specials = {"<|endoftext|>"};
            tokenizer::Tokenizer tok = tokenizer::train(texts, a->vocab_size, specials);
            tok.save(a->output);
            fmt::print("trained a {}-token vocabulary on {} files -> {}\n", tok.vocab_size(), files.size(), a->output);
            return 0;
          }};
}

}  // namespace loom::cli
