"""house — not a lesson: the conventions every numbered file shares, kept out of the lessons' way.

Nothing here teaches a concept of linnet; it is the plumbing each lesson would otherwise repeat. Read
it once, or never: every lesson imports it as `import house` and uses only what is listed here.

  1. Paths and options: REPO_DIR, the data folders, `add_common_args` (`--preset tiny|linnet`, `--out`),
     `default_device`, `shown` (a path, short), `has_internet`.
  2. Files that appear whole or not at all: `atomic_path` (temp file + rename), `write_json`;
     plots: every `plot_*` function in a lesson RETURNS a matplotlib figure, and the caller saves it with
     `save_plot(fig, out_dir, name, caption)`, which writes `name.png` and prints the caption line
     (`plot: out/01_tokenizer/compression.png — what to look at`).
  3. Reading text, streamed: .jsonl (a "text" field), .jsonl.zst, .txt, .parquet (`iter_texts`,
     `list_text_files`, `open_text`).
  4. The tiny preset's text: `--data PATH`, or `--data hub` (a few MB of fineweb-edu from the Hub), else the
     corpus that ships in embedded/ (`find_tiny_data`): the same text on every machine, no network needed.
  5. The command line: `ArgumentParser` (a bad option ends in one line), `type=` checks for numbers
     (`positive_int`, `non_negative_int`, `seed`, `positive_float`, `non_negative_float`, `probability`), and
     `check_writable(out_dir)` (called first in main: an --out we cannot write stops in one line).
  6. One writer per folder: `folder_lock(out_dir)` (a `.lock` file with the owner's pid; a second run
     stops in one line, a dead owner's lock is taken over), `pid_is_alive`.

How a fast path lives beside its plain one (one way, everywhere)
  When speed needs code that is hard to read, the lesson keeps BOTH versions, side by side, with the
  same signature: `NAME` (fast, what runs by default) and `NAME_reference` (plain, the one to learn from).
  The caller chooses with an ordinary argument — a config field such as `LLMConfig.moe_impl`, or a
  keyword such as `reference=True` — never by patching a module or filling a slot on an object.
  For each pair, one test (`test_NAME_matches_reference` in tests/) checks that they agree, and the
  benchmarks choose between them with the same argument the lessons use.

Errors a user can cause end with one sentence that says what to do (`raise SystemExit("error: ...")`),
never with a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

# --- 1. Paths, the options every script has, the device ---------------------------------------------

REPO_DIR = Path(__file__).resolve().parent
# Where every script's default outputs go (`--out` defaults, and what 05/06 read by default): out/ in the repo.
# LINNET_OUT moves all of them at once; the tests point it at a temporary folder, so they never touch yours.
OUT_DIR = Path(os.environ.get("LINNET_OUT") or REPO_DIR / "out")
SHARED_DATA_DIR = REPO_DIR.parent / "shared" / "data"       # staged data on the course machines
SHARED_CORPUS_DIR = SHARED_DATA_DIR / "corpus"               # python-docs.jsonl + shakespeare.jsonl
DATA_CACHE_DIR = REPO_DIR / "data"                            # downloads land here (git-ignored)
RAW_DATA_DIR = DATA_CACHE_DIR / "raw"                         # 04_data downloads fineweb-edu + dclm here as .jsonl
TEXT_SUFFIXES = (".jsonl", ".jsonl.zst", ".txt", ".parquet")


def add_common_args(parser: argparse.ArgumentParser, script: str, default_preset: str = "linnet",
                    presets: tuple[str, ...] = ("tiny", "linnet")):
    """Add the two options every lesson has: `--preset` and `--out` (default `out/<script>/`)."""
    parser.add_argument("--preset", choices=list(presets), default=default_preset,
                        help="tiny: seconds on a laptop CPU; linnet: the real job (default: %(default)s)"
                             + ("; *-plus: the same with the linnet+ switches" if len(presets) > 2 else ""))
    parser.add_argument("--out", type=Path, default=OUT_DIR / script,
                        help="where plots and outputs go (default: out/%s/)" % script)
    return parser


def default_device() -> str:
    """"cuda" if a GPU is visible, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


DEVICES = ("cuda", "cpu", "mps")   # what --device accepts (argparse `choices=`)


def pick_device(requested: str | None):
    """The torch.device for `--device` (None: the best available); one line and exit 1 if it is not here."""
    import torch

    name = requested or default_device()
    available = {"cuda": torch.cuda.is_available(), "cpu": True,
                 "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if not available.get(name, False):
        raise SystemExit(f"error: --device {name} but this machine has no {name.upper()} device: "
                         "leave --device out to use the best one it has")
    return torch.device(name)


def shown(path: str | os.PathLike) -> str:
    """`path` relative to the current directory when it is inside it (shorter messages)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# Pinned revisions of the Hub datasets, the ONE place they are set (04's HF_DATASETS and
# fetch_fineweb_sample read them; listing and download both pass them as `revision=`). A repo can rename its
# files (dclm-baseline renamed every `.jsonl.zstd` to `.jsonl.zst` once). These should be commit hashes;
# they are "main" because no machine this course was written on could reach the Hub to look them up — set
# them with `HfApi().dataset_info(repo).sha` where you can, and the download becomes reproducible.
HUB_REVISIONS = {"HuggingFaceFW/fineweb-edu": "main", "mlfoundations/dclm-baseline-1.0": "main"}


def hub_errors() -> tuple[type[Exception], ...]:
    """What the installed huggingface_hub raises when the Hub cannot be reached or answers with an error:
    OSError (its OfflineModeIsEnabled, HfHubHTTPError; requests' errors before hub 1.0) and the HTTP
    client's base error (httpx2 in hub 2.x, httpx in 1.x). Anything else is a bug and is not caught."""
    import importlib

    errors: list[type[Exception]] = [OSError]
    for module in ("httpx2", "httpx", "requests"):
        with contextlib.suppress(ImportError):
            errors.append(importlib.import_module(module).HTTPError)
    return tuple(errors)


def has_internet(host: str | None = None, timeout: float = 3.0) -> bool:
    """Can we download? Asked the way the download itself will ask, never longer than `timeout` seconds.

    For the Hugging Face Hub (`host=None`): False at once when huggingface_hub is offline (`HF_HUB_OFFLINE=1`,
    read by the library itself), else one HEAD request to the library's endpoint (`HF_ENDPOINT`: your mirror,
    if you set one) through its own HTTP session, so HTTPS_PROXY and certificates work as for downloads.
    For another `host` (e.g. "raw.githubusercontent.com"): one HEAD request through urllib, which honours
    HTTPS_PROXY too; HF_HUB_OFFLINE=1 means offline for it as well (the tests set it)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if host is None:
        from huggingface_hub.utils import get_session

        try:
            get_session().head(constants.ENDPOINT, timeout=timeout)   # any answer, even 404, means reachable
            return True
        except hub_errors():
            return False
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(f"https://{host}", method="HEAD"), timeout=timeout).close()
        return True
    except urllib.error.HTTPError:
        return True                                                    # the server answered
    except OSError:                                                    # URLError, timeouts, refused
        return False


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; rename it to `path` only if the block succeeds.

    A crash, Ctrl-C or error inside the block leaves no half-written `path` behind (and an older
    complete `path`, if there was one, untouched)."""
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
        raise SystemExit(f"error: the disk is full: {shown(path)} could not be written ({written / 1e6:,.1f} MB written "
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


# --- 2. Plots: plot_* functions return a figure; save_plot writes it and prints what to look at ------

def save_plot(fig, out_dir: str | os.PathLike, name: str, caption: str, quiet: bool = False) -> Path:
    """Save a matplotlib figure as `out_dir/name.png` (atomically) and print its one-line caption.

    The caption says what a student should look at, e.g.
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


# --- 3. Reading text: .jsonl (a "text" field), .txt and .parquet, streamed -------------------------

def list_text_files(paths: Iterable[str | os.PathLike], suffixes=TEXT_SUFFIXES) -> list[Path]:
    """Expand files and directories into a sorted list of readable text files.

    >>> [p.name for p in list_text_files([EMBEDDED_CORPUS_DIR])]
    ['python-docs.jsonl.zst', 'shakespeare.jsonl.zst']"""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(suffixes))
        elif p.is_file():
            if not p.name.endswith(suffixes):
                raise SystemExit(f"error: {p} is not a {'/'.join(suffixes)} file: pass text files or a directory of them")
            files.append(p)
        else:
            raise SystemExit(f"error: {p} does not exist: check the path you passed")
    return files


def iter_jsonl_texts(lines: Iterable[str], path: Path) -> Iterator[str]:
    """The non-empty "text" field of every JSON line (`path` only names the file in the error)."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)["text"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise SystemExit(f"error: {path}:{lineno} is not a JSON object with a \"text\" field: fix or remove that line")
        if not isinstance(text, str):
            raise SystemExit(f"error: {path}:{lineno} has a \"text\" field that is not a string "
                             f"({type(text).__name__}): fix or remove that line")
        if text:
            yield text


@contextlib.contextmanager
def open_text(path: str | os.PathLike):
    """Open a UTF-8 text file for reading; a `.zst` file (zstandard, as in embedded/) is unpacked as a
    stream, so `for line in f` works the same on `hellaswag_val.jsonl` and `hellaswag_val.jsonl.zst`."""
    path = Path(path)
    if not path.name.endswith(".zst"):
        with open(path, encoding="utf-8") as f:
            yield f
        return
    import io

    try:
        import zstandard
    except ImportError:
        raise SystemExit(f"error: reading {shown(path)} needs the zstandard package, which is not installed: "
                         f"pip install zstandard (it is in requirements.txt), or pass the unpacked .jsonl") from None
    try:
        with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as reader:
            yield io.TextIOWrapper(reader, encoding="utf-8")
    except zstandard.ZstdError as e:
        raise SystemExit(f"error: {path} is not valid zstandard data ({e}): restore it (git checkout) or leave it out")


def iter_file_texts(path: Path) -> Iterator[str]:
    """Yield the documents of one file, one at a time (memory does not grow with the file).

    .jsonl (or .jsonl.zst, zstandard-compressed): one JSON object per line, its "text" field; .txt: the
    whole file is one document; .parquet: the "text" column, one row group at a time."""
    try:
        if path.name.endswith((".jsonl", ".jsonl.zst")):
            with open_text(path) as f:
                yield from iter_jsonl_texts(f, path)
        elif path.name.endswith(".txt"):
            text = path.read_text(encoding="utf-8")
            if text:
                yield text
        elif path.name.endswith(".parquet"):
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            if "text" not in pf.schema_arrow.names:
                raise SystemExit(f"error: {path} has no 'text' column (columns: {pf.schema_arrow.names})")
            for g in range(pf.num_row_groups):
                for text in pf.read_row_group(g, columns=["text"]).column("text").to_pylist():
                    if text:
                        yield text
        else:
            raise SystemExit(f"error: {path}: unknown file type; use .jsonl, .jsonl.zst, .txt or .parquet")
    except UnicodeDecodeError:
        raise SystemExit(f"error: {path} is not UTF-8 text: convert it or leave it out")
    except OSError as e:
        raise SystemExit(f"error: cannot read {path} ({e.strerror or e}): check it exists and is readable")


def iter_texts(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Yield every document of every file under `paths`, in sorted file order."""
    for f in list_text_files(paths):
        yield from iter_file_texts(f)


# --- 4. The tiny preset's data: --data PATH, --data hub (fineweb-edu), else the embedded corpus ---

FINEWEB_REPO = "HuggingFaceFW/fineweb-edu"
FINEWEB_SAMPLE_FILE = "sample/10BT/000_00000.parquet"
FINEWEB_CACHE = DATA_CACHE_DIR / "fineweb-edu-sample.jsonl"     # --data hub: downloaded once, then read from here
HUB_DATA = "hub"                                                 # the --data value that asks for the fineweb-edu sample
EMBEDDED_DIR = REPO_DIR / "embedded"                             # ships with the repo: embedded/README.md
EMBEDDED_CORPUS_DIR = EMBEDDED_DIR / "corpus"                    # python-docs + Shakespeare, .jsonl.zst, 8.4 MB of text
EMBEDDED_HELLASWAG = EMBEDDED_DIR / "hellaswag" / "hellaswag_val.jsonl.zst"   # all 10,042 validation examples


def fetch_fineweb_sample(cache_dir: Path = DATA_CACHE_DIR, max_bytes: int = 5_000_000) -> Path:
    """Download a few MB of fineweb-edu: the first row group of its first sample-10BT Parquet file.

    Reads only that row group over HTTP range requests (`HfFileSystem` + `pyarrow`), not the ~2 GB
    file, keeps documents until `max_bytes` of text, and caches them as `fineweb-edu-sample.jsonl`."""
    out = Path(cache_dir) / "fineweb-edu-sample.jsonl"
    if out.exists():
        return out
    import pyarrow.parquet as pq
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem()
    with fs.open(f"datasets/{FINEWEB_REPO}/{FINEWEB_SAMPLE_FILE}", "rb", revision=HUB_REVISIONS[FINEWEB_REPO]) as remote:
        texts = pq.ParquetFile(remote).read_row_group(0, columns=["text"]).column("text").to_pylist()
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        total = 0
        for i, text in enumerate(texts):
            f.write(json.dumps({"text": text, "id": f"fineweb-edu-{i}"}) + "\n")
            total += len(text.encode("utf-8"))
            if total >= max_bytes:
                break
    return out


def find_tiny_data(data: str | os.PathLike | None = None) -> list[Path]:
    """The text the tiny preset trains on:

    1. `--data PATH` if given (files or directories of .jsonl/.jsonl.zst/.txt/.parquet);
    2. `--data hub`: a few MB of fineweb-edu from the Hub (linnet's own kind of text; downloaded once into
       data/, then read from there, online or not);
    3. otherwise the corpus in embedded/corpus (Python docs + Shakespeare, in the repo): the same text on a
       course machine, a laptop with internet and a bare clone on a train, so the same numbers everywhere.

    >>> [p.name for p in find_tiny_data()]
    ['python-docs.jsonl.zst', 'shakespeare.jsonl.zst']"""
    if data is not None and str(data) == HUB_DATA and not Path(data).exists():
        return [fineweb_sample()]
    if data is not None:
        return list_text_files([data])
    files = list_text_files([EMBEDDED_CORPUS_DIR]) if EMBEDDED_CORPUS_DIR.is_dir() else []
    if not files:
        raise SystemExit(f"error: the embedded corpus {shown(EMBEDDED_CORPUS_DIR)} is missing: restore it "
                         f"(git checkout -- embedded) or pass --data PATH (a .jsonl/.txt/.parquet file or a directory)")
    return files


def fineweb_sample() -> Path:
    """`--data hub`: the cached fineweb-edu sample, else a download of it, else one line saying why not."""
    if FINEWEB_CACHE.is_file():
        return FINEWEB_CACHE
    if not has_internet():
        raise SystemExit("error: --data hub needs the Hugging Face Hub, which cannot be reached: "
                         "drop --data to train on the embedded corpus, or pass --data PATH")
    try:
        return fetch_fineweb_sample(FINEWEB_CACHE.parent)
    except (*hub_errors(), ValueError) as e:  # Hub down, proxy refuses, not Parquet (ValueError)
        raise SystemExit(f"error: could not download the fineweb-edu sample ({type(e).__name__}: {e}): "
                         f"drop --data to train on the embedded corpus, or pass --data PATH")


# --- 5. The command line: one-line errors, numbers that make sense, an --out we can write ------------

class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, except that a bad command line ends in ONE line, exit status 2:
    `error: argument --micro-batch: must be a positive integer, got '0' (see 05_train.py --help)`."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n" if is_first_process() else None)


def is_first_process() -> bool:
    """True except in the processes torchrun starts with RANK 1, 2, …: they stay quiet about a user error
    that rank 0 already reports in one line."""
    return os.environ.get("RANK", "0") == "0"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to a flag's help, except where X is None (the preset decides) or the help
    already names its default."""

    def _get_help_string(self, action):
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


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
    """Create `out_dir` if missing and write + remove a probe file in it, or stop with one line naming `flag`.

    Call it at the start of main, before the expensive work: a read-only --out then costs the user
    a second, not the whole run (and never a half-written output)."""
    out_dir = Path(out_dir)
    probe = out_dir / f".write-probe-{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SystemExit(f"error: cannot write to {shown(out_dir)} ({e.strerror or e}): "
                         f"pass {flag} somewhere writable") from None
    return out_dir


# --- 6. One writer per folder: a lock file that names its owner ------------------------------------------

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

    Two runs writing one folder interleave their logs and lose a checkpoint, so a second one stops in ONE
    line naming the first one's pid. A lock whose process is gone (kill -9, a reboot) is taken over with a
    note. Used by 01, 04, 05 and 02's --export on their --out."""
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
                raise SystemExit(f"error: {shown(folder)} is in use by another run (pid {owner}): wait for it to "
                                 f"finish or stop it, or pass another --out") from None
            if owner is None:   # being written this instant by another process, or damaged: look again
                time.sleep(0.2)
                if lock_owner(path) is not None:
                    continue
            print(f"note: {shown(path)} was left by process {owner}, which is no longer running: taking it over")
            path.unlink(missing_ok=True)
    else:
        raise SystemExit(f"error: cannot take the lock {shown(path)}: delete it if no other run uses {shown(folder)}")
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    try:
        yield path
    finally:
        if lock_owner(path) == os.getpid():
            path.unlink(missing_ok=True)
