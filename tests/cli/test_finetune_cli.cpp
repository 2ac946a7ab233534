// Fine-tuning end to end: a base model trained and written as a Hugging Face directory, a LoRA
// adapter trained on it (`loom train --model.init=hf:... --lora.r=...`), `loom merge` of the two,
// and `loom generate` with the merged model and with base + --adapter: the same greedy text, and
// the same logits as the adapter applied through the API.
#include "cli_testing.h"
#include "loom/autograd/function.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/io/peft.h"

using namespace loom::testing;

TEST(FinetuneCli, LoraTrainMergeGenerate) {
  ScratchDir d;
  {
    std::ofstream txt(d / "corpus.txt");
    for (int i = 0; i < 40; ++i) txt << "The cat sat on the mat. A dog barked at the moon, twice! " << i << "\n";
  }
  ASSERT_EQ(run_loom("tokenizer train --input " + (d / "corpus.txt") + " --vocab-size 300 --output " + (d / "tok.json")).code, 0);
  ASSERT_EQ(run_loom("prepare --tokenizer " + (d / "tok.json") + " --input " + (d / "corpus.txt") + " --output " + (d / "data")).code, 0);
  const std::string common = " --data.train=" + (d / "data") + " --training.batch_size=2 --training.seq_len=16 --training.threads=1";
  RunResult base = run_loom("train --model.preset=llama-tiny --model.vocab_size=300 --training.steps=5 --checkpoint.dir=" + (d / "ck") + common);
  ASSERT_EQ(base.code, 0) << base.out;
  ASSERT_EQ(run_loom("convert --from hf:" + (d / "ck/step_00000005") + " --to hf:" + (d / "base")).code, 0);
  std::filesystem::copy_file(d / "tok.json", d / "base/tokenizer.json");  // a Hugging Face directory with its tokenizer
  RunResult lora = run_loom("train --model.init=hf:" + (d / "base") + " --lora.r=4 --lora.targets=q_proj,v_proj,up_proj --optimizer.lr=1e-2" +
                            " --training.steps=8 --checkpoint.dir=" + (d / "lck") + common);
  ASSERT_EQ(lora.code, 0) << lora.out;
  const std::string adapter = d / "lck/step_00000008";
  EXPECT_EQ(read_file(adapter + "/tokenizer.json"), read_file(d / "tok.json"));  // the checkpoint carries the base's tokenizer
  RunResult m = run_loom("merge --base hf:" + (d / "base") + " --adapter " + adapter + " --output " + (d / "merged"));
  ASSERT_EQ(m.code, 0) << m.out;
  EXPECT_TRUE(std::filesystem::exists(d / "merged/tokenizer.json"));

  // The merged model computes what base + adapter computes.
  loom::io::ModelWeights bw = loom::io::load_hf(d / "base"), mw = loom::io::load_hf(d / "merged");
  loom::nn::TransformerLM adapted(bw.config), merged(mw.config), plain(bw.config);
  adapted.load_state_dict(bw.state);
  plain.load_state_dict(bw.state);
  loom::io::load_adapter(adapter, adapted);
  merged.load_state_dict(mw.state);
  loom::autograd::NoGradGuard g;
  const loom::Tensor ids = loom::Tensor::from_ints({5, 17, 200, 3, 99, 42, 7, 128}, {1, 8});
  const std::vector<double> a = adapted.forward(ids).to_vector(), b = merged.forward(ids).to_vector(), p = plain.forward(ids).to_vector();
  double diff = 0, moved = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i])), moved = std::max(moved, std::abs(a[i] - p[i]));
  EXPECT_LT(diff, 1e-4);
  EXPECT_GT(moved, 1e-3);  // the adapter learnt something

  const std::string gen = " --prompt 'The cat' --max-tokens 10 --temperature 0";  // the tokenizer of the model directory
  RunResult with_adapter = run_loom("generate --model " + (d / "base") + " --adapter " + adapter + gen);
  RunResult from_merged = run_loom("generate --model " + (d / "merged") + gen);
  ASSERT_EQ(with_adapter.code, 0) << with_adapter.out;
  EXPECT_EQ(with_adapter.out, from_merged.out);

  RunResult bad = run_loom("merge --base hf:" + (d / "base") + " --adapter " + (d / "ck/step_00000005") + " --output " + (d / "bad"));
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("adapter_config.json"), std::string::npos) << bad.out;
}
