"""Check an exercise against the lesson's real code: `python -m exercises.check NAME` (from the repo root).

    python -m exercises.check rope                # checks exercises/rope.py, the file you edit
    python -m exercises.check rope --solution     # checks the worked solution in exercises/solutions/
    python -m exercises.check --all               # every exercise, one line each, then "N of M exercises correct"
    python -m exercises.check --list              # the exercises and the lesson each one belongs to
    python -m exercises.check rope --seed 4711    # replays a run (each run prints its seed first)
    python -m exercises.check --all --strict      # grading: exercises/solutions/ importable nowhere

Every check feeds your function seeded random inputs of several shapes, the edge cases that catch the
usual slips, and at least one case drawn from this run's fresh seed, and compares what it returns with
what the NUMBERED LESSON FILE computes on the same input (01_tokenizer.count_pairs, 02_model.apply_rope,
03_muon.newton_schulz, 05_train.lr_multiplier, 06_eval.choose_endings, ...). Nothing here holds a second
copy of the answer: if a lesson changes, the check follows it. A copy of your file runs in its own process
and folder, which cannot reach the lessons or the worked solutions by any name, nor change what grades it
(exercises/checker/sandbox.py, guarded.py). It prints `correct: NAME` and exits 0, or the first wrong value
(which input, expected vs got, where) and exits 1; what your code printed comes on stderr, each line marked `| `.
The checker itself is the package exercises/checker/.
"""
import sys
from pathlib import Path

if not __package__:                    # run as a file (python exercises/check.py): import from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exercises.checker.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
