# Reference for tests/quant: bitsandbytes' NF4 with double quantisation, its blockwise 8-bit
# quantiser and its row-wise int8, reimplemented in numpy from bitsandbytes' published algorithm
# (functional.py: create_dynamic_map, quantize_4bit(compress_statistics=True), quantize_blockwise,
# int8_vectorwise_quant/dequant; the CUDA kernels kQuantizeBlockwise with dQuantizeNF4 /
# dQuantize, kDequantizeBlockwise), with IEEE float32 arithmetic throughout and no special cases:
# a block of zeros goes through 1/0 = inf and 0*inf = NaN exactly as the kernel's arithmetic does.
#
# Usage: nf4_reference.py DIR. DIR/manifest.json lists cases {"name", "kind": "nf4" | "blockwise8"
# | "int8", "shape", "blocksize" (blockwise8)}; each case's input is DIR/<name>/in.f32 (raw
# little-endian float32, C order). Writes DIR/<name>/: codes.u8, absmax.u8, scale.f32, offset.f32,
# absmax_dq.f32, deq.f32 (nf4) or codes.u8 (int8: the codes' bytes), absmax.f32, deq.f32
# (blockwise8, int8); and DIR/map.f32
# (create_dynamic_map()), plus DIR/torch_map.f32 when torch can be imported: the map computed
# with torch as bitsandbytes computes it, to check the linspace emulation below on this machine.
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

F32 = np.float32


def f32_of_decimal(value):
    """The float32 nearest the exact value (a decimal string, as a C++ or CUDA float literal
    reads it, or a Fraction), ties to even."""
    exact = Fraction(value)
    guess = F32(float(exact))
    candidates = [np.nextafter(guess, F32(-2)), guess, np.nextafter(guess, F32(2))]
    return min(candidates, key=lambda c: (abs(Fraction(float(c)) - exact), int(c.view(np.uint32)) & 1))


# NF4 values (get_4bit_type("nf4")) and the thresholds of dQuantizeNF4's decision tree, as the
# kernel's float literals.
NF4 = np.array([f32_of_decimal(t) for t in (
    "-1.0", "-0.6961928009986877", "-0.5250730514526367", "-0.39491748809814453", "-0.28444138169288635",
    "-0.18477343022823334", "-0.09105003625154495", "0.0", "0.07958029955625534", "0.16093020141124725",
    "0.24611230194568634", "0.33791524171829224", "0.44070982933044434", "0.5626170039176941",
    "0.7229568362236023", "1.0")], dtype=F32)
NF4_TREE = np.array([f32_of_decimal(t) for t in (
    "-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906", "-0.33967943489551544",
    "-0.23460740596055984", "-0.13791173323988914", "-0.045525018125772476", "0.03979014977812767",
    "0.1202552504837513", "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
    "0.5016634166240692", "0.6427869200706482", "0.8614784181118011")], dtype=F32)


def fma32(a, b, c):
    """float32 a*b + c rounded once."""
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    return f32_of_decimal(exact)


def torch_linspace(start, end, steps):
    """torch.linspace(start, end, steps) in float32 as PyTorch's AVX2 CPU kernel computes it: the
    element at i is a fused start + step*i (first half) or end - step*(steps-1-i) (second half);
    its vectorised loop writes runs of 8 as base + k*step (two roundings), two runs at a time
    while 16 elements remain, and the rest element by element."""
    start, end = F32(start), F32(end)
    step = F32((end - start) / F32(steps - 1))
    half = steps // 2

    def at(i):
        return fma32(step, F32(i), start) if i < half else fma32(-step, F32(steps - 1 - i), end)

    out = np.zeros(steps, dtype=F32)
    i = 0
    while i + 16 <= steps:
        for run in (i, i + 8):
            base = at(run)
            for k in range(8):
                out[run + k] = base + F32(k) * step
        i += 16
    for j in range(i, steps):
        out[j] = at(j)
    return out


def create_dynamic_map(linspace, signed=True, max_exponent_bits=7, total_bits=8):
    """bitsandbytes' create_dynamic_map with float32 tensors: means of linspace(0.1, 1, m)
    neighbours times 10**e (the Python scalar read as float32), 0 and 1, sorted."""
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    i = 0
    for i in range(max_exponent_bits):
        fraction_items = 2 ** (i + non_sign_bits - max_exponent_bits + (0 if signed else 1)) + 1
        boundaries = linspace(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / F32(2.0)
        scaled = F32(10 ** (-(max_exponent_bits - 1) + i)) * means
        data += scaled.tolist()
        if signed:
            data += (-scaled).tolist()
    if additional_items > 0:
        boundaries = linspace(0.1, 1, additional_items + 1)
        means = (boundaries[:-1] + boundaries[1:]) / F32(2.0)
        scaled = F32(10 ** (-(max_exponent_bits - 1) + i)) * means
        data += scaled.tolist()
        if signed:
            data += (-scaled).tolist()
    data += [0.0, 1.0]
    assert len(data) == 2 ** total_bits
    data += [0.0] * (256 - len(data))
    return np.array(sorted(data), dtype=F32)


def torch_map():
    """create_dynamic_map as bitsandbytes runs it, with torch (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    data = []
    for i in range(7):
        boundaries = torch.linspace(0.1, 1, 2 ** i + 1)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0, 1.0]
    return torch.tensor(sorted(data), dtype=torch.float32).numpy()


def quantize_dynamic(x, code):
    """dQuantize<0>: the kernel's bisection settles on the even index p = 2 * #{odd j <= 253 :
    x > code[j]}; then p or its upper neighbour (x > code[p]) or its lower one, by the float32
    midpoint, a tie staying at p."""
    odd = code[1:254:2]
    p = 2 * (x[:, None] > odd[None, :]).sum(axis=1)
    cp = code[p]
    mid_up = (code[np.minimum(p + 1, 255)] + cp) * F32(0.5)
    mid_lo = (code[np.maximum(p - 1, 0)] + cp) * F32(0.5)
    up = np.where(x > mid_up, p + 1, p)
    down = np.where((p > 0) & (x < mid_lo), p - 1, p)
    return np.where(x > cp, up, down).astype(np.uint8)


def blocks_of(x, blocksize):
    """x padded with zeros to whole blocks (as the kernel loads them), as rows."""
    n = x.size
    blocks = -(-n // blocksize)
    padded = np.zeros(blocks * blocksize, dtype=F32)
    padded[:n] = x
    return padded.reshape(blocks, blocksize)


def quantize_blockwise(x, blocksize, code):
    rows = blocks_of(x, blocksize)
    absmax = np.abs(rows).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = rows * (F32(1.0) / absmax)[:, None]
    codes = quantize_dynamic(scaled.reshape(-1), code)[: x.size]
    return codes, absmax


def dequantize_blockwise(codes, absmax, blocksize, code):
    return code[codes] * absmax[np.arange(codes.size) // blocksize]


def quantize_nf4(x, code):
    rows = blocks_of(x, 64)
    absmax = np.abs(rows).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = (rows * (F32(1.0) / absmax)[:, None]).reshape(-1)
    nibbles = (scaled[:, None] > NF4_TREE[None, :]).sum(axis=1).astype(np.uint8)[: 2 * (-(-x.size // 2))]
    packed = (nibbles[0::2] << 4) | nibbles[1::2]
    offset = F32(np.cumsum(absmax.astype(np.float64))[-1] / absmax.size)  # float64 sum in order
    q_absmax, scale = quantize_blockwise((absmax - offset).astype(F32), 256, code)
    return packed, q_absmax, scale, offset


def dequantize_nf4(packed, q_absmax, scale, offset, n, code):
    absmax = dequantize_blockwise(q_absmax, scale, 256, code) + offset
    nibbles = np.stack([packed >> 4, packed & 15], axis=1).reshape(-1)[:n]
    return absmax, NF4[nibbles] * absmax[np.arange(n) // 64]


def quantize_int8(x, cols):
    """int8_vectorwise_quant(threshold=0) in the torch backend: round(x * (127 / row absmax)),
    ties to even; a zero row's NaN is taken as 0."""
    rows = x.reshape(-1, cols)
    absmax = np.abs(rows).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = rows * (F32(127.0) / absmax)[:, None]
    codes = np.rint(np.nan_to_num(scaled, nan=0.0)).astype(np.int8)
    return codes, absmax


def dequantize_int8(codes, absmax):
    """int8_vectorwise_dequant: A * stats.view(-1, 1) * 7.874015718698502e-3 (float32)."""
    return (codes.astype(F32) * absmax[:, None]) * F32(7.874015718698502e-3)


def main():
    root = Path(sys.argv[1])
    code = create_dynamic_map(torch_linspace)
    code.tofile(root / "map.f32")
    reference = torch_map()
    if reference is not None:
        reference.tofile(root / "torch_map.f32")
    for case in json.loads((root / "manifest.json").read_text())["cases"]:
        d = root / case["name"]
        x = np.fromfile(d / "in.f32", dtype="<f4")
        assert x.size == int(np.prod(case["shape"])), case
        if case["kind"] == "nf4":
            packed, q_absmax, scale, offset = quantize_nf4(x, code)
            absmax, deq = dequantize_nf4(packed, q_absmax, scale, offset, x.size, code)
            for name, array in (("codes.u8", packed), ("absmax.u8", q_absmax), ("scale.f32", scale),
                                ("offset.f32", np.array([offset], dtype=F32)), ("absmax_dq.f32", absmax),
                                ("deq.f32", deq)):
                array.tofile(d / name)
        elif case["kind"] == "int8":
            codes, absmax = quantize_int8(x, case["shape"][-1])
            codes.tofile(d / "codes.u8")
            absmax.astype(F32).tofile(d / "absmax.f32")
            dequantize_int8(codes, absmax).astype(F32).tofile(d / "deq.f32")
        else:
            codes, absmax = quantize_blockwise(x, case["blocksize"], code)
            codes.tofile(d / "codes.u8")
            absmax.astype(F32).tofile(d / "absmax.f32")
            dequantize_blockwise(codes, absmax, case["blocksize"], code).astype(F32).tofile(d / "deq.f32")


if __name__ == "__main__":
    main()
