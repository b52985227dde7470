"""Exercise muon_update — one step of the Muon optimizer on one weight (lesson: 03_muon.py, section 1,
newton_schulz, and section 2, adjust_lr and muon_update_). About 20 lines.

Muon updates a weight matrix W (A rows × B columns) with its gradient g and a momentum buffer. With
μ = momentum, η = lr, λ = weight_decay, one step is:

1. Momentum as a running average: buf ← μ·buf + (1 − μ)·g.
2. Nesterov ("look ahead"): the direction is u = (1 − μ)·g + μ·buf (with nesterov=False: u = buf).
3. Orthogonalise u with Newton–Schulz (your `newton_schulz_step` exercise, now the whole routine):
   divide u by its Frobenius norm (clamped below at 1e-7) so that every singular value is ≤ 1, then
   apply the quintic step `ns_steps` times. 03 does this in bf16 and, for a tall matrix (A > B), on the
   transpose (so that the Gram matrix is the small B × B one; the result is the same).
   Call the result O: ≈ U·Vᵀ if u = U·S·Vᵀ.
4. Decoupled weight decay with the lr you were given: W ← W·(1 − η·λ).
5. The step, with a shape-dependent lr: W ← W − η'·O with η' = η·√max(1, A/B) — tall matrices get a
   larger step, wide and square ones the plain η. (This is 03's adjust_lr with its default, "original".)

A stack (E, A, B) — linnet's 8 experts in one tensor — is E independent matrices: each one gets its own
norm in step 3 and the lr of one A×B matrix in step 5.

Numbers: for linnet's expert slice w_v[e] of 4096 × 768 and η = 0.01, η' = 0.01·√(4096/768) ≈ 0.0231;
for a 768 × 2048 matrix, η' = 0.01.

Shapes: p, grad, buf all (A, B) or (E, A, B) float32 → (new p, new buf), same shapes, float32. Return new
tensors (or update p and buf in place and return them).

Check:     python -m exercises.check muon_update   (compares with one step of 03's Muon optimizer on the
           same p, gradient and momentum buffer: square, tall, wide and stacked, with and without decay)
Solution:  exercises/solutions/muon_update.py
"""
from __future__ import annotations

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)   # (a, b, c), as in 03_muon.py


def muon_update(p: torch.Tensor, grad: torch.Tensor, buf: torch.Tensor, lr: float, momentum: float = 0.95,
                weight_decay: float = 0.1, nesterov: bool = True, ns_steps: int = 5
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One Muon step for a matrix (A, B) or a stack (E, A, B): returns (new p, new momentum buffer)."""
    raise NotImplementedError("TODO in exercises/muon_update.py: one Muon step, 1-5 in the docstring")
