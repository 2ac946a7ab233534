// TransformerLM forward pass and GPT-2 style initialisation.
#include "loom/nn/transformer.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "loom/autograd/function.h"
#include "loom/core/rng.h"
#include "loom/models/hf_names.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"

namespace loom::nn {

using models::ModelConfig;

Attention::Attention(const ModelConfig& c, bool defer) : c_(c) {
  const bool qkv_b = c.linear_bias || c.qkv_bias;
  register_module("wq", wq, std::make_shared<Linear>(c.n_embd, c.n_head * c.head_dim, qkv_b, defer));
  register_module("wk", wk, std::make_shared<Linear>(c.n_embd, c.n_kv_head * c.head_dim, qkv_b, defer));
  register_module("wv", wv, std::make_shared<Linear>(c.n_embd, c.n_kv_head * c.head_dim, qkv_b, defer));
  register_module("wo", wo, std::make_shared<Linear>(c.n_head * c.head_dim, c.n_embd, c.linear_bias, defer));
  if (c.qk_norm) {
    register_module("q_norm", q_norm, std::make_shared<Norm>(c.head_dim, c.rms_norm, c.norm_eps, defer));
    register_module("k_norm", k_norm, std::make_shared<Norm>(c.head_dim, c.rms_norm, c.norm_eps, defer));
  }
}

Tensor Attention::forward(const Tensor& x, const Tensor& positions, KVCache* cache, size_t layer) const {
  // Head counts come from the projections: under tensor parallelism they hold this rank's heads.
  const int64_t B = x.size(0), T = x.size(1), D = c_.head_dim;
  const int64_t H = wq->weight.size(0) / D, Hkv = wk->weight.size(0) / D;
  Tensor q = ops::reshape(wq->forward(x), {B, T, H, D});    // (B, T, H, D)
  Tensor k = ops::reshape(wk->forward(x), {B, T, Hkv, D});  // (B, T, Hkv, D)
  Tensor v = ops::reshape(wv->forward(x), {B, T, Hkv, D});
  if (q_norm) {  // over D, per head and position; the cache keeps k normed and rotated
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  if (c_.rope) {
    q = ops::rope(q, c_.rope_theta, positions);
    k = ops::rope(k, c_.rope_theta, positions);
  }
  q = ops::transpose(q, 1, 2);  // (B, H, T, D)
  k = ops::transpose(k, 1, 2);
  v = ops::transpose(v, 1, 2);
  if (cache) {
    if (cache->k.size() <= layer) {
      cache->k.resize(layer + 1);
      cache->v.resize(layer + 1);
    }
    if (cache->k[layer].defined()) {
      k = ops::cat({cache->k[layer], k}, 2);
      v = ops::cat({cache->v[layer], v}, 2);
    }
    cache->k[layer] = ops::contiguous(k).detach();
    cache->v[layer] = ops::contiguous(v).detach();
  }
  // Packed documents ((B, T) positions): each query sees the keys of its own document only.
  const Tensor docs = positions.defined() && positions.ndim() == 2 ? ops::document_ids(positions) : Tensor();
  Tensor y = ops::scaled_dot_product_attention(q, k, v, true, docs);  // (B, H, T, D)
  return wo->forward(ops::reshape(ops::transpose(y, 1, 2), {B, T, H * D}));
}

Mlp::Mlp(const ModelConfig& c, bool defer) : swiglu_(c.swiglu) {
  if (swiglu_) {
    register_module("gate", gate, std::make_shared<Linear>(c.n_embd, c.intermediate, c.linear_bias, defer));
    register_module("up", up, std::make_shared<Linear>(c.n_embd, c.intermediate, c.linear_bias, defer));
    register_module("down", down, std::make_shared<Linear>(c.intermediate, c.n_embd, c.linear_bias, defer));
  } else {
    register_module("fc", fc, std::make_shared<Linear>(c.n_embd, c.intermediate, c.linear_bias, defer));
    register_module("proj", proj, std::make_shared<Linear>(c.intermediate, c.n_embd, c.linear_bias, defer));
  }
}

Tensor Mlp::forward(const Tensor& x) const {
  if (swiglu_) return down->forward(ops::swiglu(gate->forward(x), up->forward(x)));
  return proj->forward(ops::gelu(fc->forward(x)));
}

Block::Block(const ModelConfig& c, bool defer) {
  register_module("attn_norm", attn_norm, std::make_shared<Norm>(c.n_embd, c.rms_norm, c.norm_eps, defer));
  register_module("attn", attn, std::make_shared<Attention>(c, defer));
  register_module("mlp_norm", mlp_norm, std::make_shared<Norm>(c.n_embd, c.rms_norm, c.norm_eps, defer));
  register_module("mlp", mlp, std::make_shared<Mlp>(c, defer));
}

Tensor Block::forward(const Tensor& x, const Tensor& positions, KVCache* cache, size_t layer) const {
  Tensor h = x + attn->forward(attn_norm->forward(x), positions, cache, layer);
  return h + mlp->forward(mlp_norm->forward(h));
}

TransformerLM::TransformerLM(const ModelConfig& config, bool defer) : c_(config) {
  c_.validate();
  register_module("tok_emb", tok_emb, std::make_shared<Embedding>(c_.padded_vocab, c_.n_embd, defer));
  if (!c_.rope) register_module("pos_emb", pos_emb, std::make_shared<Embedding>(c_.max_seq_len, c_.n_embd, defer));
  layers.resize(size_t(c_.n_layer));  // never resized again: the children are bound to these slots
  for (size_t i = 0; i < layers.size(); ++i) register_module("layers." + std::to_string(i), layers[i], std::make_shared<Block>(c_, defer));
  register_module("norm", norm, std::make_shared<Norm>(c_.n_embd, c_.rms_norm, c_.norm_eps, defer));
  register_module("lm_head", lm_head,
                  std::make_shared<LMHead>(c_.tied_head ? tok_emb->weight : Tensor(), c_.padded_vocab, c_.n_embd, c_.vocab_size, defer));
}

void TransformerLM::init(uint64_t seed, const PlaceFn& place) {
  Generator gen(seed);
  const double residual_std = c_.init_std / std::sqrt(2.0 * double(c_.n_layer));
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  // Each matrix's draw is keyed by its place among the whole model's parameters, whatever this
  // model holds of them: a deferred twin lists them without memory.
  std::map<std::string, RngKey> keys;
  for (const auto& [name, whole] : TransformerLM(c_, true).named_parameters())
    if (whole.ndim() == 2) keys[name] = gen.next(uint64_t(whole.numel()));
  materialize(place, [&](const std::string& name, const Shape& whole, const Shape& offset, const Shape& box) {
    if (whole.size() == 2) {
      const bool residual = ends_with(name, "attn.wo.weight") || ends_with(name, "mlp.proj.weight") || ends_with(name, "mlp.down.weight");
      return randn_block(whole, offset, box, keys.at(name), 0.0, residual ? residual_std : c_.init_std);
    }
    return Tensor::full(box, ends_with(name, "norm.weight") ? 1.0 : 0.0);
  });
}

void TransformerLM::materialize(const PlaceFn& place, const ValueFn& block) {
  autograd::NoGradGuard no_grad;
  const std::map<std::string, Shape> whole_shapes = models::loom_parameter_shapes(c_);
  for (auto& [name, p] : named_parameters()) {
    p.storage()->restore();
    const Placement at = place ? place(name, p) : Placement{p.shape(), Shape(size_t(p.ndim()), 0)};
    LOOM_CHECK(at.whole == whole_shapes.at(name), "model: {} is placed in a whole of shape {}, the model's is {}", name, at.whole,
               whole_shapes.at(name));
    // The rows of p inside the whole (under tp a vocabulary block may reach past it) and, of
    // the vocabulary, inside vocab_size: the rest is padding, zero.
    Shape box = p.shape();
    int64_t end = at.whole[0];
    if (name == "tok_emb.weight" || name == "lm_head.weight") end = std::min(end, c_.vocab_size);
    box[0] = std::clamp<int64_t>(end - at.offset[0], 0, box[0]);
    Tensor value = Tensor::zeros(p.shape());
    if (numel_of(box) > 0) {
      Tensor inside = ops::narrow(value, 0, 0, box[0]);
      ops::copy_(inside, block(name, at.whole, at.offset, box));
    }
    ops::copy_(p, value);
  }
}

Tensor TransformerLM::forward(const Tensor& ids, KVCache* cache, const Tensor& packed) const {
  LOOM_CHECK(ids.ndim() == 2, "model: ids must be (B, T), got {}", ids.shape());
  const int64_t T = ids.size(1), past = cache ? cache->length() : 0;
  LOOM_CHECK(past + T <= c_.max_seq_len, "model: sequence of {} positions exceeds max_seq_len {}", past + T, c_.max_seq_len);
  LOOM_CHECK(!packed.defined() || (!cache && packed.shape() == ids.shape()), "model: packed positions {} must be (B, T) = {}, without a cache",
             packed.shape(), ids.shape());
  const Tensor pos = packed.defined() ? packed : positions(T, past);
  return head(blocks(embed(ids, pos), pos, 0, layers.size(), cache));  // (B, T, Vp)
}

Tensor TransformerLM::positions(int64_t T, int64_t past) { return ops::add(Tensor::arange(T), Tensor::full({}, double(past), DType::i64)); }

Tensor TransformerLM::embed(const Tensor& ids, const Tensor& positions) const {
  Tensor x = tok_emb->forward(ids);  // (B, T, C)
  if (pos_emb) x = x + pos_emb->forward(positions);
  return x;
}

Tensor TransformerLM::blocks(const Tensor& x, const Tensor& positions, size_t first, size_t last, KVCache* cache) const {
  Tensor h = x;
  for (size_t i = first; i < last; ++i) {
    LOOM_CHECK(layers[i], "model: layer {} is not held here (a pipeline stage runs only its own layers)", i);
    BlockFn block = [layer = layers[i], positions, cache, i](const Tensor& in) { return layer->forward(in, positions, cache, i); };
    // An init-capture: clang 14 (the fuzz build) cannot capture a structured binding by name.
    for (const auto& [id, wrap] : *wrappers_) block = [wrap = wrap, inner = std::move(block), i](const Tensor& in) { return wrap(i, in, inner); };
    h = block(h);
  }
  return h;
}

Tensor TransformerLM::head(const Tensor& x) const { return lm_head->forward(norm->forward(x)); }

HookHandle TransformerLM::add_block_wrapper(BlockWrapper wrapper) {
  const uint64_t id = next_wrapper_id_++;
  wrappers_->emplace_back(id, std::move(wrapper));
  return HookHandle([weak = std::weak_ptr<Wrappers>(wrappers_), id] {
    if (auto w = weak.lock()) std::erase_if(*w, [id](const auto& e) { return e.first == id; });
  });
}

Tensor TransformerLM::loss(const Tensor& logits, const Tensor& targets, ops::Reduction reduction) const {
  return lm_head->loss(logits, targets, reduction);
}

}  // namespace loom::nn
