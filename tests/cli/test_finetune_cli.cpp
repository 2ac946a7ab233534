// Fine-tuning end to end: a base model trained and written as a Hugging Face directory, a LoRA
// adapter trained on it (`loom train --model.init=hf:... --lora.r=...`), `loom merge` of the two,
// and `loom generate` with the merged model and with base + --adapter: the same greedy text, and
// the same logits as the adapter applied through the API. A QLoRA adapter (quant.base) continues
// with model.adapter and goes back on its quantised base in generate and eval (--quant).
#include "cli_testing.h"
#include "loom/autograd/function.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/io/peft.h"
#include "loom/quant/linear.h"

using namespace loom::testing;

namespace {

// d/base: a llama-tiny trained 5 steps on a small corpus, as a Hugging Face directory with the
// tokenizer trained on it; common: the data options of `loom train` on that corpus.
struct FinetuneCli : ::testing::Test {
  ScratchDir d;
  std::string common;
  void SetUp() override {
    {
      std::ofstream txt(d / "corpus.txt");
      for (int i = 0; i < 40; ++i) txt << "The cat sat on the mat. A dog barked at the moon, twice! " << i << "\n";
    }
    ASSERT_EQ(run_loom("tokenizer train --input " + (d / "corpus.txt") + " --vocab-size 300 --output " + (d / "tok.json")).code, 0);
    ASSERT_EQ(run_loom("prepare --tokenizer " + (d / "tok.json") + " --input " + (d / "corpus.txt") + " --output " + (d / "data")).code, 0);
    common = " --data.train=" + (d / "data") + " --training.batch_size=2 --training.seq_len=16 --training.threads=1";
    RunResult base = run_loom("train --model.preset=llama-tiny --model.vocab_size=300 --training.steps=5 --checkpoint.dir=" + (d / "ck") + common);
    ASSERT_EQ(base.code, 0) << base.out;
    ASSERT_EQ(run_loom("convert --from hf:" + (d / "ck/step_00000005") + " --to hf:" + (d / "base")).code, 0);
    std::filesystem::copy_file(d / "tok.json", d / "base/tokenizer.json");  // a Hugging Face directory with its tokenizer
  }
};

}  // namespace

TEST_F(FinetuneCli, LoraTrainMergeGenerate) {
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

// QLoRA from hf:DIR: the base's linears in NF4. The adapter continues with model.adapter on the
// same quantised base, and `generate`/`eval` with --quant nf4 put it back on that base: they
// compute what the API's merged model does (dequantised W + s·B·A, written as a plain directory).
// `loom merge` puts it on the float base as given.
TEST_F(FinetuneCli, QloraAdapterOnItsQuantisedBase) {
  const std::string base = d / "base", q = " --lora.r=4 --quant.base=nf4 --optimizer.lr=1e-2";
  RunResult train = run_loom("train --model.init=hf:" + base + q + " --training.steps=8 --checkpoint.dir=" + (d / "qck") + common);
  ASSERT_EQ(train.code, 0) << train.out;
  const std::string adapter = d / "qck/step_00000008";
  RunResult more = run_loom("train --model.init=hf:" + base + " --model.adapter=" + adapter + " --quant.base=nf4 --training.steps=2" +
                            " --checkpoint.dir=" + (d / "more") + common);
  ASSERT_EQ(more.code, 0) << more.out;
  EXPECT_TRUE(std::filesystem::exists(d / "more/step_00000002/adapter_model.safetensors"));

  {
    loom::io::ModelWeights bw = loom::io::load_hf(base);
    loom::nn::TransformerLM qlora(bw.config);
    qlora.load_state_dict(bw.state);
    loom::nn::quantize_base(qlora, "nf4");
    loom::io::load_adapter(adapter, qlora);
    loom::io::save_hf(d / "qmerged", bw.config, loom::nn::merged_state_dict(qlora), false);
    std::filesystem::copy_file(d / "tok.json", d / "qmerged/tokenizer.json");
  }
  const std::string gen = " --prompt 'The cat' --max-tokens 10 --temperature 0";
  RunResult with_adapter = run_loom("generate --model " + base + " --adapter " + adapter + " --quant nf4" + gen);
  ASSERT_EQ(with_adapter.code, 0) << with_adapter.out;
  EXPECT_EQ(with_adapter.out, run_loom("generate --model " + (d / "qmerged") + gen).out);

  write_docs_jsonl(d / "docs.jsonl", 2);
  auto ppl = [&](const std::string& args) {
    return eval_result(run_loom("eval --task ppl --data " + (d / "docs.jsonl") + " --seq-len 16 " + args)).value("ppl", 0.0);
  };
  const double quantised = ppl("--model " + base + " --adapter " + adapter + " --quant nf4");
  EXPECT_NEAR(quantised, ppl("--model " + (d / "qmerged")), 1e-5 * quantised);
  EXPECT_NE(quantised, ppl("--model " + base + " --adapter " + adapter));  // the float base is another model

  RunResult m = run_loom("merge --base hf:" + base + " --adapter " + adapter + " --output " + (d / "merged"));
  ASSERT_EQ(m.code, 0) << m.out;
  RunResult bad = run_loom("generate --model " + base + " --quant nf3" + gen);
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("--quant"), std::string::npos) << bad.out;
}
