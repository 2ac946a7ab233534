// Backward engine, graph nodes and grad mode.
// Nodes run in dependency order; among ready nodes the most recently created runs first
// (as in PyTorch), so gradients of the last layers are ready first and DDP can start early.
#include "loom/autograd/engine.h"

#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "loom/autograd/function.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"

namespace loom::autograd {

namespace {
thread_local bool t_grad_enabled = true;
thread_local LeafCollector* t_collector = nullptr;
std::atomic<uint64_t> g_next_seq{0};
}  // namespace

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = prev_; }
EnableGradGuard::EnableGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = true; }
EnableGradGuard::~EnableGradGuard() { t_grad_enabled = prev_; }

Node::Node() : seq(g_next_seq.fetch_add(1)) {}

std::vector<Tensor> FunctionNode::apply(Tensor grad_out) {
  LOOM_CHECK(fn_ != nullptr, "backward: graph of {} already freed; pass retain_graph to run backward twice", op_);
  return fn_(grad_out);
}

void Node::add_input(const Tensor& t) {
  next.push_back(gradient_edge(t));
  input_meta.push_back(t.defined() ? InputMeta{t.shape(), t.dtype()} : InputMeta{{}, DType::f32});
}

std::vector<Tensor> AccumulateGrad::apply(Tensor g) {
  if (!g.defined()) return fire_hooks(), std::vector<Tensor>{};
  LOOM_CHECK(g.shape() == leaf_->shape, "backward: gradient of shape {} for a leaf of shape {}", g.shape(), leaf_->shape);
  Tensor grad = g.dtype() == leaf_->dtype ? std::move(g) : ops::cast(g, leaf_->dtype);
  if (!leaf_->grad) {
    // Keep the incoming buffer when nothing else can see it (the usual case: a fresh kernel
    // output); otherwise it may alias another tensor, e.g. through a view, so copy it.
    const bool sole_owner = grad.impl_ptr().use_count() == 1 && grad.storage().use_count() == 1 && grad.is_contiguous() &&
                            grad.offset() == 0 && grad.nbytes() == grad.storage()->nbytes();
    leaf_->grad = sole_owner ? grad.impl_ptr() : ops::clone(grad).impl_ptr();
  } else {
    Tensor acc(leaf_->grad);
    ops::add_(acc, grad);
  }
  fire_hooks();
  return {};
}

void AccumulateGrad::fire_hooks() {
  Tensor leaf(leaf_);
  const auto hooks = leaf_->post_accumulate_hooks;  // a hook may remove itself
  for (const auto& [id, hook] : hooks) hook(leaf);
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}
bool needs_grad(std::initializer_list<Tensor> inputs) { return needs_grad(std::vector<Tensor>(inputs)); }

std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  if (t.grad_fn()) return t.grad_fn();
  std::shared_ptr<Node> acc = t.impl()->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    t.impl()->grad_accumulator = acc;
  }
  return acc;
}

LeafCollector::LeafCollector() : prev_(t_collector) { t_collector = this; }
LeafCollector::~LeafCollector() { t_collector = prev_; }

void attach(Tensor& out, const char* op, const std::vector<Tensor>& inputs, BackwardFn fn, AccumulateFn accumulate) {
  LOOM_CHECK(!accumulate || inputs.size() == 1, "autograd: {} accumulates into the gradient of one input, not {}", op, inputs.size());
  if (t_collector)
    for (const Tensor& t : inputs)
      if (t.defined() && t.requires_grad() && t.is_leaf() && t_collector->seen_.insert(t.impl()).second) t_collector->leaves.push_back(t);
  if (!needs_grad(inputs)) return;
  auto node = std::make_shared<FunctionNode>(op, std::move(fn), std::move(accumulate));
  for (const Tensor& t : inputs) node->add_input(t);
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
}

namespace {

// A gradient the engine may add into in place: a plain buffer nothing else holds.
bool sole_buffer(const Tensor& t) {
  return t.defined() && t.impl_ptr().use_count() == 1 && t.storage().use_count() == 1 && t.is_contiguous();
}

void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph, LeafGrads* captured) {
  LOOM_CHECK(root.defined() && root.requires_grad(), "backward: the tensor does not require grad");
  Tensor g = grad;
  if (!g.defined()) {
    LOOM_CHECK(root.numel() == 1, "backward: an implicit gradient needs a one-element tensor, got shape {}", root.shape());
    g = Tensor::ones(root.shape(), root.dtype());
  }
  LOOM_CHECK(g.shape() == root.shape(), "backward: gradient shape {} does not match tensor shape {}", g.shape(), root.shape());
  NoGradGuard no_grad;
  std::shared_ptr<Node> start = gradient_edge(root);

  // Count, for each node, how many edges lead into it from the part of the graph below root.
  std::unordered_map<Node*, int> deps;
  std::unordered_set<Node*> seen{start.get()};
  std::vector<Node*> stack{start.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& c : n->next) {
      if (!c) continue;
      ++deps[c.get()];
      if (seen.insert(c.get()).second) stack.push_back(c.get());
    }
  }

  auto later_first = [](Node* a, Node* b) { return a->seq < b->seq; };
  std::priority_queue<Node*, std::vector<Node*>, decltype(later_first)> ready(later_first);
  std::unordered_map<Node*, Tensor> grads{{start.get(), g}};
  ready.push(start.get());
  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    Tensor gn = std::move(grads[n]);
    grads.erase(n);
    std::vector<Tensor> outs;
    auto* acc = captured ? dynamic_cast<AccumulateGrad*>(n) : nullptr;
    if (acc && gn.defined()) {
      Tensor& slot = (*captured)[acc->leaf().get()];
      slot = slot.defined() ? ops::add(slot, gn) : gn;
    } else if (gn.defined() || (!captured && dynamic_cast<AccumulateGrad*>(n))) {
      auto slot = n->next.size() == 1 && n->next[0] ? grads.find(n->next[0].get()) : grads.end();
      if (!(gn.defined() && slot != grads.end() && sole_buffer(slot->second) && n->accumulate_into(gn, slot->second)))
        outs = n->apply(std::move(gn));
    }
    if (!retain_graph) n->release();
    LOOM_CHECK(outs.empty() || outs.size() == n->next.size(), "backward: {} returned {} gradients for {} inputs",
               n->name(), outs.size(), n->next.size());
    for (size_t i = 0; i < n->next.size(); ++i) {
      Node* c = n->next[i].get();
      if (!c) continue;
      if (i < outs.size() && outs[i].defined()) {
        const Node::InputMeta& m = n->input_meta[i];
        LOOM_CHECK(outs[i].shape() == m.shape && outs[i].dtype() == m.dtype,
                   "backward: {} returned a gradient of shape {} ({}) for its input {} of shape {} ({})", n->name(), outs[i].shape(),
                   dtype_name(outs[i].dtype()), i, m.shape, dtype_name(m.dtype));
        Tensor& slot = grads[c];
        // Sum in place when this slot is the only holder of a plain buffer (no copy of a large
        // gradient such as a tied embedding's); otherwise a new tensor.
        const bool own = sole_buffer(slot) && slot.shape() == outs[i].shape() && slot.dtype() == outs[i].dtype();
        if (own) ops::add_(slot, outs[i]);
        else slot = slot.defined() ? ops::add(slot, outs[i]) : outs[i];
      }
      if (--deps[c] == 0) ready.push(c);
    }
  }
}

}  // namespace

std::unordered_set<const TensorImpl*> reachable_leaves(const Tensor& root) {
  std::unordered_set<const TensorImpl*> leaves;
  std::shared_ptr<Node> start = gradient_edge(root);
  if (!start) return leaves;
  std::unordered_set<Node*> seen{start.get()};
  std::vector<Node*> stack{start.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (auto* acc = dynamic_cast<AccumulateGrad*>(n)) leaves.insert(acc->leaf().get());
    for (auto& c : n->next)
      if (c && seen.insert(c.get()).second) stack.push_back(c.get());
  }
  return leaves;
}

void backward(const Tensor& root, const Tensor& grad, bool retain_graph) { run_backward(root, grad, retain_graph, nullptr); }
void backward_captured(const Tensor& root, const Tensor& grad, LeafGrads& captured) { run_backward(root, grad, false, &captured); }

}  // namespace loom::autograd
