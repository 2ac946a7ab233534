// Frozen quantised linears, the base of QLoRA: built from a Linear, they keep its weight only in
// quantised form and go in its place by module surgery (Module::replace_module). They register
// no parameter: nothing of the base is trained, listed by named_parameters() or saved by
// state_dict(). The weight member is a shape without memory (code that reads a Linear's
// weight.size() still works; reading its values is an error) and the bias, if any, a frozen
// float32 copy outside the parameter list.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loom/nn/layers.h"
#include "loom/quant/int8.h"
#include "loom/quant/nf4.h"

namespace loom::nn {

class QuantizedLinear : public Linear {
 public:
  // y = x·Wᵀ + b with W dequantised for the call and dropped after it; backward dequantises
  // again and gives x its gradient, and nothing else one (the graph keeps no (out, in) matrix).
  // x: f32, or bf16/f16 (W and b are cast to it).
  Tensor forward(const Tensor& x) const override;
  // The weight dequantised, float32 (out, in): to merge an adapter into it, or to check.
  Tensor dense_weight() const override { return dequantize_(); }
  // This linear restricted to output rows (dim 0) or input columns (dim 1) [start, start + size),
  // with those rows of the bias (none for columns): a tensor-parallel rank's part of a QLoRA base.
  // It keeps only that block's codes and statistics, and dequantises to exactly that block of
  // this one's weight (the quantisation's statistics are the whole weight's). Not of a block.
  std::shared_ptr<QuantizedLinear> block(int dim, int64_t start, int64_t size) const;

 protected:
  using Dequantize = std::function<Tensor()>;
  // The block (offset, box) of the weight as a Dequantize of its own (holding only that block).
  using Cut = std::function<Dequantize(const Shape& offset, const Shape& box)>;
  // base: a Linear with memory. dequantize: gives the f32 weight; it may outlive this module
  // (the autograd graph holds it), so it must own what it reads; cut: its blocks.
  QuantizedLinear(const Linear& base, Dequantize dequantize, Cut cut);

 private:
  QuantizedLinear(const Shape& shape, Tensor bias, Dequantize dequantize);  // a block
  Dequantize dequantize_;
  Cut cut_;
};

// A QuantizedLinear that stores its weight as a W made by quantize and read by dequantize, its
// blocks as a B made by cut and read by dequantize_block.
template <typename W, W (*quantize)(const Tensor&), Tensor (*dequantize)(const W&), typename B,
          B (*cut)(const W&, const Shape&, const Shape&), Tensor (*dequantize_block)(const B&)>
class QuantizedLinearAs : public QuantizedLinear {
 public:
  explicit QuantizedLinearAs(const Linear& base) : QuantizedLinearAs(std::make_shared<const W>(quantize(base.weight)), base) {}
  const W& quantized() const { return *q_; }

 private:
  QuantizedLinearAs(std::shared_ptr<const W> q, const Linear& base)
      : QuantizedLinear(
            base, [q] { return dequantize(*q); },
            [q](const Shape& offset, const Shape& box) -> Dequantize {
              auto b = std::make_shared<const B>(cut(*q, offset, box));
              return [b] { return dequantize_block(*b); };
            }),
        q_(std::move(q)) {}
  std::shared_ptr<const W> q_;
};

// NF4 with double quantisation (bitsandbytes' QLoRA storage): 0.5 byte a weight, plus 1/64 byte
// and 4/(64·256) bytes of statistics.
using Nf4Linear = QuantizedLinearAs<quant::Nf4Weight, quant::quantize_nf4, quant::dequantize_nf4, quant::Nf4Block, quant::nf4_block,
                                    quant::dequantize_nf4_block>;
// Row-wise absmax int8 (bitsandbytes' LLM.int8 storage, no outliers): 1 byte a weight, 4 a row.
using Int8Linear = QuantizedLinearAs<quant::Int8Weight, quant::quantize_int8, quant::dequantize_int8, quant::Int8Weight, quant::int8_block,
                                     quant::dequantize_int8>;

// QLoRA's frozen base (quant.base): every Linear of `model` replaced by module surgery with an
// Nf4Linear (kind "nf4") or Int8Linear ("int8"), as bitsandbytes and PEFT quantise every linear
// layer but the output head (a TransformerLM's head is an LMHead, not a Linear: it stays, as do
// the embeddings and norms). The linears need their values (a materialised model) and no LoRA
// yet: apply LoRA after, and each LoraLinear wraps its quantised base. Each float weight is freed
// as its linear is replaced, and the allocator's cache handed back to the system at the end.
// Returns the paths of the quantised linears.
std::vector<std::string> quantize_base(Module& model, const std::string& kind);

}  // namespace loom::nn
