// Loading a model for inference: io::load_hf (HF directory or sharded checkpoint) into a whole
// TransformerLM on this process.
#include "loom/train/inference.h"

#include "loom/io/hf_checkpoint.h"
#include "loom/io/peft.h"
#include "loom/quant/linear.h"

namespace loom::train {

InferenceModel load_for_inference(const std::filesystem::path& model_dir, const std::filesystem::path& tokenizer,
                                  const std::filesystem::path& adapter, const std::string& quant) {
  io::ModelWeights w = io::load_hf(model_dir);
  auto model = std::make_unique<nn::TransformerLM>(w.config);
  model->load_state_dict(w.state);
  w.state.clear();  // copied into the model: the loaded tensors go before quantisation
  if (!quant.empty()) nn::quantize_base(*model, quant);
  if (!adapter.empty()) io::load_adapter(adapter, *model);
  const std::filesystem::path tok_path = tokenizer.empty() ? model_dir : tokenizer;
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(tok_path);
  tokenizer::TokenizerConfig cfg = tokenizer::load_tokenizer_config(tok_path);
  const std::vector<int32_t> stop = tokenizer::stop_tokens(tok, cfg, model_dir);
  return {std::move(model), std::move(tok), std::move(cfg), std::vector<int64_t>(stop.begin(), stop.end())};
}

}  // namespace loom::train
