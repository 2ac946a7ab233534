// `loom export` end to end without llama.cpp (tests/gguf runs the files in it): the value types of
// the metadata as an independent reader (tests/io/gguf_reference.py) finds them, and bad input —
// one `error:` line, exit 2, and an existing output left as it was.
#include "cli_testing.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/models/hf_names.h"
#include "loom/nn/transformer.h"
#include "loom/ops/elementwise.h"

using namespace loom::testing;
using json = nlohmann::json;

namespace {

// d/tok.json (a 280-token byte-level BPE) and d/<name>: a freshly initialised preset with that
// vocabulary (vocab tokens) as a Hugging Face directory holding the tokenizer.
struct ExportCli : ::testing::Test {
  ScratchDir d;
  void SetUp() override {
    write_corpus(d);
    ASSERT_EQ(run_loom("tokenizer train --input " + (d / "corpus.txt") + " --vocab-size 280 --output " + (d / "tok.json")).code, 0);
  }
  std::string model(const std::string& preset, int64_t vocab) {
    loom::models::ModelConfig c = loom::models::preset(preset);
    c.vocab_size = vocab;
    c.padded_vocab = c.family == "gpt2" ? loom::models::pad_vocab(vocab) : vocab;
    loom::nn::TransformerLM m(c);
    m.init(3);
    const std::string dir = d / (preset + "-" + std::to_string(vocab));
    loom::io::save_hf(dir, c, m.state_dict());
    fs::copy_file(d / "tok.json", dir + "/tokenizer.json");
    return dir;
  }
};

}  // namespace

TEST_F(ExportCli, MetadataTypesAsTheConverterWritesThem) {
  const std::string dir = model("qwen3-tiny", 280);
  std::ofstream(dir + "/tokenizer_config.json") << R"({"eos_token": "<|endoftext|>", "chat_template": "{{ messages }}"})";
  const RunResult r = run_loom("export --model " + dir + " --to gguf:" + (d / "q.gguf") + " --type q8_0");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("wrote " + (d / "q.gguf") + " ("), std::string::npos) << r.out;
  const RunResult py = run_command(std::string("'") + LOOM_PYTHON + "' '" + LOOM_SOURCE_DIR + "/tests/io/gguf_reference.py' read '" + (d / "q.gguf") +
                                   "' '" + d.path.string() + "'");
  ASSERT_EQ(py.code, 0) << py.out;
  const json file = json::parse(py.out);
  std::map<std::string, std::string> types;
  for (const json& kv : file["metadata"])
    types[kv[0]] = kv[1] == "array" ? "array of " + kv[2][0].get<std::string>() : kv[1].get<std::string>();
  // gguf-py's GGUFWriter types for these keys.
  const std::map<std::string, std::string> want = {
      {"general.architecture", "string"}, {"general.type", "string"}, {"general.name", "string"}, {"general.file_type", "u32"},
      {"general.quantization_version", "u32"}, {"qwen3.block_count", "u32"}, {"qwen3.context_length", "u32"},
      {"qwen3.embedding_length", "u32"}, {"qwen3.feed_forward_length", "u32"}, {"qwen3.attention.head_count", "u32"},
      {"qwen3.attention.head_count_kv", "u32"}, {"qwen3.rope.freq_base", "f32"}, {"qwen3.attention.layer_norm_rms_epsilon", "f32"},
      {"qwen3.attention.key_length", "u32"}, {"qwen3.attention.value_length", "u32"}, {"tokenizer.ggml.model", "string"},
      {"tokenizer.ggml.pre", "string"}, {"tokenizer.ggml.tokens", "array of string"}, {"tokenizer.ggml.token_type", "array of i32"},
      {"tokenizer.ggml.merges", "array of string"}, {"tokenizer.ggml.bos_token_id", "u32"}, {"tokenizer.ggml.eos_token_id", "u32"},
      {"tokenizer.ggml.add_bos_token", "bool"}, {"tokenizer.chat_template", "string"}};
  EXPECT_EQ(types, want);
}

TEST_F(ExportCli, BadInputIsOneErrorAndLeavesTheOutputAlone) {
  const std::string llama = model("llama-tiny", 280), small = model("gpt2-tiny", 256), out = d / "out.gguf";
  std::ofstream(out) << "old";
  // A tokenizer splitting on whitespace: no llama.cpp pre-tokenizer does that.
  const std::string odd = d / "odd";
  fs::create_directories(odd);
  json tj = json::parse(read_file(d / "tok.json"));
  tj["pre_tokenizer"] = {{"type", "Whitespace"}};
  std::ofstream(odd + "/tokenizer.json") << tj.dump();
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"--model " + (d / "missing") + " --to gguf:" + out, {"missing"}},
      {"--model " + llama + " --to onnx:" + out, {"--to 'onnx:", "must be gguf:FILE or gguf-lora:FILE"}},
      {"--model " + llama + " --to gguf:", {"names no file"}},
      {"--model " + llama + " --to gguf-lora:" + out, {"gguf-lora: needs --adapter DIR"}},
      {"--model " + llama + " --to gguf:" + out + " --type q4_0", {"--type"}},
      {"--model " + llama + " --tokenizer " + odd + " --to gguf:" + out, {"llama.cpp has no tokenizer that splits text as this one does"}},
      {"--model " + small + " --to gguf:" + out, {"the tokenizer has 280 ids, more than the model's 256 embedding rows"}},
      {"--model " + llama + " --adapter " + (d / "missing") + " --to gguf-lora:" + out, {"adapter_config.json"}},
  };
  for (const auto& [args, needles] : cases) {
    SCOPED_TRACE(args);
    expect_one_error(run_loom("export " + args), needles, args);
    EXPECT_EQ(read_file(out), "old");
  }
}

// `loom convert --from gguf:FILE` reads back what `loom export` wrote: f32 bit for bit (LLaMA's q/k
// rows un-permuted, GPT-2's fused qkv split, the tied head and vocabulary padding as they were),
// f16 as the weights rounded to f16, q8_0 within half a quantisation step of each block's scale.
TEST_F(ExportCli, ConvertFromGgufReadsTheExportBack) {
  for (const std::string preset : {"gpt2-tiny", "llama-tiny", "qwen2-tiny", "qwen3-tiny"}) {
    SCOPED_TRACE(preset);
    const std::string dir = model(preset, 280);
    const loom::io::ModelWeights original = loom::io::load_hf(dir);
    for (const std::string type : {"f32", "f16", "q8_0"}) {
      SCOPED_TRACE(type);
      const std::string file = d / (preset + "-" + type + ".gguf"), back = d / (preset + "-" + type + "-back");
      ASSERT_EQ(run_loom("export --model " + dir + " --to gguf:" + file + " --type " + type).code, 0);
      const RunResult r = run_loom("convert --from gguf:" + file + " --to hf:" + back);
      ASSERT_EQ(r.code, 0) << r.out;
      const loom::io::ModelWeights w = loom::io::load_hf(back);
      EXPECT_EQ(loom::models::hf_config_json(w.config), loom::models::hf_config_json(original.config));
      ASSERT_EQ(w.state.size(), original.state.size());
      for (const auto& [name, t] : original.state) {
        const bool converted = t.ndim() == 2 && name != "pos_emb.weight";  // the rest stays f32
        const std::vector<double> want =
            (type == "f16" && converted ? loom::ops::cast(loom::ops::cast(t, loom::DType::f16), loom::DType::f32) : t).to_vector();
        const std::vector<double> got = w.state.at(name).to_vector();
        ASSERT_EQ(got.size(), want.size()) << name;
        double err = 0;
        for (size_t i = 0; i < got.size(); ++i) err = std::max(err, std::abs(got[i] - want[i]));
        // q8_0: |x| of these weights stays under 0.1, so a step d = max|x|/127 is under 8e-4.
        EXPECT_LE(err, type == "q8_0" && converted ? 4e-4 : 0.0) << name;
      }
    }
  }
  expect_one_error(run_loom("convert --from gguf:" + (d / "none.gguf") + " --to hf:" + (d / "x")), {"none.gguf"}, "missing file");
  expect_one_error(run_loom("convert --from hf:" + (d / "x") + " --to gguf:" + (d / "x.gguf")), {"--to", "must be llmc:FILE or hf:DIR"},
                   "gguf is no --to of convert");
}
