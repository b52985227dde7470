"""Worked solution of the systems track's Triton kernel (spec: exercises/build/specs/rope_triton.md; your file:
exercises/build/rope_triton.py). One program per head row of q or k: RoPE, then LayerNorm, in fp32 registers."""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def rope_qk_norm_kernel(QKV, COS, SIN, OUT, T, HEADS, N_QK, eps, HALF: tl.constexpr):
    row = tl.program_id(0)                            # (b·T + t)·N_QK + head: the q and k head rows
    bt, head = row // N_QK, row % N_QK
    t = bt % T
    cols = tl.arange(0, HALF)                         # (HALF,): column j pairs with j + HALF (rotate half)
    x = QKV + (bt * HEADS + head) * 2 * HALF          # the row in qkv: (B, T, HEADS, 2·HALF), dense
    x1 = tl.load(x + cols).to(tl.float32)
    x2 = tl.load(x + HALF + cols).to(tl.float32)
    c1, c2 = tl.load(COS + t * 2 * HALF + cols), tl.load(COS + t * 2 * HALF + HALF + cols)
    s1, s2 = tl.load(SIN + t * 2 * HALF + cols), tl.load(SIN + t * 2 * HALF + HALF + cols)
    r1 = x1 * c1 - x2 * s1                            # x·cos + rotate_half(x)·sin, rotate_half(x) = (−x2, x1)
    r2 = x2 * c2 + x1 * s2
    mean = (tl.sum(r1, 0) + tl.sum(r2, 0)) / (2 * HALF)     # LayerNorm over the whole row, no weights
    r1, r2 = r1 - mean, r2 - mean
    rstd = 1.0 / tl.sqrt((tl.sum(r1 * r1, 0) + tl.sum(r2 * r2, 0)) / (2 * HALF) + eps)
    out = OUT + row * 2 * HALF
    tl.store(out + cols, r1 * rstd)
    tl.store(out + HALF + cols, r2 * rstd)


def rope_qk_norm(qkv, cos, sin, n_head: int, n_kv_head: int):
    """qkv (B, T, (nh + 2·nkv)·hd), cos and sin (T, hd) → q (B, T, nh, hd), k and v (B, T, nkv, hd)."""
    B, T, _ = qkv.shape
    hd = cos.shape[-1]
    heads = qkv.contiguous().view(B, T, n_head + 2 * n_kv_head, hd)
    n_qk = n_head + n_kv_head
    out = torch.empty(B, T, n_qk, hd, dtype=qkv.dtype, device=qkv.device)
    rope_qk_norm_kernel[(B * T * n_qk,)](heads, cos.contiguous(), sin.contiguous(), out, T, n_head + 2 * n_kv_head,
                                         n_qk, 1e-5, HALF=hd // 2)
    q, k = out.split([n_head, n_kv_head], dim=2)
    return q, k, heads[:, :, n_qk:]                   # v: its rows as they came
