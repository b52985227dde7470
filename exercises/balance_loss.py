"""Exercise balance_loss — linnet's load-balancing loss (lesson: 02_model.py, section 5, balance_loss).

A router left alone tends to collapse: a few experts get every token, get better, and get chosen even
more. linnet adds a small loss per layer that is smallest when the router's AVERAGE probability is
spread evenly over the E experts:

    mean_prob[e] = mean over the N tokens of probs[:, e]       # (E,)
    balance      = E · Σ_e mean_prob[e]²                       # a scalar

Since Σ_e mean_prob[e] = 1, this is 1.0 exactly when mean_prob is uniform (1/E each) and grows up to E
when every token puts all its probability on one expert. (Training adds 0.01 · the mean over layers
to the cross-entropy.) Note the order: average first, THEN square. And this is not the Switch
Transformer's loss, which multiplies the fraction of tokens routed to e by mean_prob[e].

Example: 2 tokens, E = 2, probs [[1, 0], [0, 1]] → mean_prob [0.5, 0.5] → balance 2·(0.25 + 0.25) = 1.0
(each token is sure, but the two experts are used equally); probs [[1, 0], [1, 0]] → 2·(1 + 0) = 2.0.

Shapes: probs (N, E) float32, rows summing to 1 (softmax of the router logits) → a 0-dim tensor.

Check:     python -m exercises.check balance_loss   (compares with 02's balance_loss, which MoE.forward calls)
Solution:  exercises/solutions/balance_loss.py
"""
from __future__ import annotations

import torch


def balance_loss(probs: torch.Tensor) -> torch.Tensor:
    """Router probabilities (N, E) → E · Σ_e (mean over tokens of probs[:, e])², a 0-dim tensor."""
    raise NotImplementedError("TODO in exercises/balance_loss.py: average probs over the tokens (dim 0), "
                              "square, sum over experts, multiply by the number of experts E")
