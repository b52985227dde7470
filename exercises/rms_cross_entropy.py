"""Exercise rms_cross_entropy — RMSNorm and the cross-entropy loss from the logits (lesson: 02_model.py,
section 3, RMSNorm; section 6, LLM.forward's loss). About 20 lines.

1. RMSNorm (every block uses two, the model one more before the head). For each vector x of C numbers
   (the last dim):

       rmsnorm(x) = x / sqrt(mean(x²) + eps) · weight          eps = 1e-6 in linnet, weight (C,)

   No mean is subtracted (that is LayerNorm) and there is no bias. eps goes INSIDE the square root.
   Example: x = [3, 4], weight = [1, 1]: mean(x²) = 12.5, sqrt ≈ 3.5355, out ≈ [0.8485, 1.1314].

2. log-sum-exp over the last dim, log(Σ_j exp(x_j)), written so that it never overflows: exp(89) is
   already inf in float32, and real logits can be in the hundreds. With m = max_j x_j,

       log Σ_j exp(x_j) = m + log Σ_j exp(x_j − m)               every exponent is now ≤ 0

   Example: x = [1000, 1000] → 1000 + log 2 ≈ 1000.6931 (the naive formula gives inf).

3. stable_log_softmax: log softmax(x)_j = x_j − log Σ_k exp(x_k), every row at once (same shape as x).
   Example: x = [0, 0] → [−0.6931, −0.6931] (each of the two has probability 1/2).

4. Cross-entropy, what LLM.forward computes from logits (B, T, V) and targets (B, T) of token ids:
   the loss of one token is −log softmax(logits)[target] = log-sum-exp(logits) − logits[target]; the
   result is the MEAN over the tokens whose target is not `ignore_index` (−1 marks padding: those tokens
   count neither in the sum nor in the number you divide by). Return a 0-dim float32 tensor.
   Example: V = 2, logits [0, 0] for one token with target 1: log 2 ≈ 0.6931.

Write them yourself: the check refuses torch's rms_norm, logsumexp, log_softmax and cross_entropy here
(02 and F.cross_entropy are what the check compares with). torch.exp, torch.log, max, sum, mean are fine.

Check:     python -m exercises.check rms_cross_entropy   (compares with 02's RMSNorm and F.cross_entropy)
Solution:  exercises/solutions/rms_cross_entropy.py
"""
from __future__ import annotations

import torch


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x (..., C) / sqrt(mean over C of x² + eps) · weight (C,): same shape and dtype as x."""
    raise NotImplementedError("TODO in exercises/rms_cross_entropy.py: rmsnorm — x · rsqrt(mean(x², last dim) "
                              "+ eps) · weight")


def log_sum_exp(x: torch.Tensor) -> torch.Tensor:
    """log Σ exp(x) over the last dim, (..., V) → (...), without overflow: subtract the max first."""
    raise NotImplementedError("TODO in exercises/rms_cross_entropy.py: log_sum_exp — m + log(sum(exp(x - m)))")


def stable_log_softmax(x: torch.Tensor) -> torch.Tensor:
    """x − log_sum_exp(x) over the last dim, (..., V) → (..., V): log-probabilities that never overflow."""
    raise NotImplementedError("TODO in exercises/rms_cross_entropy.py: stable_log_softmax — x minus its log_sum_exp "
                              "(kept as a (..., 1) column so that it broadcasts)")


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -1) -> torch.Tensor:
    """Mean of log_sum_exp(logits) − logits[target] over the tokens whose target != ignore_index; 0-dim."""
    raise NotImplementedError("TODO in exercises/rms_cross_entropy.py: cross_entropy_loss — per token "
                              "log_sum_exp − the target's logit, then the mean over the tokens not ignored")
