"""Worked solution for exercises/balance_loss.py (lesson: 02_model.py, section 5, balance_loss)."""
from __future__ import annotations

import torch


def balance_loss(probs: torch.Tensor) -> torch.Tensor:
    """Router probabilities (N, E) → E · Σ_e (mean over tokens of probs[:, e])², a 0-dim tensor."""
    n_experts = probs.shape[-1]
    mean_prob = probs.mean(dim=0)                  # (E,): average first ...
    return n_experts * (mean_prob ** 2).sum()      # ... then square: 1.0 when mean_prob is uniform
