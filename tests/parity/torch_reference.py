# PyTorch reference for tests/parity/test_torch_parity.cpp. Usage: torch_reference.py DIR.
# Reads DIR/manifest.json and each case's inputs DIR/<case>/<input>.npy, computes the op in
# float32 and the gradients of sum(out * R), and writes DIR/<case>/out.npy and grad_<input>.npy
# (or DIR/<case>/error.txt). One function per op; its parameter names are the case's input names.
import json
import math
import sys
import traceback
from pathlib import Path

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    sys.exit(f"torch_reference.py: {sys.executable} cannot import torch ({e}). PyTorch is a declared "
             "test dependency: install it with scripts/install-deps (Debian python3-torch).")


def matmul(a, b, transpose_a=False, transpose_b=False):
    if transpose_a:
        a = a.transpose(-1, -2)
    if transpose_b:
        b = b.transpose(-1, -2)
    return a @ b


def linear(x, weight, bias=None):
    return F.linear(x, weight, bias)


def lora_linear(x, weight, bias, lora_A, lora_B, scale):
    # PEFT's LoraLayer forward without dropout: base_layer(x) + lora_B(lora_A(x)) * scaling
    return F.linear(x, weight, bias) + F.linear(F.linear(x, lora_A), lora_B) * scale


def layer_norm(x, weight, bias=None, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def rms_norm(x, weight, eps=1e-6):
    # Hugging Face LlamaRMSNorm (torch 1.13 has no F.rms_norm).
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def gelu(x):
    return F.gelu(x, approximate="tanh")


def silu(x):
    return F.silu(x)


def swiglu(gate, up):
    return F.silu(gate) * up


def softmax(x, dim=-1):
    return torch.softmax(x, dim)


def log_softmax(x, dim=-1):
    return torch.log_softmax(x, dim)


def embedding(ids, weight):
    return F.embedding(ids, weight)


def cross_entropy(logits, targets, ignore_index=-100, reduction="mean", num_classes=-1):
    if num_classes >= 0:
        logits = logits[..., :num_classes]  # padded vocabulary: only the first V columns count
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=ignore_index, reduction=reduction)
    return loss.reshape(targets.shape) if reduction == "none" else loss


def scaled_dot_product_attention(q, k, v, doc_ids=None, causal=False, scale=0.0):
    # Composed softmax(q kᵀ * scale + mask) v; GQA by repeating each kv head H / Hkv times.
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    k = k.repeat_interleave(H // Hkv, dim=1)
    v = v.repeat_interleave(H // Hkv, dim=1)
    scores = (q @ k.transpose(-1, -2)) * (scale or 1.0 / math.sqrt(D))
    visible = torch.ones(Tq, Tk, dtype=torch.bool)
    if causal:  # the last query sits on the last key
        visible = visible.tril(Tk - Tq)
    visible = visible.expand(B, 1, Tq, Tk)
    if doc_ids is not None:
        visible = visible & (doc_ids[:, None, :, None] == doc_ids[:, None, None, :])
    scores = scores.masked_fill(~visible, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


# Rotary embedding as in transformers' modeling_llama (LlamaRotaryEmbedding, rotate_half,
# apply_rotary_pos_emb), all in float32; x is (B, T, H, D), hence unsqueeze_dim=2.
class LlamaRotaryEmbedding(torch.nn.Module):
    def __init__(self, dim, base=10000):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, x, position_ids):
        inv_freq_expanded = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        position_ids_expanded = position_ids[:, None, :].float()
        freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype=x.dtype), emb.sin().to(dtype=x.dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    q_embed = (q * cos) + (rotate_half(q) * sin)
    k_embed = (k * cos) + (rotate_half(k) * sin)
    return q_embed, k_embed


def rope(x, positions=None, theta=10000.0):
    B, T, H, D = x.shape
    if positions is None:
        positions = torch.arange(T)
    cos, sin = LlamaRotaryEmbedding(D, base=theta)(x, positions[None, :].expand(B, T))
    return apply_rotary_pos_emb(x, x, cos, sin, unsqueeze_dim=2)[0]


OPS = {f.__name__: f for f in (matmul, linear, lora_linear, layer_norm, rms_norm, gelu, silu, swiglu, softmax,
                               log_softmax, embedding, cross_entropy, scaled_dot_product_attention, rope)}


def run_case(case_dir, case):
    inputs = {}
    for name in case["inputs"]:
        t = torch.from_numpy(np.load(case_dir / f"{name}.npy"))
        inputs[name] = t.requires_grad_(True) if name in case["grads"] else t
    out = OPS[case["op"]](**inputs, **case["params"])
    (out * torch.from_numpy(np.load(case_dir / "R.npy"))).sum().backward()
    np.save(case_dir / "out.npy", np.array(out.detach().numpy(), dtype=np.float32, order="C"))  # keeps 0-d
    for name in case["grads"]:
        np.save(case_dir / f"grad_{name}.npy", np.array(inputs[name].grad.numpy(), dtype=np.float32, order="C"))


def main():
    torch.set_num_threads(2)
    torch.set_default_dtype(torch.float32)
    root = Path(sys.argv[1])
    for case in json.loads((root / "manifest.json").read_text())["cases"]:
        case_dir = root / case["name"]
        try:
            run_case(case_dir, case)
        except Exception:
            (case_dir / "error.txt").write_text(traceback.format_exc())


if __name__ == "__main__":
    main()
