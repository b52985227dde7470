"""01 — the linnet tokenizer: byte-level BPE, built by hand and then with Hugging Face `tokenizers`.

(Helper-in-progress: sections 1+ are being written. Section 0 — the house conventions that every
later lesson imports from here — is final.)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Iterable, Iterator

# --- 0. House conventions --------------------------------------------------------------------------
# Every lesson (01…06) follows the same rules, and the helpers for them live here, in the first file,
# so that later lessons can import them (`importlib.import_module("01_tokenizer")`) instead of copying:
#   * `--preset tiny|linnet` and `--out DIR` (default `out/<script>/`) on every script;
#   * every plot is a PNG saved with `save_plot`, which prints one caption line saying what to look at;
#   * every file a run writes appears whole or not at all (`atomic_path`: write a temp file, rename);
#   * a mistake the user can fix ends the run with one sentence saying what to do (`SystemExit`).

REPO_DIR = Path(__file__).resolve().parent
SHARED_DATA_DIR = REPO_DIR.parent / "shared" / "data"       # staged data on the course machines
SHARED_CORPUS_DIR = SHARED_DATA_DIR / "corpus"               # python-docs.jsonl + shakespeare.jsonl
DATA_CACHE_DIR = REPO_DIR / "data"                            # downloads land here (git-ignored)
TEXT_SUFFIXES = (".jsonl", ".txt", ".parquet")


def add_common_args(parser: argparse.ArgumentParser, script: str, default_preset: str = "linnet"):
    """Add the two options every lesson has: `--preset` and `--out` (default `out/<script>/`)."""
    parser.add_argument("--preset", choices=["tiny", "linnet"], default=default_preset,
                        help="tiny: seconds on a laptop CPU; linnet: the real job (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=REPO_DIR / "out" / script,
                        help="where plots and outputs go (default: out/%s/)" % script)
    return parser


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
    finally:
        if tmp.exists():
            tmp.unlink()


def save_plot(fig, out_dir: str | os.PathLike, name: str, caption: str) -> Path:
    """Save a matplotlib figure as `out_dir/name.png` (atomically) and print its one-line caption.

    The caption says what a student should look at, e.g.
    `plot: out/01_tokenizer/compression.png — bytes per token keep rising with vocab, but slower`."""
    import matplotlib.pyplot as plt

    path = Path(out_dir) / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    print(f"plot: {path} — {caption}")
    return path


def has_internet(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """True if `host:443` answers within `timeout` seconds (and HF_HUB_OFFLINE is not set)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


# --- 0b. Reading text: .jsonl (a "text" field), .txt and .parquet, streamed -------------------------

def list_text_files(paths: Iterable[str | os.PathLike], suffixes=TEXT_SUFFIXES) -> list[Path]:
    """Expand files and directories into a sorted list of readable text files.

    >>> [p.name for p in list_text_files(["../shared/data/corpus"])]
    ['python-docs.jsonl', 'shakespeare.jsonl']"""
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


def iter_file_texts(path: Path) -> Iterator[str]:
    """Yield the documents of one file, one at a time (memory does not grow with the file).

    .jsonl: one JSON object per line, its "text" field; .txt: the whole file is one document;
    .parquet: the "text" column, one row group at a time."""
    try:
        if path.name.endswith(".jsonl"):
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        text = json.loads(line)["text"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise SystemExit(f"error: {path}:{lineno} is not a JSON object with a \"text\" field: fix or remove that line")
                    if text:
                        yield text
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
            raise SystemExit(f"error: {path}: unknown file type; use .jsonl, .txt or .parquet")
    except UnicodeDecodeError:
        raise SystemExit(f"error: {path} is not UTF-8 text: convert it or leave it out")
    except OSError as e:
        raise SystemExit(f"error: cannot read {path} ({e.strerror or e}): check it exists and is readable")


def iter_texts(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Yield every document of every file under `paths`, in sorted file order."""
    for f in list_text_files(paths):
        yield from iter_file_texts(f)


# --- 0c. The tiny preset's data: --data, else a slice of fineweb-edu, else ../shared/data/corpus ---

FINEWEB_REPO = "HuggingFaceFW/fineweb-edu"
FINEWEB_SAMPLE_FILE = "sample/10BT/000_00000.parquet"


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
    with fs.open(f"datasets/{FINEWEB_REPO}/{FINEWEB_SAMPLE_FILE}", "rb") as remote:
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
    """The text the tiny preset trains on, in this order of preference:

    1. `--data PATH` if given (files or directories of .jsonl/.txt/.parquet);
    2. a few MB of fineweb-edu from the Hub (what a new user with internet gets);
    3. `../shared/data/corpus` if present (the course machines, which have no internet);
    4. otherwise stop with one line saying what to pass."""
    if data is not None:
        return list_text_files([data])
    if has_internet():
        try:
            return [fetch_fineweb_sample()]
        except Exception as e:  # the Hub is down, a proxy blocks it, ...: fall through to local data
            print(f"note: could not download the fineweb-edu sample ({type(e).__name__}: {e}); using local data",
                  file=sys.stderr)
    if SHARED_CORPUS_DIR.is_dir():
        return list_text_files([SHARED_CORPUS_DIR])
    raise SystemExit("error: no text to train on: pass --data PATH (a .jsonl/.txt/.parquet file or a directory of them)")
