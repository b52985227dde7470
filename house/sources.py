"""Where data comes from: the Hugging Face Hub (pinned revisions, is it reachable), the tiny preset's text."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from house.cli import UserError
from house.files import atomic_path
from house.paths import DATA_CACHE_DIR, EMBEDDED_CORPUS_DIR, shown
from house.text import list_text_files

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


# The tiny preset's data: --data PATH, --data hub (fineweb-edu), else the embedded corpus.

FINEWEB_REPO = "HuggingFaceFW/fineweb-edu"
FINEWEB_SAMPLE_FILE = "sample/10BT/000_00000.parquet"
FINEWEB_CACHE = DATA_CACHE_DIR / "fineweb-edu-sample.jsonl"     # --data hub: downloaded once, then read from here
HUB_DATA = "hub"                                                 # the --data value that asks for the fineweb-edu sample


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
        raise UserError(f"the embedded corpus {shown(EMBEDDED_CORPUS_DIR)} is missing: restore it "
                        f"(git checkout -- embedded) or pass --data PATH (a .jsonl/.txt/.parquet file or a directory)")
    return files


def fineweb_sample() -> Path:
    """`--data hub`: the cached fineweb-edu sample, else a download of it, else one line saying why not."""
    if FINEWEB_CACHE.is_file():
        return FINEWEB_CACHE
    if not has_internet():
        raise UserError("--data hub needs the Hugging Face Hub, which cannot be reached: "
                        "drop --data to train on the embedded corpus, or pass --data PATH")
    try:
        return fetch_fineweb_sample(FINEWEB_CACHE.parent)
    except (*hub_errors(), ValueError) as e:  # Hub down, proxy refuses, not Parquet (ValueError)
        raise UserError(f"could not download the fineweb-edu sample ({type(e).__name__}: {e}): "
                        f"drop --data to train on the embedded corpus, or pass --data PATH")
