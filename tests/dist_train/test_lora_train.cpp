// `loom train` with LoRA (lora.*), QLoRA (quant.base) and with training.trainable: data parallelism and ZeRO-1/2
// train to the numbers of one process, checkpoints carry the PEFT adapter, and resume
// continues under another layout. Frozen parameters have no optimizer state, so the
// checkpoints hold only what trains.
#include "train_util.h"

#include "loom/io/safetensors.h"

namespace {

const std::string kLora = "--lora.r=4 --lora.alpha=8 --lora.targets=q_proj,v_proj,down_proj --checkpoint.every=10";

}  // namespace

TEST(LoraTraining, DataParallelAndZeroMatchOneProcess) {
  Scratch d;
  train(d, 0, 0, 4, 1, "one", kLora);
  const std::string ck = d / "one/step_00000020";
  ASSERT_TRUE(fs::exists(ck + "/adapter_model.safetensors"));
  const auto config = nlohmann::json::parse(io::read_text_file(ck + "/adapter_config.json"));
  EXPECT_EQ(config["r"], 4);
  EXPECT_EQ(config["target_modules"], nlohmann::json({"q_proj", "v_proj", "down_proj"}));
  // B started at zero and has learnt; the index holds the adapter's tensors, not the frozen base.
  double b = 0;
  for (const auto& [name, t] : io::read_safetensors(ck + "/adapter_model.safetensors"))
    if (name.ends_with("lora_B.weight"))
      for (double v : t.to_vector()) b = std::max(b, std::abs(v));
  EXPECT_GT(b, 1e-4);
  const std::string index = io::read_text_file(ck + "/index.json");
  EXPECT_EQ(index.find("attn.wq.weight\""), std::string::npos);
  EXPECT_NE(index.find("attn.wq.lora_A.weight"), std::string::npos);
  for (int zero : {0, 1, 2, 3}) {
    const std::string name = "dp2_zero" + std::to_string(zero);
    train(d, 2, zero, 4, 1, name, kLora);
    expect_same_losses(losses(d / (name + ".jsonl")), losses(d / "one.jsonl"), name);
    expect_same_adapter(d / (name + "/step_00000020"), ck, name);
  }
  expect_resumes(d, "one", 10, {{"resume_dp2", Layout{2, 1, 2, 1}}}, kLora);
}

// QLoRA (quant.base): LoRA on every linear of a base quantised to NF4 (int8 alike). The loss falls,
// the checkpoint holds the adapter alone (the quantised base registers no parameter), resuming
// is bit for bit the run that never stopped (the base is quantised again the same way), and
// data parallelism (DDP, ZeRO-2) trains to the numbers of one process.
TEST(LoraTraining, QuantisedBase) {
  Scratch d;
  for (const std::string kind : {"nf4", "int8"}) {
    const std::string q = "--lora.r=4 --lora.alpha=8 --optimizer.lr=1e-2 --checkpoint.every=10 --quant.base=" + kind;
    train(d, 0, 0, 4, 1, kind, q);
    const std::vector<double> l = losses(d / (kind + ".jsonl"));
    ASSERT_EQ(l.size(), 20u);
    // From about ln 256 (a random base) by about 0.2 in 20 steps, as LoRA on the float base.
    const double first = (l[0] + l[1] + l[2] + l[3] + l[4]) / 5, last = (l[15] + l[16] + l[17] + l[18] + l[19]) / 5;
    EXPECT_LT(last, first - 0.1) << kind << ": the loss does not fall: " << first << " -> " << last;
    const std::string ck = d / (kind + "/step_00000020");
    const nlohmann::json tensors = nlohmann::json::parse(io::read_text_file(ck + "/index.json"))["tensors"];
    EXPECT_FALSE(tensors.empty());
    for (const auto& [name, entry] : tensors.items()) EXPECT_NE(name.find(".lora_"), std::string::npos) << kind << ": " << name;
    EXPECT_TRUE(fs::exists(ck + "/adapter_model.safetensors"));
  }
  const std::string q = "--lora.r=4 --lora.alpha=8 --optimizer.lr=1e-2 --checkpoint.every=10 --quant.base=nf4";
  expect_resumes(d, "nf4", 10, {{"resumed", Layout{0, 0, 4, 1}}}, q, 0.0);
  for (int zero : {0, 2, 3}) {
    const std::string name = "dp2_zero" + std::to_string(zero);
    train(d, 2, zero, 4, 1, name, q);
    expect_same_losses(losses(d / (name + ".jsonl")), losses(d / "nf4.jsonl"), name);
    expect_same_adapter(d / (name + "/step_00000020"), d / "nf4/step_00000020", name);
  }
}

TEST(LoraTraining, TrainableFreezesTheRest) {
  Scratch d;
  const std::string only = "--training.trainable=layers.1,norm";
  train(d, 0, 0, 4, 1, "one", only);
  for (int zero : {2, 3}) {
    const std::string name = "dp2_zero" + std::to_string(zero);
    train(d, 2, zero, 4, 1, name, only);
    expect_same_losses(losses(d / (name + ".jsonl")), losses(d / "one.jsonl"), name);
  }
  const std::string index = io::read_text_file(d / "one/step_00000020/index.json");
  EXPECT_EQ(index.find("layers.0."), std::string::npos);
  EXPECT_NE(index.find("layers.1.attn.wq.weight"), std::string::npos);
}

// lora.dropout: the masks come from (training.seed, module, the sequence's index in the data
// stream), so a run with activation recompute and a resumed run give the losses of the run that
// never stopped bit for bit, and two ranks with one micro-batch each give one process's losses.
TEST(LoraTraining, DropoutIsReproducible) {
  Scratch d;
  const std::string drop = kLora + " --lora.dropout=0.5";
  train(d, 0, 0, 2, 2, "one", drop);
  train(d, 0, 0, 2, 2, "plain", kLora);
  const std::vector<double> want = losses(d / "one.jsonl"), plain = losses(d / "plain.jsonl");
  double effect = 0;  // of the dropout on the losses, relative: far above expect_same_losses' 1e-5
  for (size_t i = 0; i < want.size(); ++i) effect = std::max(effect, std::abs(plain[i] - want[i]) / want[i]);
  EXPECT_GT(effect, 1e-4);
  train(d, 0, 0, 2, 2, "recompute", drop + " --training.recompute=blocks");
  EXPECT_EQ(losses(d / "recompute.jsonl"), want);
  EXPECT_EQ(series(d / "recompute.jsonl", "grad_norm"), series(d / "one.jsonl", "grad_norm"));
  fs::create_directories(d / "resumed");
  fs::copy(d / "one/step_00000010", d / "resumed/step_00000010");
  train(d, 0, 0, 2, 2, "resumed", "--resume " + drop);
  EXPECT_EQ(losses(d / "resumed.jsonl"), std::vector<double>(want.begin() + 10, want.end()));
  train(d, Layout{2, 0, 1, 2}, "dp2", drop);
  expect_same_losses(losses(d / "dp2.jsonl"), want, "dp2");
  std::printf("[ lora ] dropout's effect on the losses: %.2e relative\n", effect);
}
