"""Where data comes from: the Hugging Face Hub (pinned revisions, is it reachable; linnet's two datasets,
listed and downloaded file by file into data/raw/), the tiny preset's text, the HellaSwag file: found, and
read row by row with every field checked."""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator

from house.cli import NotFound, UserError, progress
from house.files import atomic_path, write_json
from house.paths import DATA_CACHE_DIR, EMBEDDED_CORPUS_DIR, EMBEDDED_HELLASWAG, RAW_DATA_DIR, SHARED_DATA_DIR, shown
from house.text import list_text_files, open_text, read_documents

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


# linnet's two datasets on the Hub (docs/DATA.md), read by 04_data.py's linnet preset: files are listed on the
# Hub, kept when they start with `prefix` and end with `suffix`, and read in sorted order. Every call names the
# pinned `revision` (HUB_REVISIONS), so a repo that renames its files later does not change what is read.
# Listing walks only the folders the prefix leads to, one at a time, as far as the stream reads: dclm has
# ~28k files, and 250k documents need a few of the first folder's.

HF_CACHE_DIR = DATA_CACHE_DIR / "hf"   # hf_hub_download's cache (resumable downloads)
HF_DATASETS = {
    "fineweb-edu": {"repo": "HuggingFaceFW/fineweb-edu", "prefix": "sample/10BT/", "suffix": ".parquet",
                    "license": "ODC-By 1.0", "revision": HUB_REVISIONS["HuggingFaceFW/fineweb-edu"]},   # sample/10BT/000_00000.parquet, 001_00000.parquet, ... (text column)
    "dclm": {"repo": "mlfoundations/dclm-baseline-1.0", "prefix": "global-shard_", "suffix": ".jsonl.zst",
             "license": "CC-BY-4.0", "revision": HUB_REVISIONS["mlfoundations/dclm-baseline-1.0"]},           # global-shard_01_of_10/local-shard_0_of_10/shard_00000000_processed.jsonl.zst
}


class HFSource:
    """Documents of a dataset on the Hugging Face Hub, file by file: list, download (cached, resumable), read.

    `HFSource("dclm", **HF_DATASETS["dclm"])` reads the real repo; `local_dir=` reads a directory laid out
    like it (the tests use this, and so can you with a mirror made by `huggingface-cli download`).
    Only the files the stream reaches are downloaded: 250k dclm documents need a few of its shards."""
    kind = "huggingface"

    def __init__(self, name: str, repo: str, prefix: str, suffix: str, license: str = "", revision: str = "main",
                 cache_dir: Path = HF_CACHE_DIR, local_dir: str | os.PathLike | None = None):
        self.name, self.repo, self.prefix, self.suffix, self.license = name, repo, prefix, suffix, license
        self.revision, self.cache_dir = revision, Path(cache_dir)
        self.local_dir = Path(local_dir) if local_dir is not None else None
        self.location = (f"hf://datasets/{repo}@{revision}/{prefix}*{suffix}"
                         + (f" (mirror: {self.local_dir})" if self.local_dir else ""))

    def iter_files(self) -> Iterator[str]:
        """Repo-relative paths of the data files in sorted order, listing one folder at a time, lazily.

        Starts in the prefix's folder and goes only into sub-folders the prefix allows; sorting a folder
        as `path + "/"` makes this depth-first walk give exactly the order of the sorted full paths."""
        found, stack = False, [(self.prefix.rpartition("/")[0], True)]   # "sample/10BT"; "" (the root) for dclm
        while stack:
            path, is_dir = stack.pop()
            if not is_dir:
                found = True
                yield path
                continue
            entries = sorted(self.list_folder(path), key=lambda e: e[0] + "/" if e[1] else e[0])
            for entry, entry_is_dir in reversed(entries):      # a stack: pushed last first, popped in order
                if (entry.startswith(self.prefix) or self.prefix.startswith(entry + "/")) if entry_is_dir \
                        else (entry.startswith(self.prefix) and entry.endswith(self.suffix)):
                    stack.append((entry, entry_is_dir))
        if not found:
            raise UserError(f"no {self.prefix}*{self.suffix} files in {self.local_dir or self.repo}@{self.revision}")

    def list_folder(self, folder: str) -> list[tuple[str, bool]]:
        """(repo-relative path, is a folder) of one folder's entries: the mirror's, or the Hub's at `revision`."""
        if self.local_dir is not None:
            if not self.local_dir.is_dir():
                raise NotFound(f"{self.local_dir} does not exist: pass a directory laid out like {self.repo}")
            here = self.local_dir / folder
            return [(p.relative_to(self.local_dir).as_posix(), p.is_dir()) for p in here.iterdir()] if here.is_dir() else []
        import huggingface_hub

        try:
            return [(e.path, isinstance(e, huggingface_hub.hf_api.RepoFolder)) for e in huggingface_hub.HfApi().list_repo_tree(
                self.repo, path_in_repo=folder or None, repo_type="dataset", revision=self.revision)]
        except hub_errors() as e:
            raise UserError(f"cannot list {self.repo}/{folder} at revision {self.revision} on the Hugging Face Hub "
                            f"({type(e).__name__}): check your connection, or pass local files with --source NAME=PATH")

    def list_files(self) -> list[str]:
        """All data files, sorted: ['sample/10BT/000_00000.parquet', ...] (the stream uses `iter_files`)."""
        return list(self.iter_files())

    def fetch(self, filename: str) -> Path:
        """A local path for one repo file: the mirror's, or hf_hub_download's cached copy of it at `revision`."""
        if self.local_dir is not None:
            return self.local_dir / filename
        import huggingface_hub

        try:
            return Path(huggingface_hub.hf_hub_download(self.repo, filename, repo_type="dataset", revision=self.revision,
                                                        cache_dir=self.cache_dir))
        except hub_errors() as e:
            # huggingface_hub (2.x) retries a cut-off transfer itself, then deletes the partial file if it fails.
            raise UserError(f"download of {self.repo}/{filename} failed ({type(e).__name__}): check your connection "
                            f"(HF_ENDPOINT, HTTPS_PROXY) and rerun; the files already downloaded stay in "
                            f"{shown(self.cache_dir)}, this one starts again from its beginning")

    def iter_documents(self) -> Iterator[str]:
        """Every document of every data file, in order; a file is fetched only when the stream reaches it."""
        for filename in self.iter_files():
            yield from read_documents(self.fetch(filename))


def download_raw(source: HFSource, n_documents: int, raw_dir: Path = RAW_DATA_DIR) -> Path:
    """Stream the first `n_documents` of an HF source into raw_dir/<name>.jsonl (as linnet did); kept if done.

    A sidecar <name>.meta.json records the count, so asking for a different count downloads again."""
    out, meta = raw_dir / f"{source.name}.jsonl", raw_dir / f"{source.name}.meta.json"
    want = {"repo": source.repo, "revision": source.revision, "files": f"{source.prefix}*{source.suffix}",
            "documents": n_documents}
    if out.exists() and meta.exists() and json.loads(meta.read_text()) == want:
        return out
    for stale in raw_dir.glob(f".{out.name}.tmp*"):    # a killed download's temp file (atomic_path)
        stale.unlink()
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        documents = source.iter_documents()
        for i in progress(range(n_documents), desc=f"downloading {source.name}", unit="doc"):   # a log: a line every 30 s
            text = next(documents, None)
            if text is None:
                raise UserError(f"{source.repo} has only {i:,} documents: lower --mix {source.name}")
            f.write(json.dumps({"text": text, "id": f"{source.name}-{i}"}) + "\n")
    write_json(meta, want)
    return out


def hub_sources(counts: dict[str, int], cache_dir: Path, raw_dir: Path = RAW_DATA_DIR) -> list[tuple[str, Path, str]]:
    """linnet's sources: the first counts[name] documents of each Hub dataset, downloaded once into
    raw_dir/<name>.jsonl (kept while its .meta.json matches). Returns (name, that file, where it came from)
    for each, which 04 reads back as LocalSources."""
    sources = []
    for name in counts:
        if name not in HF_DATASETS:
            raise UserError(f"--mix names {name!r}, but the Hub sources are {sorted(HF_DATASETS)}; "
                            "pass your own files with --source NAME=PATH")
        raw = raw_dir / f"{name}.jsonl"
        meta = raw_dir / f"{name}.meta.json"
        hf = HFSource(name, cache_dir=cache_dir, **HF_DATASETS[name])
        saved = json.loads(meta.read_text()) if meta.exists() else {}
        if not (raw.exists() and saved.get("documents") == counts[name] and saved.get("revision") == hf.revision):
            if not has_internet():
                raise UserError("no internet to download fineweb-edu and dclm from the Hugging Face Hub: "
                                "pass local text instead, e.g. --source python-docs=embedded/corpus/python-docs.jsonl.zst "
                                "(NAME=PATH, repeatable), or run --preset tiny")
            raw = download_raw(hf, counts[name], raw_dir=raw_dir)
        sources.append((name, raw, f"{hf.location}, first {counts[name]:,} documents"))
    return sources


# HellaSwag's validation file (06 scores it; 05 scores it during training).

HELLASWAG_URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"
HELLASWAG_CACHE = DATA_CACHE_DIR / "hellaswag" / "hellaswag_val.jsonl"
HELLASWAG_SHARED = SHARED_DATA_DIR / "hellaswag" / "hellaswag_val.jsonl"


def find_hellaswag_file(path: str | os.PathLike | None = None) -> Path:
    """Where the validation jsonl comes from, in this order: `--hellaswag-file PATH`; the cache
    data/hellaswag/ (an earlier download); ../shared/data/hellaswag/ (the course machines); the copy that
    ships in embedded/hellaswag/ (all 10,042 examples, zstandard-compressed: embedded/README.md); only when
    that copy was removed, a download from rowanz/hellaswag on GitHub (cached, written atomically).
    All of them hold the same 10,042 examples, so the score does not depend on which one was found."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"--hellaswag-file {path} does not exist: pass the path of hellaswag_val.jsonl")
        return path
    for found in (HELLASWAG_CACHE, HELLASWAG_SHARED, EMBEDDED_HELLASWAG):
        if found.is_file():
            return found
    if has_internet("raw.githubusercontent.com"):
        import urllib.request

        try:
            with atomic_path(HELLASWAG_CACHE) as tmp:
                urllib.request.urlretrieve(HELLASWAG_URL, tmp)
            print(f"downloaded HellaSwag validation to {HELLASWAG_CACHE}")
            return HELLASWAG_CACHE
        except OSError as e:
            print(f"note: could not download HellaSwag ({e})", file=sys.stderr)
    raise NotFound(f"no HellaSwag file and no internet: download {HELLASWAG_URL} and pass --hellaswag-file PATH")


REQUIRED_FIELDS = ("ind", "activity_label", "ctx_a", "ctx_b", "ctx", "split_type", "label", "endings", "source_id")


def hellaswag_row_problem(row) -> str | None:
    """What makes a parsed jsonl line not a HellaSwag example, checked field by field; None if it is one.

    Text fields are strings, `endings` a list of 4 strings, `label` an int 0..3 (or a digit string, as the Hub
    copy stores it): a label 2.7 or true, or endings "abcd", would otherwise be scored as something else.

    >>> row = {"ind": 0, "activity_label": "Dancing", "ctx_a": "A man", "ctx_b": "he", "ctx": "A man he",
    ...        "split_type": "zeroshot", "source_id": "wikihow~1", "endings": ["a", "b", "c", "d"], "label": 2}
    >>> hellaswag_row_problem(row), hellaswag_row_problem({**row, "label": True})
    (None, '"label" is True, not 0, 1, 2 or 3')"""
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    missing = [k for k in REQUIRED_FIELDS if k not in row]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    wrong = [k for k in REQUIRED_FIELDS if k not in ("ind", "label", "endings") and not isinstance(row[k], str)]
    if wrong:
        return f'"{wrong[0]}" is {row[wrong[0]]!r}, not a string'
    endings = row["endings"]
    if not (isinstance(endings, list) and len(endings) == 4 and all(isinstance(e, str) for e in endings)):
        return f'"endings" is {endings!r:.60}, not a list of 4 strings'
    label = row["label"]
    if not ((type(label) is int and label in (0, 1, 2, 3)) or (isinstance(label, str) and label in ("0", "1", "2", "3"))):
        return f'"label" is {label!r}, not 0, 1, 2 or 3'
    return None


def read_hellaswag_rows(path: Path, limit: int | None = None) -> list[dict]:
    """The first `limit` rows (all: None) of a HellaSwag jsonl (or .jsonl.zst), each a complete example
    (hellaswag_row_problem) and none repeated, else a UserError naming the file and line."""
    examples, seen = [], {}
    with open_text(path) as f:                   # .jsonl, or the embedded .jsonl.zst
        for lineno, line in enumerate(f, 1):
            if limit is not None and len(examples) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                problem = hellaswag_row_problem(row)
                if problem:
                    raise ValueError(problem)
                key = json.dumps(row, sort_keys=True)                # an example scored twice would weigh double
                if seen.setdefault(key, lineno) != lineno:
                    raise ValueError(f"it repeats line {seen[key]} word for word")
                examples.append(row)
            except (ValueError, TypeError, AttributeError) as e:   # JSONDecodeError is a ValueError
                raise UserError(f"{path}:{lineno} is not a HellaSwag example ({e}): "
                                      f"fix that line or re-download the file")
    return examples
