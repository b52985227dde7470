"""Worked solution for exercises/acc_norm.py (lesson: 06_eval.py, section 4)."""
from __future__ import annotations

import numpy as np


def acc_norm_choice(token_logprobs: list[np.ndarray], endings: list[str]) -> int:
    """Index of the ending with the highest summed log-prob per character (first one on a tie)."""
    scores = [float(np.sum(lp)) / len(ending) for lp, ending in zip(token_logprobs, endings)]
    return int(np.argmax(scores))                  # np.argmax returns the first maximum
