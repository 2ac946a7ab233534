// nn::Module: a tree of named parameters and child modules. named_parameters() yields dotted
// names ("layers.3.attn.wq.weight") in registration order; state_dict()/load_state_dict()
// move weights in and out by those names.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::nn {

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::map<std::string, Tensor> state_dict() const;
  // Copies values into the parameters of the same names. Every parameter must be present and
  // of the same shape; unknown names are an error. The message names the tensor.
  void load_state_dict(const std::map<std::string, Tensor>& state);
  int64_t num_parameters() const;
  void zero_grad();
  // This module's own parameter `name` ("weight"), or an undefined tensor if it registers none of that name.
  Tensor parameter(const std::string& name) const;

  // Every module below this one with its dotted path ("layers.3.attn.wq"), parents first.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules() const;
  // The module at a dotted path; an error naming the path when there is none.
  std::shared_ptr<Module> module_at(const std::string& path) const;
  // Module surgery: m takes the place of the module at `path` (a Linear replaced by a
  // tensor-parallel or LoRA one, say). The parent's typed member holds m from then on, so m must
  // be of that member's type or derived from it; named_parameters() lists m's parameters under
  // the same path.
  void replace_module(const std::string& path, std::shared_ptr<Module> m);
  // Drops the module at `path` and its parameters (a pipeline stage sheds the layers it does not
  // run); the parent's typed member becomes null.
  void remove_module(const std::string& path);

 protected:
  Tensor& register_parameter(const std::string& name, Tensor t);  // sets requires_grad
  // A new parameter's value: filled with `value`, or deferred (no memory until init).
  static Tensor param(const Shape& shape, double value, bool defer) { return defer ? Tensor::deferred(shape) : Tensor::full(shape, value); }
  // Adds m as child `name` and stores it in `slot`, the parent's typed member (which must stay
  // at its address: a member, or an element of a vector that is not resized afterwards). An empty
  // name puts m in this module's own place (a wrapper around the module it computes with: a
  // row-parallel linear around its rank's part): m's parameters and children are listed under
  // this module's path, and named_modules() lists m at that path too, after this module.
  template <typename M> void register_module(const std::string& name, std::shared_ptr<M>& slot, std::shared_ptr<M> m) {
    slot = m;
    children_.push_back({name, std::move(m), [&slot](const std::shared_ptr<Module>& n) {
                           if (!n) return slot = nullptr, true;  // removed
                           auto typed = std::dynamic_pointer_cast<M>(n);
                           if (!typed) return false;
                           slot = std::move(typed);
                           return true;
                         }});
  }

 private:
  struct Child {
    std::string name;
    std::shared_ptr<Module> module;
    std::function<bool(const std::shared_ptr<Module>&)> bind;  // stores a replacement (or null) in the typed member; false if of another type
  };
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const;
  // The module holding the child entry that the dotted path names, and the entry's index there; an error if none.
  std::pair<Module*, size_t> locate(const std::string& path) const;
  Child& child_at(const std::string& path) const;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<Child> children_;
};

}  // namespace loom::nn
