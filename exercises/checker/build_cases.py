"""Where a build check's lesson-made expectations come from.

In the repo they are computed now, from the lessons, on cases drawn from this run's seed
(exercises/checker/build_references.py). A handout (exercises/handout.py) holds no lesson: its writer computes
the same expectations once, on cases drawn from a seed of its own, and stores them in exercises/checker/cases/
(out of reach of the student's process, like the lessons). References that are libraries — HF's tokenizers,
torch.optim.Muon, AdamW — are used live in both places.
"""
from __future__ import annotations

import importlib

import torch

from exercises.checker.rules import CASES_DIR


def expected(component: str, seed: int) -> dict:
    """The expectations of `component`: stored (a handout) or computed from the lessons with `seed` (the repo);
    `stored` says which."""
    path = CASES_DIR / f"{component}.pt"
    if path.is_file():
        return {**torch.load(path, weights_only=True), "stored": True}
    try:
        references = importlib.import_module("exercises.checker.build_references")
    except ImportError as missing:
        raise RuntimeError(f"the {component} check needs the lessons (the repo) or the stored cases of a handout "
                           f"({path.relative_to(CASES_DIR.parents[2])}); neither is here: {missing}") from None
    if (component, seed) not in COMPUTED:          # one checker process, one computation per case
        COMPUTED[component, seed] = references.MAKERS[component](seed)
    return {**COMPUTED[component, seed], "stored": False}


COMPUTED: dict = {}


def store(components, seed: int, folder) -> list:
    """Compute the expectations of `components` with `seed` and write them to `folder` (a handout's
    exercises/checker/cases/; exercises/handout.py calls this in the repo)."""
    references = importlib.import_module("exercises.checker.build_references")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in components:
        if name in references.MAKERS:
            torch.save(references.MAKERS[name](seed), folder / f"{name}.pt")
            written.append(folder / f"{name}.pt")
    return written
