// LoRA, QLoRA and training.trainable under tensor and pipeline parallelism train to the numbers of
// one process on the same global batch of 4: per-step losses and gradient norms within 1e-5
// relative, and the PEFT adapter that rank 0 writes, whole, within 2e-5 of one process's. A
// 4-layer LLaMA-GQA with LoRA on every linear (A split over a row-parallel base, B over a
// column-parallel one) and dropout at tp 2 (with and without sequence parallelism), pp 2 (1F1B
// with recompute), dp 2 × tp 2 (ZeRO-1) and dp 2 × pp 2 (interleaved, ZeRO-3); a one-process
// checkpoint resumes under tp 2 and a tp 2 one in one process; an adapter given as model.adapter
// trains on under tp 2 and pp 2 as in one process. On the 2-layer model: QLoRA (NF4)
// at tp 2 and pp 2; training.trainable at tp 2 and pp 2, where the first stage holds nothing that
// trains.
#include "train_util.h"

namespace {

const std::string kLora = " --lora.r=4 --lora.alpha=8 --lora.dropout=0.1";

// Run `name` against run `want`: losses, gradient norms, and the adapter of the last checkpoint.
void expect_same_lora_run(const Scratch& d, const std::string& name, const std::string& want) {
  expect_same_losses(losses(d / (name + ".jsonl")), losses(d / (want + ".jsonl")), name);
  expect_same_losses(series(d / (name + ".jsonl"), "grad_norm"), series(d / (want + ".jsonl"), "grad_norm"), name + " grad norm");
  expect_same_adapter(d / (name + "/step_00000020"), d / (want + "/step_00000020"), name);
}

struct Case {
  std::string name;
  Layout layout;
  std::string extra;
};

// One process, then each case, all with `extra`; every case's global batch is 4.
void expect_cases_match_one_process(const Scratch& d, const std::string& extra, const std::vector<Case>& cases, bool adapter) {
  train(d, Layout{0, 0, 4, 1}, "one", extra);
  for (const Case& c : cases) {
    const Layout& l = c.layout;
    ASSERT_EQ(l.batch * l.accum * (l.np / (l.tp * l.pp)), 4) << c.name << ": the global batch of every case is 4";
    train(d, l, c.name, extra + " " + c.extra);
    if (adapter) {
      expect_same_lora_run(d, c.name, "one");
    } else {
      expect_same_losses(losses(d / (c.name + ".jsonl")), losses(d / "one.jsonl"), c.name);
      expect_same_losses(series(d / (c.name + ".jsonl"), "grad_norm"), series(d / "one.jsonl", "grad_norm"), c.name + " grad norm");
    }
  }
}

TEST(LoraModelParallel, TensorAndPipelineParallelismMatchOneProcess) {
  Scratch d;
  const std::string lora = kLora + " --model.n_layer=4 --checkpoint.every=10";  // 4 layers: the interleaved schedule at pp 2
  expect_cases_match_one_process(d, lora,
                                 {{"tp2", {2, 0, 4, 1, 2}, ""},
                                  {"tp2_sp_zero2", {2, 2, 4, 1, 2}, "--parallel.sequence_parallel=true"},
                                  {"pp2_1f1b_recompute", {2, 0, 1, 4, 1, 2}, "--parallel.schedule=1f1b --training.recompute=blocks"},
                                  {"dp2_tp2_zero1", {4, 1, 2, 1, 2}, ""},
                                  {"dp2_pp2_interleaved_zero3", {4, 3, 1, 2, 1, 2}, "--parallel.schedule=interleaved --parallel.virtual_stages=2"}},
                                 true);
  const auto config = nlohmann::json::parse(io::read_text_file(d / "tp2/step_00000020/adapter_config.json"));
  EXPECT_EQ(config["target_modules"], nlohmann::json({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}));
  // The one-process checkpoint resumes under tp 2, and tp 2's in one process.
  expect_resumes(d, "one", 10, {{"one_resumed_at_tp2", Layout{2, 0, 4, 1, 2}}}, lora);
  expect_resumes(d, "tp2", 10, {{"tp2_resumed_in_one", Layout{0, 0, 4, 1}}}, lora);
  // model.adapter: one process's adapter of step 10 trained on under tp 2 and pp 2 as in one process.
  const std::string adapter = " --model.n_layer=4 --checkpoint.every=10 --model.adapter=" + (d / "one/step_00000010");
  train(d, Layout{0, 0, 4, 1}, "adapter_one", adapter);
  for (const auto& [name, l] : {std::pair{"adapter_tp2", Layout{2, 0, 4, 1, 2}}, std::pair{"adapter_pp2", Layout{2, 0, 1, 4, 1, 2}}}) {
    train(d, l, name, adapter + (l.pp > 1 ? " --parallel.schedule=1f1b" : ""));
    expect_same_lora_run(d, name, "adapter_one");
  }
}

TEST(LoraModelParallel, QuantisedBase) {
  Scratch d;
  expect_cases_match_one_process(d, kLora + " --quant.base=nf4",
                                 {{"tp2", {2, 0, 4, 1, 2}, ""}, {"pp2", {2, 0, 1, 4, 1, 2}, "--parallel.schedule=1f1b"}}, true);
}

// layers.1 and the final norm train: under pp 2 the first stage (layer 0, the embeddings) holds
// nothing that trains and simply has nothing to update.
TEST(LoraModelParallel, TrainableUnderTensorAndPipelineParallelism) {
  Scratch d;
  expect_cases_match_one_process(d, " --training.trainable=layers.1,norm",
                                 {{"tp2", {2, 0, 4, 1, 2}, ""}, {"pp2_zero2", {2, 2, 1, 4, 1, 2}, "--parallel.schedule=1f1b"}}, false);
  const std::string index = io::read_text_file(d / "pp2_zero2/step_00000020/index.json");
  EXPECT_EQ(index.find("layers.0."), std::string::npos);
  EXPECT_NE(index.find("layers.1.attn.wq.weight"), std::string::npos);
}

}  // namespace
