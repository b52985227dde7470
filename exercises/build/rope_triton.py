"""Systems track: RoPE + QK-norm forward as one Triton kernel.

Write it from the spec alone: exercises/build/specs/rope_triton.md (the maths, the layout of qkv, cos and sin,
what comes back). Check: python -m exercises.check rope_triton   (through Triton's interpreter, on a CPU;
skipped, with the reason, where triton is not installed)
"""
from __future__ import annotations


def rope_qk_norm(qkv, cos, sin, n_head: int, n_kv_head: int):
    raise NotImplementedError("TODO in exercises/build/rope_triton.py: rope_qk_norm and its Triton kernel "
                              "(spec: exercises/build/specs/rope_triton.md)")
