// nn::Module: a tree of named parameters and child modules. named_parameters() yields dotted
// names ("layers.3.attn.wq.weight") in registration order; state_dict()/load_state_dict()
// move weights in and out by those names.
#pragma once

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

 protected:
  Tensor& register_parameter(const std::string& name, Tensor t);  // sets requires_grad
  template <typename M> std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace loom::nn
