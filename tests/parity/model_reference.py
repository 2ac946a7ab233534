# PyTorch reference for tests/parity/test_model_parity.cpp. Usage: model_reference.py DIR.
# Hugging Face's GPT-2, LLaMA, Qwen2 and Qwen3 (eager, float32, no dropout) rewritten in plain
# PyTorch, loaded from the HF directory DIR/model that Loom saved; runs the batches DIR/{ids,targets}_<k>.npy
# and writes logits, loss, HF-named gradients and the losses of DIR/run.json's AdamW steps.
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from torch_reference import LlamaRotaryEmbedding, apply_rotary_pos_emb  # transformers' code, as is


def read_safetensors(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    buf = data[8 + n:]
    tensors = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", f"{name}: dtype {info['dtype']}, expected F32"
        begin, end = info["data_offsets"]
        array = np.frombuffer(buf[begin:end], dtype="<f4").reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors


# ---- GPT-2 (transformers' modeling_gpt2) ----

class Conv1D(nn.Module):
    """A linear layer with its weight stored [in, out]."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class NewGELUActivation(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_dim = cfg["n_embd"]
        self.num_heads = cfg["n_head"]
        self.head_dim = self.embed_dim // self.num_heads
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)

    def _split_heads(self, x):
        return x.view(x.size()[:-1] + (self.num_heads, self.head_dim)).permute(0, 2, 1, 3)

    def forward(self, hidden_states):
        query, key, value = self.c_attn(hidden_states).split(self.embed_dim, dim=2)
        query, key, value = self._split_heads(query), self._split_heads(key), self._split_heads(value)
        attn_weights = torch.matmul(query, key.transpose(-1, -2))
        attn_weights = attn_weights / torch.full([], value.size(-1) ** 0.5, dtype=attn_weights.dtype)
        T = query.size(-2)
        causal_mask = torch.tril(torch.ones((T, T), dtype=torch.bool)).view(1, 1, T, T)
        mask_value = torch.full([], torch.finfo(attn_weights.dtype).min, dtype=attn_weights.dtype)
        attn_weights = torch.where(causal_mask, attn_weights, mask_value)
        attn_weights = F.softmax(attn_weights, dim=-1)
        attn_output = torch.matmul(attn_weights, value)
        attn_output = attn_output.permute(0, 2, 1, 3).contiguous()
        return self.c_proj(attn_output.view(attn_output.size()[:-2] + (self.embed_dim,)))


class GPT2MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        inner = cfg.get("n_inner") or 4 * cfg["n_embd"]
        self.c_fc = Conv1D(inner, cfg["n_embd"])
        self.c_proj = Conv1D(cfg["n_embd"], inner)
        self.act = NewGELUActivation()

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps = cfg["layer_norm_epsilon"]
        self.ln_1 = nn.LayerNorm(cfg["n_embd"], eps=eps)
        self.attn = GPT2Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg["n_embd"], eps=eps)
        self.mlp = GPT2MLP(cfg)

    def forward(self, hidden_states):
        hidden_states = self.attn(self.ln_1(hidden_states)) + hidden_states
        return hidden_states + self.mlp(self.ln_2(hidden_states))


class GPT2Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.wte = nn.Embedding(cfg["vocab_size"], cfg["n_embd"])
        self.wpe = nn.Embedding(cfg["n_positions"], cfg["n_embd"])
        self.h = nn.ModuleList([GPT2Block(cfg) for _ in range(cfg["n_layer"])])
        self.ln_f = nn.LayerNorm(cfg["n_embd"], eps=cfg["layer_norm_epsilon"])

    def forward(self, input_ids):
        position_ids = torch.arange(input_ids.size(-1), dtype=torch.long).unsqueeze(0)
        hidden_states = self.wte(input_ids) + self.wpe(position_ids)
        for block in self.h:
            hidden_states = block(hidden_states)
        return self.ln_f(hidden_states)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert cfg["activation_function"] == "gelu_new" and cfg.get("tie_word_embeddings", True)
        self.transformer = GPT2Model(cfg)
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, input_ids):
        return self.lm_head(self.transformer(input_ids))


# ---- LLaMA, Qwen2 and Qwen3 (transformers' modeling_llama / modeling_qwen2 / modeling_qwen3) ----

class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def repeat_kv(hidden_states, n_rep):
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


class LlamaAttention(nn.Module):
    """qkv_bias: Qwen2's biases on q/k/v; qk_norm: Qwen3's RMSNorm over each head's q and k, before RoPE."""

    def __init__(self, cfg, qkv_bias, qk_norm):
        super().__init__()
        C = cfg["hidden_size"]
        self.head_dim = cfg.get("head_dim") or C // cfg["num_attention_heads"]
        self.num_key_value_groups = cfg["num_attention_heads"] // cfg["num_key_value_heads"]
        self.scaling = self.head_dim ** -0.5
        self.q_proj = nn.Linear(C, cfg["num_attention_heads"] * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(C, cfg["num_key_value_heads"] * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(C, cfg["num_key_value_heads"] * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(cfg["num_attention_heads"] * self.head_dim, C, bias=False)
        if qk_norm:
            self.q_norm = LlamaRMSNorm(self.head_dim, cfg["rms_norm_eps"])
            self.k_norm = LlamaRMSNorm(self.head_dim, cfg["rms_norm_eps"])
        else:
            self.q_norm = self.k_norm = nn.Identity()

    def forward(self, hidden_states, position_embeddings, causal_mask):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query_states = self.q_norm(self.q_proj(hidden_states).view(hidden_shape)).transpose(1, 2)
        key_states = self.k_norm(self.k_proj(hidden_states).view(hidden_shape)).transpose(1, 2)
        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        cos, sin = position_embeddings
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)
        key_states = repeat_kv(key_states, self.num_key_value_groups)
        value_states = repeat_kv(value_states, self.num_key_value_groups)
        attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) * self.scaling
        attn_weights = attn_weights + causal_mask
        attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)
        attn_output = torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()
        return self.o_proj(attn_output.reshape(*input_shape, -1).contiguous())


class LlamaMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, I = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(C, I, bias=False)
        self.up_proj = nn.Linear(C, I, bias=False)
        self.down_proj = nn.Linear(I, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg, qkv_bias, qk_norm):
        super().__init__()
        self.self_attn = LlamaAttention(cfg, qkv_bias, qk_norm)
        self.mlp = LlamaMLP(cfg)
        self.input_layernorm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.post_attention_layernorm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])

    def forward(self, hidden_states, position_embeddings, causal_mask):
        hidden_states = hidden_states + self.self_attn(self.input_layernorm(hidden_states), position_embeddings, causal_mask)
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class LlamaModel(nn.Module):
    def __init__(self, cfg, qkv_bias, qk_norm):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([LlamaDecoderLayer(cfg, qkv_bias, qk_norm) for _ in range(cfg["num_hidden_layers"])])
        self.norm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        self.rotary_emb = LlamaRotaryEmbedding(head_dim, base=cfg["rope_theta"])

    def forward(self, input_ids):
        hidden_states = self.embed_tokens(input_ids)
        B, T = input_ids.shape
        position_ids = torch.arange(T).unsqueeze(0).expand(B, T)
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        causal_mask = torch.full((T, T), torch.finfo(hidden_states.dtype).min).triu(1)[None, None]
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_embeddings, causal_mask)
        return self.norm(hidden_states)


class LlamaForCausalLM(nn.Module):
    """Also Qwen2ForCausalLM (the same model with biases on q_proj, k_proj and v_proj) and
    Qwen3ForCausalLM (with q_norm and k_norm, and head_dim given by the config)."""

    def __init__(self, cfg):
        super().__init__()
        assert cfg["hidden_act"] == "silu" and cfg.get("rope_scaling") is None and not cfg.get("attention_bias", False)
        self.model = LlamaModel(cfg, qkv_bias=cfg["model_type"] == "qwen2", qk_norm=cfg["model_type"] == "qwen3")
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        if cfg.get("tie_word_embeddings", False):
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids):
        return self.lm_head(self.model(input_ids))


# ---- the run ----

def load_model(model_dir):
    """The model, its config.json and the prefix its HF names lack in the file (GPT2LMHeadModel's)."""
    cfg = json.loads((model_dir / "config.json").read_text())
    model = GPT2LMHeadModel(cfg) if cfg["model_type"] == "gpt2" else LlamaForCausalLM(cfg)
    prefix = "transformer." if cfg["model_type"] == "gpt2" else ""
    weights = {prefix + name: t for name, t in read_safetensors(model_dir / "model.safetensors").items()}
    params = dict(model.named_parameters())  # a tied lm_head.weight appears once, as the embedding
    assert set(weights) == set(params), \
        f"HF names differ: file only {sorted(set(weights) - set(params))}, model only {sorted(set(params) - set(weights))}"
    model.load_state_dict(weights, strict=False)  # not strict only for a tied lm_head.weight; checks shapes
    return model, cfg, prefix


def loss_of(model, cfg, root, step):
    ids = torch.from_numpy(np.load(root / f"ids_{step}.npy"))
    targets = torch.from_numpy(np.load(root / f"targets_{step}.npy"))
    logits = model(ids)
    # Loom's targets are already the next tokens, so no shift (transformers shifts labels itself)
    loss = F.cross_entropy(logits.view(-1, cfg["vocab_size"]), targets.view(-1), ignore_index=-100)
    return logits, loss


def save(path, t):
    np.save(path, np.array(t.detach().numpy(), dtype=np.float32, order="C"))  # keeps 0-d


def main():
    torch.set_num_threads(1)  # these models are tiny: more threads only wait on each other
    root = Path(sys.argv[1])
    run = json.loads((root / "run.json").read_text())
    model, cfg, prefix = load_model(root / "model")
    params = dict(model.named_parameters())
    decay = [p for p in params.values() if p.dim() == 2]
    no_decay = [p for p in params.values() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": run["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=run["lr"], betas=(run["beta1"], run["beta2"]), eps=run["eps"])
    losses, grad_norms = [], []
    for step in range(run["steps"]):
        logits, loss = loss_of(model, cfg, root, step)
        loss.backward()
        if step == 0:
            save(root / "logits.npy", logits)
            save(root / "loss.npy", loss)
            (root / "grads").mkdir()
            for name, p in params.items():
                save(root / "grads" / f"{name[len(prefix):]}.npy", p.grad)
        losses.append(loss.item())
        grad_norms.append(torch.nn.utils.clip_grad_norm_(list(params.values()), run["max_norm"]).item())
        opt.step()
        opt.zero_grad()
    np.save(root / "losses.npy", np.array(losses, dtype=np.float32))
    np.save(root / "grad_norms.npy", np.array(grad_norms, dtype=np.float32))


if __name__ == "__main__":
    main()
