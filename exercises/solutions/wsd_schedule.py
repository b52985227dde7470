"""Worked solution for exercises/wsd_schedule.py (lesson: 05_train.py, section 2, lr_multiplier)."""
from __future__ import annotations

import math


def lr_multiplier(step: int, planned_steps: int, warmup_frac: float = 0.10, decay_start_frac: float = 0.80,
                  min_ratio: float = 0.06) -> float:
    """Fraction of the peak learning rate at `step` (0-based) for a WSD schedule of `planned_steps`."""
    warmup = max(1, int(warmup_frac * planned_steps))
    decay_start = int(decay_start_frac * planned_steps)
    if step < warmup:
        return (step + 1) / warmup                               # warm-up: 1/warmup, 2/warmup, ..., 1
    if step < decay_start:
        return 1.0                                               # stable
    decay_steps = max(1, planned_steps - 1 - decay_start)
    progress = min(1.0, (step - decay_start) / decay_steps)     # 0 → 1 over the decay, then stays 1
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
