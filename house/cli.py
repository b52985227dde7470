"""The command line: errors a user can fix, how a script says them, the options every script has, numbers
that make sense, the device, an --out we can write.

Library code RAISES: a mistake the user can fix is a `UserError` (a missing path is a `NotFound`, which is
also a FileNotFoundError), a bad argument from calling code a ValueError. Only a script SPEAKS: its `main`
is decorated with `speaks`, which turns a UserError into one line `error: …` on stderr and exit status 1
(never a traceback); anything else is a bug and keeps its traceback. A notebook or your own script calls
the functions and catches the exceptions like any other. SIGTERM and SIGHUP (a terminal that went away) stop a
script as Ctrl-C does (`Stopped`, a KeyboardInterrupt), unless they are ignored (`nohup`)."""
from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import math
import os
import signal
import sys
import threading
from pathlib import Path

from house.paths import OUT_DIR, shown


class UserError(Exception):
    """Something the user can fix (a path, a flag, a file that does not fit), said in one sentence that names
    the fix. A script's main prints it as `error: <sentence>` (`speaks`)."""


class NotFound(UserError, FileNotFoundError):
    """A path the user named does not exist: a UserError, and a FileNotFoundError for calling code."""


def speaks(main):
    """Decorate a script's `main`: a UserError ends the program with one line `error: …` and exit status 1;
    Ctrl-C with one line `interrupted: …` and status 130 (a script that keeps something says what, itself)."""
    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            with stopping_at_once():   # SIGTERM and SIGHUP: as Ctrl-C, exit status 128 + the signal
                return main(*args, **kwargs)
        except UserError as e:
            raise SystemExit(f"error: {e}" if is_first_process() else 1) from None
        except KeyboardInterrupt as stop:
            print("\ninterrupted: stopped (files written before are untouched; nothing was half-written)", file=sys.stderr)
            stopping_for_good(args or kwargs)
            raise SystemExit(exit_status(stop)) from None
        except SystemExit as e:       # a script that said itself what a signal stopped (04, 05)
            if isinstance(e.code, int) and e.code > 128:
                stopping_for_good(args or kwargs)
            raise
    return run


def stopping_for_good(called_with_arguments) -> None:
    """A script stopped by a signal is on its way out: another Ctrl-C while Python exits (its atexit callbacks)
    would only print a traceback, so the stop signals are ignored from here. Not for a main() called with
    arguments (a test, a notebook): the caller goes on."""
    if not called_with_arguments and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)


class Stopped(KeyboardInterrupt):
    """SIGTERM (a scheduler, `kill`) or SIGHUP (a closed terminal, a dropped ssh), raised where the script is, as
    Ctrl-C raises KeyboardInterrupt: every `except KeyboardInterrupt` cleans up and says what it kept."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def exit_status(stop: BaseException) -> int:
    """128 + the signal that stopped a script: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + getattr(stop, "signum", signal.SIGINT)


@contextlib.contextmanager
def stopping_at_once(signals=(signal.SIGTERM, signal.SIGHUP)):
    """Within it, SIGTERM and SIGHUP raise `Stopped`; a SIGHUP ignored when it starts stays ignored (`nohup python
    05_train.py` keeps running when its terminal closes), and the handlers before are put back on the way out.
    Outside the main thread (where no handler can be set) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        if signum == signal.SIGHUP:
            keep_printing()
        raise Stopped(signum)
    previous = {sig: signal.getsignal(sig) for sig in signals if not nohup(sig)}
    try:
        for sig in previous:
            signal.signal(sig, stop)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def nohup(sig: int) -> bool:
    """True for SIGHUP started ignored (`nohup`, a job meant to outlive its terminal): it stays ignored."""
    return sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN


class Unbroken:
    """A text stream whose writes never raise: what it cannot write (a terminal gone: EIO) it drops, and tells
    `on_lost()` (05: the terminal went away, maybe before its SIGHUP arrives: save and stop as on SIGHUP)."""

    def __init__(self, stream, on_lost=None):
        self.stream, self.on_lost = stream, on_lost

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except (OSError, ValueError) as e:
            self.lost(e)
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError) as e:
            self.lost(e)

    def lost(self, error: Exception) -> None:
        """EIO (a hung-up terminal) or EPIPE (the reader of a pipe gone): the terminal went away."""
        if self.on_lost is not None and getattr(error, "errno", None) in (errno.EIO, errno.EPIPE):
            self.on_lost()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def keep_printing(on_lost=None) -> None:
    """After SIGHUP the terminal may be gone, and a write to it fails (EIO): from now on sys.stdout and sys.stderr
    drop what they cannot write instead of raising, so that a script cleans up (05: saves) and stops as it says,
    even unheard. `on_lost()`, if given, is called on each write that failed."""
    for name in ("stdout", "stderr"):
        if not isinstance(getattr(sys, name), Unbroken):
            setattr(sys, name, Unbroken(getattr(sys, name)))
        if on_lost is not None:
            getattr(sys, name).on_lost = on_lost


LOG_INTERVAL = 30.0   # seconds between two of a progress bar's lines in a log


def progress(iterable=None, file=None, **kwargs):
    """tqdm's progress bar on a terminal. In a log (output that is not a terminal, e.g. `> log.txt`, a pipe, a
    notebook) one plain line every 30 s instead, and one at the end: a bar rewritten in place would stay in the
    file as one very long line. A `mininterval` given applies on a terminal only. Change the postfix with
    `set_postfix(..., refresh=False)`: a refresh draws the bar at once, so in a log it would be a line each time."""
    from tqdm import tqdm

    file = file or sys.stderr
    if not file.isatty():
        kwargs.update(mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL)   # tqdm's monitor redraws after maxinterval
        file = LogLines(file)
    return tqdm(iterable, file=file, **kwargs)


class LogLines:
    """A file for tqdm that turns each in-place redraw ("\r" + bar) into a line of its own."""

    def __init__(self, file):
        self.file = file

    def write(self, text: str) -> None:
        if text.startswith("\r"):
            text = text[1:].rstrip() + "\n" if text[1:].strip() else ""
        elif text == "\n":
            text = ""
        self.file.write(text)

    def flush(self) -> None:
        self.file.flush()


def is_first_process() -> bool:
    """True except in the processes torchrun starts with RANK 1, 2, …: they stay quiet about a user error
    that rank 0 already reports in one line."""
    return os.environ.get("RANK", "0") == "0"


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, except that a bad command line ends in ONE line, exit status 2:
    `error: argument --micro-batch: must be a positive integer, got '0' (see 05_train.py --help)`."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n" if is_first_process() else None)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to a flag's help, except where X is None (the preset decides) or the help
    already names its default."""

    def _get_help_string(self, action):
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_common_args(parser: argparse.ArgumentParser, script: str, default_preset: str = "linnet",
                    presets: tuple[str, ...] = ("tiny", "linnet")):
    """Add the two options every lesson has: `--preset` and `--out` (default `out/<script>/`)."""
    parser.add_argument("--preset", choices=list(presets), default=default_preset,
                        help="tiny: seconds on a laptop CPU; linnet: the real job (default: %(default)s)"
                             + ("; *-plus: the same with the linnet+ switches" if len(presets) > 2 else ""))
    parser.add_argument("--out", type=Path, default=OUT_DIR / script,
                        help="where plots and outputs go (default: out/%s/)" % script)
    return parser


def _number(text: str, kind, what: str, ok) -> int | float:
    """`kind(text)` if it parses and `ok(value)` holds, else argparse's error naming `what` it must be."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not (ok(value) and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse `type=` for counts that must be at least 1 (steps, batch sizes, tokens, vocab)."""
    return _number(text, int, "a positive integer", lambda v: v >= 1)


def non_negative_int(text: str) -> int:
    """argparse `type=` for counts where 0 means "none" or "all" (seeds, limits that say so)."""
    return _number(text, int, "an integer >= 0", lambda v: v >= 0)


def seed(text: str) -> int:
    """argparse `type=` for random seeds: 0 ≤ seed < 2**32 (numpy's limit)."""
    return _number(text, int, "an integer from 0 to 4294967295", lambda v: 0 <= v < 2 ** 32)


def int_from_to(low: int, high: int):
    """An argparse `type=` for whole numbers from `low` to `high`, e.g. a sample length that cannot run for hours."""
    def parse(text: str) -> int:
        return _number(text, int, f"an integer from {low:,} to {high:,}", lambda v: low <= v <= high)
    return parse


def prompt(text: str) -> str:
    """argparse `type=` for a prompt: at least one character (an empty one gives a model nothing to continue)."""
    if not text:
        raise argparse.ArgumentTypeError("must be some text for the model to continue, e.g. "
                                         "--sample \"The capital of France is\", got ''")
    return text


def is_out_of_memory(error: BaseException) -> bool:
    """True for running out of memory: CUDA's OutOfMemoryError, a CPU's MemoryError, or torch's CPU allocator
    ("DefaultCPUAllocator: can't allocate memory" on Linux, "not enough memory" on Windows)."""
    return isinstance(error, MemoryError) or any(words in str(error) for words in (
        "out of memory", "not enough memory", "can't allocate memory", "Cannot allocate memory"))


def positive_float(text: str) -> float:
    """argparse `type=` for finite amounts above 0 (learning rates, megabytes, seconds)."""
    return _number(text, float, "a number > 0", lambda v: v > 0)


def non_negative_float(text: str) -> float:
    """argparse `type=` for finite amounts where 0 is meaningful (temperature 0 = greedy, weight decay)."""
    return _number(text, float, "a number >= 0", lambda v: v >= 0)


def probability(text: str) -> float:
    """argparse `type=` for fractions between 0 and 1 inclusive (dropout, mixing weights)."""
    return _number(text, float, "a number between 0 and 1", lambda v: 0 <= v <= 1)


def check_writable(out_dir: str | os.PathLike, flag: str = "--out DIR") -> Path:
    """Create `out_dir` if missing and write + remove a probe file in it, or raise a UserError naming `flag`.

    Call it at the start of main, before the expensive work: a read-only --out then costs the user
    a second, not the whole run (and never a half-written output)."""
    out_dir = Path(out_dir)
    probe = out_dir / f".write-probe-{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to {shown(out_dir)} ({e.strerror or e}): pass {flag} somewhere writable") from None
    return out_dir


def default_device() -> str:
    """"cuda" if a GPU is visible, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def tiny_without_gpu(args, argv, why: str) -> bool:
    """Whether --preset was given on the command line; if not, the default linnet preset becomes tiny without a
    GPU, said in one line (`why`: what the linnet preset needs). A notebook passes argv; a script, sys.argv."""
    given = any(a == "--preset" or a.startswith("--preset=") for a in (argv if argv is not None else sys.argv[1:]))
    if args.preset == "linnet" and not given and default_device() == "cpu":
        print(f"No CUDA GPU found: running the tiny preset instead ({why}; pass --preset tiny to skip this message).")
        args.preset = "tiny"
    return given


DEVICES = ("cuda", "cpu", "mps")   # what --device accepts (argparse `choices=`)


def pick_device(requested: str | None):
    """The torch.device for `--device` (None: the best available); a UserError if it is not here."""
    import torch

    name = requested or default_device()
    available = {"cuda": torch.cuda.is_available(), "cpu": True,
                 "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if not available.get(name, False):
        raise UserError(f"--device {name} but this machine has no {name.upper()} device: "
                        "leave --device out to use the best one it has")
    return torch.device(name)
