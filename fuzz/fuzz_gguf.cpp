// Fuzzes the GGUF reader: the header counts, typed metadata (strings, arrays and their lengths),
// general.alignment, tensor infos and data offsets, all against the file's size. A file it accepts
// must write back: its metadata and tensor values (as f32) written by the writer and read again
// are what was read.
#include <cstring>

#include "fuzz/harness.h"
#include "loom/io/gguf.h"

namespace {

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

}  // namespace

void loom::fuzz::one_input(std::string_view input) {
  namespace gguf = io::gguf;
  const gguf::File f(write_file("model.gguf", input));
  std::vector<gguf::OutTensor> tensors;
  std::vector<Tensor> values;
  for (const gguf::TensorInfo& t : f.tensors()) {
    expect(t.offset + t.nbytes <= input.size(), "a tensor reaches past the file");
    values.push_back(f.values(t));
    tensors.push_back({t.name, gguf::TensorType::f32, t.shape, [v = values.back()] { return v; }});
  }
  const std::filesystem::path copy = write_file("copy.gguf", "");
  must_accept([&] { gguf::write_file(copy, f.metadata(), tensors); });
  const gguf::File g = must_accept([&] { return gguf::File(copy); });
  expect(g.metadata().size() == f.metadata().size() && g.tensors().size() == f.tensors().size(), "the copy has other counts");
  for (size_t i = 0; i < f.metadata().size(); ++i) {
    const auto &[ka, a] = f.metadata()[i];
    const auto &[kb, b] = g.metadata()[i];
    expect(ka == kb && a.type == b.type && a.array == b.array && a.ints == b.ints && a.strings == b.strings && same_bits(a.floats, b.floats),
           "a metadata value does not write back");
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const Tensor back = g.values(g.tensors()[i]);
    expect(g.tensors()[i].name == f.tensors()[i].name && back.shape() == values[i].shape() &&
               std::memcmp(back.raw_data(), values[i].raw_data(), values[i].nbytes()) == 0,
           "a tensor does not write back");
  }
}
