"""Worked solution for exercises/rms_cross_entropy.py (lesson: 02_model.py, section 3, RMSNorm; section 6,
LLM.forward's loss)."""
from __future__ import annotations

import torch


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x (..., C) / sqrt(mean over C of x² + eps) · weight (C,): same shape and dtype as x."""
    xf = x.float()                                                   # (..., C), in float32 like F.rms_norm
    mean_square = (xf * xf).mean(dim=-1, keepdim=True)               # (..., 1)
    normed = xf * torch.rsqrt(mean_square + eps)                     # eps INSIDE the square root
    return (normed * weight.float()).to(x.dtype)                     # (..., C)


def log_sum_exp(x: torch.Tensor) -> torch.Tensor:
    """log Σ exp(x) over the last dim, (..., V) → (...), without overflow: subtract the max first."""
    m = x.max(dim=-1, keepdim=True).values                           # (..., 1)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))       # a row of -inf stays -inf, not NaN
    return (m + torch.log(torch.exp(x - m).sum(dim=-1, keepdim=True))).squeeze(-1)   # (...)


def stable_log_softmax(x: torch.Tensor) -> torch.Tensor:
    """x − log_sum_exp(x) over the last dim, (..., V) → (..., V): log-probabilities that never overflow."""
    return x - log_sum_exp(x)[..., None]                             # (..., V) − (..., 1)


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -1) -> torch.Tensor:
    """Mean of log_sum_exp(logits) − logits[target] over the tokens whose target != ignore_index; 0-dim."""
    V = logits.shape[-1]
    flat, tgt = logits.reshape(-1, V).float(), targets.reshape(-1)    # (N, V), (N,)
    keep = tgt != ignore_index                                       # (N,) the tokens that count
    flat, tgt = flat[keep], tgt[keep]                                # (n, V), (n,)
    logp = stable_log_softmax(flat)                                  # (n, V) log-probabilities
    losses = -logp.gather(1, tgt[:, None]).squeeze(1)                # (n,) −log p(target)
    return losses.sum() / keep.sum()                                 # 0-dim: the mean over kept tokens
