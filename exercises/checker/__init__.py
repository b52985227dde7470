"""The exercise checker behind `python -m exercises.check` (exercises/check.py is its entry point).

    run.py                  running one check and saying what happened; the command line
    report.py               Wrong / Crashed and the comparisons that raise them; this run's seed
    checks_01_tokenizer.py  the checks of 01's exercises (one module per lesson, through checks_06_eval.py)
    rules.py                what the student's code may not do; the reading of its source (ast)
    sandbox.py              the student's own process, seen from the checker (Sandbox, Zygote)
    student.py              inside that process: the guards and the loop that runs the student's code
    identity.py             inside that process: a file judged by what it is (device, inode), not its name
    guarded.py              what grades the student, listed before each run and put back after it if changed
    wire.py                 how the two processes talk (values by value, the rest by handle)

The checks import the lessons only inside their functions, in the checker's process.
"""
import sys
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))  # the lessons are imported by their file names: 01_tokenizer, ...
