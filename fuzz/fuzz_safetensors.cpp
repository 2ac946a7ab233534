// Fuzzes the safetensors reader: the 8-byte header size, the JSON header and the offsets it
// gives, against the file's real size. Every tensor it returns must lie inside its storage.
#include "fuzz/harness.h"
#include "loom/io/safetensors.h"

void loom::fuzz::one_input(std::string_view input) {
  io::Metadata metadata;
  const io::TensorMap tensors = io::read_safetensors(write_file("model.safetensors", input), &metadata);
  for (const auto& [name, t] : tensors) {
    const size_t begin = size_t(t.impl()->offset) * dtype_size(t.dtype());
    expect(begin + t.nbytes() <= t.storage()->nbytes(), "a tensor reaches past its storage");
    const auto* bytes = static_cast<const unsigned char*>(t.raw_data());
    unsigned sum = 0;
    for (size_t i = 0; i < t.nbytes(); ++i) sum += bytes[i];
    asm volatile("" : : "r"(sum));  // keep the reads
  }
}
