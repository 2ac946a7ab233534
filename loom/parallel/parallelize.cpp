// parallelize(): tp -> recompute -> pipeline -> data parallelism, and the step that runs on it.
#include "loom/parallel/parallelize.h"

#include "loom/autograd/function.h"
#include "loom/nn/lora.h"
#include "loom/ops/elementwise.h"
#include "loom/parallel/recompute.h"
#include "loom/parallel/tensor_parallel.h"

namespace loom::parallel {

std::unique_ptr<Parallelized> parallelize(nn::TransformerLM& model, const dist::Mesh& mesh, ParallelConfig cfg) {
  std::unique_ptr<Parallelized> p(new Parallelized(model, mesh));
  const int tp = mesh.dims().tp, pp = mesh.dims().pp;
  if (tp > 1) cfg.data.tp = apply_tensor_parallel(model, mesh.tp(), cfg.sequence_parallel);
  if (cfg.recompute) p->recompute_ = recompute_blocks(model);
  if (pp > 1) {
    cfg.pipeline.sequence_split = cfg.sequence_parallel ? tp : 1;
    p->pipeline_ = std::make_unique<Pipeline>(model, mesh.pp(), cfg.pipeline);
    p->pipeline_->configure(cfg.data);
  }
  if (cfg.materialize) {
    const TensorParallelLayout& tp_layout = cfg.data.tp;
    cfg.materialize(model, [&](const std::string& name, const Tensor& param) { return tp_layout.place(name, param); });
  }
  p->dp_ = DataParallel::create(model, mesh.dp(), cfg.data);
  return p;
}

double Parallelized::forward_backward(const std::vector<data::Batch>& micro, double scale) {
  // LoRA dropout acts in these forwards (and their recomputation in backward), and only here.
  struct DropoutOff {
    nn::TransformerLM& model;
    ~DropoutOff() { nn::set_lora_dropout(model, std::nullopt); }
  } off{model_};
  double loss = 0;
  if (pipeline_) {
    loss = pipeline_->step(micro, scale, *dp_);  // the micro-batches are the pipeline's
  } else {
    for (size_t i = 0; i < micro.size(); ++i) {
      nn::set_lora_dropout(model_, micro[i].first);
      dp_->before_forward();
      Tensor l = ops::mul(model_.loss(model_.forward(micro[i].inputs, nullptr, micro[i].positions), micro[i].targets, ops::Reduction::sum), scale);
      dp_->backward(l, i + 1 == micro.size());
      loss += l.item();
    }
  }
  dp_->finish();
  return pipeline_ ? dist::all_reduce_value(*mesh_.pp(), loss) : loss;  // from the last stage to every rank
}

double Parallelized::evaluate(const std::vector<data::Batch>& batches) {
  autograd::NoGradGuard no_grad;
  if (pipeline_) return dist::all_reduce_value(*mesh_.pp(), pipeline_->evaluate(batches, *dp_));
  double total = 0;
  for (const data::Batch& b : batches) {
    dp_->before_forward();
    total += model_.loss(model_.forward(b.inputs, nullptr, b.positions), b.targets, ops::Reduction::sum).item();
  }
  return total;
}

}  // namespace loom::parallel
