# Independent reference for tests/cli/test_eval_cli.cpp: `loom eval`'s numbers recomputed with
# the plain-PyTorch Hugging Face models of tests/parity/model_reference.py, Hugging Face's
# tokenizers (the Node binding, through tests/tokenizer/hf_reference.js) and
# lm-evaluation-harness's pairing and scoring, one sequence at a time. Usage:
#   eval_reference.py SPEC.json
# SPEC: {"model": HF_DIR, "tokenizer": TOKENIZER_JSON, "node_modules": DIR, "prefix": TOKEN,
#        "ppl": {"seq_len": N, "shards": [...]}, "mc": [{"max_len": N, "questions": FILE}, ...]}
# ("ppl" and "mc" optional; PREFIX: the context of an empty context); prints {"ppl": ...,
# "mc": [...]}, each as `loom eval` reports it with its windows or questions (--samples) inside.
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "parity"))
from model_reference import load_model  # noqa: E402


def bytes_to_unicode():
    """GPT-2's map from bytes to the printable characters of byte-level token strings."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def token_bytes(tokenizer_json):
    """Bytes of text per id of a byte-level tokenizer.json: special added tokens have none."""
    tj = json.loads(Path(tokenizer_json).read_text())
    assert tj["decoder"]["type"] == "ByteLevel", "the byte count here needs a byte-level decoder"
    decode = {c: b for b, c in bytes_to_unicode().items()}
    table = {i: len(bytes(decode[ch] for ch in tok)) for tok, i in tj["model"]["vocab"].items()}
    for t in tj["added_tokens"]:
        table[t["id"]] = 0 if t["special"] else len(t["content"].encode())
    return table


def read_shard(path):
    data = Path(path).read_bytes()
    header = np.frombuffer(data[:1024], dtype="<i4")
    assert header[0] == 20240520, f"{path}: bad magic"
    dtype = "<u2" if header[1] == 1 else "<u4"
    return np.frombuffer(data[1024:], dtype=dtype)[: header[2]].astype(np.int64)


def token_nll(model, inp, targets):
    """Per-position negative log-likelihoods (float32, as the model computes them)."""
    logits = model(torch.tensor([inp]))[0]
    return F.cross_entropy(logits, torch.tensor(targets), reduction="none").double()


def ppl(model, tokenizer_json, seq_len, shards):
    stream = np.concatenate([read_shard(s) for s in shards]).tolist()
    nbytes = token_bytes(tokenizer_json)
    windows = []
    for s in range(0, len(stream) - 1, seq_len):  # non-overlapping; tokens 1..N-1 are predicted
        w = stream[s:s + seq_len]
        windows.append({"tokens": len(w) - 1, "bytes": sum(nbytes[t] for t in w[1:]),
                        "nll": token_nll(model, w[:-1], w[1:]).sum().item()})
    tokens = sum(w["tokens"] for w in windows)
    total = math.fsum(w["nll"] for w in windows)
    nbytes_total = sum(w["bytes"] for w in windows)
    return {"windows": windows, "tokens": tokens, "bytes": nbytes_total, "nll": total / tokens, "ppl": math.exp(total / tokens),
            "bits_per_byte": total / math.log(2) / nbytes_total}


def hf_encode(node_modules, tokenizer_json, texts):
    script = ROOT / "tests" / "tokenizer" / "hf_reference.js"
    out = subprocess.run(["node", str(script), node_modules, tokenizer_json], input=json.dumps(texts), capture_output=True, text=True,
                         check=True).stdout
    return {text: r["ids"] for text, r in zip(texts, json.loads(out))}


def split_context(context, continuation):
    """lm-evaluation-harness's _encode_pair: the context's trailing whitespace joins the continuation."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    return context, continuation


def mc(model, tokenizer_json, max_len, prefix_token, node_modules, questions_file):
    questions = [json.loads(line) for line in Path(questions_file).read_text().splitlines() if line.strip()]
    texts = set()
    for q in questions:
        for choice in q["choices"]:
            if q["context"] == "":
                texts.add(choice)
            else:
                context, continuation = split_context(q["context"], choice)
                texts.update([context, context + continuation])
    enc = hf_encode(node_modules, tokenizer_json, sorted(texts))
    added = {t["content"]: t["id"] for t in json.loads(Path(tokenizer_json).read_text())["added_tokens"]}
    out = []
    for q in questions:
        lls = []
        for choice in q["choices"]:
            if q["context"] == "":  # TemplateLM.loglikelihood: the prefix token as context
                context_enc, continuation_enc = [added[prefix_token]], enc[choice]
            else:
                context, continuation = split_context(q["context"], choice)
                context_enc = enc[context]
                continuation_enc = enc[context + continuation][len(context_enc):]
            # HFLM._loglikelihood_tokens
            inp = (context_enc + continuation_enc)[-(max_len + 1):][:-1]
            n = len(continuation_enc)
            logprobs = F.log_softmax(model(torch.tensor([inp]))[0], dim=-1)[len(inp) - n:len(inp)]
            lls.append(torch.gather(logprobs, 1, torch.tensor(continuation_enc)[:, None]).double().sum().item())
        completion_len = np.array([float(len(c)) for c in q["choices"]])
        out.append({"loglikelihoods": lls, "pred": int(np.argmax(lls)), "pred_norm": int(np.argmax(np.array(lls) / completion_len)),
                    "gold": q["gold"]})
    return {"questions": out, "acc": float(np.mean([o["pred"] == o["gold"] for o in out])),
            "acc_norm": float(np.mean([o["pred_norm"] == o["gold"] for o in out])), "n": len(out)}


def main():
    torch.set_num_threads(1)
    spec = json.loads(Path(sys.argv[1]).read_text())
    model, _, _ = load_model(Path(spec["model"]))
    result = {}
    with torch.no_grad():
        if "ppl" in spec:
            result["ppl"] = ppl(model, spec["tokenizer"], spec["ppl"]["seq_len"], spec["ppl"]["shards"])
        result["mc"] = [mc(model, spec["tokenizer"], m["max_len"], spec["prefix"], spec["node_modules"], m["questions"])
                        for m in spec.get("mc", [])]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
