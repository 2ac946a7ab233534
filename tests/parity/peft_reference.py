# PyTorch reference for tests/parity/test_peft_parity.cpp. Usage: peft_reference.py DIR.
# PEFT's LoRA (peft/tuners/lora: LoraModel injecting LoraLayer into target_modules, then
# set_peft_model_state_dict) rewritten in plain PyTorch on model_reference.py's Hugging Face
# models, independent of Loom: the base comes from DIR/model (config.json, model.safetensors),
# the adapter from DIR/adapter (adapter_config.json, adapter_model.safetensors). Runs DIR/ids.npy
# through the adapted model (eval: no dropout) and through PEFT's merge (merge_and_unload), and
# writes DIR/logits.npy and DIR/merged_logits.npy.
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from model_reference import Conv1D, load_model, read_safetensors, save


class LoraLayer(nn.Module):
    """PEFT's lora.Linear around a base nn.Linear or Conv1D: base(x) + lora_B(lora_A(dropout(x))) · scaling."""

    def __init__(self, base, r, scaling, dropout):
        super().__init__()
        self.base_layer = base
        fan_in = base.weight.shape[0] if isinstance(base, Conv1D) else base.weight.shape[1]
        fan_out = base.weight.shape[1] if isinstance(base, Conv1D) else base.weight.shape[0]
        self.lora_A = nn.Linear(fan_in, r, bias=False)
        self.lora_B = nn.Linear(r, fan_out, bias=False)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = scaling

    def forward(self, x):
        return self.base_layer(x) + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling

    def delta_weight(self, fan_in_fan_out):
        """get_delta_weight: B @ A · scaling, transposed for a weight stored [in, out] (Conv1D)."""
        w = self.lora_B.weight @ self.lora_A.weight
        return (w.T if fan_in_fan_out else w) * self.scaling


def matches(name, target):
    """check_target_module_exists for a list of names: the module's name is the target or ends with '.' + target."""
    return name == target or name.endswith("." + target)


def apply_adapter(model, adapter_dir):
    """Wraps each target module in a LoraLayer and loads the adapter's tensors; returns the wrapped layers by name."""
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg.get("bias", "none") == "none", cfg
    assert not cfg.get("rank_pattern") and not cfg.get("alpha_pattern") and not cfg.get("modules_to_save"), cfg
    r, alpha = cfg["r"], cfg["lora_alpha"]
    scaling = alpha / math.sqrt(r) if cfg.get("use_rslora", False) else alpha / r
    targets = cfg["target_modules"]
    targets = [targets] if isinstance(targets, str) else targets
    layers = {}
    for name, module in list(model.named_modules()):
        if not isinstance(module, (nn.Linear, Conv1D)) or not any(matches(name, t) for t in targets):
            continue
        # PEFT corrects a wrong fan_in_fan_out with a warning; the adapter must say what the layer is.
        assert cfg.get("fan_in_fan_out", False) == isinstance(module, Conv1D), f"{name}: fan_in_fan_out {cfg.get('fan_in_fan_out')}"
        parent_name, _, child = name.rpartition(".")
        layer = LoraLayer(module, r, scaling, cfg.get("lora_dropout", 0.0))
        setattr(model.get_submodule(parent_name), child, layer)
        layers[name] = layer
    # set_peft_model_state_dict: the file's keys are base_model.model.<module>.lora_{A,B}.weight.
    tensors = read_safetensors(adapter_dir / "adapter_model.safetensors")
    want = {f"base_model.model.{name}.lora_{ab}.weight" for name in layers for ab in "AB"}
    assert set(tensors) == want, f"adapter keys: file only {sorted(set(tensors) - want)}, model only {sorted(want - set(tensors))}"
    with torch.no_grad():
        for name, layer in layers.items():
            for ab, lin in (("A", layer.lora_A), ("B", layer.lora_B)):
                t = tensors[f"base_model.model.{name}.lora_{ab}.weight"]
                assert t.shape == lin.weight.shape, f"{name}.lora_{ab}: {tuple(t.shape)} vs {tuple(lin.weight.shape)}"
                lin.weight.copy_(t)
    return layers, cfg


def merge_and_unload(model, layers, cfg):
    """W += delta_weight, then each LoraLayer replaced by its base layer."""
    with torch.no_grad():
        for name, layer in layers.items():
            layer.base_layer.weight += layer.delta_weight(cfg.get("fan_in_fan_out", False))
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, layer.base_layer)


def main():
    torch.set_num_threads(1)
    root = Path(sys.argv[1])
    model, _, _ = load_model(root / "model")
    layers, cfg = apply_adapter(model, root / "adapter")
    model.eval()
    ids = torch.from_numpy(np.load(root / "ids.npy"))
    with torch.no_grad():
        save(root / "logits.npy", model(ids))
        merge_and_unload(model, layers, cfg)
        save(root / "merged_logits.npy", model(ids))
    print(f"{len(layers)} LoRA layers, r {cfg['r']}, scaling {next(iter(layers.values())).scaling:.6g}")


if __name__ == "__main__":
    main()
