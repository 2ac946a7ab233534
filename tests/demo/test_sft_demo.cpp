// Fine-tuning demonstrations, end to end with the `loom` binary. A 4-layer LLaMA-style model is
// pre-trained inside the test on a synthetic corpus (three letters and their reversal,
// "c h f\nf h c"), then `loom sft` teaches it a chat task: "User: c h f\nAssistant:\n" answered by
// "f h c" and the end-of-turn token. Each way of fine-tuning — LoRA, full fine-tuning with packed
// examples, QLoRA (NF4 base) — must reach ≥ 90% exact match under `loom eval --task gen` on 100
// letter triples that no fine-tuning example holds.
#include <algorithm>
#include <cstdint>

#include "../cli/cli_testing.h"

using namespace loom::testing;
using json = nlohmann::json;

namespace {

const std::string kTemplate =
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ 'User: ' + m['content'] + '\\n' }}"
    "{% else %}{{ 'Assistant:\\n' + m['content'] + eos_token + '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:\\n' }}{% endif %}";

std::string joined(const std::vector<char>& letters) {
  std::string s;
  for (char c : letters) {
    if (!s.empty()) s.push_back(' ');
    s.push_back(c);
  }
  return s;
}

struct Demo {
  ScratchDir d;
  int64_t vocab = 0;
  Demo() {
    // The 1000 triples of a..j in a fixed shuffled order: 100 held out, 900 to fine-tune on.
    std::vector<std::vector<char>> triples;
    for (char a = 'a'; a <= 'j'; ++a)
      for (char b = 'a'; b <= 'j'; ++b)
        for (char c = 'a'; c <= 'j'; ++c) triples.push_back({a, b, c});
    uint64_t state = 12345;
    auto next = [&] { return (state = state * 6364136223846793005ull + 1442695040888963407ull) >> 33; };
    for (size_t i = triples.size() - 1; i > 0; --i) std::swap(triples[i], triples[next() % (i + 1)]);
    auto reversed = [](std::vector<char> t) {
      std::reverse(t.begin(), t.end());
      return t;
    };
    std::ofstream corpus(d / "corpus.jsonl"), tok_text(d / "tok.txt"), sft(d / "sft.jsonl"), val(d / "val.jsonl"), gen(d / "gen.jsonl");
    for (int i = 0; i < 6000; ++i) {  // pre-training: random triples (the held-out ones among them, as any)
      const std::vector<char> t = {char('a' + next() % 10), char('a' + next() % 10), char('a' + next() % 10)};
      const std::string doc = joined(t) + "\n" + joined(reversed(t));
      corpus << json({{"text", doc}}).dump() << "\n";
      if (i < 300) tok_text << "User: " << doc << "\nAssistant:\n";
    }
    auto conversation = [&](const std::vector<char>& t, bool answered) {
      json m = json::array({{{"role", "user"}, {"content", joined(t)}}});
      if (answered) m.push_back({{"role", "assistant"}, {"content", joined(reversed(t))}});
      return m;
    };
    for (size_t i = 0; i < triples.size(); ++i) {
      if (i < 100) {
        gen << json({{"messages", conversation(triples[i], false)}, {"answer", joined(reversed(triples[i]))}}).dump() << "\n";
        if (i < 50) val << json({{"messages", conversation(triples[i], true)}}).dump() << "\n";
      } else {
        sft << json({{"messages", conversation(triples[i], true)}}).dump() << "\n";
      }
    }
  }
  void pretrain() {
    fs::create_directories(d.path / "tok");
    ASSERT_EQ(run_loom("tokenizer train --input " + (d / "tok.txt") + " --vocab-size 300 --output " + (d / "tok/tokenizer.json")).code, 0);
    std::ofstream(d / "tok/tokenizer_config.json") << json({{"eos_token", "<|endoftext|>"}, {"chat_template", kTemplate}}).dump();
    const json tj = json::parse(read_file(d / "tok/tokenizer.json"));
    for (const auto& [token, id] : tj["model"]["vocab"].items()) vocab = std::max(vocab, id.get<int64_t>() + 1);
    for (const json& a : tj["added_tokens"]) vocab = std::max(vocab, a["id"].get<int64_t>() + 1);
    ASSERT_EQ(run_loom("prepare --tokenizer " + (d / "tok") + " --input " + (d / "corpus.jsonl") + " --output " + (d / "data")).code, 0);
    const RunResult r = run_loom("train --model.preset=llama-tiny --model.n_layer=4 --model.vocab_size=" + std::to_string(vocab) +
                                 " --data.train=" + (d / "data") +
                                 " --training.batch_size=16 --training.seq_len=64 --training.steps=600 --optimizer.lr=3e-3"
                                 " --optimizer.warmup_steps=20 --checkpoint.dir=" + (d / "pre"));
    ASSERT_EQ(r.code, 0) << r.out;
    ASSERT_EQ(run_loom("convert --from hf:" + (d / "pre/step_00000600") + " --to hf:" + (d / "base")).code, 0);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(d / (std::string("tok/") + f), d / (std::string("base/") + f));
  }
  // `loom sft` with `args`, then `loom eval --task gen` of what it wrote (`eval_model` relative to d).
  double sft_and_eval(const std::string& args, const std::string& eval_model) {
    const RunResult r = run_loom("sft --model.init=hf:" + (d / "base") + " --data.train=" + (d / "sft.jsonl") + " --data.val=" + (d / "val.jsonl") +
                                 " --eval.every=100 --eval.batches=2 --data.shuffle=true --optimizer.weight_decay=0 --optimizer.warmup_steps=20 " +
                                 args);
    EXPECT_EQ(r.code, 0) << r.out;
    const RunResult e = run_loom("eval --task gen --data " + (d / "gen.jsonl") + " --max-tokens 8 --model " + eval_model + " 2>/dev/null");
    EXPECT_EQ(e.code, 0) << e.out;
    const size_t at = e.out.rfind("{\"task\"");
    if (at == std::string::npos) return 0;
    return json::parse(e.out.substr(at))["exact_match"].get<double>();
  }
};

}  // namespace

TEST(SftDemo, LoraFullAndQloraFineTuningLearnAHeldOutTask) {
  Demo demo;
  demo.pretrain();
  ASSERT_FALSE(HasFatalFailure());
  const ScratchDir& d = demo.d;
  // LoRA on every linear layer; eval applies the adapter to the base.
  const double lora = demo.sft_and_eval("--lora.r=8 --lora.alpha=16 --optimizer.lr=5e-3 --training.batch_size=16 --training.seq_len=32 "
                                        "--training.steps=400 --checkpoint.dir=" + (d / "lora"),
                                        (d / "base") + " --adapter " + (d / "lora/step_00000400"));
  EXPECT_GE(lora, 0.9);
  // Full fine-tuning on packed examples (about four to a sequence of 64); the checkpoint carries the tokenizer.
  const double full = demo.sft_and_eval("--sft.packing=true --optimizer.lr=1e-3 --training.batch_size=4 --training.seq_len=64 "
                                        "--training.steps=400 --checkpoint.dir=" + (d / "full"),
                                        d / "full/step_00000400");
  EXPECT_GE(full, 0.9);
  // QLoRA: the same LoRA on the base quantised to NF4; eval quantises the base the same way.
  const double qlora = demo.sft_and_eval("--quant.base=nf4 --lora.r=8 --lora.alpha=16 --optimizer.lr=5e-3 --training.batch_size=16 "
                                         "--training.seq_len=32 --training.steps=400 --checkpoint.dir=" + (d / "qlora"),
                                         (d / "base") + " --quant nf4 --adapter " + (d / "qlora/step_00000400"));
  EXPECT_GE(qlora, 0.9);
  std::printf("exact match on 100 held-out triples: LoRA %.2f, full fine-tuning (packed) %.2f, QLoRA %.2f\n", lora, full, qlora);
}
