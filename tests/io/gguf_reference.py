# An independent GGUF reader and writer (struct + numpy, written from the GGUF spec and ggml's
# reference quantiser, not from Loom) for the C++ tests.
#   read FILE SOURCE_DIR: prints the file as JSON: version, metadata [key, type, value], tensors
#     {name, type, shape (C order), offset}; for a tensor NAME with SOURCE_DIR/NAME.f32 (raw
#     float32 values) also "bytes_equal": whether its bytes are the reference encoding of them.
#   write FILE EXPECT.json: writes a GGUF v3 file with metadata of every type and tensors of every
#     type, and the values a reader must find (tensors dequantised) as JSON.
import json
import struct
import sys

import numpy as np

TYPES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool", 8: "string", 9: "array", 10: "u64", 11: "i64",
         12: "f64"}
FORMATS = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<f", "bool": "<?", "u64": "<Q",
           "i64": "<q", "f64": "<d"}
TENSOR_TYPES = {0: "f32", 1: "f16", 8: "q8_0", 30: "bf16"}


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, t):
        name = TYPES[t]
        if name == "string":
            return self.string()
        if name == "array":
            et, n = self.take("<I"), self.take("<Q")
            return [TYPES[et], [self.value(et) for _ in range(n)]]
        return self.take(FORMATS[name])


def encode(values, type_name):
    """ggml's reference encodings: round to nearest even; q8_0 as quantize_row_q8_0_ref."""
    x = values.astype(np.float32)
    if type_name == "f32":
        return x.tobytes()
    if type_name == "f16":
        return x.astype(np.float16).tobytes()
    if type_name == "bf16":
        bits = x.view(np.uint32).astype(np.uint64)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16).tobytes()
    blocks = x.reshape(-1, 32)
    d = (np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    scaled = (blocks * inv).astype(np.float32)
    a = np.abs(scaled)
    q = np.sign(scaled) * (np.floor(a) + np.floor(2 * (a - np.floor(a))))  # C's roundf: halves away from zero
    out = bytearray()
    for i in range(blocks.shape[0]):
        out += d[i].astype(np.float16).tobytes() + q[i].astype(np.int8).tobytes()
    return bytes(out)


def decode(raw, type_name, n):
    if type_name == "f32":
        return np.frombuffer(raw, np.float32)
    if type_name == "f16":
        return np.frombuffer(raw, np.float16).astype(np.float32)
    if type_name == "bf16":
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    blocks = np.frombuffer(raw, np.uint8).reshape(-1, 34)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
    return (q * d).reshape(n)


def nbytes(type_name, n):
    return n // 32 * 34 if type_name == "q8_0" else n * {"f32": 4, "f16": 2, "bf16": 2}[type_name]


def read(path, source_dir):
    data = open(path, "rb").read()
    r = Reader(data)
    assert r.take("<I") == 0x46554747, "bad magic"
    version, n_tensors, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
    metadata, alignment = [], 32
    for _ in range(n_kv):
        key, t = r.string(), r.take("<I")
        value = r.value(t)
        metadata.append([key, TYPES[t], value])
        if key == "general.alignment":
            alignment = value
    tensors = []
    for _ in range(n_tensors):
        name, n_dims = r.string(), r.take("<I")
        dims = [r.take("<Q") for _ in range(n_dims)]
        tensors.append({"name": name, "shape": dims[::-1], "type": TENSOR_TYPES[r.take("<I")], "offset": r.take("<Q")})
    start = (r.pos + alignment - 1) // alignment * alignment
    for t in tensors:
        n = int(np.prod(t["shape"]))
        raw = data[start + t["offset"]:start + t["offset"] + nbytes(t["type"], n)]
        try:
            source = np.fromfile(f"{source_dir}/{t['name']}.f32", np.float32)
        except FileNotFoundError:
            continue
        t["bytes_equal"] = encode(source, t["type"]) == raw
        t["max_abs_error"] = float(np.abs(decode(raw, t["type"], n) - source).max())
    print(json.dumps({"version": version, "alignment": alignment, "metadata": metadata, "tensors": tensors}))


def write(path, expect_path):
    def put(fmt, v):
        return struct.pack(fmt, v)

    def put_string(s):
        b = s.encode("utf-8")
        return put("<Q", len(b)) + b

    codes = {name: code for code, name in TYPES.items()}
    metadata = [["general.architecture", "string", "llama"], ["u8", "u8", 200], ["i8", "i8", -100], ["u16", "u16", 60000],
                ["i16", "i16", -30000], ["u32", "u32", 4000000000], ["i32", "i32", -2000000000], ["f32", "f32", 0.5],
                ["bool", "bool", True], ["u64", "u64", 2**63 + 5], ["i64", "i64", -2**62], ["f64", "f64", 1e-300],
                ["names", "array", ["string", ["a", "", "\u2581b c"]]], ["ids", "array", ["i32", [3, -1, 7]]],
                ["empty", "array", ["f32", []]], ["general.alignment", "u32", 64]]
    out = put("<I", 0x46554747) + put("<I", 3)
    rng = np.random.default_rng(7)
    tensors = []
    for name, type_name, shape in [("a", "f32", [3, 5]), ("b", "f16", [7]), ("c", "bf16", [2, 3, 4]), ("d", "q8_0", [3, 64])]:
        values = (rng.standard_normal(int(np.prod(shape))) * 3).astype(np.float32)
        tensors.append((name, type_name, shape, encode(values, type_name)))
    out += put("<Q", len(tensors)) + put("<Q", len(metadata))
    for key, t, value in metadata:
        out += put_string(key) + put("<I", codes[t])
        if t == "array":
            et, items = value
            out += put("<I", codes[et]) + put("<Q", len(items))
            out += b"".join(put_string(v) if et == "string" else put(FORMATS[et], v) for v in items)
        else:
            out += put_string(value) if t == "string" else put(FORMATS[t], value)
    offset, blobs = 0, b""
    for name, type_name, shape, raw in tensors:
        out += put_string(name) + put("<I", len(shape)) + b"".join(put("<Q", d) for d in reversed(shape))
        out += put("<I", {v: k for k, v in TENSOR_TYPES.items()}[type_name]) + put("<Q", offset)
        blobs += raw + b"\0" * (-len(raw) % 64)
        offset += len(raw) + (-len(raw) % 64)
    out += b"\0" * (-len(out) % 64) + blobs
    open(path, "wb").write(out)
    expect = {"metadata": metadata, "tensors": [{"name": n, "type": t, "shape": s, "values": decode(raw, t, int(np.prod(s))).tolist()}
                                                for n, t, s, raw in tensors]}
    json.dump(expect, open(expect_path, "w"))


if __name__ == "__main__":
    {"read": read, "write": write}[sys.argv[1]](*sys.argv[2:])
