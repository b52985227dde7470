"""Exercise acc_norm — how HellaSwag picks an ending (lesson: 06_eval.py, section 4, choose_endings).

A language model "answers" a 4-way multiple-choice question without generating anything: for each
ending it gets the log-probability of every token of that ending (given the context), and the
highest-scoring ending is its answer. The score matters:

    acc       score = Σ token log-probs                    long endings pay for every extra token
    acc_norm  score = Σ token log-probs / len(ending)      per CHARACTER of the ending (the figure
                                                           usually quoted, e.g. GPT-2 124M ≈ 31 %)

You write acc_norm. len(ending) is Python's len of the string: characters, not UTF-8 bytes ("é" is one
character but two bytes) and not tokens. The endings you get are already preprocessed, without the
space that joins them to the context. Ties go to the FIRST ending (np.argmax does that).

Example: token log-probs [[-3.0], [-1.0, -1.0, -1.0, -1.0, -1.0]], endings ["a"·30, "b"·40]:
sums -3 and -5 → per character -0.1 and -0.125 → ending 0. (Mean per token, -3 vs -1, would pick 1.)

Shapes: token_logprobs: a list with one 1-D numpy array per ending (its tokens' log-probs);
endings: a list of the same length of strings → the index (an int) of the chosen ending.

Check:     python -m exercises.check acc_norm   (compares with 06's choose_endings(...)["pred_norm"])
Solution:  exercises/solutions/acc_norm.py
"""
from __future__ import annotations

import numpy as np


def acc_norm_choice(token_logprobs: list[np.ndarray], endings: list[str]) -> int:
    """Index of the ending with the highest summed log-prob per character (first one on a tie)."""
    raise NotImplementedError("TODO in exercises/acc_norm.py: score each ending by sum(log-probs) / len(ending) "
                              "and return the index of the best (np.argmax: the first on a tie)")
