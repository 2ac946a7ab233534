# An independent safetensors writer and reader (json + struct + torch, no safetensors package)
# for the C++ cross-check. `write PATH` writes the reference tensors; `check PATH` reads a file
# and compares it with them. Tensor "t_<dtype>" of shape (2, 3) holds value(k) at flat index k.
import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F64": torch.float64, "BF16": torch.bfloat16, "F16": torch.float16,
          "I32": torch.int32, "I64": torch.int64, "U8": torch.uint8}
SIZES = {"F32": 4, "F64": 8, "BF16": 2, "F16": 2, "I32": 4, "I64": 8, "U8": 1}
METADATA = {"source": "torch", "format": "pt"}


def reference():
    out = {}
    for name, dtype in DTYPES.items():
        k = torch.arange(6, dtype=torch.float64)
        values = k * 0.75 - 2 if dtype.is_floating_point else (k * 7 + 1 if dtype == torch.uint8 else k * 7 - 5)
        out["t_" + name] = values.to(dtype).reshape(2, 3)
    out["scalar"] = torch.tensor(-1.5, dtype=torch.float32)
    out["empty"] = torch.zeros(0, 4, dtype=torch.int64)
    return out


def raw_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def write(path):
    # Name order, not alignment order: F64/I64 data may land at unaligned offsets on purpose.
    tensors = reference()
    header, data = {"__metadata__": METADATA}, b""
    for name in sorted(tensors):
        t = tensors[name]
        dtype = next(k for k, v in DTYPES.items() if v == t.dtype)
        blob = raw_bytes(t)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def check(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    assert n % 8 == 0, f"header size {n} is not a multiple of 8"
    assert header.pop("__metadata__") == METADATA, "metadata differs"
    expected = reference()
    assert sorted(header) == sorted(expected), f"names {sorted(header)}"
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        assert begin % SIZES[info["dtype"]] == 0, f"{name} is not aligned"
        raw = bytearray(blob[8 + n + begin:8 + n + end])
        t = torch.frombuffer(raw, dtype=torch.int16 if dtype == torch.bfloat16 else dtype) if raw else torch.zeros(0, dtype=dtype)
        if dtype == torch.bfloat16:
            t = t.view(torch.bfloat16)
        t = t.reshape(info["shape"])
        want = expected[name]
        assert t.dtype == want.dtype and t.shape == want.shape and torch.equal(t, want), f"{name}: {t} != {want}"
    print(f"ok {len(header)} tensors")


if __name__ == "__main__":
    {"write": write, "check": check}[sys.argv[1]](sys.argv[2])
