"""Worked solution for exercises/gqa_attention.py (lesson: 02_model.py, section 4, CausalSelfAttention)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rotate_half(t: torch.Tensor) -> torch.Tensor:
    t1, t2 = t.chunk(2, dim=-1)
    return torch.cat([-t2, t1], dim=-1)


def gqa_attention(h: torch.Tensor, c_attn_w: torch.Tensor, c_proj_w: torch.Tensor, n_head: int, n_kv_head: int,
                  rope_base: float = 50000.0) -> torch.Tensor:
    """Causal grouped-query attention of the token-shifted input h (B, T, C) → (B, T, C)."""
    B, T, C = h.shape
    hd = C // n_head
    kv = n_kv_head * hd
    # 1. one fused projection, cut into q | k | v, then heads before time
    q, k, v = (h @ c_attn_w.T).split([C, kv, kv], dim=-1)
    q = q.view(B, T, n_head, hd).transpose(1, 2)                        # (B, nh, T, hd)
    k = k.view(B, T, n_kv_head, hd).transpose(1, 2)                     # (B, nkv, T, hd)
    v = v.view(B, T, n_kv_head, hd).transpose(1, 2)                     # (B, nkv, T, hd)
    # 2. RoPE on q and k: pairs (i, i + hd/2), angle = position · base^(-2i/hd)
    inv_freq = rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)   # (hd/2,)
    angle = torch.arange(T, dtype=torch.float32)[:, None] * inv_freq[None, :]     # (T, hd/2)
    angle = torch.cat([angle, angle], dim=-1)                                     # (T, hd)
    cos, sin = angle.cos(), angle.sin()
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    # 3. QK-norm AFTER RoPE: a LayerNorm over head_dim without weights
    q = F.layer_norm(q, (hd,), eps=1e-5)
    k = F.layer_norm(k, (hd,), eps=1e-5)
    # 4. GQA: query head i reads KV head i // (n_head / n_kv_head): repeat each KV head, in place
    group = n_head // n_kv_head
    k = k.repeat_interleave(group, dim=1)                               # (B, nh, T, hd)
    v = v.repeat_interleave(group, dim=1)
    # 5. scaled scores, causal mask (a token sees itself and the past), softmax over the keys
    scores = (q @ k.mT) / math.sqrt(hd)                                 # (B, nh, T, T)
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)        # True above the diagonal
    weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
    y = weights @ v                                                     # (B, nh, T, hd)
    # 6. heads back side by side, output projection
    y = y.transpose(1, 2).reshape(B, T, C)
    return y @ c_proj_w.T
