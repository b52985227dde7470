"""Worked solution for exercises/rope.py (lesson: 02_model.py, section 3, RotaryEmbedding)."""
from __future__ import annotations

import torch


def rope(x: torch.Tensor, offset: int = 0, base: float = 50000.0) -> torch.Tensor:
    """Rotate every (i, i + head_dim/2) pair of x (B, H, T, head_dim) by position · base^(-2i/head_dim)."""
    B, H, T, hd = x.shape
    half = hd // 2
    inv_freq = base ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)     # (hd/2,)
    pos = torch.arange(offset, offset + T, dtype=torch.float32)               # (T,)
    angle = pos[:, None] * inv_freq[None, :]                                  # (T, hd/2)
    cos, sin = angle.cos(), angle.sin()                                       # (T, hd/2), broadcast over B, H
    x1, x2 = x.float()[..., :half], x.float()[..., half:]                     # (B, H, T, hd/2) each
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)       # (B, H, T, hd)
    return out.to(x.dtype)
