// Tensor-parallel training matches one process: `mpirun -np N loom train --parallel.tp=T` gives
// the per-step losses and gradient norms of one process on the same global batch (within 1e-5
// relative) and, read back from its sharded checkpoint as a whole model, the same parameters
// (within 1e-5 at lr 1e-4), for LLaMA-GQA at tp 2 (with and without data parallelism and ZeRO) and at tp 4
// (its 2 kv heads each replicated on 2 ranks), Qwen3 (per-head q/k norms whole on every rank) at
// tp 4, and GPT-2 at tp 4; with sequence parallelism LLaMA at tp 2 and dp 2 × tp 2, Qwen3 at
// dp 2 × tp 2 with ZeRO-1, GPT-2 at tp 4 with ZeRO-3. A checkpoint written under
// dp 2 × tp 2 resumes under one process, under tp 2 alone, under tp 4 (kv heads replicated, the
// vocabulary padded further for tp) and under dp 4 with the losses of the run that never
// stopped; one written at tp 4 resumes at tp 2 and in one process.
#include "loom/io/sharded_checkpoint.h"
#include "train_util.h"

namespace {

struct TpCase {
  const char* preset;
  Layout layout;
  bool sequence_parallel = false;
};

TEST(TensorParallel, MatchesOneProcessOnTheSameGlobalBatch) {
  const TpCase cases[] = {{"llama-tiny", {2, 0, 4, 1, 2}},       {"llama-tiny", {4, 1, 1, 2, 2}},
                          {"llama-tiny", {4, 2, 4, 1, 4}},       {"llama-tiny", {2, 0, 4, 1, 2}, true},
                          {"llama-tiny", {4, 1, 1, 2, 2}, true}, {"gpt2-tiny", {4, 0, 4, 1, 4}},
                          {"gpt2-tiny", {4, 3, 4, 1, 4}, true},  {"qwen3-tiny", {4, 0, 4, 1, 4}},
                          {"qwen3-tiny", {4, 1, 2, 1, 2}, true}};
  for (const char* preset : {"llama-tiny", "gpt2-tiny", "qwen3-tiny"}) {
    Scratch d;
    // lr 1e-4: AdamW's rounding noise on near-zero gradients scales with lr (see expect_same_params).
    const std::string model = std::string(" --optimizer.lr=1e-4 --model.preset=") + preset;
    train(d, Layout{0, 0, 4, 1}, "one", model);
    for (const TpCase& c : cases) {
      if (std::string(c.preset) != preset) continue;
      ASSERT_EQ(c.layout.batch * c.layout.accum * (c.layout.np / c.layout.tp), 4) << "the global batch of every case is 4";
      const std::string name = fmt::format("{}_np{}_tp{}_zero{}_accum{}{}", preset, c.layout.np, c.layout.tp, c.layout.zero, c.layout.accum,
                                           c.sequence_parallel ? "_sp" : "");
      train(d, c.layout, name, model + (c.sequence_parallel ? " --parallel.sequence_parallel=true" : ""));
      expect_same_run(d, name, "one", name, std::string(preset) == "gpt2-tiny" ? "attn.wk.bias" : "");
    }
  }
}

TEST(TensorParallelCheckpoint, ResumesUnderAnotherLayout) {
  Scratch d;
  train(d, Layout{4, 1, 2, 1, 2}, "full", "--checkpoint.every=10");
  expect_resumes(d, "full", 10, {{"one", {0, 0, 4, 1}}, {"tp2", {2, 0, 4, 1, 2}}, {"tp4_kv_replicated", {4, 0, 4, 1, 4}}, {"dp4_zero3", {4, 3, 1, 1}}},
                 "");
}

// GPT-2's 256-token vocabulary is padded to 512 rows at tp 4 (128 per rank); the checkpoint holds
// the model's 256 rows, written by ranks 0 and 1 alone, and resumes at tp 2 and in one process.
TEST(TensorParallelCheckpoint, VocabularyPaddingForTpIsNotInTheCheckpoint) {
  Scratch d;
  const std::string model = " --model.preset=gpt2-tiny";
  train(d, Layout{4, 0, 4, 1, 4}, "full", "--checkpoint.every=10" + model);
  EXPECT_EQ(io::ShardedCheckpoint(d / "full/step_00000010").shapes().at("param.tok_emb.weight"), (Shape{256, 64}));
  expect_resumes(d, "full", 10, {{"one", {0, 0, 4, 1}}, {"tp2", {2, 0, 4, 1, 2}}}, model);
}

// model.init = "hf:DIR" under tp and pp: each rank reads only its blocks from the mapped
// safetensors (GPT-2's are Conv1D-transposed, its q/k/v fused, its head tied; Qwen3's q/k norms
// whole on every rank) or from a Loom checkpoint; the runs train as one process does from the
// same weights.
TEST(ModelParallelInit, ReadsAHuggingFaceDirectoryBlockByBlock) {
  for (const char* preset : {"llama-tiny", "gpt2-tiny", "qwen3-tiny"}) {
    Scratch d;
    const std::string model = std::string(" --model.preset=") + preset;
    train(d, Layout{0, 0, 4, 1}, "pre", model + " --training.steps=5");
    std::string out;
    ASSERT_EQ(run(std::string(LOOM_BIN) + " convert --from hf:" + (d / "pre/step_00000005") + " --to hf:" + (d / "hf"), &out), 0) << out;
    for (const std::string& from : {d / "hf", d / "pre/step_00000005"}) {
      const std::string init = " --model.init=hf:" + from + " --training.steps=5";
      train(d, Layout{0, 0, 4, 1}, "one", init);
      for (const auto& [name, l] : {std::pair<std::string, Layout>{"tp2", {2, 0, 4, 1, 2}}, {"pp2", {2, 0, 1, 4, 1, 2}}, {"tp4", {4, 0, 4, 1, 4}}}) {
        train(d, l, name, init);
        expect_same_losses(losses(d / (name + ".jsonl")), losses(d / "one.jsonl"), std::string(preset) + " from " + from + " at " + name);
        fs::remove_all(d / name);
      }
      fs::remove_all(d / "one");
    }
  }
}

}  // namespace
