"""Worked solution for exercises/model_forward.py (lesson: 02_model.py, section 6, Block, LLM.forward)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x (..., C) / sqrt(mean over C of x² + eps) · weight (C,)."""
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * weight


def block_forward(x: torch.Tensor, block: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """One pre-norm block: x + attn(norm(x)), then + moe(norm(x)); returns (x, the block's balance loss)."""
    x = x + block["attn"](rmsnorm(x, block["ln1"]))                  # (B, T, C)
    y, balance = block["moe"](rmsnorm(x, block["ln2"]))
    return x + y, balance


def llm_forward(idx: torch.Tensor, wte: torch.Tensor, blocks: list[dict], ln_f_weight: torch.Tensor,
                targets: torch.Tensor | None = None, training: bool = False, balance_coef: float = 0.01):
    """(logits (B, T, V), loss or None) of linnet from its parts: embedding → pre-norm blocks → norm → tied head."""
    x = wte[idx]                                                     # (B, T, C): row idx[b, t] of wte
    balances = []
    for block in blocks:                                             # pre-norm: normalise the branch's input
        x, balance = block_forward(x, block)                         # (B, T, C)
        balances.append(balance)
    x = rmsnorm(x, ln_f_weight)                                      # the final norm
    logits = x @ wte.T                                               # (B, T, V): the head IS the embedding
    if targets is None:
        return logits, None
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
    if training and balances:                                        # + coef × mean over layers
        loss = loss + balance_coef * torch.stack(balances).mean()
    return logits, loss
