// ZeRO stages 1-3: flat per-unit buffers split into rank chunks, reduce-scattered gradients,
// all-gathered parameters.
#include "loom/parallel/zero.h"

#include <algorithm>
#include <cstring>

#include "loom/autograd/function.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"

namespace loom::parallel {

Zero::Zero(nn::TransformerLM& model, std::shared_ptr<dist::Group> group, const DataParallelOptions& options)
    : DataParallel(model, std::move(group), true, options), model_(model), stage_(options.zero), unit_of_(named_.size()) {
  const int64_t N = group_->size(), rank = group_->rank();
  // Units: each parameter outside the blocks, then the blocks this model holds (a pipeline stage
  // holds some), in layer order.
  std::vector<bool> trains(model.layers.size(), false);  // a block with trainable parameters (a frozen one has no unit)
  for (const auto& [name, p] : named_) {
    if (name.rfind("layers.", 0) == 0) trains[std::stoul(name.substr(7))] = true;
    else ++roots_;
  }
  unit_of_layer_.assign(model.layers.size(), SIZE_MAX);
  size_t n_units = roots_;
  for (size_t l = 0; l < model.layers.size(); ++l)
    if (model.layers[l] && trains[l]) unit_of_layer_[l] = n_units++;
  units_.resize(n_units);
  for (size_t i = 0, root = 0; i < named_.size(); ++i) {
    const std::string& name = named_[i].first;
    const size_t u = name.rfind("layers.", 0) == 0 ? unit_of_layer_[std::stoul(name.substr(7))] : root++;
    unit_of_[i] = u;
    units_[u].params.push_back(i);
    units_[u].offset.push_back(units_[u].numel);
    units_[u].numel += named_[i].second.numel();
  }
  for (Unit& u : units_) {
    u.chunk = (u.numel + N - 1) / N;
    for (int64_t r = 0; r < N; ++r) u.counts.push_back(std::clamp(u.numel - r * u.chunk, int64_t(0), u.chunk));
    const int64_t mine = u.counts[size_t(rank)], start = std::min(rank * u.chunk, u.numel);
    u.full = Tensor::empty({u.numel});
    for (size_t k = 0; k < u.params.size(); ++k) {  // the parameter keeps its identity; its data moves into the flat buffer
      TensorImpl* p = named_[u.params[k]].second.impl();
      std::memcpy(u.full.data<float>() + u.offset[k], Tensor(named_[u.params[k]].second).data<float>(), size_t(numel_of(p->shape)) * 4);
      p->storage = u.full.storage();
      p->offset = u.offset[k];
    }
    u.own = Tensor::from_storage(u.full.storage(), {mine}, DType::f32, start);
    if (stage_ == 3) {
      Tensor copy = Tensor::empty({mine});
      if (mine > 0) std::memcpy(copy.data<float>(), u.own.data<float>(), size_t(mine) * 4);
      u.own = copy;
      u.full.storage()->release();
    }
    u.grad = Tensor::zeros({mine});
  }
  std::vector<Tensor> pieces;
  for (const ParamRange& r : ranges(group_->rank())) {
    const Unit& u = units_[unit_of_[r.param]];
    const size_t k = size_t(std::find(u.params.begin(), u.params.end(), r.param) - u.params.begin());
    const int64_t at = u.offset[k] + r.begin - group_->rank() * u.chunk;  // within this rank's chunk
    Tensor piece = Tensor::from_storage(u.own.storage(), {r.end - r.begin}, DType::f32, u.own.offset() + at);
    piece.set_grad(Tensor::from_storage(u.grad.storage(), {r.end - r.begin}, DType::f32, at));
    pieces.push_back(piece);
  }
  // Backward completes a unit when its last parameter does: order by that parameter, latest first.
  for (size_t u = 0; u < units_.size(); ++u) order_.push_back(u);
  std::stable_sort(order_.begin(), order_.end(), [&](size_t a, size_t b) { return units_[a].params.back() > units_[b].params.back(); });
  if (stage_ == 3) {
    gathers_ = group_->split(0, group_->rank(), group_->name() + ".gather");
    wrapper_ = model_.add_block_wrapper(
        [this](size_t layer, const Tensor& x, const nn::TransformerLM::BlockFn& block) { return wrap_block(layer, x, block); });
  }
  init_optimizer(std::move(pieces), options.adamw);
  register_hooks();
}

Zero::~Zero() {
  wrapper_.remove();
  try {  // nothing may be in flight on the tensors about to be freed
    drain(0);
    for (size_t u = 0; u < units_.size(); ++u) wait_gathered(u);
    if (stage_ == 3 && std::uncaught_exceptions() == 0) {
      for (size_t u = 0; u < units_.size(); ++u) gather(u);
      for (size_t u = 0; u < units_.size(); ++u) wait_gathered(u);
    }
    for (Unit& u : units_) {
      if (!u.full.storage()->resident()) continue;  // stage 3 while unwinding: the parameters stay released
      for (size_t k = 0; k < u.params.size(); ++k) {  // each parameter gets memory of its own back
        TensorImpl* p = named_[u.params[k]].second.impl();
        Tensor own = Tensor::empty(p->shape);
        std::memcpy(own.data<float>(), u.full.data<float>() + u.offset[k], own.nbytes());
        p->storage = own.storage();
        p->offset = 0;
      }
    }
  } catch (const Error&) {  // the failure was reported where it happened
  }
}

std::vector<ParamRange> Zero::ranges(int rank) const {
  std::vector<ParamRange> out;
  for (const Unit& u : units_) {
    const int64_t lo = rank * u.chunk, hi = lo + u.counts[size_t(rank)];
    for (size_t k = 0; k < u.params.size(); ++k) {
      const int64_t b = std::max(lo, u.offset[k]), e = std::min(hi, u.offset[k] + named_[u.params[k]].second.numel());
      if (b < e) out.push_back({u.params[k], b - u.offset[k], e - u.offset[k]});
    }
  }
  return out;
}

void Zero::on_grad_ready(size_t param) {
  if (stage_ == 1 && !sync_) return;  // stage 1 keeps whole gradients and accumulates them locally
  active_ = true;
  ++units_[unit_of_[param]].ready;
  while (reduced_ < order_.size() && units_[order_[reduced_]].ready == units_[order_[reduced_]].params.size()) reduce(order_[reduced_++]);
  if (reduced_ == order_.size()) {  // every unit reduced: the next backward (a pipeline's may come before a forward) starts over
    reduced_ = 0;
    active_ = false;
  }
}

void Zero::flush() {
  if (!active_) return;
  for (; reduced_ < order_.size(); ++reduced_) reduce(order_[reduced_]);  // a backward that did not run through backward()
  reduced_ = 0;
  active_ = false;
}


void Zero::reduce(size_t unit) {
  Unit& u = units_[unit];
  u.ready = 0;
  drain(1);  // at most two whole gradients are held for reduction at a time
  Reduction r{unit, {}, Tensor::empty({u.counts[size_t(group_->rank())]}), nullptr};
  const Tensor only = u.params.size() == 1 ? named_[u.params[0]].second.grad() : Tensor();
  if (only.defined() && only.is_contiguous()) {
    r.flat = only;  // a unit of one parameter (an embedding, say) is reduced from its gradient as it is
  } else {
    r.flat = Tensor::empty({u.numel});
    float* flat = r.flat.data<float>();
    for (size_t k = 0; k < u.params.size(); ++k) {
      const Tensor g = named_[u.params[k]].second.grad();
      const int64_t n = named_[u.params[k]].second.numel();
      if (g.defined()) std::memcpy(flat + u.offset[k], ops::contiguous(g).data<float>(), size_t(n) * 4);
      else std::memset(flat + u.offset[k], 0, size_t(n) * 4);
    }
  }
  for (size_t i : u.params) named_[i].second.zero_grad();  // only this rank's chunk of the sum is kept
  r.work = group_->reduce_scatterv(r.flat, r.out, u.counts, dist::ReduceOp::sum);
  inflight_.push_back(std::move(r));
}

void Zero::drain(size_t keep) {
  while (inflight_.size() > keep) {
    Reduction& r = inflight_.front();
    r.work->wait();
    Tensor& acc = units_[r.unit].grad;
    ops::add_(acc, r.out);
    inflight_.pop_front();
  }
}

void Zero::finish_reduction() {
  flush();
  drain(0);
}

void Zero::zero_grad() {
  DataParallel::zero_grad();
  for (Unit& u : units_) std::memset(u.grad.data<float>(), 0, size_t(u.grad.numel()) * 4);
}

void Zero::gather_params() {
  if (stage_ == 3) {  // gathered copies are stale now; each is gathered again when next needed
    for (size_t u = 0; u < units_.size(); ++u) {
      wait_gathered(u);
      release(u);
    }
    return;
  }
  std::vector<std::shared_ptr<dist::Work>> works;
  for (Unit& u : units_) works.push_back(group_->all_gatherv(u.own, u.full, u.counts));
  for (auto& w : works) w->wait();
}

void Zero::gather(size_t unit) {
  Unit& u = units_[unit];
  if (u.gathering || u.full.storage()->resident()) return;
  u.full.storage()->restore();
  u.gathering = gathers_->all_gatherv(u.own, u.full, u.counts);
}

void Zero::wait_gathered(size_t unit) {
  Unit& u = units_[unit];
  if (!u.gathering) return;
  u.gathering->wait();
  u.gathering.reset();
}

void Zero::release(size_t unit) {
  wait_gathered(unit);
  units_[unit].full.storage()->release();
}

void Zero::before_forward() {
  // Stages 2 and 3 reduce every micro-step: what the previous backward left is reduced before the
  // next one's gradients arrive.
  if (stage_ >= 2) flush();
  if (stage_ != 3) return;
  for (size_t u = 0; u < roots_; ++u) gather(u);
  if (roots_ < units_.size()) gather(roots_);  // the first block
  for (size_t u = 0; u < roots_; ++u) wait_gathered(u);
}

Tensor Zero::wrap_block(size_t layer, const Tensor& x, const nn::TransformerLM::BlockFn& block) {
  const size_t u = unit_of_layer_[layer];
  if (u == SIZE_MAX) return block(x);  // a frozen block: nothing of it is sharded
  gather(u);
  if (u + 1 < units_.size()) gather(u + 1);
  wait_gathered(u);
  Tensor y = block(x);
  release(u);  // saved views keep the storage object, not its memory
  if (!autograd::grad_enabled() || !y.requires_grad()) return y;
  Tensor out = y.detach();
  autograd::attach(out, "zero3_gather", {y}, [this, u](const Tensor& grad) {
    // Backward is done with the block above, or, at the last block, with the final norm and head
    // (the parameters outside the blocks are read by the embeddings too, whose backward needs no
    // weights). Where memory is freed depends only on the model's structure, so every rank
    // issues the same gathers.
    if (u + 1 == units_.size())
      for (size_t root = 0; root < roots_; ++root) release(root);
    else
      release(u + 1);
    gather(u);
    if (u > roots_) gather(u - 1);  // the block backward reaches next
    wait_gathered(u);
    return std::vector<Tensor>{grad};
  });
  return out;
}

}  // namespace loom::parallel
