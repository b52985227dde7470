"""Exercise router_top2 — the MoE router's choice for each token (lesson: 02_model.py, section 5, route).

Each token's router gives one logit per expert (a Linear n_embd → E, E = 8 in linnet). The token is
sent to 2 of the E experts, and their two outputs are mixed with weights that sum to 1:

    probs = softmax(logits over all E experts)          # (N, E), each row sums to 1
    top_w, top_e = the 2 largest probs and their expert ids   # (N, 2), (N, 2)
    top_w = top_w / top_w.sum(-1, keepdim=True)         # renormalise: the two weights sum to 1

The order matters: softmax over ALL E experts first, then top-2, then renormalise (a softmax over just
the two chosen logits gives the same numbers — try to see why — but skipping the renormalisation does not).

Example: logits [2, 1, 0, -1] → probs ≈ [0.644, 0.237, 0.087, 0.032] → experts [0, 1] with weights
0.644/0.881 ≈ 0.731 and 0.237/0.881 ≈ 0.269.

Shapes: logits (N, E) float32 → (top_w (N, 2) float, top_e (N, 2) int64 expert ids). The two experts
may come in either order (torch.topk gives the larger first). Very large logits must not give NaN.

Check:     python -m exercises.check router_top2   (compares with 02's route, which MoE.forward calls)
Solution:  exercises/solutions/router_top2.py
"""
from __future__ import annotations

import torch


def router_top2(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Router logits (N, E) → (top_w (N, 2) summing to 1 per row, top_e (N, 2) expert ids)."""
    raise NotImplementedError("TODO in exercises/router_top2.py: softmax over the E experts, keep the 2 largest "
                              "(torch.topk), divide the two weights by their sum")
