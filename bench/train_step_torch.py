"""The PyTorch side of bench/train_step.cpp: GPT-2 (HF's architecture: LayerNorm, learned
positions, tanh-GELU, tied head, composed softmax(QK^T)V attention) trained with AdamW for a few
steps at B, T; prints the median step time, tokens/s and peak RSS in the same format."""
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SIZES = {"gpt2-124M": (12, 12, 768), "gpt2-350M": (24, 16, 1024), "gpt2-mini": (4, 4, 128)}


class Block(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H = H
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.H)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
        x = x + self.c_proj((att @ v).transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, L, H, C, V=50257, maxT=1024):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(maxT, C)
        self.h = nn.ModuleList(Block(C, H) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.h:
            x = b(x)
        return self.ln_f(x) @ self.wte.weight.t()


def main():
    preset = sys.argv[1] if len(sys.argv) > 1 else "gpt2-124M"
    B, T, steps = (int(a) for a in (sys.argv[2:5] + ["4", "64", "5"][len(sys.argv[2:5]):]))
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)  # its default init makes denormals by step 4; they slowed the step 5x by step 8
    torch.manual_seed(0)
    model = GPT(*SIZES[preset])
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}], lr=1e-4, betas=(0.9, 0.95))
    times = []
    for s in range(steps + 1):
        ids = torch.randint(0, 50257, (B, T + 1))
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(ids[:, :-1]).reshape(B * T, -1), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if s > 0:
            times.append(time.perf_counter() - t0)
    t = sorted(times)[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1048576
    print(f"torch {torch.__version__} {preset} B={B} T={T} threads=2: {t:.3f} s/step  {B * T / t:.0f} tokens/s  peak RSS {rss:.2f} GB")


if __name__ == "__main__":
    main()
