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

Tensor Module::parameter(const std::string& name) const {
  for (const auto& [n, t] : params_)
    if (n == name) return t;
  return Tensor();
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, t] : params_) out.emplace_back(prefix + name, t);
  for (const Child& c : children_) c.module->collect(c.name.empty() ? prefix : prefix + c.name + ".", out);
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() const {
  // Paths joined with dots; a child of no name (in its parent's place) adds nothing to the path.
  auto join = [](const std::string& a, const std::string& b) { return a.empty() || b.empty() ? a + b : a + "." + b; };
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  for (const Child& c : children_) {
    out.emplace_back(c.name, c.module);
    for (auto& [path, m] : c.module->named_modules()) out.emplace_back(join(c.name, path), std::move(m));
  }
  return out;
}

std::pair<Module*, size_t> Module::locate(const std::string& path) const {
  const Module* parent = this;
  std::string rest = path;  // the path below parent
  for (;;) {
    const Child *found = nullptr, *inner = nullptr;
    for (const Child& c : parent->children_)
      if (c.name.empty())
        inner = &c;
      else if (rest == c.name || (rest.size() > c.name.size() && rest.compare(0, c.name.size(), c.name) == 0 && rest[c.name.size()] == '.'))
        found = &c;
    if (!found && inner) {  // the path goes on in the module standing in parent's place
      parent = inner->module.get();
      continue;
    }
    LOOM_CHECK(found, "module: no module at '{}'", path);
    // Held by this module or one it owns.
    if (rest == found->name) return {const_cast<Module*>(parent), size_t(found - parent->children_.data())};
    rest = rest.substr(found->name.size() + 1);
    parent = found->module.get();
  }
}

Module::Child& Module::child_at(const std::string& path) const {
  auto [parent, index] = locate(path);
  return parent->children_[index];
}

std::shared_ptr<Module> Module::module_at(const std::string& path) const { return child_at(path).module; }

void Module::replace_module(const std::string& path, std::shared_ptr<Module> m) {
  LOOM_CHECK(m != nullptr, "module: replacing '{}' with nothing", path);
  Child& child = child_at(path);
  LOOM_CHECK(child.bind(m), "module: '{}' cannot hold the replacement: it is not of the type its parent declares", path);
  child.module = std::move(m);
}

void Module::remove_module(const std::string& path) {
  auto [parent, index] = locate(path);
  parent->children_[index].bind(nullptr);
  parent->children_.erase(parent->children_.begin() + std::ptrdiff_t(index));
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
