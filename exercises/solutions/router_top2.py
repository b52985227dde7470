"""Worked solution for exercises/router_top2.py (lesson: 02_model.py, section 5, route)."""
from __future__ import annotations

import torch


def router_top2(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Router logits (N, E) → (top_w (N, 2) summing to 1 per row, top_e (N, 2) expert ids)."""
    probs = torch.softmax(logits.float(), dim=-1)          # (N, E); softmax subtracts the max: no overflow
    top_w, top_e = probs.topk(2, dim=-1)                   # (N, 2), (N, 2)
    top_w = top_w / top_w.sum(dim=-1, keepdim=True)        # the two weights sum to 1
    return top_w, top_e
