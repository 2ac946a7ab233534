// llm.c model file reader and writer. Loom keeps the same [out, in] layout and splits qkvw
// by rows into wq|wk|wv, so the file is the Loom tensors laid end to end in llm.c's order.
#include "loom/io/llmc.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "loom/io/file_util.h"
#include "loom/models/hf_names.h"
#include "loom/ops/shape.h"

namespace loom::io {

static_assert(std::endian::native == std::endian::little, "llm.c files are little-endian");

namespace fs = std::filesystem;
using models::ModelConfig;

namespace {

constexpr int32_t kModelMagic = 20240326, kTokensMagic = 20240520, kTokenizerMagic = 20240328;
constexpr int32_t kVersionF32 = 3, kVersionBf16 = 5;
constexpr size_t kHeaderInts = 256, kHeaderBytes = kHeaderInts * 4;

// Loom parameter names in file order: wte, wpe, then each per-layer tensor over all layers
// (qkvw / qkvb of one layer = its wq, wk, wv rows in turn), then lnfw, lnfb.
std::vector<std::string> file_order(const ModelConfig& c) {
  static const std::vector<std::vector<std::string>> per_layer = {
      {"attn_norm.weight"},
      {"attn_norm.bias"},
      {"attn.wq.weight", "attn.wk.weight", "attn.wv.weight"},
      {"attn.wq.bias", "attn.wk.bias", "attn.wv.bias"},
      {"attn.wo.weight"},
      {"attn.wo.bias"},
      {"mlp_norm.weight"},
      {"mlp_norm.bias"},
      {"mlp.fc.weight"},
      {"mlp.fc.bias"},
      {"mlp.proj.weight"},
      {"mlp.proj.bias"},
  };
  std::vector<std::string> order = {"tok_emb.weight", "pos_emb.weight"};
  for (const auto& group : per_layer)
    for (int64_t l = 0; l < c.n_layer; ++l)
      for (const std::string& name : group) order.push_back(fmt::format("layers.{}.{}", l, name));
  order.insert(order.end(), {"norm.weight", "norm.bias"});
  return order;
}

void check_llmc_compatible(const std::string& where, const ModelConfig& c) {
  models::check_hf_compatible(c);
  LOOM_CHECK(c.family == "gpt2" && c.tied_head && c.intermediate == 4 * c.n_embd,
             "{}: llm.c holds GPT-2 with a tied head and a 4 x n_embd MLP (config: family {}, tied_head {}, intermediate {})", where,
             c.family, c.tied_head, c.intermediate);
  const int64_t limit = std::numeric_limits<int32_t>::max();
  LOOM_CHECK(c.max_seq_len <= limit && c.padded_vocab <= limit && c.n_layer <= limit && c.n_embd <= limit,
             "{}: sizes must fit the int32 header (max_seq_len {}, padded_vocab {}, n_layer {}, n_embd {})", where, c.max_seq_len,
             c.padded_vocab, c.n_layer, c.n_embd);
}

ModelConfig config_from_header(const std::string& where, const int32_t* h) {
  if (h[0] != kModelMagic) {
    const char* what = h[0] == kTokensMagic      ? " (this is an llm.c token file)"
                       : h[0] == kTokenizerMagic ? " (this is an llm.c tokenizer file)"
                                                 : "";
    throw Error(fmt::format("{}: bad magic {} (expected {}, an llm.c model file){}", where, h[0], kModelMagic, what));
  }
  LOOM_CHECK(h[1] != kVersionBf16, "{}: version 5 (bf16 parameters) is not supported; Loom reads version 3 (fp32)", where);
  LOOM_CHECK(h[1] == kVersionF32, "{}: unknown version {} (expected 3, fp32)", where, h[1]);
  const int32_t maxT = h[2], V = h[3], L = h[4], NH = h[5], C = h[6], Vp = h[7];
  LOOM_CHECK(maxT > 0 && V > 0 && L > 0 && NH > 0 && C > 0 && Vp > 0,
             "{}: header sizes must be positive: maxT {}, V {}, L {}, NH {}, C {}, Vp {}", where, maxT, V, L, NH, C, Vp);
  LOOM_CHECK(Vp >= V, "{}: padded vocab Vp {} is smaller than V {}", where, Vp, V);
  LOOM_CHECK(C % NH == 0, "{}: channels C {} are not a multiple of the {} heads", where, C, NH);
  ModelConfig c;  // the defaults are GPT-2's
  c.max_seq_len = maxT;
  c.vocab_size = V;
  c.padded_vocab = Vp;
  c.n_layer = L;
  c.n_head = c.n_kv_head = NH;
  c.n_embd = C;
  c.head_dim = C / NH;
  c.intermediate = 4 * int64_t(C);
  return c;
}

}  // namespace

ModelWeights read_llmc(const fs::path& path) {
  const std::string where = "llmc: " + path.string();
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  LOOM_CHECK(f, "{}: cannot open: {}", where, std::strerror(errno));
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  LOOM_CHECK(!ec, "{}: cannot stat: {}", where, ec.message());
  LOOM_CHECK(size >= kHeaderBytes, "{}: file is {} bytes, shorter than the {}-byte header", where, size, kHeaderBytes);
  int32_t header[kHeaderInts];
  LOOM_CHECK(std::fread(header, 4, kHeaderInts, f.get()) == kHeaderInts, "{}: cannot read the header", where);

  ModelWeights w{config_from_header(where, header), {}};
  // The parameter count from the header's int32 sizes, in 128 bits so no header can overflow it:
  // wte, wpe, per layer 12 C^2 weights + 13 C biases and norms, then lnf.
  using u128 = unsigned __int128;
  const u128 C = u128(header[6]);
  const u128 params = u128(header[7]) * C + u128(header[2]) * C + u128(header[4]) * (12 * C * C + 13 * C) + 2 * C;
  const u128 expected = kHeaderBytes + 4 * params;
  LOOM_CHECK(expected == size, "{}: file is {} bytes; the header (maxT {}, V {}, L {}, NH {}, C {}, Vp {}) needs {}", where, size,
             header[2], header[3], header[4], header[5], header[6], header[7], uint64_t(std::min<u128>(expected, UINT64_MAX)));

  const std::vector<std::string> order = file_order(w.config);
  const std::map<std::string, Shape> shapes = models::loom_parameter_shapes(w.config);
  for (const std::string& name : order) {
    Tensor t = Tensor::empty(shapes.at(name));
    LOOM_CHECK(std::fread(t.raw_data(), 4, size_t(t.numel()), f.get()) == size_t(t.numel()), "{}: short read in tensor {}", where, name);
    w.state.emplace(name, std::move(t));
  }
  return w;
}

void write_llmc(const fs::path& path, const ModelConfig& config, const std::map<std::string, Tensor>& state) {
  const std::string where = "llmc: " + path.string();
  check_llmc_compatible(where, config);
  const std::map<std::string, Shape> shapes = models::loom_parameter_shapes(config);
  for (const auto& [name, t] : state) LOOM_CHECK(shapes.count(name), "{}: unexpected tensor {} for a GPT-2 model", where, name);
  std::vector<Tensor> tensors;
  for (const std::string& name : file_order(config)) {
    auto it = state.find(name);
    LOOM_CHECK(it != state.end(), "{}: missing tensor {}", where, name);
    const Tensor& t = it->second;
    LOOM_CHECK(t.shape() == shapes.at(name), "{}: tensor {} has shape {}, the config expects {}", where, name, t.shape(), shapes.at(name));
    LOOM_CHECK(t.dtype() == DType::f32 && t.device().is_cpu(), "{}: tensor {} must be f32 on the CPU (is {})", where, name,
               dtype_name(t.dtype()));
    tensors.push_back(ops::contiguous(t.detach()));
  }
  int32_t header[kHeaderInts] = {};
  header[0] = kModelMagic;
  header[1] = kVersionF32;
  header[2] = int32_t(config.max_seq_len);
  header[3] = int32_t(config.vocab_size);
  header[4] = int32_t(config.n_layer);
  header[5] = int32_t(config.n_head);
  header[6] = int32_t(config.n_embd);
  header[7] = int32_t(config.padded_vocab);
  AtomicFile file(path);
  file.write(header, sizeof(header));
  for (const Tensor& t : tensors) file.write(t.raw_data(), t.nbytes());
  file.commit();
}

}  // namespace loom::io
