"""Worked solution of the build track's Muon (spec: docs/build/muon.md): the optimizer, then linnet's split."""
from __future__ import annotations

import math

import torch


def orthogonalise(G: torch.Tensor, coefficients, steps: int, eps: float) -> torch.Tensor:
    """Quintic Newton-Schulz in bf16, on the wide orientation, after dividing by the Frobenius norm."""
    a, b, c = coefficients
    X = G.bfloat16()
    tall = G.size(0) > G.size(1)
    if tall:
        X = X.T
    X = X / X.norm().clamp(min=eps)
    for _ in range(steps):
        A = X @ X.T
        B = torch.addmm(A, A, A, beta=b, alpha=c)        # b·A + c·A·A
        X = torch.addmm(X, B, X, beta=a)                 # a·X + B·X
    return X.T if tall else X


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=(3.4445, -4.775, 2.0315), eps=1e-7, ns_steps=5, adjust_lr_fn=None):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                      ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                                      adjust_lr_fn=adjust_lr_fn))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                buf.lerp_(p.grad, 1 - mu)                                  # μ·buf + (1−μ)·g
                update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
                O = orthogonalise(update, group["ns_coefficients"], group["ns_steps"], group["eps"])
                A, B = p.shape
                ratio = 0.2 * math.sqrt(max(A, B)) if group["adjust_lr_fn"] == "match_rms_adamw" \
                    else math.sqrt(max(1, A / B))
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(O, alpha=-lr * ratio)


def build_optimizers(model, lr=1e-3, weight_decay=0.1, muon_lr_multiplier=10.0):
    muon, adamw = [], []
    for name, p in model.named_parameters():
        hidden_matrix = p.ndim == 2 and "wte" not in name and "lm_head" not in name
        (muon if hidden_matrix else adamw).append(p)
    return [Muon(muon, lr=lr * muon_lr_multiplier, weight_decay=weight_decay),
            torch.optim.AdamW(adamw, lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay)]
