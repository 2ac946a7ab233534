// `loom convert --from llmc:FILE|hf:DIR|gguf:FILE --to llmc:FILE|hf:DIR`: moves weights between llm.c
// files and Hugging Face directories (bit-exact in both directions), and reads llama.cpp's GGUF
// models (dequantised to f32) so that a model that exists only as GGUF can be fine-tuned.
#include "loom/cli/commands.h"
#include "loom/io/gguf_model.h"
#include "loom/io/hf_checkpoint.h"
#include "loom/io/llmc.h"

namespace loom::cli {

namespace {
std::pair<std::string, std::string> split_spec(const std::string& spec, const char* flag) {
  const size_t colon = spec.find(':');
  const std::string kind = colon == std::string::npos ? "" : spec.substr(0, colon);
  const bool from = std::string_view(flag) == "--from";
  LOOM_CHECK(kind == "llmc" || kind == "hf" || (from && kind == "gguf"), "convert: {} '{}' must be llmc:FILE or hf:DIR{}", flag, spec,
             from ? " or gguf:FILE" : "");
  return {kind, spec.substr(colon + 1)};
}
}  // namespace

Command add_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "convert weights between llm.c .bin files and Hugging Face safetensors directories, or from GGUF");
  auto from = std::make_shared<std::string>(), to = std::make_shared<std::string>();
  auto overwrite = std::make_shared<bool>(false);
  cmd->add_option("--from", *from, "llmc:FILE, hf:DIR or gguf:FILE (a llama.cpp model, dequantised)")->required();
  cmd->add_option("--to", *to, "llmc:FILE or hf:DIR")->required();
  cmd->add_flag("--overwrite", *overwrite, "replace an existing output");
  return {cmd, [from, to, overwrite](const std::shared_ptr<dist::Group>&) {
            auto [src_kind, src] = split_spec(*from, "--from");
            auto [dst_kind, dst] = split_spec(*to, "--to");
            io::ModelWeights w = src_kind == "llmc" ? io::read_llmc(src) : src_kind == "gguf" ? io::read_gguf_model(src) : io::load_hf(src);
            if (dst_kind == "hf") {
              io::save_hf(dst, w.config, w.state, *overwrite);
            } else {
              LOOM_CHECK(*overwrite || !std::filesystem::exists(dst), "convert: {} exists (pass --overwrite to replace it)", dst);
              io::write_llmc(dst, w.config, w.state);
            }
            fmt::print("wrote {}\n", *to);
            return 0;
          }};
}

}  // namespace loom::cli
