// Shared by the PyTorch parity tests: .npy files to hand tensors to the Python references and
// read their answers back, running a reference script, the model shapes of the model-level tests,
// and the max-norm comparison every parity check uses: |loom - torch| <= tol * max |torch|
// elementwise.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>

#include "loom/loom.h"

namespace loom::parity {

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, ".npy files here are little-endian");

// Writes an f32 or i64 tensor as a C-order .npy file.
inline void write_npy(const fs::path& path, const Tensor& t) {
  const Tensor c = ops::contiguous(t.detach());
  LOOM_CHECK(c.dtype() == DType::f32 || c.dtype() == DType::i64, "write_npy: unsupported dtype {}", dtype_name(c.dtype()));
  std::string shape = "(";
  for (int64_t d : c.shape()) shape += std::to_string(d) + ", ";
  std::string header = std::string("{'descr': '") + (c.dtype() == DType::f32 ? "<f4" : "<i8") +
                       "', 'fortran_order': False, 'shape': " + shape + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');  // magic+version+length+header+'\n' = 64k bytes
  header += '\n';
  const uint16_t len = uint16_t(header.size());
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  f.write(reinterpret_cast<const char*>(&len), 2);
  f.write(header.data(), std::streamsize(header.size()));
  f.write(static_cast<const char*>(c.raw_data()), std::streamsize(c.nbytes()));
  LOOM_CHECK(f.good(), "write_npy: cannot write {}", path.string());
}

struct Array {
  Shape shape;
  std::vector<float> data;
};

// Reads the float32 C-order arrays that np.save writes (format versions 1-3).
inline Array read_npy(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  LOOM_CHECK(f.good(), "read_npy: cannot open {}", path.string());
  char magic[8];
  f.read(magic, 8);
  LOOM_CHECK(f.good() && std::string(magic, 6) == "\x93NUMPY", "read_npy: {} is not a .npy file", path.string());
  uint32_t len = 0;
  f.read(reinterpret_cast<char*>(&len), magic[6] == 1 ? 2 : 4);
  std::string header(len, '\0');
  f.read(header.data(), len);
  LOOM_CHECK(header.find("'descr': '<f4'") != std::string::npos && header.find("'fortran_order': False") != std::string::npos,
             "read_npy: {} is not a C-order float32 array: {}", path.string(), header);
  const size_t open = header.find('(', header.find("'shape':"));
  std::istringstream dims(header.substr(open + 1, header.find(')', open) - open - 1));
  Array a;
  for (std::string d; std::getline(dims, d, ',');)
    if (d.find_first_not_of(' ') != std::string::npos) a.shape.push_back(std::stoll(d));
  a.data.resize(size_t(numel_of(a.shape)));
  f.read(reinterpret_cast<char*>(a.data.data()), std::streamsize(a.data.size() * sizeof(float)));
  LOOM_CHECK(f.good(), "read_npy: {} is truncated", path.string());
  return a;
}

// Deterministic test inputs from one Philox seed, at consecutive offsets.
class Inputs {
 public:
  explicit Inputs(uint64_t seed) : gen_(seed) {}
  Tensor randn(const Shape& s, double mean = 0.0, double std = 1.0) {
    return loom::randn(s, gen_.next(uint64_t(numel_of(s))), mean, std);
  }
  // Integers uniform in [lo, hi).
  std::vector<int64_t> ints(int64_t n, int64_t lo, int64_t hi) {
    const RngKey key = gen_.next(uint64_t(n));
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = lo + int64_t(uniform_at(key.seed, key.offset + uint64_t(i)) * float(hi - lo));
    return v;
  }

 private:
  Generator gen_;
};

inline std::string read_text(const fs::path& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Runs tests/parity/<script> DIR with the parity Python (output in DIR/torch.log); "" when it
// succeeded, else what failed and its output.
inline std::string run_reference(const std::string& script, const fs::path& dir) {
  const std::string cmd = fmt::format("'{}' '{}/tests/parity/{}' '{}' > '{}' 2>&1", LOOM_PYTHON, LOOM_SOURCE_DIR, script, dir.string(),
                                      (dir / "torch.log").string());
  const int rc = std::system(cmd.c_str());
  if (rc == 0) return "";
  return fmt::format("the PyTorch reference failed (exit status {}): {}\n{}", WIFEXITED(rc) ? WEXITSTATUS(rc) : rc, cmd,
                     read_text(dir / "torch.log"));
}

// The model-level tests' shapes: a little bigger than the tiny presets, each family's
// distinguishing features on.
inline models::ModelConfig model_config(const std::string& family) {
  models::ModelConfig c = models::preset(family + "-tiny");
  c.n_layer = 3;
  c.n_embd = 96;
  c.max_seq_len = 64;
  if (family == "gpt2") {
    c.vocab_size = 200;  // < padded_vocab 256: the padded logits must be excluded
    c.n_head = c.n_kv_head = 4;
    c.head_dim = 24;
    c.intermediate = 4 * 96;
  } else if (family == "llama") {
    c.n_head = 4;
    c.n_kv_head = 2;
    c.head_dim = 32;  // q and o projections are 128 wide, not C
    c.intermediate = 256;
  } else if (family == "qwen2") {
    c.n_layer = 2;
    c.n_head = 6;
    c.n_kv_head = 2;
    c.head_dim = 16;
    c.intermediate = 224;
  } else {
    c.n_layer = 2;
    c.n_head = 6;
    c.n_kv_head = 2;
    c.head_dim = 24;  // q and o projections are 144 wide, not C
    c.intermediate = 192;
  }
  return c;
}

// Norm weights 1 + N(0, 0.1) and biases N(0, 0.1) instead of init's ones and zeros.
inline void perturb_vectors(nn::TransformerLM& model, Inputs& in) {
  autograd::NoGradGuard no_grad;
  for (auto& [name, p] : model.named_parameters()) {
    if (p.ndim() != 1) continue;
    Tensor dst = p;
    ops::copy_(dst, p + in.randn(p.shape(), 0.0, 0.1));
  }
}

struct Closeness {
  double rel_err = INFINITY;  // max |loom - torch| / scale
  double scale = 0.0;         // max |torch|
};

// Adds a failure naming `what` unless |loom - torch| <= tol * max(|torch|, max |torch|) everywhere
// (torch read from ref_path); returns the largest error, relative to max |torch|.
inline Closeness expect_close(const std::string& what, const Tensor& loom, const fs::path& ref_path, double tol) {
  Closeness c;
  if (!fs::exists(ref_path)) {
    ADD_FAILURE() << what << ": torch wrote no " << ref_path;
    return c;
  }
  const Array ref = read_npy(ref_path);
  if (loom.shape() != ref.shape) {
    ADD_FAILURE() << what << ": Loom's shape " << fmt::format("{}", loom.shape()) << " differs from torch's "
                  << fmt::format("{}", ref.shape);
    return c;
  }
  const std::vector<double> got = loom.to_vector();
  double max_diff = 0.0;
  for (float b : ref.data) c.scale = std::max(c.scale, double(std::abs(b)));
  int64_t bad = 0, first_bad = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double b = ref.data[i], diff = std::abs(got[i] - b);
    max_diff = std::max(max_diff, std::isnan(diff) ? INFINITY : diff);
    if (!(diff <= tol * std::max(std::abs(b), c.scale)) && bad++ == 0) first_bad = int64_t(i);
  }
  c.rel_err = c.scale > 0 ? max_diff / c.scale : max_diff;
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " elements differ by more than " << tol
                    << " relative; first at flat index " << first_bad << ": loom " << got[size_t(first_bad)] << " torch "
                    << ref.data[size_t(first_bad)] << "; max |diff| / scale = " << c.rel_err;
  return c;
}

}  // namespace loom::parity
