"""Exercise newton_schulz_step — one step of Muon's quintic Newton–Schulz iteration (lesson: 03_muon.py, section 1).

Muon replaces a gradient matrix G = U·S·Vᵀ by (roughly) U·Vᵀ: the same directions, every singular value
pushed to ≈ 1. It gets there with matrix products only, by applying an odd polynomial to X:

    A = X · Xᵀ                      # (m, m) Gram matrix
    B = b·A + c·A·A
    X_next = a·X + B·X              # = a·X + b·(X Xᵀ) X + c·(X Xᵀ)² X

with Keller Jordan's coefficients (a, b, c) = (3.4445, -4.7750, 2.0315). Because X = U·S·Vᵀ gives
(X Xᵀ)ᵏ X = U·S^(2k+1)·Vᵀ, one step maps every singular value s to φ(s) = a·s + b·s³ + c·s⁵ and leaves
U and V alone (03's ns_polynomial is φ). 03's newton_schulz divides G by its Frobenius norm first (so
every s ≤ 1), transposes tall matrices so that A is the small Gram matrix, runs in bf16, and does this
step 5 times. You write the step only — in X's own dtype, for any shape, no normalising, no transposing.

Example: X = diag(0.5, 0.1) → φ(0.5) = 1.722 - 0.597 + 0.063 = 1.189 and φ(0.1) = 0.340, so
X_next ≈ diag(1.189, 0.340): the small singular value grew ×3.4, the large one moved towards 1.

Shapes: X (..., m, n) → same shape and dtype; "..." are batch dims (linnet's 8 stacked experts are one
(8, 4096, 768) tensor): use X.mT (transpose of the last two dims) and @, which both batch.

Check:     python -m exercises.check newton_schulz_step   (float64 against 03's ns_polynomial on the
           singular values, then against 03's newton_schulz itself)
Solution:  exercises/solutions/newton_schulz_step.py
"""
from __future__ import annotations

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)   # (a, b, c), as in 03_muon.py


def newton_schulz_step(X: torch.Tensor, coefficients=NS_COEFFICIENTS) -> torch.Tensor:
    """One quintic step a·X + (b·A + c·A·A)·X with A = X·Xᵀ, for X (..., m, n)."""
    raise NotImplementedError("TODO in exercises/newton_schulz_step.py: one quintic step, the polynomial "
                              "in the docstring, for any batch of matrices")
