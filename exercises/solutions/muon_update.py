"""Worked solution for exercises/muon_update.py (lesson: 03_muon.py, sections 1-2)."""
from __future__ import annotations

import math

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)   # (a, b, c), as in 03_muon.py


def orthogonalise(G: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """≈ U·Vᵀ of every (m, n) slice of G (..., m, n), in bf16 like 03."""
    a, b, c = NS_COEFFICIENTS
    X = G.bfloat16()
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT                                                   # the Gram matrix X·Xᵀ is the small one
    X = X / X.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)      # one norm PER matrix: every s ≤ 1
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * (A @ A)) @ X
    return X.mT if tall else X


def muon_update(p: torch.Tensor, grad: torch.Tensor, buf: torch.Tensor, lr: float, momentum: float = 0.95,
                weight_decay: float = 0.1, nesterov: bool = True, ns_steps: int = 5
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One Muon step for a matrix (A, B) or a stack (E, A, B): returns (new p, new momentum buffer)."""
    buf = momentum * buf + (1 - momentum) * grad                    # running average of the gradients
    update = (1 - momentum) * grad + momentum * buf if nesterov else buf
    O = orthogonalise(update, ns_steps).to(p.dtype)
    rows, cols = p.shape[-2], p.shape[-1]
    scaled_lr = lr * math.sqrt(max(1.0, rows / cols))              # tall matrices get a bigger step
    p = p * (1 - lr * weight_decay)                                # decoupled decay, with the raw lr
    return p - scaled_lr * O, buf
