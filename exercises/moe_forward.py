"""Exercise moe_forward — the whole mixture-of-experts layer (lesson: 02_model.py, section 5, MoE.forward
with moe_impl="reference", route, moe_reference, swiglu, balance_loss). About 20 lines.

Every token goes through only k of the E expert MLPs (linnet: k = 2 of E = 8), chosen by a router.
For x (B, T, C), treat the N = B·T tokens independently:

1. Router: logits = x·router_wᵀ (N, E); probs = softmax over the E experts; keep each token's k largest
   probabilities and their expert ids; rescale those k weights so that they sum to 1 per token.
2. Experts: expert e is a SwiGLU MLP with weights w_v[e] (2F, C) and c_proj[e] (C, F).
   w_v[e]·x gives 2F numbers: the first F are the GATE, the last F the VALUE;
   hidden = silu(gate) ⊙ value (F numbers), expert output = c_proj[e]·hidden (C numbers).
3. Combine: each token's output is Σ over its k chosen experts of (its weight for e) · (expert e's output).
   Only the chosen experts run on a token (the "reference" path: loop over the experts, gather the
   tokens that chose each one, run it on them, add the weighted outputs back to those tokens' rows).
4. Balance loss (your `balance_loss` exercise): from the FULL probabilities (N, E), E · Σ_e (mean over
   tokens of probs[:, e])².

Return (y reshaped to (B, T, C), balance as a 0-dim tensor), in that order.

Example with numbers: a token whose top-2 probabilities are 0.5 (expert 3) and 0.3 (expert 1) gets
0.625·expert₃(x) + 0.375·expert₁(x).

Shapes: x (B, T, C) float32; router_w (E, C); w_v (E, 2F, C); c_proj (E, C, F); k an int
→ (y (B, T, C) float32, balance 0-dim float32).

Check:     python -m exercises.check moe_forward   (compares with 02's MoE(config with moe_impl="reference")
           on the same weights: identical experts first, then 4 and 8 different experts, then k = 1)
Solution:  exercises/solutions/moe_forward.py
"""
from __future__ import annotations

import torch


def moe_forward(x: torch.Tensor, router_w: torch.Tensor, w_v: torch.Tensor, c_proj: torch.Tensor, k: int = 2
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The MoE layer on x (B, T, C): (y (B, T, C), balance loss, a 0-dim tensor)."""
    raise NotImplementedError("TODO in exercises/moe_forward.py: route each token to k experts, run them, "
                              "combine, and compute the balance loss (steps 1-4 of the docstring)")
