"""Write a track's student tree: `python -m exercises.handout OUT --track build` (from the repo root).

    python -m exercises.handout handout/ --track build            # the build track's handout in handout/
    python -m exercises.handout handout/ --track build --seed 7   # its stored cases drawn from seed 7

The tree holds the specs (docs/, with docs/build/), the track's empty student files (exercises/build/), the
checker (exercises/checker/, exercises/check.py) and a README with the points; NOT the lessons, fast/, house/,
the notebooks, the guided exercises or any solution. The checks that compare with a lesson (02's logits, 05's
schedule, 06's accuracies) cannot run the lesson there: the expectations of cases drawn from the seed are
computed here, now, and stored in exercises/checker/cases/ (the student's process may not read them). Give
the folder out; in it `python -m exercises.check --track build` grades. The teacher's own run, in the repo, draws
fresh cases every time: collect each student's exercises/build/*.py into a copy of the repo and run it there.
"""
from __future__ import annotations

import argparse
import secrets
import shutil
import sys
from pathlib import Path

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exercises.checker import REPO_DIR, build_cases, tracks  # noqa: E402

KEEP = ["docs", "exercises/checker", "exercises/__init__.py", "exercises/check.py", "requirements.txt"]
LEAVE_OUT = {"build_references.py", "cases", "__pycache__"}   # what computes from the lessons; old stored cases


def write_handout(out: Path, track: str, seed: int) -> list[Path]:
    """Write the tree; returns the files written."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: {out} is not empty: give a new folder")
    components = tracks.of_track(track)
    for rel in KEEP + [c.student for c in components]:
        src, dst = REPO_DIR / rel, out / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=lambda folder, names: [n for n in names if n in LEAVE_OUT
                                                                     or n.startswith(".")])
        elif src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    build_cases.store([c.name for c in components], seed, out / "exercises" / "checker" / "cases")
    (out / "README.md").write_text(readme(track, components, seed), encoding="utf-8")
    return sorted(p for p in out.rglob("*") if p.is_file())


def readme(track: str, components, seed: int) -> str:
    rows = "\n".join(f"| {c.name} | `{c.student}` | `{c.spec}` | {c.points} | {c.minutes / 60:g} h | {c.what} |"
                     for c in components)
    total = sum(c.points for c in components)
    return f"""# linnet from scratch — the {track} track

Write each component below from an empty file, with its spec as your only guide. Nothing here holds the code
you are asked to write; the specs hold every shape, key name, order of operations and scoring rule you need, and
`docs/` the model they describe (ARCHITECTURE.md, checkpoint_keys.json, HELLASWAG.md).

| component | your file | spec | points | time | what |
|---|---|---|---|---|---|
{rows}

Total: {total} points.

    pip install -r requirements.txt
    python -m exercises.check --track {track}              # every component: one verdict each, then "N of {len(components)}"
    python -m exercises.check --track {track} NAME         # one component
    python -m exercises.check --track {track} --list       # this table

Each check runs your file in a process of its own and compares what it computes with the real thing: HF's
`tokenizers`, `torch.optim.Muon`, and the course's own model, training code and evaluation, whose outputs on the
cases of this handout (seed {seed}) are stored in `exercises/checker/cases/`. A message names the first thing
that differs (a merge, a key, a layer, a step, an example). Your teacher grades in the full repo, on fresh cases.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exercises.handout", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="a new (or empty) folder")
    parser.add_argument("--track", choices=["build"], required=True,   # the systems track runs in the repo: it needs 02
                        help="which track's components (the systems track is done in the full repo: its checks train 02's model)")
    parser.add_argument("--seed", type=int, default=None, help="the seed of the stored cases (default: a new one)")
    args = parser.parse_args(argv)
    seed = secrets.randbelow(1_000_000) if args.seed is None else args.seed
    files = write_handout(args.out, args.track, seed)
    print(f"wrote {len(files)} files to {args.out} (track {args.track}, stored cases of seed {seed}); "
          f"in it: python -m exercises.check --track {args.track}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
