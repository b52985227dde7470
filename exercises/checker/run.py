"""The exercises, running one check and saying what happened (`run_check`), and the command line (`main`)."""
from __future__ import annotations

import argparse
import importlib
import importlib.abc
import math
import sys
import tempfile
import traceback
import types
from pathlib import Path

from exercises.checker import (REPO_DIR, checks_01_tokenizer, checks_02_model, checks_03_muon, checks_04_data,
                               checks_05_train, checks_06_eval, checks_systems, tracks)
from exercises.checker.guarded import Guarded, refusal
from exercises.checker.report import Crashed, Wrong, new_seed, use_seed
from exercises.checker.rules import pass_through
from exercises.checker.sandbox import (TIME_LIMIT, ProcessDied, RefusedAtRun, RemoteError, Sandbox, StudentExit,
                                       TimedOut)

# exercise -> (lesson file, what the student implements); the order is the order of the lessons
EXERCISES = {
    "bpe_merge": ("01_tokenizer.py", "count pairs, merge one pair, one BPE training step"),
    "bpe_trainer": ("01_tokenizer.py", "a whole byte-level BPE trainer: words -> the merge list, HF's tie rule"),
    "rope": ("02_model.py", "rotary position embedding, rotate-half pairs, base 50000"),
    "rms_cross_entropy": ("02_model.py", "RMSNorm, a log-sum-exp that never overflows, cross-entropy from the logits"),
    "router_top2": ("02_model.py", "softmax -> top-2 experts -> renormalise the two weights"),
    "balance_loss": ("02_model.py", "linnet's balance loss E * sum_e (mean prob_e)^2"),
    "gqa_attention": ("02_model.py", "causal grouped-query attention: heads, RoPE, QK-norm, repeat KV, mask, softmax"),
    "moe_forward": ("02_model.py", "the MoE layer: router, top-k, SwiGLU experts (reference loop), balance loss"),
    "fp8_quantize": ("02_model.py", "FP8 row-wise scales (powers of two, rounded up) and an FP8 matrix product"),
    "model_forward": ("02_model.py", "the whole model from its parts: embedding, blocks, final norm, tied head, loss"),
    "sampling": ("02_model.py", "temperature, top-k, a seeded generator, the KV cache's positions"),
    "newton_schulz_step": ("03_muon.py", "one quintic Newton-Schulz step (3.4445, -4.7750, 2.0315)"),
    "muon_update": ("03_muon.py", "one Muon step: momentum, Nesterov, Newton-Schulz, shape lr, weight decay"),
    "shard_loader": ("04_data.py", "the shard loader: T+1-token windows, seeded epoch order, resume"),
    "wsd_schedule": ("05_train.py", "the warm-up / stable / cosine-decay learning-rate multiplier"),
    "train_step": ("05_train.py", "one training step: accumulation over micro-batches, global-norm clipping"),
    "acc_norm": ("06_eval.py", "HellaSwag acc_norm: summed log-prob / characters, argmax"),
    "hellaswag_requests": ("06_eval.py", "HellaSwag requests: the three tokenisations, lm-eval's whitespace rule"),
}

# the systems track (exercises/build/, specs in exercises/build/specs/): checked by name, not part of --all
SYSTEMS = {component["name"]: component for component in checks_systems.COMPONENTS}

CHECKS = {**checks_01_tokenizer.CHECKS, **checks_02_model.CHECKS, **checks_03_muon.CHECKS,
          **checks_04_data.CHECKS, **checks_05_train.CHECKS, **checks_06_eval.CHECKS, **checks_systems.CHECKS}
assert CHECKS.keys() == EXERCISES.keys() | SYSTEMS.keys()


def exercise_path(name: str, solution: bool = False) -> Path:
    if name in SYSTEMS:
        return REPO_DIR / SYSTEMS[name]["solution_file" if solution else "student_file"]
    return REPO_DIR / "exercises" / ("solutions" if solution else "") / f"{name}.py"


def load_exercise(name: str, solution: bool = False):
    """exercises.<name> (the file a student edits) or exercises.solutions.<name>, imported HERE (for tests)."""
    build = "build." if name in SYSTEMS else ""
    return importlib.import_module(f"exercises.{'solutions.' if solution else ''}{build}{name}")


def run_check(name: str, module, seed: int | None = None, time_limit: float | None = None) -> tuple[bool, str]:
    """Check one exercise; returns (passed, what to print). `module` is the path of the student's file (run
    in its own guarded process, see sandbox.py) or anything with the exercise's functions (run here: tests).
    A file that names a lesson (or the solution) in its code is refused before anything runs. The first line
    of what to print is the checker's verdict; every other line is indented (nothing the student's code says
    can pass for a verdict)."""
    use_seed(seed)
    limit = TIME_LIMIT if time_limit is None else time_limit
    if not isinstance(module, (str, Path)):
        return verdict(*checked(name, module, limit))
    path = Path(module)
    with tempfile.TemporaryDirectory(prefix=f"linnet-check-{name}-", ignore_cleanup_errors=True) as home:
        copy = Path(home) / path.name       # the student's process runs this copy, in a folder of its own:
        copy.write_bytes(path.read_bytes())  # what `ast` reads below is what runs, and no relative path leads home
        import_lessons()                    # the references are loaded before any of the student's code runs
        guarded = Guarded.take(EXERCISES)
        written = sys.dont_write_bytecode
        sys.dont_write_bytecode = True      # nothing of the checker's own changes a guarded folder meanwhile
        try:
            passed, message = checked(name, copy, limit, guarded, shown=path)
        finally:
            sys.dont_write_bytecode = written
            changes = guarded.restore()     # after the student's process ended: put back what changed meanwhile
    if changes:
        passed, message = False, refusal(name, changes)
    return verdict(passed, message.replace(str(copy), str(path)))


def checked(name: str, module, limit: float, guarded: Guarded | None = None, shown: Path | None = None):
    """(passed, message) of checking `module` (the path of the student's copy, or an object with its functions)."""
    is_file = isinstance(module, (str, Path))
    skipped = checks_systems.skip_reason(name)
    if skipped:
        return False, f"skipped: {name} — {skipped}"
    refused = pass_through(name, types.SimpleNamespace(__file__=str(module)) if is_file else module)
    if refused:
        return False, f"refused: {name} — {refused}"
    inside = is_file and shown.resolve().is_relative_to(REPO_DIR)
    where = str(shown.resolve().relative_to(REPO_DIR)) if inside else str(shown) if is_file else name
    sandbox = None
    try:
        if is_file:
            sandbox = Sandbox(name, Path(module), limit, guarded.for_child(name))
        check_of(name)(sandbox or module)
    except NotImplementedError as todo:
        return False, f"not done yet: {todo}"
    except Wrong as wrong:
        return False, f"wrong: {name}\n{wrong.report()}"
    except Crashed as crash:
        error = crash.error
        if isinstance(error, RemoteError):
            kind, trace = error.type_name, error.trace
        else:
            kind = type(error).__name__
            students_frames = error.__traceback__.tb_next   # skip call() (report.py): show the student's code
            trace = "".join(traceback.format_exception(type(error), error, students_frames)).rstrip()
        return False, f"error: {name} raised {kind}: {error}\n  input:    {crash.case}\n{indented(trace)}"
    except RemoteError as error:     # raised outside call(): while the student's object was being used
        return False, f"error: {name} raised {error.type_name}: {error}\n{indented(error.trace)}"
    except ImportError as error:
        return False, f"error: {where} does not import: {error}"
    except AttributeError as missing:  # the module lacks the function the check calls
        if name in tracks.BY_NAME:
            return False, f"error: {name} — {missing}: {tracks.BY_NAME[name].spec} names what the file defines"
        return False, f"error: {name} — {missing}: keep the function names from the exercise file"
    except TimedOut:
        return False, (f"error: {name} took longer than {limit:g} s (the time limit per exercise, --time-limit): "
                       "look for a loop that never ends")
    except StudentExit as stop:
        return False, (f"error: {name} called exit() (SystemExit {stop.args[0]!r}): a function returns its result; "
                       "exit() would end the whole check")
    except ProcessDied:
        return False, f"error: {name} ended its own process: os._exit, abort or a crash in your code"
    except RefusedAtRun as why:
        return False, f"refused: {name} — {why}"
    finally:
        if sandbox is not None:
            printed = sandbox.close()      # returns once the student's process has ended
            if printed.strip():
                print(students_output(name, printed), file=sys.stderr)
    return True, f"correct: {name}"


def check_of(name: str):
    """The check of a guided exercise or of a track's component."""
    return CHECKS[name] if name in CHECKS else tracks.BY_NAME[name].check


def verdict(passed: bool, message: str) -> tuple[bool, str]:
    """The message with its first line the verdict and every other line indented; characters that would move
    the cursor or hide text (a carriage return, an escape sequence) are shown escaped."""
    first, *rest = [visible(line) for line in message.split("\n")]
    return passed, "\n".join([first] + [line if not line or line[0].isspace() else "  " + line for line in rest])


def indented(text: str) -> str:
    return "\n".join("  " + line for line in text.split("\n"))


def visible(line: str) -> str:
    return "".join(c if c.isprintable() or c == "\t" else c.encode("unicode_escape").decode("ascii") for c in line)


def students_output(name: str, printed: str) -> str:
    """What the student's code printed, each line marked `| ` as its own (a line of it is never a verdict)."""
    return f"--- what {name} printed ---\n" + "\n".join(f"| {visible(line)}" for line in printed.rstrip().split("\n"))


def import_lessons() -> None:
    """Import the lessons here, in the checker's process, before the student's code runs: the references the
    checks compute come from the lessons as they were then (a lesson that does not import is reported later,
    by the check that needs it)."""
    for lesson in dict.fromkeys(Path(lesson_file).stem for lesson_file, _ in EXERCISES.values()):
        try:
            importlib.import_module(lesson)
        except Exception:  # noqa: BLE001
            pass


def check_one(name: str, solution: bool, seed: int | None = None, time_limit: float | None = None) -> tuple[bool, str]:
    """Check exercises/<name>.py (or the worked solution) in its own process."""
    path = exercise_path(name, solution)
    if not path.is_file():
        return False, f"error: {path.relative_to(REPO_DIR)} is not there"
    return run_check(name, path, seed, time_limit)


class NoSolutions(importlib.abc.MetaPathFinder):
    """--strict: exercises.solutions cannot be imported in the checker's process either."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("exercises.solutions"):
            raise ImportError(f"--strict: {fullname} is not importable")
        return None


def check_common_args(args) -> int:
    """Refuse a bad --time-limit / --seed, apply --strict; returns this run's seed (printed first)."""
    if args.time_limit is not None and not math.isfinite(args.time_limit):
        raise SystemExit(f"error: --time-limit must be a positive, finite number of seconds, got {args.time_limit:g}")
    if args.time_limit is not None and args.time_limit <= 0:
        raise SystemExit(f"error: --time-limit must be a positive number of seconds, got {args.time_limit:g}")
    if args.seed is not None and args.seed < 0:
        raise SystemExit(f"error: --seed must be 0 or more, got {args.seed}")
    if args.strict:
        if args.solution:
            raise SystemExit("error: --strict grades the students' files; --solution needs exercises/solutions/")
        sys.meta_path.insert(0, NoSolutions())
        for module in [m for m in sys.modules if m.startswith("exercises.solutions")]:
            del sys.modules[module]
    seed = new_seed() if args.seed is None else args.seed
    print(f"seed {seed}: every exercise adds a case drawn from it (--seed {seed} replays this run)"
          + (" — strict" if args.strict else ""), flush=True)
    return seed


def check_component(component: tracks.Component, solution: bool, seed: int | None = None,
                    time_limit: float | None = None) -> tuple[bool, str]:
    """Check a track's component: the student's file (or the worked solution), in its own process."""
    path = component.solution() if solution else REPO_DIR / component.student
    if not path.is_file():
        return False, f"error: {path.relative_to(REPO_DIR)} is not there"
    if tracks.is_empty(path):
        return False, (f"not done yet: {component.name} — {component.student} is empty: write it from "
                       f"{component.spec} ({component.points} points, about {component.minutes / 60:g} h)")
    return run_check(component.name, path, seed, component.time_limit if time_limit is None else time_limit)


def track_main(args) -> int:
    """--track T [NAME]: the track's components, one verdict each, then N of M components and the points."""
    components = tracks.of_track(args.track)
    if args.list:
        for c in components:
            print(f"{c.name:10s} {c.points:3d} points  ~{c.minutes / 60:g} h  {c.student:30s} {c.spec:26s} {c.what}")
        return 0
    if args.all or (args.name and args.name not in [c.name for c in components]):
        raise SystemExit(f"error: --track {args.track} checks its components: name one of "
                         f"{', '.join(c.name for c in components)}, or none for all of them")
    seed = check_common_args(args)
    chosen = [c for c in components if args.name in (None, c.name)]
    n_correct = points = 0
    try:
        for c in chosen:
            passed, message = check_component(c, args.solution, seed, args.time_limit)
            print(message, flush=True)
            n_correct, points = n_correct + passed, points + c.points * passed
    except KeyboardInterrupt:
        print(f"interrupted: {n_correct} of {len(chosen)} components correct so far", flush=True)
        return 130
    print(f"{n_correct} of {len(chosen)} components correct — {points} of {sum(c.points for c in chosen)} points")
    return 0 if n_correct == len(chosen) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exercises.check",
        description="Check an exercise against the numbered lesson's real implementation. Your code runs in its "
                    "own process, which cannot reach the lessons or the worked solutions.",
        epilog="Exercises: " + ", ".join(EXERCISES) + "; the systems track (exercises/build/): " + ", ".join(SYSTEMS)
               + ". Run from the repo root.")
    parser.add_argument("name", nargs="?", help="which exercise (the file name in exercises/, without .py)")
    parser.add_argument("--all", action="store_true", help="check every exercise, one line each")
    parser.add_argument("--solution", action="store_true",
                        help="check the worked solution in exercises/solutions/ instead of your file")
    parser.add_argument("--list", action="store_true", help="list the exercises and their lessons")
    parser.add_argument("--seed", type=int, default=None,
                        help="replay a run: the seed of its fresh cases (each run prints its seed first)")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help=f"seconds your code may run per exercise (default {TIME_LIMIT:g}; a track's "
                             "component: its own, exercises/checker/tracks.py)")
    parser.add_argument("--track", choices=tracks.TRACKS, default=None,
                        help="grade a track's whole components instead (NAME: one of them): "
                             + "; ".join(f"{t}: {', '.join(c.name for c in tracks.of_track(t))}" for t in tracks.TRACKS))
    parser.add_argument("--strict", action="store_true",
                        help="for grading: exercises/solutions/ is importable in neither process; --solution refused")
    args = parser.parse_args(argv)
    if args.track:
        return track_main(args)
    args.time_limit = TIME_LIMIT if args.time_limit is None else args.time_limit
    if args.list:
        for name, (lesson_file, what) in EXERCISES.items():
            print(f"{name:20s} {lesson_file:16s} {what}")
        for name, component in SYSTEMS.items():
            print(f"{name:20s} {'systems track':16s} {component['what']} (spec: {component['spec_file']})")
        return 0
    if args.all == bool(args.name):
        raise SystemExit("error: name one exercise (python -m exercises.check rope) or pass --all; "
                         f"exercises: {', '.join(EXERCISES)}")
    if args.name and args.name not in CHECKS:
        raise SystemExit(f"error: there is no exercise {args.name!r}; choose one of: {', '.join(EXERCISES)} "
                         f"(systems track: {', '.join(SYSTEMS)})")
    seed = check_common_args(args)
    names = list(EXERCISES) if args.all else [args.name]
    n_correct = 0
    try:
        for name in names:
            passed, message = check_one(name, args.solution, seed, args.time_limit)
            print(message, flush=True)
            n_correct += passed
    except KeyboardInterrupt:
        print(f"interrupted: {n_correct} of {len(names)} exercises correct so far", flush=True)
        return 130
    if args.all:
        print(f"{n_correct} of {len(names)} exercises correct")
    return 0 if n_correct == len(names) else 1
