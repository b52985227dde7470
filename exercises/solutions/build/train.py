"""Worked solution of the build track's training step and loop (spec: docs/build/train.md)."""
from __future__ import annotations

import math
import os

import torch


def lr_multiplier(step, planned_steps, warmup_frac=0.1, decay_start_frac=0.8, min_ratio=0.06) -> float:
    warmup = max(1, int(warmup_frac * planned_steps))
    decay_start = int(decay_start_frac * planned_steps)
    if step < warmup:
        return (step + 1) / warmup
    if step < decay_start:
        return 1.0
    progress = min(1.0, (step - decay_start) / max(1, planned_steps - 1 - decay_start))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def train_step(model, optimizers, micro_batches, grad_clip=1.0):
    total = 0.0
    for x, y in micro_batches:
        _, loss = model(x, y)
        (loss / len(micro_batches)).backward()          # the gradient of the MEAN loss
        total += loss.item()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    for opt in optimizers:
        opt.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    return total / len(micro_batches), float(norm)


def train(model, optimizers, batches, cfg, checkpoint_path, resume=False) -> list[float]:
    start = 0
    if resume:
        saved = torch.load(checkpoint_path, weights_only=True)
        model.load_state_dict(saved["model"])
        for opt, state in zip(optimizers, saved["optimizers"]):
            opt.load_state_dict(state)
        start = saved["step"]
    for group in (g for opt in optimizers for g in opt.param_groups):
        group.setdefault("initial_lr", group["lr"])
    losses = []
    for step in range(start, cfg["max_steps"]):
        multiplier = lr_multiplier(step, cfg["planned_steps"], cfg["warmup_frac"], cfg["decay_start_frac"],
                                   cfg["min_ratio"])
        for group in (g for opt in optimizers for g in opt.param_groups):
            group["lr"] = group["initial_lr"] * multiplier
        loss, _ = train_step(model, optimizers, [(x, y) for x, y in batches[step]], cfg["grad_clip"])
        losses.append(loss)
        if (step + 1) % cfg["checkpoint_every"] == 0:
            tmp = f"{checkpoint_path}.tmp"
            torch.save({"model": model.state_dict(), "optimizers": [o.state_dict() for o in optimizers],
                        "step": step + 1}, tmp)
            os.replace(tmp, checkpoint_path)              # a kill mid-save leaves the last checkpoint whole
    return losses
