"""Worked solution for exercises/fp8_quantize.py (fast/fp8.py: quantize_rows, for 02's moe_impl "grouped_fp8")."""
from __future__ import annotations

import torch

FP8_MAX = 448.0


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (..., K) → (q (..., K) float8_e4m3fn, scale (...,) float32) with x ≈ q · scale."""
    amax = x.abs().amax(dim=-1).float().clamp_min(1e-30)               # (...,), never 0
    scale = torch.exp2(torch.ceil(torch.log2(amax / FP8_MAX)))          # a power of two, rounded up
    q = (x.float() / scale.unsqueeze(-1)).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q, scale


def fp8_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x (M, K), w (N, K) → x @ wᵀ (M, N) float32 computed from the FP8 rows of x and w and their scales."""
    xq, x_scale = quantize_rows(x)                                      # (M, K), (M,)
    wq, w_scale = quantize_rows(w)                                      # (N, K), (N,)
    out = xq.float() @ wq.float().T                                     # (M, N): the product of float8 values
    return out * x_scale[:, None] * w_scale[None, :]                    # scales along K: applied afterwards
