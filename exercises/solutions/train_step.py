"""Worked solution for exercises/train_step.py (lesson: 05_train.py, section 3, train_step)."""
from __future__ import annotations

import torch


def train_step(model, optimizers, batches, grad_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over the micro-batches `batches`: returns (mean loss, grad norm before clipping)."""
    batches = list(batches)
    n = len(batches)
    loss_sum = torch.zeros(())
    for x, y in batches:
        _, loss = model(x, y)
        (loss / n).backward()                 # the gradients add up to those of the MEAN loss
        loss_sum += loss.detach()
    # clip: one global norm over every gradient, all scaled by the same factor if it is too large
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    total_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = torch.clamp(grad_clip / (total_norm + 1e-6), max=1.0)
    for g in grads:
        g.mul_(scale)
    for opt in optimizers:
        opt.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)       # the next step starts from zero gradients
    return loss_sum / n, total_norm
