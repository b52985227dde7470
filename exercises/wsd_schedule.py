"""Exercise wsd_schedule — linnet's warm-up / stable / decay learning rate (lesson: 05_train.py,
section 2, lr_multiplier).

The learning rate at step s is peak_lr · lr_multiplier(s). WSD ("warmup-stable-decay") has three parts,
measured in planned steps P (linnet: P = 18,965):

    warmup      = max(1, int(warmup_frac · P))          # linnet: 1,896 steps
    decay_start = int(decay_start_frac · P)              # linnet: 15,172
    step < warmup:        (step + 1) / warmup            # linear; step 0 already gets 1/warmup, not 0
    step < decay_start:   1.0                            # stable
    otherwise:            progress = min(1, (step - decay_start) / max(1, P - 1 - decay_start))
                          min_ratio + (1 - min_ratio) · 0.5 · (1 + cos(π · progress))

so the cosine reaches min_ratio exactly at the last planned step P - 1 and stays there after it.
min_ratio = min_lr / lr (linnet: 6e-5 / 1e-3 = 0.06). Steps count from 0. linnet stopped at step 5,281 —
deep in the stable phase, so it never saw its decay.

Examples (linnet): lr_multiplier(0, 18965) = 1/1896 ≈ 0.000527; lr_multiplier(1895, 18965) = 1.0;
lr_multiplier(10000, 18965) = 1.0; lr_multiplier(18964, 18965) = 0.06.

Check:     python -m exercises.check wsd_schedule   (every step of several schedules vs 05's lr_multiplier)
Solution:  exercises/solutions/wsd_schedule.py
"""
from __future__ import annotations

import math


def lr_multiplier(step: int, planned_steps: int, warmup_frac: float = 0.10, decay_start_frac: float = 0.80,
                  min_ratio: float = 0.06) -> float:
    """Fraction of the peak learning rate at `step` (0-based) for a WSD schedule of `planned_steps`."""
    raise NotImplementedError("TODO in exercises/wsd_schedule.py: warm-up (step + 1) / warmup, then 1.0, then "
                              "a cosine from 1 to min_ratio between decay_start and planned_steps - 1")
