// A tokenizer as llama.cpp's GGUF embeds it (tokenizer.ggml.* and tokenizer.chat_template), the
// keys convert_hf_to_gguf.py writes for the same tokenizer.json and tokenizer_config.json.
#pragma once

#include <cstdint>
#include <string>

#include "loom/io/gguf.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/config.h"

namespace loom::io {

// The name llama.cpp runs a byte-level tokenizer's pre-tokenization under (tokenizer.ggml.pre).
// The converter finds it by hashing the ids of a check string, which only works for vocabularies
// it has seen; the name only selects llama.cpp's splitting regex and flags, so Loom reads them off
// the pipeline: GPT-2's ByteLevel regex "gpt-2"; a Split of LLaMA-3's regex (ignore_merges)
// "llama-bpe", of Qwen2's "qwen2", of Mistral-Nemo's (ignore_merges) "tekken"; each then
// ByteLevel alone. Anything else throws one line saying so.
std::string llama_cpp_pre_tokenizer(const tokenizer::Tokenizer& tok);

// tokenizer.ggml.model: "llama" (SentencePiece) for SentencePiece-style BPE with byte fallback
// (Pipeline::sentencepiece: LLaMA-2's), else "gpt2" (byte-level, named as above); .pre; .tokens
// (byte-level ones in GPT-2's alphabet, SentencePiece ones and added tokens as written; ids the
// tokenizer lacks up to vocab_size, the rows of token_embd, "[PAD<id>]"); .token_type (normal 1,
// unknown 2, control 3 for special added tokens and ones that look special, user-defined 4,
// unused 5, byte 6 for <0xNN>); .merges ("left right", gpt2) or .scores (llama: minus the rank of
// the first merge making the token, so llama.cpp merges in Hugging Face's order); .bos, .eos,
// .padding and .unknown_token_id (tokenizer_config.json's and the BPE unk; a missing BOS or EOS is
// <|endoftext|> when the vocabulary has it, the token Loom separates documents with and stops at);
// .add_bos_token (Loom's rule: a bos_token and add_bos_token not false); .add_space_prefix (llama)
// and tokenizer.chat_template. A tokenizer llama.cpp cannot run is an error.
gguf::Metadata gguf_tokenizer(const tokenizer::Tokenizer& tok, const tokenizer::TokenizerConfig& cfg, int64_t vocab_size);

}  // namespace loom::io
