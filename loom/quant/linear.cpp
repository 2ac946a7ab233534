// Frozen quantised linears: dequantise on the fly, gradient for the input only.
#include "loom/quant/linear.h"

#include "loom/autograd/function.h"
#include "loom/core/allocator.h"
#include "loom/nn/lora.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"

namespace loom::nn {

QuantizedLinear::QuantizedLinear(const Linear& base, Dequantize dequantize, Cut cut)
    : Linear(Tensor(), Tensor()), dequantize_(std::move(dequantize)), cut_(std::move(cut)) {
  LOOM_CHECK(base.weight.defined() && base.weight.ndim() == 2, "quantized linear: the base has no (out, in) weight");
  weight = Tensor::deferred(base.weight.shape());  // the shape only: the values live quantised
  if (base.bias.defined()) {
    LOOM_CHECK(base.bias.has_memory(), "quantized linear: the base's bias has no memory (deferred or released)");
    autograd::NoGradGuard no_grad;
    bias = ops::clone(ops::cast(base.bias.detach(), DType::f32));
  }
}

QuantizedLinear::QuantizedLinear(const Shape& shape, Tensor b, Dequantize dequantize) : Linear(Tensor(), Tensor()), dequantize_(std::move(dequantize)) {
  weight = Tensor::deferred(shape);
  bias = std::move(b);
}

std::shared_ptr<QuantizedLinear> QuantizedLinear::block(int dim, int64_t start, int64_t size) const {
  LOOM_CHECK(cut_, "quantized linear: a block is not cut again");
  LOOM_CHECK((dim == 0 || dim == 1) && start >= 0 && size > 0 && start + size <= weight.size(dim),
             "quantized linear: [{}, {}) along dim {} is not a block of a weight of shape {}", start, start + size, dim, weight.shape());
  Shape offset{0, 0}, box = weight.shape();
  offset[size_t(dim)] = start;
  box[size_t(dim)] = size;
  autograd::NoGradGuard no_grad;
  Tensor b = dim == 0 && bias.defined() ? ops::clone(ops::narrow(bias, 0, start, size)) : Tensor();
  return std::shared_ptr<QuantizedLinear>(new QuantizedLinear(box, std::move(b), cut_(offset, box)));
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
