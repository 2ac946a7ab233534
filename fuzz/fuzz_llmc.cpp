// Fuzzes the llm.c GPT-2 model reader: magic, version, the header's sizes and the exact file
// size they imply. A model it accepts must write back to the same bytes (header ints past
// the eight llm.c uses aside, which the writer zeroes).
#include <cstring>

#include "fuzz/harness.h"
#include "loom/io/file_util.h"
#include "loom/io/llmc.h"

void loom::fuzz::one_input(std::string_view input) {
  const io::ModelWeights w = io::read_llmc(write_file("model.bin", input));
  const std::filesystem::path copy = write_file("copy.bin", "");
  must_accept([&] { io::write_llmc(copy, w.config, w.state); });
  const std::string out = io::read_text_file(copy);
  expect(out.size() == input.size() && std::memcmp(out.data(), input.data(), 32) == 0 &&
             std::memcmp(out.data() + 1024, input.data() + 1024, out.size() - 1024) == 0,
         "the model does not write back to the same bytes");
}
