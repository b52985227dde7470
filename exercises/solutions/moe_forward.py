"""Worked solution for exercises/moe_forward.py (lesson: 02_model.py, section 5, MoE with moe_impl="reference")."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def moe_forward(x: torch.Tensor, router_w: torch.Tensor, w_v: torch.Tensor, c_proj: torch.Tensor, k: int = 2
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The MoE layer on x (B, T, C): (y (B, T, C), balance loss, a 0-dim tensor)."""
    B, T, C = x.shape
    E = w_v.shape[0]
    xs = x.reshape(B * T, C)                                       # (N, C): every token on its own
    # router: softmax over ALL experts, keep the k most probable, renormalise their weights
    probs = torch.softmax(xs @ router_w.T, dim=-1)                 # (N, E)
    top_w, top_e = probs.topk(k, dim=-1)                           # (N, k), (N, k)
    top_w = top_w / top_w.sum(dim=-1, keepdim=True)
    # experts: each runs SwiGLU on the tokens that chose it; its output is added back, weighted
    y = torch.zeros_like(xs)
    for e in range(E):
        token, slot = torch.nonzero(top_e == e, as_tuple=True)     # which tokens chose e, in which slot
        if token.numel() == 0:
            continue
        gate, value = (xs[token] @ w_v[e].T).chunk(2, dim=-1)      # gate rows come first in w_v[e]
        out = (F.silu(gate) * value) @ c_proj[e].T                 # (n_e, C)
        y.index_add_(0, token, out * top_w[token, slot, None])     # a token can meet e in one slot only
    # balance loss: average each expert's probability over the tokens, then square and sum, times E
    balance = E * (probs.mean(dim=0) ** 2).sum()
    return y.view(B, T, C), balance
