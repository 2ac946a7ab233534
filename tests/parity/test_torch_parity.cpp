// Parity with PyTorch (f32) of Loom's ops: forward outputs and the gradients of every float input
// of loss = sum(out * R), R fixed random. A case is one entry of cases() here and one op function
// in torch_reference.py, which runs once over .npy inputs in a temp dir. Tolerance per element:
// |loom - torch| <= 1e-5 * max(|torch|, scale), scale = max |torch| of the tensor (a max-norm check).
#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "loom/nn/lora.h"
#include <vector>

#include <unistd.h>

#include "loom/loom.h"
#include "parity_util.h"

using namespace loom;
using parity::Inputs;
using parity::read_text;
using parity::write_npy;
namespace fs = std::filesystem;

namespace {

constexpr double kRelTol = 1e-5;

// ---- cases ----

using Args = std::vector<Tensor>;

// One op call: named inputs in call order (their names are the Python function's parameters),
// keyword parameters as JSON values, and the same call in Loom.
struct Case {
  std::string op;
  std::vector<std::pair<std::string, Tensor>> inputs;
  std::vector<std::pair<std::string, std::string>> params;
  std::function<Tensor(const Args&)> run;
};

std::string json(bool v) { return v ? "true" : "false"; }
std::string json(int64_t v) { return std::to_string(v); }
std::string json(double v) { return fmt::format("{:.17g}", v); }
std::string json(const char* v) { return fmt::format("\"{}\"", v); }

// Packed-sequence document ids 0, 1, ... of a row of T tokens whose documents begin at starts (starts[0] = 0).
std::vector<int64_t> docs(int64_t T, const std::vector<int64_t>& starts) {
  std::vector<int64_t> ids(static_cast<size_t>(T));
  for (int64_t t = 0, d = 0; t < T; ++t) {
    while (d + 1 < int64_t(starts.size()) && t >= starts[size_t(d + 1)]) ++d;
    ids[size_t(t)] = d;
  }
  return ids;
}

Case attention(Inputs& in, int64_t H, int64_t Hkv, int64_t Tq, int64_t Tk, bool causal, double scale = 0.0) {
  const int64_t B = 2, D = 16;
  return {"scaled_dot_product_attention",
          {{"q", in.randn({B, H, Tq, D})}, {"k", in.randn({B, Hkv, Tk, D})}, {"v", in.randn({B, Hkv, Tk, D})}},
          {{"causal", json(causal)}, {"scale", json(scale)}},
          [causal, scale](const Args& x) { return ops::scaled_dot_product_attention(x[0], x[1], x[2], causal, Tensor(), scale); }};
}

Case unary(Inputs& in, const char* op, Shape shape, double std, Tensor (*f)(const Tensor&)) {
  return {op, {{"x", in.randn(shape, 0.0, std)}}, {}, [f](const Args& x) { return f(x[0]); }};
}

using Builder = std::function<Case(Inputs&)>;

// name -> case. Names are GoogleTest parameter names: letters, digits and '_'.
const std::vector<std::pair<std::string, Builder>>& cases() {
  static const std::vector<std::pair<std::string, Builder>> table = {
      {"matmul_2d", [](Inputs& in) -> Case {
         return {"matmul", {{"a", in.randn({64, 128})}, {"b", in.randn({128, 96})}}, {},
                 [](const Args& x) { return ops::matmul(x[0], x[1]); }};
       }},
      {"matmul_batched", [](Inputs& in) -> Case {
         return {"matmul", {{"a", in.randn({2, 3, 32, 48})}, {"b", in.randn({2, 3, 48, 40})}}, {},
                 [](const Args& x) { return ops::matmul(x[0], x[1]); }};
       }},
      {"matmul_broadcast_b", [](Inputs& in) -> Case {
         return {"matmul", {{"a", in.randn({4, 32, 48})}, {"b", in.randn({48, 40})}}, {},
                 [](const Args& x) { return ops::matmul(x[0], x[1]); }};
       }},
      {"matmul_transposed_b", [](Inputs& in) -> Case {  // q @ kᵀ of B=2, H=4, T=64, D=16
         return {"matmul", {{"a", in.randn({2, 4, 64, 16})}, {"b", in.randn({2, 4, 64, 16})}},
                 {{"transpose_b", json(true)}},
                 [](const Args& x) { return ops::matmul(x[0], ops::transpose(x[1], -1, -2)); }};
       }},
      {"matmul_transposed_a", [](Inputs& in) -> Case {  // xᵀ @ dy, a weight-gradient shape
         return {"matmul", {{"a", in.randn({128, 64})}, {"b", in.randn({128, 96})}},
                 {{"transpose_a", json(true)}},
                 [](const Args& x) { return ops::matmul(ops::transpose(x[0], 0, 1), x[1]); }};
       }},
      {"linear", [](Inputs& in) -> Case {
         return {"linear", {{"x", in.randn({4, 32, 256})}, {"weight", in.randn({384, 256}, 0.0, 0.05)}, {"bias", in.randn({384})}},
                 {}, [](const Args& x) { return ops::linear(x[0], x[1], x[2]); }};
       }},
      {"linear_no_bias", [](Inputs& in) -> Case {
         return {"linear", {{"x", in.randn({64, 256})}, {"weight", in.randn({128, 256}, 0.0, 0.05)}}, {},
                 [](const Args& x) { return ops::linear(x[0], x[1]); }};
       }},
      {"lora_linear", [](Inputs& in) -> Case {  // PEFT's LoRA: W x + b + s · B A x, r = 8, s = α/r = 2
         return {"lora_linear",
                 {{"x", in.randn({4, 16, 96})}, {"weight", in.randn({80, 96}, 0.0, 0.05)}, {"bias", in.randn({80})},
                  {"lora_A", in.randn({8, 96}, 0.0, 0.1)}, {"lora_B", in.randn({80, 8}, 0.0, 0.1)}},
                 {{"scale", json(2.0)}}, [](const Args& x) {
                   auto base = std::make_shared<nn::Linear>(96, 80, true);
                   base->weight = x[1];
                   base->bias = x[2];
                   nn::LoraLinear lora(base, nn::LoraConfig{.r = 8, .alpha = 16}, 0);
                   lora.lora_A->weight = x[3];
                   lora.lora_B->weight = x[4];
                   return lora.forward(x[0]);
                 }};
       }},
      {"layer_norm", [](Inputs& in) -> Case {
         return {"layer_norm",
                 {{"x", in.randn({8, 64, 768}, 0.5, 2.0)}, {"weight", in.randn({768}, 1.0, 0.1)}, {"bias", in.randn({768}, 0.0, 0.1)}},
                 {{"eps", json(1e-5)}}, [](const Args& x) { return ops::layer_norm(x[0], x[1], x[2], 1e-5); }};
       }},
      {"rms_norm", [](Inputs& in) -> Case {
         return {"rms_norm", {{"x", in.randn({8, 64, 768}, 0.0, 2.0)}, {"weight", in.randn({768}, 1.0, 0.1)}},
                 {{"eps", json(1e-6)}}, [](const Args& x) { return ops::rms_norm(x[0], x[1], 1e-6); }};
       }},
      {"gelu_tanh", [](Inputs& in) { return unary(in, "gelu", {8, 64, 512}, 3.0, ops::gelu); }},
      {"silu", [](Inputs& in) { return unary(in, "silu", {8, 64, 512}, 3.0, ops::silu); }},
      {"swiglu", [](Inputs& in) -> Case {
         return {"swiglu", {{"gate", in.randn({4, 64, 688}, 0.0, 2.0)}, {"up", in.randn({4, 64, 688})}}, {},
                 [](const Args& x) { return ops::swiglu(x[0], x[1]); }};
       }},
      {"softmax", [](Inputs& in) -> Case {
         return {"softmax", {{"x", in.randn({8, 64, 1000}, 0.0, 3.0)}}, {{"dim", json(int64_t(-1))}},
                 [](const Args& x) { return ops::softmax(x[0], -1); }};
       }},
      {"softmax_dim1", [](Inputs& in) -> Case {
         return {"softmax", {{"x", in.randn({4, 64, 32}, 0.0, 3.0)}}, {{"dim", json(int64_t(1))}},
                 [](const Args& x) { return ops::softmax(x[0], 1); }};
       }},
      {"log_softmax", [](Inputs& in) -> Case {
         return {"log_softmax", {{"x", in.randn({8, 64, 1000}, 0.0, 3.0)}}, {{"dim", json(int64_t(-1))}},
                 [](const Args& x) { return ops::log_softmax(x[0], -1); }};
       }},
      {"embedding", [](Inputs& in) -> Case {  // 512 ids from 500 rows: repeats accumulate
         return {"embedding", {{"ids", Tensor::from_ints(in.ints(8 * 64, 0, 500), {8, 64})}, {"weight", in.randn({500, 256})}},
                 {}, [](const Args& x) { return ops::embedding(x[0], x[1]); }};
       }},
      {"cross_entropy_padded_mean", [](Inputs& in) -> Case {  // V = 1000 in 1024 columns, every 5th row ignored
         std::vector<int64_t> t = in.ints(64, 0, 1000);
         for (size_t i = 0; i < t.size(); i += 5) t[i] = -100;
         return {"cross_entropy", {{"logits", in.randn({64, 1024}, 0.0, 2.0)}, {"targets", Tensor::from_ints(t, {64})}},
                 {{"ignore_index", json(int64_t(-100))}, {"reduction", json("mean")}, {"num_classes", json(int64_t(1000))}},
                 [](const Args& x) { return ops::cross_entropy(x[0], x[1], -100, ops::Reduction::mean, 1000); }};
       }},
      {"cross_entropy_none_3d", [](Inputs& in) -> Case {
         std::vector<int64_t> t = in.ints(4 * 16, 0, 1000);
         for (size_t i = 3; i < t.size(); i += 7) t[i] = -100;
         return {"cross_entropy", {{"logits", in.randn({4, 16, 1000}, 0.0, 2.0)}, {"targets", Tensor::from_ints(t, {4, 16})}},
                 {{"ignore_index", json(int64_t(-100))}, {"reduction", json("none")}},
                 [](const Args& x) { return ops::cross_entropy(x[0], x[1], -100, ops::Reduction::none); }};
       }},
      {"rope_theta1e4", [](Inputs& in) -> Case {
         return {"rope", {{"x", in.randn({2, 64, 4, 16})}}, {{"theta", json(1e4)}},
                 [](const Args& x) { return ops::rope(x[0], 1e4); }};
       }},
      {"rope_theta1e6_positions", [](Inputs& in) -> Case {  // a KV-cache step: positions 100..163
         std::vector<int64_t> pos(64);
         for (size_t t = 0; t < pos.size(); ++t) pos[t] = 100 + int64_t(t);
         return {"rope", {{"x", in.randn({2, 64, 4, 64})}, {"positions", Tensor::from_ints(pos, {64})}}, {{"theta", json(1e6)}},
                 [](const Args& x) { return ops::rope(x[0], 1e6, x[1]); }};
       }},
      {"attention_causal", [](Inputs& in) { return attention(in, 4, 4, 64, 64, true); }},
      {"attention_gqa_causal", [](Inputs& in) { return attention(in, 4, 2, 64, 64, true); }},
      {"attention_gqa_kv_cache", [](Inputs& in) { return attention(in, 4, 2, 16, 64, true); }},
      {"attention_full_scale", [](Inputs& in) { return attention(in, 4, 2, 64, 64, false, 0.1); }},
      {"attention_gqa_doc_ids", [](Inputs& in) -> Case {
         Case c = attention(in, 4, 2, 64, 64, true);
         std::vector<int64_t> ids = docs(64, {0, 5, 29, 30, 47});
         const std::vector<int64_t> second = docs(64, {0, 40});
         ids.insert(ids.end(), second.begin(), second.end());
         c.inputs.emplace_back("doc_ids", Tensor::from_ints(ids, {2, 64}));
         c.run = [](const Args& x) { return ops::scaled_dot_product_attention(x[0], x[1], x[2], true, x[3]); };
         return c;
       }},
  };
  return table;
}

uint64_t seed_of(const std::string& name) {  // FNV-1a: each case's inputs are independent of the others
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// ---- the test: every case in Loom, one torch run, then the comparisons ----

struct Result {
  std::string error;                                  // why Loom failed on the case
  Tensor out;                                         // Loom's output
  std::vector<std::pair<std::string, Tensor>> grads;  // Loom's gradients of the float inputs
};

// Runs one case in Loom and writes its inputs and R to dir/name; returns its manifest entry, or
// an empty string when Loom failed (then result.error says why).
std::string prepare(const fs::path& dir, const std::string& name, const Builder& builder, Result& result) {
  Inputs in(seed_of(name));
  Case c = builder(in);
  fs::create_directories(dir / name);
  std::vector<std::string> input_names, grad_names;
  Args args;
  for (auto& [input, t] : c.inputs) {
    if (t.dtype() == DType::f32) {
      t.set_requires_grad(true);
      grad_names.push_back(json(input.c_str()));
    }
    input_names.push_back(json(input.c_str()));
    write_npy(dir / name / (input + ".npy"), t);
    args.push_back(t);
  }
  try {
    result.out = c.run(args);
    const Tensor R = in.randn(result.out.shape());
    write_npy(dir / name / "R.npy", R);
    ops::sum(ops::mul(result.out, R)).backward();
    for (const auto& [input, t] : c.inputs)
      if (t.requires_grad()) result.grads.emplace_back(input, t.grad());
  } catch (const std::exception& e) {
    result.error = e.what();
    return "";
  }
  std::vector<std::string> params;
  for (const auto& [key, value] : c.params) params.push_back(fmt::format("{}: {}", json(key.c_str()), value));
  return fmt::format("{{\"name\": {}, \"op\": {}, \"inputs\": [{}], \"grads\": [{}], \"params\": {{{}}}}}", json(name.c_str()),
                     json(c.op.c_str()), fmt::join(input_names, ", "), fmt::join(grad_names, ", "), fmt::join(params, ", "));
}

void expect_close(const std::string& what, const Tensor& loom, const fs::path& ref_path) {
  const parity::Closeness c = parity::expect_close(what, loom, ref_path, kRelTol);
  std::printf("[ parity ] %-40s max |diff| / scale = %.2e (scale %.3g)\n", what.c_str(), c.rel_err, c.scale);
}

// One test, so that torch is imported once also under ctest (which runs each test in its own process).
TEST(TorchParity, AllCasesMatchPyTorch) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("loom_parity_{}_{}", getpid(), std::time(nullptr));
  fs::create_directories(dir);
  std::map<std::string, Result> results;
  std::vector<std::string> entries;
  for (const auto& [name, builder] : cases()) {
    const std::string entry = prepare(dir, name, builder, results[name]);
    if (!entry.empty()) entries.push_back(entry);
  }
  std::ofstream(dir / "manifest.json") << fmt::format("{{\"cases\": [\n  {}\n]}}\n", fmt::join(entries, ",\n  "));
  const std::string failed = parity::run_reference("torch_reference.py", dir);
  ASSERT_TRUE(failed.empty()) << failed;

  for (const auto& [name, r] : results) {
    SCOPED_TRACE("case " + name);
    if (!r.error.empty()) {
      ADD_FAILURE() << "Loom failed: " << r.error;
      continue;
    }
    if (fs::exists(dir / name / "error.txt")) {
      ADD_FAILURE() << "torch failed:\n" << read_text(dir / name / "error.txt");
      continue;
    }
    expect_close(name + " out", r.out, dir / name / "out.npy");
    for (const auto& [input, grad] : r.grads) {
      if (grad.defined())
        expect_close(name + " grad " + input, grad, dir / name / ("grad_" + input + ".npy"));
      else
        ADD_FAILURE() << "Loom computed no gradient for " << input;
    }
  }
  if (HasFailure())
    std::printf("[ parity ] inputs and references kept in %s\n", dir.string().c_str());
  else
    fs::remove_all(dir);
}

}  // namespace
