// Data parallelism where the ranks' graphs differ, and its lifetime on a model:
// - rank 1 skips a block (a branch it does not take, so that block's parameters get no gradient
//   there): every ZeRO stage finishes each step (no rank waits on a reduction another never
//   issues) and updates the parameters exactly as one process that accumulates every rank's loss;
// - destroying a DataParallel gives the model back whole parameters with their trained values and
//   removes every hook and block wrapper; a second DataParallel on the same model then trains on.
// Parameters are compared within 1e-5 against one process, and within 1e-4 (a tenth of one lr
// step) between DDP and ZeRO after four steps: sums over ranks round in another order than one
// process's accumulation, DDP's buckets in another than ZeRO's units, and AdamW's normalisation
// magnifies that for small gradients (the head's place in the reduction order alone moved one
// element by 2.3e-5).
#include "loom/core/rng.h"
#include "loom/dist/local_group.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/nn.h"
#include "loom/ops/shape.h"
#include "loom/parallel/data_parallel.h"
#include "tests/dist/dist_test.h"

namespace loom::dist::test {
namespace {

constexpr int64_t kB = 2, kT = 8;

models::ModelConfig config() {
  models::ModelConfig c = models::preset("llama-tiny");
  c.n_layer = 3;
  return c;
}

// Rank `rank`'s loss at `step`: summed cross-entropy over the tokens of every rank, so that the
// gradients summed over ranks are those of the mean over the global batch.
Tensor rank_loss(const nn::TransformerLM& model, int rank, int size, uint64_t step) {
  const double V = double(model.config().vocab_size);
  Tensor ids = ops::cast(ops::mul(rand({kB, kT + 1}, {11, (step * 64 + uint64_t(rank)) * 1000}), V), DType::i64);
  Tensor logits = model.forward(ops::narrow(ids, 1, 0, kT));
  Tensor sum = ops::cross_entropy(logits, ops::narrow(ids, 1, 1, kT), -100, ops::Reduction::sum, model.config().vocab_size);
  return ops::mul(sum, 1.0 / double(size * kB * kT));
}

// Block 1 is skipped while `as_rank` is 1.
HookHandle skip_block_on_rank1(nn::TransformerLM& model, const int& as_rank) {
  return model.add_block_wrapper([&as_rank](size_t layer, const Tensor& x, const nn::TransformerLM::BlockFn& block) {
    return as_rank == 1 && layer == 1 ? x : block(x);
  });
}

void update(parallel::DataParallel& dp) {
  dp.finish();
  dp.clip_grad_norm(0);
  dp.step(1e-3);
  dp.zero_grad();
}

// One process on a LocalGroup: each step accumulates the losses of ranks 0..size-1 as micro-steps.
std::map<std::string, Tensor> one_process_reference(int size, int steps) {
  nn::TransformerLM model(config());
  model.init(5);
  int as_rank = 0;
  HookHandle skip = skip_block_on_rank1(model, as_rank);
  auto dp = parallel::DataParallel::create(model, std::make_shared<LocalGroup>("dp"), {0, 25.0, {}});
  for (int s = 0; s < steps; ++s) {
    for (as_rank = 0; as_rank < size; ++as_rank) {
      dp->before_forward();
      dp->backward(rank_loss(model, as_rank, size, uint64_t(s)), as_rank + 1 == size);
    }
    update(*dp);
  }
  return model.state_dict();
}

// This rank's parameter slices, as its checkpoint share sees them, against the reference.
void expect_params(const parallel::DataParallel& dp, const std::map<std::string, Tensor>& want, const std::string& what) {
  for (const auto& [slice, data] : dp.checkpoint_state()) {
    if (slice.name.rfind("param.", 0) != 0) continue;
    const std::vector<double> ref = ops::reshape(want.at(slice.name.substr(6)), {-1}).to_vector(), got = data.to_vector();
    double err = 0;
    for (int64_t i = slice.begin; i < slice.end; ++i) err = std::max(err, std::abs(got[size_t(i - slice.begin)] - ref[size_t(i)]));
    EXPECT_LE(err, 1e-5) << what << ": " << slice.name;
  }
}

std::shared_ptr<Group> dp_group() {
  auto g = world()->split(0, world()->rank(), "dp");
  g->set_timeout_s(60);  // a rank left waiting on a reduction aborts the job instead of hanging it
  return g;
}

TEST(DataParallelGraphs, ABranchOneRankSkipsIsReducedAsZeros) {
  const int size = world()->size(), rank = world()->rank();
  const auto want = one_process_reference(size, 3);
  auto group = dp_group();
  for (int zero = 0; zero <= 3; ++zero) {
    nn::TransformerLM model(config());
    model.init(5);
    const int as_rank = rank;
    HookHandle skip = skip_block_on_rank1(model, as_rank);  // inside the ZeRO-3 wrapper: added first
    auto dp = parallel::DataParallel::create(model, group, {zero, 0.05, {}});  // several DDP buckets
    for (int s = 0; s < 3; ++s) {
      dp->before_forward();
      dp->backward(rank_loss(model, rank, size, uint64_t(s)), true);
      update(*dp);
    }
    expect_params(*dp, want, "zero " + std::to_string(zero));
  }
}

TEST(DataParallelLifetime, GivesBackWholeParametersAndCanBeCreatedAgain) {
  const int size = world()->size(), rank = world()->rank();
  auto group = dp_group();
  auto two_steps = [&](nn::TransformerLM& model, parallel::DataParallel& dp, int first) {
    for (int s = first; s < first + 2; ++s) {
      dp.before_forward();
      dp.backward(rank_loss(model, rank, size, uint64_t(s)), true);
      update(dp);
    }
  };
  // The reference: DDP, which never moves parameters, created twice.
  nn::TransformerLM ref(config());
  ref.init(5);
  for (int first : {0, 2}) {
    auto dp = parallel::DataParallel::create(ref, group, {0, 25.0, {}});
    two_steps(ref, *dp, first);
  }
  for (int zero = 1; zero <= 3; ++zero) {
    nn::TransformerLM model(config());
    model.init(5);
    const std::string what = "zero " + std::to_string(zero);
    {
      auto dp = parallel::DataParallel::create(model, group, {zero, 25.0, {}});
      two_steps(model, *dp, 0);
    }
    for (const auto& [name, p] : model.named_parameters()) {
      EXPECT_TRUE(p.storage()->resident()) << what << ": " << name;
      EXPECT_EQ(p.storage()->nbytes(), p.nbytes()) << what << ": " << name << " still shares a flat buffer";
      EXPECT_TRUE(p.impl()->post_accumulate_hooks.empty()) << what << ": " << name;
    }
    {
      auto dp = parallel::DataParallel::create(model, group, {zero, 25.0, {}});
      two_steps(model, *dp, 2);
    }
    const auto want = ref.state_dict();
    for (const auto& [name, p] : model.named_parameters()) {
      const std::vector<double> a = p.to_vector(), b = want.at(name).to_vector();
      double err = 0;
      for (size_t i = 0; i < a.size(); ++i) err = std::max(err, std::abs(a[i] - b[i]));
      EXPECT_LE(err, 1e-4) << what << ": " << name;  // a tenth of one lr step (see the top)
    }
    // No wrapper or hook is left behind: a plain forward and backward work on the whole model.
    Tensor loss = rank_loss(model, rank, size, 9);
    loss.backward();
    EXPECT_TRUE(model.layers[0]->attn->wq->weight.grad().defined());
  }
}

}  // namespace
}  // namespace loom::dist::test
