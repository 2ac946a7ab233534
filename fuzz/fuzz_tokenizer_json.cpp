// Fuzzes the HF tokenizer.json loader (model.vocab, model.merges, added_tokens, pipeline checks);
// a tokenizer it accepts must round-trip text.
#include "fuzz/tokenizer_check.h"

void loom::fuzz::one_input(std::string_view input) {
  check_round_trip(tokenizer::Tokenizer::load_hf_json(write_file("tokenizer.json", input)));
}
