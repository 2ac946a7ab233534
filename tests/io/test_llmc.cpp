// llm.c model files: a file written by hand in the documented layout (header, then the 16
// tensors stacked over layers) lands element by element in the right Loom tensors, saves back
// byte-identical directly and through a Hugging Face directory, and bad headers are rejected.
#include <gtest/gtest.h>

#include <numeric>

#include "io_testing.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/io/llmc.h"
#include "loom/nn/transformer.h"

using namespace loom;
using namespace loom::io;
using namespace loom::io_testing;

namespace {

constexpr int64_t maxT = 4, V = 100, L = 2, NH = 2, C = 8, Vp = 128;

// The documented parameter order and sizes (FORMATS.md, llm.c's fill_in_parameter_sizes).
enum Param { wte, wpe, ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb, lnfw, lnfb, kParams };
const int64_t kSizes[kParams] = {
    Vp * C,         // wte
    maxT * C,       // wpe
    L * C,          // ln1w
    L * C,          // ln1b
    L * 3 * C * C,  // qkvw
    L * 3 * C,      // qkvb
    L * C * C,      // attprojw
    L * C,          // attprojb
    L * C,          // ln2w
    L * C,          // ln2b
    L * 4 * C * C,  // fcw
    L * 4 * C,      // fcb
    L * C * 4 * C,  // fcprojw
    L * C,          // fcprojb
    C,              // lnfw
    C,              // lnfb
};

int64_t offset_of(Param p) { return std::accumulate(kSizes, kSizes + p, int64_t(0)); }

std::string header_bytes(std::vector<int32_t> fields) {
  fields.resize(256, 0);
  std::string s;
  for (int32_t f : fields) s += le(f);
  return s;
}

// Parameter k holds k + 1, except wte's padding rows, which llm.c writes as zeros.
std::vector<float> params() {
  std::vector<float> p(size_t(offset_of(kParams)));
  for (size_t k = 0; k < p.size(); ++k) p[k] = float(k + 1);
  std::fill(p.begin() + V * C, p.begin() + Vp * C, 0.0f);
  return p;
}

std::string model_file(const std::vector<int32_t>& header) {
  std::string s = header_bytes(header);
  for (float v : params()) s += le(v);
  return s;
}

const std::vector<int32_t> kHeader = {20240326, 3, maxT, V, L, NH, C, Vp};

float at(const std::map<std::string, Tensor>& s, const std::string& name, int64_t flat) { return s.at(name).data<float>()[flat]; }

}  // namespace

TEST(Llmc, LoadsEachParameterIntoItsLoomTensor) {
  TempDir dir;
  write_bytes(dir / "m.bin", model_file(kHeader));
  ModelWeights w = read_llmc(dir / "m.bin");
  const auto& c = w.config;
  EXPECT_EQ(c.family, "gpt2");
  EXPECT_EQ(c.max_seq_len, maxT);
  EXPECT_EQ(c.vocab_size, V);
  EXPECT_EQ(c.padded_vocab, Vp);
  EXPECT_EQ(c.n_layer, L);
  EXPECT_EQ(c.n_head, NH);
  EXPECT_EQ(c.n_embd, C);
  EXPECT_EQ(c.head_dim, C / NH);
  EXPECT_EQ(c.intermediate, 4 * C);
  EXPECT_TRUE(c.tied_head);

  const std::vector<float> p = params();
  const auto& s = w.state;
  EXPECT_EQ(at(s, "tok_emb.weight", 99 * C + 7), p[size_t(99 * C + 7)]);
  EXPECT_EQ(at(s, "tok_emb.weight", 100 * C), 0.0f);
  EXPECT_EQ(at(s, "pos_emb.weight", 3 * C + 5), p[size_t(offset_of(wpe) + 3 * C + 5)]);
  for (int64_t l = 0; l < L; ++l) {
    SCOPED_TRACE(l);
    const std::string pre = "layers." + std::to_string(l) + ".";
    for (int64_t j = 0; j < C; ++j) {
      EXPECT_EQ(at(s, pre + "attn_norm.weight", j), p[size_t(offset_of(ln1w) + l * C + j)]);
      EXPECT_EQ(at(s, pre + "mlp_norm.bias", j), p[size_t(offset_of(ln2b) + l * C + j)]);
    }
    // Row r of qkvw: rows [0, C) are wq, [C, 2C) wk, [2C, 3C) wv; each row is one output.
    for (int64_t r = 0; r < 3 * C; ++r)
      for (int64_t i = 0; i < C; ++i) {
        const char* w3[] = {"attn.wq.weight", "attn.wk.weight", "attn.wv.weight"};
        EXPECT_EQ(at(s, pre + w3[r / C], (r % C) * C + i), p[size_t(offset_of(qkvw) + l * 3 * C * C + r * C + i)]);
      }
    EXPECT_EQ(at(s, pre + "attn.wk.bias", 2), p[size_t(offset_of(qkvb) + l * 3 * C + C + 2)]);
    EXPECT_EQ(at(s, pre + "attn.wo.weight", 5 * C + 6), p[size_t(offset_of(attprojw) + l * C * C + 5 * C + 6)]);
    EXPECT_EQ(at(s, pre + "attn.wo.bias", 7), p[size_t(offset_of(attprojb) + l * C + 7)]);
    EXPECT_EQ(at(s, pre + "mlp.fc.weight", 31 * C + 1), p[size_t(offset_of(fcw) + l * 4 * C * C + 31 * C + 1)]);
    EXPECT_EQ(at(s, pre + "mlp.fc.bias", 30), p[size_t(offset_of(fcb) + l * 4 * C + 30)]);
    EXPECT_EQ(at(s, pre + "mlp.proj.weight", 7 * 4 * C + 29), p[size_t(offset_of(fcprojw) + l * 4 * C * C + 7 * 4 * C + 29)]);
    EXPECT_EQ(at(s, pre + "mlp.proj.bias", 0), p[size_t(offset_of(fcprojb) + l * C)]);
  }
  EXPECT_EQ(at(s, "norm.weight", 0), p[size_t(offset_of(lnfw))]);
  EXPECT_EQ(at(s, "norm.bias", C - 1), p.back());

  nn::TransformerLM model(c);
  model.load_state_dict(w.state);  // exactly the model's parameters and shapes
}

TEST(Llmc, SavesBackByteIdentical) {
  TempDir dir;
  const std::string original = model_file(kHeader);
  write_bytes(dir / "m.bin", original);
  ModelWeights w = read_llmc(dir / "m.bin");
  write_llmc(dir / "direct.bin", w.config, w.state);
  EXPECT_EQ(read_bytes(dir / "direct.bin"), original);

  // Through Hugging Face: padding rows dropped on save and restored as zeros on load.
  save_hf(dir / "hf", w.config, w.state);
  ModelWeights h = load_hf(dir / "hf");
  write_llmc(dir / "via_hf.bin", h.config, h.state);
  EXPECT_EQ(read_bytes(dir / "via_hf.bin"), original);
}

TEST(Llmc, RejectsBadHeadersAndSizes) {
  TempDir dir;
  const fs::path p = dir / "bad.bin";
  auto expect_bad = [&](const std::string& bytes, std::vector<std::string> frags) {
    write_bytes(p, bytes);
    frags.push_back("llmc: " + p.string());
    expect_error([&] { read_llmc(p); }, frags);
  };
  auto header = [&](size_t slot, int32_t value) {
    std::vector<int32_t> h = kHeader;
    h[slot] = value;
    return h;
  };
  const std::string good = model_file(kHeader);
  expect_bad(good.substr(0, 100), {"file is 100 bytes, shorter than the 1024-byte header"});
  expect_bad(model_file(header(0, 1234)), {"bad magic 1234 (expected 20240326"});
  expect_bad(model_file(header(0, 20240520)), {"this is an llm.c token file"});
  expect_bad(model_file(header(1, 5)), {"version 5 (bf16 parameters) is not supported"});
  expect_bad(model_file(header(1, 9)), {"unknown version 9"});
  expect_bad(model_file(header(4, 0)), {"header sizes must be positive", "L 0"});
  expect_bad(model_file(header(6, -8)), {"header sizes must be positive", "C -8"});
  expect_bad(model_file(header(7, 64)), {"padded vocab Vp 64 is smaller than V 100"});
  expect_bad(model_file(header(5, 3)), {"channels C 8 are not a multiple of the 3 heads"});
  const std::string needs = fmt::format("needs {}", good.size());
  expect_bad(good.substr(0, good.size() - 4), {fmt::format("file is {} bytes", good.size() - 4), needs});
  expect_bad(good + "xxxx", {fmt::format("file is {} bytes", good.size() + 4), needs});
  expect_bad(good.substr(0, 1024), {"file is 1024 bytes"});
  // Sizes whose product overflows 64 bits are a size mismatch, not an allocation.
  expect_bad(model_file({20240326, 3, 2147483647, 2147483647, 2147483647, 1, 2147483647, 2147483647}), {"needs 18446744073709551615"});
  expect_error([&] { read_llmc(dir / "missing.bin"); }, {"cannot open"});
}

TEST(Llmc, WriteRefusesWhatLlmcCannotHold) {
  TempDir dir;
  write_bytes(dir / "m.bin", model_file(kHeader));
  ModelWeights w = read_llmc(dir / "m.bin");
  const std::string before = read_bytes(dir / "m.bin");

  models::ModelConfig llama = models::preset("llama-tiny");
  nn::TransformerLM lm(llama);
  expect_error([&] { write_llmc(dir / "m.bin", llama, lm.state_dict()); }, {"llm.c holds GPT-2", "family llama"});
  models::ModelConfig untied = w.config;
  untied.tied_head = false;
  expect_error([&] { write_llmc(dir / "m.bin", untied, w.state); }, {"tied_head false"});

  auto missing = w.state;
  missing.erase("layers.1.mlp.fc.bias");
  expect_error([&] { write_llmc(dir / "m.bin", w.config, missing); }, {"missing tensor layers.1.mlp.fc.bias"});
  auto extra = w.state;
  extra["lm_head.weight"] = Tensor::zeros({Vp, C});
  expect_error([&] { write_llmc(dir / "m.bin", w.config, extra); }, {"unexpected tensor lm_head.weight"});
  auto wrong = w.state;
  wrong["norm.bias"] = Tensor::zeros({C}, DType::f64);
  expect_error([&] { write_llmc(dir / "m.bin", w.config, wrong); }, {"tensor norm.bias must be f32"});
  EXPECT_EQ(read_bytes(dir / "m.bin"), before);
}
