// TransformerLM: the one decoder-only model for GPT-2 and the LLaMA family; every difference
// between them is a ModelConfig field. Parameter names (Loom's own, mapped 1:1 to HF names by
// each family's name map):
//   tok_emb.weight, pos_emb.weight (learned positions only),
//   layers.{i}.attn_norm.*, layers.{i}.attn.{wq,wk,wv,wo}.*, layers.{i}.attn.{q_norm,k_norm}.weight
//   (qk_norm only), layers.{i}.mlp_norm.*,
//   layers.{i}.mlp.{fc,proj}.* (GELU) or layers.{i}.mlp.{gate,up,down}.* (SwiGLU),
//   norm.*, lm_head.weight (untied head only).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "loom/models/config.h"
#include "loom/nn/layers.h"

namespace loom::nn {

// Keys and values of past positions for incremental decoding, per layer (B, Hkv, T_past, D).
struct KVCache {
  std::vector<Tensor> k, v;
  int64_t length() const { return k.empty() || !k[0].defined() ? 0 : k[0].size(2); }
};

class Attention : public Module {
 public:
  explicit Attention(const models::ModelConfig& c, bool defer = false);
  // x: (B, T, C); positions: (T) absolute positions, or (B, T) those of packed documents (see
  // TransformerLM::forward). cache may be null.
  Tensor forward(const Tensor& x, const Tensor& positions, KVCache* cache, size_t layer) const;
  std::shared_ptr<Linear> wq, wk, wv, wo;  // wq: (H·D, C), wk/wv: (Hkv·D, C), wo: (C, H·D)
  std::shared_ptr<Norm> q_norm, k_norm;    // (D) each, over each head's q and k before RoPE (qk_norm only)

 private:
  models::ModelConfig c_;
};

class Mlp : public Module {
 public:
  explicit Mlp(const models::ModelConfig& c, bool defer = false);
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<Linear> fc, proj;        // GELU MLP
  std::shared_ptr<Linear> gate, up, down;  // SwiGLU MLP

 private:
  bool swiglu_;
};

class Block : public Module {
 public:
  explicit Block(const models::ModelConfig& c, bool defer = false);
  Tensor forward(const Tensor& x, const Tensor& positions, KVCache* cache, size_t layer) const;
  std::shared_ptr<Norm> attn_norm, mlp_norm;
  std::shared_ptr<Attention> attn;
  std::shared_ptr<Mlp> mlp;
};

class TransformerLM : public Module {
 public:
  // defer: parameters get no memory until init() (deferred initialisation: build, cut up for
  // tensor/pipeline parallelism, then initialise only what this rank holds).
  explicit TransformerLM(const models::ModelConfig& config, bool defer = false);
  const models::ModelConfig& config() const { return c_; }
  // Where a parameter this model holds sits in the whole model's: the whole tensor's shape and
  // the parameter's offset in it (a tensor-parallel block). Rows past the whole (vocabulary
  // padding for tp) are zeros.
  struct Placement {
    Shape whole, offset;
  };
  using PlaceFn = std::function<Placement(const std::string& name, const Tensor& param)>;
  // Fills every parameter this model holds from seed, with the values the one-process model's
  // init gives those elements (each parameter's draw is keyed by its place in the whole model and
  // each element by its index there): N(0, 0.02) for matrices and embeddings, residual output
  // projections (attn.wo, mlp.proj/down) scaled by 1/sqrt(2L), zeros for biases, ones for norms;
  // padded vocabulary rows are zero. Deferred parameters get their memory here. place: null for
  // a whole model.
  void init(uint64_t seed, const PlaceFn& place = nullptr);
  // Fills every parameter this model holds with block(name, whole shape, offset, box): the
  // block of the whole parameter that it is (a checkpoint read block by block); rows past the
  // whole and padded vocabulary rows are zero. Deferred parameters get their memory here.
  using ValueFn = std::function<Tensor(const std::string& name, const Shape& whole, const Shape& offset, const Shape& box)>;
  void materialize(const PlaceFn& place, const ValueFn& block);
  // ids: (B, T) integer -> logits (B, T, padded_vocab). With a cache, T new tokens continue it.
  // packed: (B, T) positions of documents packed into the rows (data::Batch::positions), each
  // document's starting at 0; attention then stays within each document, so the logits equal
  // those of each document run alone.
  Tensor forward(const Tensor& ids, KVCache* cache = nullptr, const Tensor& packed = Tensor()) const;
  // The forward in three parts, for pipeline stages: embed (ids -> x), blocks [first, last) of
  // the stack, head (x -> logits). positions: (T) absolute positions of the whole sequence, or
  // (B, T) packed ones.
  static Tensor positions(int64_t T, int64_t past = 0);
  Tensor embed(const Tensor& ids, const Tensor& positions) const;
  Tensor blocks(const Tensor& x, const Tensor& positions, size_t first, size_t last, KVCache* cache = nullptr) const;
  Tensor head(const Tensor& x) const;
  // Cross-entropy over targets != -100 (their mean, or sum), padded logits excluded. targets: (B, T).
  Tensor loss(const Tensor& logits, const Tensor& targets, ops::Reduction reduction = ops::Reduction::mean) const;

  // Runs each block's forward through wrapper(layer, x, block) instead of block(x), so that
  // what is applied from outside (activation recompute, ZeRO-3 gathering a block's parameters)
  // can act around it while the model code stays single-device. Wrappers nest: the one added
  // last is outermost. `block` may be copied and called later (recompute reruns it in backward).
  // The wrapper stays until the handle is destroyed or removed.
  using BlockFn = std::function<Tensor(const Tensor&)>;
  using BlockWrapper = std::function<Tensor(size_t layer, const Tensor& x, const BlockFn& block)>;
  HookHandle add_block_wrapper(BlockWrapper wrapper);

  std::shared_ptr<Embedding> tok_emb, pos_emb;
  std::vector<std::shared_ptr<Block>> layers;  // a pipeline stage's are null but its own
  std::shared_ptr<Norm> norm;
  std::shared_ptr<LMHead> lm_head;  // its weight is tok_emb.weight when tied

 private:
  models::ModelConfig c_;
  using Wrappers = std::vector<std::pair<uint64_t, BlockWrapper>>;  // (id, wrapper), innermost first
  std::shared_ptr<Wrappers> wrappers_ = std::make_shared<Wrappers>();
  uint64_t next_wrapper_id_ = 0;
};

}  // namespace loom::nn
