"""Files that appear whole or not at all, plots saved with a caption, and one writer per folder."""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from house.cli import UserError, check_writable
from house.paths import shown


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; rename it to `path` only if the block succeeds.

    A crash, Ctrl-C or error inside the block leaves no half-written `path` behind (and an older
    complete `path`, if there was one, untouched). A full disk is a UserError that says so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        if not disk_is_full(e):
            raise
        written = tmp.stat().st_size if tmp.exists() else 0
        raise UserError(f"the disk is full: {shown(path)} could not be written ({written / 1e6:,.1f} MB written "
                        f"before it filled, {free_mb(path.parent):,.1f} MB free now; the file needs more than that): free "
                        f"some space or pass --out on another disk; the earlier {path.name}, if any, is untouched") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def disk_is_full(error: BaseException) -> bool:
    """ENOSPC/EDQUOT from the OS, or the words torch.save ("unexpected pos", "file write failed") and numpy's
    tofile ("500000 requested and 59328 written", an OSError without errno) use for it."""
    import errno
    import re

    if isinstance(error, OSError) and error.errno is not None:
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return (any(words in str(error) for words in ("unexpected pos", "file write failed", "No space left"))
            or re.fullmatch(r"\d+ requested and \d+ written", str(error)) is not None)


def free_mb(folder: Path) -> float:
    import shutil

    try:
        return shutil.disk_usage(folder).free / 1e6
    except OSError:
        return float("nan")


def write_json(path: str | os.PathLike, data) -> Path:
    """Write `data` as indented JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def save_plot(fig, out_dir: str | os.PathLike, name: str, caption: str, quiet: bool = False) -> Path:
    """Save a matplotlib figure as `out_dir/name.png` (atomically) and print its one-line caption.

    Every `plot_*` function of a lesson returns a figure; the caller saves it here. The caption says what
    a student should look at, e.g.
    `plot: out/01_tokenizer/compression.png — bytes per token keep rising with vocab, but slower`.
    `quiet=True` saves without printing (a plot refreshed during a run, captioned once at the end)."""
    import matplotlib.pyplot as plt

    path = Path(out_dir) / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    if not quiet:
        print(f"plot: {path} — {caption}")
    return path


def check_results_file(path: Path, label: str, overwrite: bool = False, replaceable=()) -> None:
    """Before any work: `path` (a results.json naming its "model") can be written, and holds no other model's
    results unless `overwrite` — re-scoring the same model, or one of the `replaceable` labels, replaces it."""
    check_writable(path.parent)
    try:
        held = json.loads(path.read_text()).get("model") if path.is_file() else None
    except (ValueError, AttributeError, OSError):
        held = "something else"
    if held not in (None, label, *replaceable) and not overwrite:
        raise UserError(f"{shown(path)} holds the results of {held}: pass another --out, or --overwrite "
                        f"to replace them")


LOCK_NAME = ".lock"


def pid_is_alive(pid: int) -> bool:
    """Is process `pid` running (on this machine)? This process's own pid counts as not alive: a file it
    left from an earlier life (same pid reused after a restart) is stale."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                 # alive, owned by someone else
    except OverflowError:
        return False
    return True


def lock_owner(path: Path) -> int | None:
    """The pid written in a lock file; None if it is unreadable or holds no number."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike):
    """Hold `folder/.lock` (holding this process's pid) while writing in `folder`; removed at the end.

    Two runs writing one folder interleave their logs and lose a checkpoint, so a second one is refused with
    a UserError naming the first one's pid. A lock whose process is gone (kill -9, a reboot) is taken over
    with a note. Used by 01, 04, 05 and 02's --export on their --out."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            owner = lock_owner(path)
            if owner is not None and pid_is_alive(owner):
                raise UserError(f"{shown(folder)} is in use by another run (pid {owner}): wait for it to "
                                f"finish or stop it, or pass another --out") from None
            if owner is None:   # being written this instant by another process, or damaged: look again
                time.sleep(0.2)
                if lock_owner(path) is not None:
                    continue
            print(f"note: {shown(path)} was left by process {owner}, which is no longer running: taking it over")
            path.unlink(missing_ok=True)
    else:
        raise UserError(f"cannot take the lock {shown(path)}: delete it if no other run uses {shown(folder)}")
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    try:
        yield path
    finally:
        if lock_owner(path) == os.getpid():
            path.unlink(missing_ok=True)
