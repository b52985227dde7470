"""Worked solution for exercises/newton_schulz_step.py (lesson: 03_muon.py, section 1)."""
from __future__ import annotations

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)   # (a, b, c), as in 03_muon.py


def newton_schulz_step(X: torch.Tensor, coefficients=NS_COEFFICIENTS) -> torch.Tensor:
    """One quintic step a·X + (b·A + c·A·A)·X with A = X·Xᵀ, for X (..., m, n)."""
    a, b, c = coefficients
    A = X @ X.mT                     # (..., m, m)
    B = b * A + c * (A @ A)          # (..., m, m)
    return a * X + B @ X             # (..., m, n): every singular value s becomes a·s + b·s³ + c·s⁵
