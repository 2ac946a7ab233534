// Fuzzes `loom sft`'s data: the input is one byte of options (packing, sft.train_on,
// sft.truncation, T), then a JSON Lines file of examples, read with a byte-level tokenizer that
// has ChatML's special tokens and template. What is accepted must be well-formed rows: positions
// counting from 0 within each document, ids and targets in the vocabulary, and a trained target
// equal to the next input of its document.
#include <fstream>

#include "fuzz/harness.h"
#include "loom/data/sft.h"

namespace {

const loom::data::SftTokenizer& chatml() {
  static const loom::data::SftTokenizer t = [] {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.emplace_back(1, char(b));
    for (const char* s : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) tokens.emplace_back(s);
    const std::filesystem::path dir = loom::fuzz::write_file("tok/tokenizer_config.json",
        R"({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"})")
                                          .parent_path();
    loom::tokenizer::Tokenizer(tokens, {}, std::vector<int32_t>{256, 257, 258}).save(dir / "tokenizer.json");
    return loom::data::load_sft_tokenizer(dir, dir);
  }();
  return t;
}

}  // namespace

void loom::fuzz::one_input(std::string_view input) {
  if (input.empty()) return;
  const auto opt = uint8_t(input[0]);
  const data::SftOptions o{opt & 1 ? "last_assistant" : opt & 2 ? "all" : "assistant", bool(opt & 4), opt & 8 ? "drop" : "truncate",
                           1 + (opt >> 4) * 4};
  const std::filesystem::path file = write_file("examples.jsonl", input.substr(1));
  data::SftStats st;
  const auto rows = data::sft_sequences(file, "data.train", chatml(), o, 259, &st);
  const int64_t T = rows->seq_len();
  expect(T == o.seq_len && rows->size() == st.sequences && rows->packed() == o.packing, "rows of another shape than asked");
  const auto n = static_cast<size_t>(T);
  std::vector<int64_t> in(n), tgt(n), pos(n);
  int64_t trained = 0;
  for (int64_t r = 0; r < rows->size(); ++r) {
    rows->read(r, in.data(), tgt.data(), pos.data());
    for (int64_t t = 0; t < T; ++t) {
      expect(in[size_t(t)] >= 0 && in[size_t(t)] < 259 && (tgt[size_t(t)] == -100 || (tgt[size_t(t)] >= 0 && tgt[size_t(t)] < 259)),
             "an id outside the vocabulary");
      expect(pos[size_t(t)] == (t == 0 || pos[size_t(t)] == 0 ? 0 : pos[size_t(t) - 1] + 1), "positions do not count from 0 per document");
      expect(o.packing || pos[size_t(t)] == t, "an unpacked row with restarting positions");
      if (tgt[size_t(t)] != -100 && t + 1 < T && pos[size_t(t) + 1] > 0)
        expect(tgt[size_t(t)] == in[size_t(t) + 1], "a target is not its document's next token");
      trained += tgt[size_t(t)] != -100;
    }
  }
  expect(trained == st.trained_tokens, "the trained tokens counted differ from the rows'");
}
