"""The tracks beyond the guided exercises: whole components written from an empty file against a spec.

One `Component` a deliverable: its track, name, the file the student writes, the spec that file is written
from, its points, a time estimate (minutes for a student working alone) and the check that grades it. Adding a
component is one line in COMPONENTS; docs/COURSE.md's table of points is tested against this list.

    python -m exercises.check --track build              # every component of the track, then "N of M ..."
    python -m exercises.check --track build model        # one component
    python -m exercises.check --track build --solution   # the worked solutions (exercises/solutions/build/)
    python -m exercises.handout OUT --track build        # the student's tree: specs, empty files, the checker
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from exercises.checker import (REPO_DIR, checks_build_hellaswag, checks_build_model, checks_build_muon,
                               checks_build_tokenizer, checks_build_train, checks_systems)


@dataclass(frozen=True)
class Component:
    track: str
    name: str
    student: str            # the file the student writes, relative to the repo
    spec: str               # what it is written from, relative to the repo
    points: int
    minutes: int            # planning estimate for a student working alone
    check: Callable         # check(ex): raises report.Wrong / Crashed, or returns
    what: str
    time_limit: float = 120.0   # seconds of the student's code per check
    solution_file: str | None = None   # default: exercises/solutions/<track>/<the student's file name>

    def solution(self) -> Path:
        if self.solution_file:
            return REPO_DIR / self.solution_file
        return REPO_DIR / "exercises" / "solutions" / self.track / Path(self.student).name


B = "build"
COMPONENTS = (
    Component(B, "tokenizer", "exercises/build/tokenizer.py", "docs/build/tokenizer.md", 20, 300,
              checks_build_tokenizer.check_tokenizer, "byte-level BPE: HF's merges, exact round trips, a speed floor"),
    Component(B, "model", "exercises/build/model.py", "docs/build/model.md", 30, 480, checks_build_model.check_model,
              "linnet from its published keys: 02's logits, the depth-12 count, greedy generation with a KV cache"),
    Component(B, "muon", "exercises/build/muon.py", "docs/build/muon.md", 15, 180, checks_build_muon.check_muon,
              "Muon (= torch.optim.Muon) and linnet's Muon/AdamW split over several steps"),
    Component(B, "train", "exercises/build/train.py", "docs/build/train.md", 20, 300, checks_build_train.check_train,
              "the WSD schedule, a step that equals one big batch, a loop that resumes to the same losses"),
    Component(B, "hellaswag", "exercises/build/hellaswag.py", "docs/build/hellaswag.md", 15, 180,
              checks_build_hellaswag.check_hellaswag, "HellaSwag acc and acc_norm the lm-eval way, equal to 06's"),
    *(Component("systems", c["name"], c["student_file"], c["spec_file"], c["points"], c["minutes"], c["check"], c["what"],
                solution_file=c["solution_file"]) for c in checks_systems.COMPONENTS),
)
TRACKS = tuple(dict.fromkeys(c.track for c in COMPONENTS))
BY_NAME = {c.name: c for c in COMPONENTS}
assert len(BY_NAME) == len(COMPONENTS), "component names are unique across the tracks"


def of_track(track: str) -> list[Component]:
    return [c for c in COMPONENTS if c.track == track]


def is_empty(path: Path) -> bool:
    """A student file with no code yet: nothing but comments, blank lines and a docstring."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return False
    body = tree.body[1:] if tree.body and isinstance(tree.body[0], ast.Expr) and \
        isinstance(tree.body[0].value, ast.Constant) else tree.body
    return not body
