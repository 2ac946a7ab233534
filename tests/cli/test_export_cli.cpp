// `loom export` end to end without llama.cpp (tests/gguf runs the files in it): the value types of
// the metadata as an independent reader (tests/io/gguf_reference.py) finds them, and bad input —
// one `error:` line, exit 2, and an existing output left as it was.
#include "cli_testing.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/nn/transformer.h"

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
