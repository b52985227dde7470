"""Shared test helpers: load a numbered lesson by name, the data that ships in embedded/, run a script."""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path


REPO_DIR = Path(__file__).resolve().parents[1]
CORPUS = REPO_DIR / "embedded" / "corpus"                  # the tiny preset's text, in the repo (embedded/README.md)
HELLASWAG = REPO_DIR / "embedded" / "hellaswag" / "hellaswag_val.jsonl.zst"   # all 10,042 validation examples
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))


def lesson(name: str):
    """Import a numbered lesson file the way the lessons import each other: lesson("02_model")."""
    return importlib.import_module(name)


def corpus_file(name: str) -> Path:
    """One file of the embedded corpus: corpus_file("shakespeare") → embedded/corpus/shakespeare.jsonl.zst."""
    return CORPUS / f"{name}.jsonl.zst"


def hellaswag_lines(n: int) -> list[str]:
    """The first `n` lines of the HellaSwag validation jsonl (unpacked from the embedded copy)."""
    import itertools

    import house

    with house.open_text(HELLASWAG) as f:
        return [line.rstrip("\n") for line in itertools.islice(f, n)]


def from_a_terminal():
    """Popen's preexec_fn for a script a test signals: the signals of a program started from a terminal (pytest run
    under nohup or in the background passes on an ignored SIGHUP or SIGINT, and the script would never see it)."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def run_script(script: str, *args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python <script> <args>` from the repo root as a user would; returns the finished process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run([sys.executable, str(REPO_DIR / script), *args], cwd=REPO_DIR, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(proc, *needles) -> str:
    """A user error as the house rule wants it: exit status != 0, no traceback, exactly one stderr line that
    starts with "error:" and contains every needle. Returns that line."""
    assert proc.returncode != 0, proc.stdout[-1000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def shakespeare_text(min_chars: int) -> str:
    """The first documents of the embedded corpus's Shakespeare, joined, at least `min_chars` long (or the
    whole file)."""
    import house

    text = ""
    for doc in house.iter_file_texts(corpus_file("shakespeare")):
        text += doc
        if len(text) > min_chars:
            break
    return text
