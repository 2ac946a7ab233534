// Frozen quantised linears: dequantise on the fly, gradient for the input only.
#include "loom/quant/linear.h"

#include "loom/autograd/function.h"
#include "loom/core/allocator.h"
#include "loom/nn/lora.h"
#include "loom/ops/elementwise.h"

namespace loom::nn {

QuantizedLinear::QuantizedLinear(const Linear& base, std::function<Tensor()> dequantize)
    : Linear(Tensor(), Tensor()), dequantize_(std::move(dequantize)) {
  LOOM_CHECK(base.weight.defined() && base.weight.ndim() == 2, "quantized linear: the base has no (out, in) weight");
  weight = Tensor::deferred(base.weight.shape());  // the shape only: the values live quantised
  if (base.bias.defined()) {
    LOOM_CHECK(base.bias.has_memory(), "quantized linear: the base's bias has no memory (deferred or released)");
    autograd::NoGradGuard no_grad;
    bias = ops::clone(ops::cast(base.bias.detach(), DType::f32));
  }
}

Tensor QuantizedLinear::forward(const Tensor& x) const {
  const DType dtype = x.dtype();
  Tensor y;
  {
    autograd::NoGradGuard no_grad;
    const Tensor w = ops::cast(dequantize_(), dtype);
    y = ops::linear(x.detach(), w, bias.defined() ? ops::cast(bias, dtype) : bias);
  }
  autograd::attach(y, "quantized_linear", {x}, [dequantize = dequantize_, dtype](const Tensor& g) -> std::vector<Tensor> {
    return {ops::matmul(g, ops::cast(dequantize(), dtype))};  // (..., out)·(out, in)
  });
  return y;
}

std::vector<std::string> quantize_base(Module& model, const std::string& kind) {
  LOOM_CHECK(kind == "nf4" || kind == "int8", "quant.base must be nf4 or int8, got '{}'", kind);
  std::vector<std::string> paths;
  for (const auto& [path, m] : model.named_modules()) {
    LOOM_CHECK(!std::dynamic_pointer_cast<LoraLinear>(m), "quant.base: {} is adapted already; quantise the base before applying LoRA", path);
    if (std::dynamic_pointer_cast<Linear>(m)) paths.push_back(path);
  }
  for (const std::string& path : paths) {  // one at a time: each float weight goes as soon as its linear is replaced
    auto lin = std::dynamic_pointer_cast<Linear>(model.module_at(path));
    std::shared_ptr<Module> q;
    if (kind == "nf4") q = std::make_shared<Nf4Linear>(*lin);
    else q = std::make_shared<Int8Linear>(*lin);
    lin.reset();
    model.replace_module(path, std::move(q));
  }
  CpuAllocator::instance().empty_cache();
  return paths;
}

}  // namespace loom::nn
