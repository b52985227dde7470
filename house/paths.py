"""Where things live: the repo, the outputs every script writes by default, the data caches, the embedded data."""
from __future__ import annotations

import os
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
# Where every script's default outputs go (`--out` defaults, and what 05/06 read by default): out/ in the repo.
# LINNET_OUT moves all of them at once; the tests point it at a temporary folder, so they never touch yours.
OUT_DIR = Path(os.environ.get("LINNET_OUT") or REPO_DIR / "out")
SHARED_DATA_DIR = REPO_DIR.parent / "shared" / "data"       # staged data on the course machines
SHARED_CORPUS_DIR = SHARED_DATA_DIR / "corpus"               # python-docs.jsonl + shakespeare.jsonl
DATA_CACHE_DIR = REPO_DIR / "data"                            # downloads land here (git-ignored)
RAW_DATA_DIR = DATA_CACHE_DIR / "raw"                         # 04_data downloads fineweb-edu + dclm here as .jsonl
EMBEDDED_DIR = REPO_DIR / "embedded"                          # ships with the repo: embedded/README.md
EMBEDDED_CORPUS_DIR = EMBEDDED_DIR / "corpus"                 # python-docs + Shakespeare, .jsonl.zst, 8.4 MB of text
EMBEDDED_HELLASWAG = EMBEDDED_DIR / "hellaswag" / "hellaswag_val.jsonl.zst"   # all 10,042 validation examples


def shown(path: str | os.PathLike) -> str:
    """`path` relative to the current directory when it is inside it (shorter messages)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
