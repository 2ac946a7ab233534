# PyTorch 1.13 reference for Loom's micro-benchmarks: the same cases and nominal work counts as
# bench/bench_attention.cpp and bench/bench_norm_loss.cpp, timed best-of-N on 2 threads, written
# as JSON {name: {"GFLOP/s" | "GB/s": value}} for bench/summarize.py. Run with /usr/bin/python3.
import argparse
import json
import time

import torch
import torch.nn.functional as F

C, H, D, V = 768, 12, 64, 50257
BATCH_SHAPES = [(4, 64), (8, 1024)]


def leaf(*shape):
    return torch.empty(*shape).uniform_(-1, 1).requires_grad_()


def attention_case(B, T):
    """softmax(QKᵀ·scale + causal mask)V composed of ATen ops, as a PyTorch 1.13 user writes it."""
    q, k, v = (leaf(B, H, T, D) for _ in range(3))
    dout = torch.empty(B, H, T, D).uniform_(-1, 1)
    mask = torch.full((T, T), float("-inf")).triu_(1)
    scale = D ** -0.5

    def step():
        att = torch.softmax(q @ k.transpose(-2, -1) * scale + mask, dim=-1)
        (att @ v).backward(dout)
        q.grad = k.grad = v.grad = None

    # Same nominal count as bench_attention.cpp: 6 (T, T, D) products, halved by the mask.
    return step, {"GFLOP/s": 6 * B * H * T * T * D / 1e9}


def layer_norm_case(B, T):
    x, w, b = leaf(B, T, C), leaf(C), leaf(C)
    dy = torch.empty(B, T, C).uniform_(-1, 1)

    def step():
        F.layer_norm(x, (C,), w, b).backward(dy)
        x.grad = w.grad = b.grad = None

    return step, {"GB/s": 5.0 * B * T * C * 4 / 1e9}


def cross_entropy_case(B, T):
    # Unpadded (B·T, V) logits, the natural PyTorch layout; Loom's padded columns are not counted.
    logits = torch.empty(B * T, V).uniform_(-4, 4).requires_grad_()
    targets = torch.randint(0, V, (B * T,))

    def step():
        F.cross_entropy(logits, targets).backward()
        logits.grad = None

    return step, {"GB/s": 3.0 * B * T * V * 4 / 1e9}


def best_time(step, min_time, reps, budget):
    """Seconds per step: one untimed warm-up, then the best of reps runs of >= min_time each;
    repetitions stop early once the case has used budget seconds (multi-second steps)."""
    case_start = time.perf_counter()
    step()
    best = float("inf")
    for _ in range(reps):
        if best < float("inf") and time.perf_counter() - case_start > budget:
            break
        iters, start = 0, time.perf_counter()
        while True:
            step()
            iters += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        best = min(best, elapsed / iters)
    return best


def main():
    parser = argparse.ArgumentParser(description="PyTorch reference timings for bench/run")
    parser.add_argument("--min-time", type=float, default=0.1, help="seconds per repetition")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per case after which repetitions stop")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    cases = {}
    for B, T in BATCH_SHAPES:
        shape = f"B{B}_T{T}"
        cases[f"torch/attention_fwdbwd/{shape}"] = lambda B=B, T=T: attention_case(B, T)
        cases[f"torch/layer_norm_fwdbwd/{shape}"] = lambda B=B, T=T: layer_norm_case(B, T)
        cases[f"torch/cross_entropy_fwdbwd/{shape}"] = lambda B=B, T=T: cross_entropy_case(B, T)

    results = {}
    for name, make in cases.items():
        step, work = make()
        seconds = best_time(step, args.min_time, args.reps, args.budget)
        results[name] = {unit: amount / seconds for unit, amount in work.items()}
        print(f"{name:<40} {seconds * 1e3:10.2f} ms  " + "  ".join(f"{v:.2f} {u}" for u, v in results[name].items()), flush=True)
        del step  # free this case's tensors before the next one allocates
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
