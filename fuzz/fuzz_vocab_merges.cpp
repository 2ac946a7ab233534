// Fuzzes the GPT-2 vocab.json + merges.txt loader (the same code reads OpenAI's encoder.json +
// vocab.bpe). The input is the JSON, a NUL, then the merges text; a tokenizer it accepts must
// round-trip text.
#include "fuzz/tokenizer_check.h"

void loom::fuzz::one_input(std::string_view input) {
  const auto [vocab, merges] = split_at_nul(input);
  check_round_trip(tokenizer::Tokenizer::load_vocab_merges(write_file("vocab.json", vocab), write_file("merges.txt", merges)));
}
