"""The expert weights cast once per training step: the fast twin of letting every micro-step cast them itself.

What it speeds up: under bf16 autocast each micro-step of 05's training step would cast the fp32 expert weights
to bf16 again (16 times per linnet step: 453M weights each time). `cast_expert_weights` makes the bf16 copies
once per step and 05 hands them to every micro-step as `model(idx, targets, expert_weights=...)`; the plain twin
is `expert_weights=None` (02's MoE uses its parameters). Same maths: the copies are ordinary autograd nodes
(w.to(bf16)), so each micro-step's backward flows through them into the fp32 .grad exactly as before (the cast
saves nothing for backward); tests/test_02_model.py checks the gradients are bit-identical with and without.
Measured: BENCHMARKS.md (the lesson refactor's rows). With moe_impl "grouped_fp8" each weight also brings its two
FP8 copies (fast/fp8.py), so they too are made once per step.
"""
from __future__ import annotations

import torch

from fast import fp8


def cast_expert_weights(model, dtype=torch.bfloat16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One (w_v, c_proj) pair per layer of 02's model, cast to `dtype` (with FP8 copies under "grouped_fp8")."""
    pairs = [(block.moe.w_v.to(dtype), block.moe.c_proj.to(dtype)) for block in model.transformer.h]
    if model.config.moe_impl == "grouped_fp8":
        return [(fp8.fp8_weight(w_v), fp8.fp8_weight(c_proj)) for w_v, c_proj in pairs]
    return pairs
