// ZeRO in one process (a one-rank LocalGroup; tests/dist_train runs the real multi-rank layouts):
// every stage trains exactly as DDP does, and stage 3 holds a block's parameters only while
// that block runs: between steps none is resident, during backward at most two blocks are, and
// the embeddings and head are freed once backward has passed the head.
#include <gtest/gtest.h>

#include "loom/core/rng.h"
#include "loom/dist/local_group.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/shape.h"
#include "loom/parallel/data_parallel.h"

using namespace loom;

namespace {

// Three AdamW steps on fixed random batches; returns the losses.
std::vector<double> train(nn::TransformerLM& model, parallel::DataParallel& dp) {
  std::vector<double> losses;
  for (uint64_t step = 0; step < 3; ++step) {
    Tensor ids = ops::cast(ops::mul(rand({2, 17}, {7, step * 34}), double(model.config().vocab_size)), DType::i64);
    dp.before_forward();
    Tensor loss = model.loss(model.forward(ops::narrow(ids, 1, 0, 16)), ops::narrow(ids, 1, 1, 16));
    dp.backward(loss, true);
    dp.finish();
    dp.clip_grad_norm(1.0);
    dp.step(1e-2);
    dp.zero_grad();
    losses.push_back(loss.item());
  }
  return losses;
}

}  // namespace

TEST(Zero, EveryStageTrainsLikeDdpInOneProcess) {
  auto group = std::make_shared<dist::LocalGroup>("dp");
  nn::TransformerLM ref(models::preset("llama-tiny"));
  ref.init(3);
  auto ddp = parallel::DataParallel::create(ref, group, {0, 25.0, {}});
  const std::vector<double> want = train(ref, *ddp);
  for (int zero = 1; zero <= 3; ++zero) {
    nn::TransformerLM model(models::preset("llama-tiny"));
    model.init(3);
    auto dp = parallel::DataParallel::create(model, group, {zero, 25.0, {}});
    const std::vector<double> got = train(model, *dp);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "zero " << zero << ", step " << i + 1;
    // The updated parameters, as the checkpoint sees them (stage 3 holds no whole parameter now).
    const auto ref_params = ref.state_dict();
    size_t compared = 0;
    for (const auto& [slice, data] : dp->checkpoint_state()) {
      if (slice.name.rfind("param.", 0) != 0) continue;
      EXPECT_EQ(data.to_vector(), ref_params.at(slice.name.substr(6)).to_vector()) << "zero " << zero << ": " << slice.name;
      ++compared;
    }
    EXPECT_EQ(compared, ref_params.size());
  }
}

TEST(Zero, Stage3GathersABlockOnlyWhileItRuns) {
  auto group = std::make_shared<dist::LocalGroup>("dp");
  models::ModelConfig c = models::preset("llama-tiny");
  c.n_layer = 4;
  nn::TransformerLM model(c);
  model.init(3);
  auto dp = parallel::DataParallel::create(model, group, {3, 25.0, {}});
  auto resident_blocks = [&] {
    size_t n = 0;
    for (const auto& layer : model.layers) n += layer->attn_norm->weight.storage()->resident();
    return n;
  };
  for (const auto& [name, p] : model.named_parameters()) EXPECT_FALSE(p.storage()->resident()) << name;
  size_t most = 0, hooks = 0, with_head = 0;
  std::vector<HookHandle> handles;
  for (auto& [name, p] : model.named_parameters()) {
    const bool in_block = name.rfind("layers.", 0) == 0;
    handles.push_back(p.register_post_accumulate_hook([&, in_block](const Tensor&) {
      most = std::max(most, resident_blocks()), ++hooks;
      if (in_block) with_head += model.norm->weight.storage()->resident();
    }));
  }
  train(model, *dp);
  EXPECT_GT(hooks, 0u);
  EXPECT_GE(most, 1u);
  EXPECT_LE(most, 2u);       // the block backward is in, and the one it prefetched
  EXPECT_EQ(with_head, 0u);  // the embeddings, final norm and head are freed once backward is past them
  for (const auto& [name, p] : model.named_parameters()) EXPECT_FALSE(p.storage()->resident()) << name;
}
