// `make train` until the real trainer lands: a tiny byte-level GPT trained on the fortunes
// corpus Debian ships, written directly against the functional API (ops + autograd + the
// fused AdamW kernel). Prints the loss every 25 steps and a sample at the end.
#include <omp.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>

#include "loom/backend/cpu/adamw.h"
#include "loom/loom.h"

using namespace loom;
namespace F = loom::ops;

namespace {

constexpr int64_t V = 256, C = 128, L = 2, H = 4, T = 64, B = 16;

struct Block {
  Tensor ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fcproj_w, fcproj_b;
};

struct Model {
  Tensor wte, wpe, lnf_w, lnf_b;
  std::vector<Block> blocks;
  std::vector<Tensor> params;

  explicit Model(uint64_t seed) {
    Generator gen(seed);
    auto param = [&](Shape s, double std) {  // std 0: ones (norm weights); -1: zeros (biases)
      Tensor t = std > 0 ? randn(s, gen.next(uint64_t(numel_of(s))), 0.0, std) : Tensor::full(s, std == 0 ? 1.0 : 0.0);
      t.set_requires_grad(true);
      params.push_back(t);
      return t;
    };
    const double res_std = 0.02 / std::sqrt(2.0 * L);  // GPT-2's scaled residual projections
    wte = param({V, C}, 0.02);
    wpe = param({T, C}, 0.02);
    for (int64_t l = 0; l < L; ++l)
      blocks.push_back({param({C}, 0), param({C}, -1), param({3 * C, C}, 0.02), param({3 * C}, -1), param({C, C}, res_std),
                        param({C}, -1), param({C}, 0), param({C}, -1), param({4 * C, C}, 0.02), param({4 * C}, -1),
                        param({C, 4 * C}, res_std), param({C}, -1)});
    lnf_w = param({C}, 0);
    lnf_b = param({C}, -1);
  }

  Tensor logits(const Tensor& ids) const {  // ids: (b, t) -> (b, t, V)
    const int64_t b = ids.size(0), t = ids.size(1);
    Tensor x = F::embedding(ids, wte) + F::narrow(wpe, 0, 0, t);
    for (const Block& k : blocks) {
      Tensor qkv = F::reshape(F::linear(F::layer_norm(x, k.ln1_w, k.ln1_b), k.qkv_w, k.qkv_b), {b, t, 3, H, C / H});
      auto head = [&](int64_t i) { return F::transpose(F::squeeze(F::narrow(qkv, 2, i, 1), 2), 1, 2); };  // (b, H, t, D)
      Tensor a = F::scaled_dot_product_attention(head(0), head(1), head(2), true);
      x = x + F::linear(F::reshape(F::transpose(a, 1, 2), {b, t, C}), k.proj_w, k.proj_b);
      x = x + F::linear(F::gelu(F::linear(F::layer_norm(x, k.ln2_w, k.ln2_b), k.fc_w, k.fc_b)), k.fcproj_w, k.fcproj_b);
    }
    return F::linear(F::layer_norm(x, lnf_w, lnf_b), wte);
  }
};

std::string read_corpus() {
  std::string text;
  for (const char* name : {"fortunes", "literature", "riddles"}) {
    std::ifstream f(std::string("/usr/share/games/fortunes/") + name, std::ios::binary);
    LOOM_CHECK(f.good(), "demo: corpus file /usr/share/games/fortunes/{} is missing (install fortunes-min)", name);
    std::stringstream ss;
    ss << f.rdbuf();
    text += ss.str();
  }
  return text;
}

}  // namespace

int main() {
  try {
    omp_set_num_threads(2);
    const std::string text = read_corpus();
    const int64_t steps = std::getenv("DEMO_STEPS") ? std::atol(std::getenv("DEMO_STEPS")) : 400;
    std::cout << "demo: byte-level GPT (L=" << L << ", C=" << C << ", H=" << H << ") on " << text.size()
              << " bytes of fortunes, B=" << B << " T=" << T << ", " << steps << " AdamW steps\n";
    Model model(1337);
    std::vector<Tensor> m, v;
    for (const Tensor& p : model.params) {
      m.push_back(Tensor::zeros(p.shape()));
      v.push_back(Tensor::zeros(p.shape()));
    }
    Generator data_rng(42);
    const auto start = std::chrono::steady_clock::now();
    for (int64_t step = 1; step <= steps; ++step) {
      std::vector<int64_t> in(B * T), tgt(B * T);
      for (int64_t b = 0; b < B; ++b) {
        auto off = int64_t(uniform_at(data_rng.seed(), data_rng.next(1).offset) * double(text.size() - T - 1));
        for (int64_t t = 0; t < T; ++t) {
          in[size_t(b * T + t)] = uint8_t(text[size_t(off + t)]);
          tgt[size_t(b * T + t)] = uint8_t(text[size_t(off + t + 1)]);
        }
      }
      Tensor loss = F::cross_entropy(model.logits(Tensor::from_ints(in, {B, T})), Tensor::from_ints(tgt, {B, T}));
      loss.backward();
      const float lr = float(3e-3 * std::min(1.0, double(step) / 20));
      for (size_t i = 0; i < model.params.size(); ++i) {
        Tensor& p = model.params[i];
        cpu::adamw_step(p.data<float>(), p.grad().data<float>(), m[i].data<float>(), v[i].data<float>(), p.numel(), lr, 0.9f, 0.95f,
                        1e-8f, p.ndim() == 2 ? 0.1f : 0.0f, step);
        p.zero_grad();
      }
      if (step % 25 == 0 || step == 1) {
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("step %4ld/%ld  loss %.4f  %.0f tokens/s\n", long(step), long(steps), loss.item(), double(step * B * T) / secs);
      }
    }
    autograd::NoGradGuard no_grad;
    std::string out = "Q: ";
    Generator sample_rng(7);
    for (int i = 0; i < 200; ++i) {
      int64_t n = std::min<int64_t>(int64_t(out.size()), T);
      std::vector<int64_t> ctx;
      for (int64_t j = int64_t(out.size()) - n; j < int64_t(out.size()); ++j) ctx.push_back(uint8_t(out[size_t(j)]));
      Tensor logits = F::narrow(model.logits(Tensor::from_ints(ctx, {1, n})), 1, n - 1, 1);
      std::vector<double> p = F::softmax(F::mul(F::reshape(logits, {V}), 1.0 / 0.8)).to_vector();
      double u = uniform_at(sample_rng.seed(), sample_rng.next(1).offset), acc = 0;
      int64_t pick = V - 1;
      for (int64_t c = 0; c < V; ++c)
        if ((acc += p[size_t(c)]) > u) {
          pick = c;
          break;
        }
      out.push_back(char(pick));
    }
    std::cout << "sample:\n" << out << "\n";
    return 0;
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
