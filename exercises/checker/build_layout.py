"""linnet's published checkpoint layout for any widths (docs/ARCHITECTURE.md, "Checkpoint layout"), and a module
that holds parameters under exactly those names (no forward): what the build checks hand the student's optimizer
split, and the key list the student's model must produce. Plain data, no lesson."""
from __future__ import annotations

import torch
import torch.nn as nn

LINNET_WIDTHS = dict(n_layer=12, n_head=12, n_kv_head=4, n_embd=768, head_dim=64, ffn_dim=2048, n_experts=8,
                     n_active_experts=2, vocab_size=32768, block_size=1024, rope_base=50000.0)


def layout(cfg: dict) -> list[tuple[str, tuple]]:
    """(key, shape) of every entry of the published state_dict, in its order (docs/checkpoint_keys.json)."""
    C, hd, V, F = cfg["n_embd"], cfg["head_dim"], cfg["vocab_size"], cfg["ffn_dim"]
    keys = [("transformer.wte.weight", (V, C))]
    for i in range(cfg["n_layer"]):
        h = f"transformer.h.{i}"
        keys += [(f"{h}.ln1.weight", (C,)), (f"{h}.ln2.weight", (C,)), (f"{h}.attn.l_conv.weight", (C, 1, 3)),
                 (f"{h}.attn.c_attn.weight", (C + 2 * cfg["n_kv_head"] * hd, C)), (f"{h}.attn.c_proj.weight", (C, C)),
                 (f"{h}.attn.rotary_emb.inv_freq", (hd // 2,)), (f"{h}.moe.router.weight", (cfg["n_experts"], C))]
        for e in range(cfg["n_experts"]):
            keys += [(f"{h}.moe.experts.{e}.swiglu.w_v.weight", (2 * F, C)), (f"{h}.moe.experts.{e}.c_proj.weight", (C, F))]
    return keys + [("transformer.ln_f.weight", (C,)), ("lm_head.weight", (V, C))]


def skeleton(cfg: dict, seed: int) -> nn.Module:
    """A module whose parameters carry the published names (lm_head.weight is transformer.wte.weight, inv_freq a
    buffer), filled with seeded random values. It has no forward: optimizer checks set the gradients."""
    root, gen = nn.Module(), torch.Generator().manual_seed(seed)
    for key, shape in layout(cfg):
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if part not in module._modules:
                module.add_module(part, nn.Module())
            module = module._modules[part]
        if key == "lm_head.weight":
            module.register_parameter(leaf, root.transformer.wte.weight)
        elif leaf == "inv_freq":
            module.register_buffer(leaf, torch.rand(shape, generator=gen))
        else:
            module.register_parameter(leaf, nn.Parameter(torch.randn(shape, generator=gen)))
    return root
