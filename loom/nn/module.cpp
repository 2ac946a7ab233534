// Module parameter tree and state-dict transfer.
#include "loom/nn/module.h"

#include "loom/autograd/function.h"
#include "loom/ops/elementwise.h"

namespace loom::nn {

Tensor& Module::register_parameter(const std::string& name, Tensor t) {
  t.set_requires_grad(true);
  params_.emplace_back(name, std::move(t));
  return params_.back().second;
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, t] : params_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : named_parameters()) out.emplace(name, t);
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state) {
  auto params = named_parameters();
  for (const auto& [name, t] : state) {
    bool known = false;
    for (const auto& p : params) known = known || p.first == name;
    LOOM_CHECK(known, "load_state_dict: unexpected tensor {}", name);
  }
  autograd::NoGradGuard no_grad;
  for (auto& [name, p] : params) {
    auto it = state.find(name);
    LOOM_CHECK(it != state.end(), "load_state_dict: missing tensor {}", name);
    LOOM_CHECK(it->second.shape() == p.shape(), "load_state_dict: tensor {} has shape {}, the model expects {}", name, it->second.shape(),
               p.shape());
    Tensor dst = p;
    ops::copy_(dst, it->second);
  }
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t.zero_grad();
}

}  // namespace loom::nn
