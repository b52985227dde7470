"""Reading text, streamed: .jsonl (a "text" field), .jsonl.zst, .txt (a document per paragraph), .parquet (a "text"
column)."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from house.cli import NotFound, UserError
from house.paths import EMBEDDED_CORPUS_DIR, shown  # noqa: F401 (list_text_files's example)

TEXT_SUFFIXES = (".jsonl", ".jsonl.zst", ".txt", ".parquet")


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
                raise UserError(f"{p} is not a {'/'.join(suffixes)} file: pass text files or a directory of them")
            files.append(p)
        else:
            raise NotFound(f"{p} does not exist: check the path you passed")
    return files


def iter_jsonl_texts(lines: Iterable[str], path: Path) -> Iterator[str]:
    """The non-empty "text" field of every JSON line (`path` only names the file in the error)."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)["text"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{path}:{lineno} is not a JSON object with a \"text\" field: fix or remove that line")
        if not isinstance(text, str):
            raise UserError(f"{path}:{lineno} has a \"text\" field that is not a string "
                            f"({type(text).__name__}): fix or remove that line")
        if text:
            yield text


@contextlib.contextmanager
def open_text(path: str | os.PathLike, fix: str = "restore it (git checkout) or leave it out"):
    """Open a UTF-8 text file for reading; a `.zst` file (zstandard, as in embedded/) is unpacked as a
    stream, so `for line in f` works the same on `hellaswag_val.jsonl` and `hellaswag_val.jsonl.zst`.
    `fix`: what the error for damaged zstandard data tells the user to do."""
    path = Path(path)
    if not path.name.endswith(".zst"):
        with open(path, encoding="utf-8") as f:
            yield f
        return
    import io

    try:
        import zstandard
    except ImportError:
        raise UserError(f"reading {shown(path)} needs the zstandard package, which is not installed: "
                        f"pip install zstandard (it is in requirements.txt), or pass the unpacked .jsonl") from None
    try:
        with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as reader:
            yield io.TextIOWrapper(reader, encoding="utf-8")
    except zstandard.ZstdError as e:
        raise UserError(f"{path} is not valid zstandard data ({e}): {fix}")


def iter_paragraphs(lines: Iterable[str]) -> Iterator[str]:
    """The paragraphs of a text: runs of lines that are not blank (a blank line holds only whitespace), each
    without its last newline. The lines keep their indentation; the blank lines between paragraphs are dropped.

    >>> list(iter_paragraphs(["Act I\\n", "\\n", "  Enter Hamlet.\\n", "To be\\n", " \\n", "\\n", "End"]))
    ['Act I', '  Enter Hamlet.\\nTo be', 'End']"""
    lines_of_paragraph: list[str] = []
    for line in lines:
        if line.strip():
            lines_of_paragraph.append(line)
        elif lines_of_paragraph:
            yield "".join(lines_of_paragraph).removesuffix("\n")
            lines_of_paragraph = []
    if lines_of_paragraph:
        yield "".join(lines_of_paragraph).removesuffix("\n")


def iter_file_texts(path: Path) -> Iterator[str]:
    """Yield the documents of one file, one at a time (memory does not grow with the file).

    .jsonl (or .jsonl.zst, zstandard-compressed): one JSON object per line, its "text" field; .txt: one
    document per paragraph (split at blank lines, `iter_paragraphs`: a book or an essay becomes many
    documents, as a .jsonl would hold them); .parquet: the "text" column, one row group at a time."""
    try:
        if path.name.endswith((".jsonl", ".jsonl.zst")):
            with open_text(path) as f:
                yield from iter_jsonl_texts(f, path)
        elif path.name.endswith(".txt"):
            with open_text(path) as f:
                yield from iter_paragraphs(f)
        elif path.name.endswith(".parquet"):
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            if "text" not in pf.schema_arrow.names:
                raise UserError(f"{path} has no 'text' column (columns: {pf.schema_arrow.names})")
            for g in range(pf.num_row_groups):
                for text in pf.read_row_group(g, columns=["text"]).column("text").to_pylist():
                    if text:
                        yield text
        else:
            raise UserError(f"{path}: unknown file type; use .jsonl, .jsonl.zst, .txt or .parquet")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: convert it or leave it out")
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror or e}): check it exists and is readable")


def iter_texts(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Yield every document of every file under `paths`, in sorted file order."""
    for f in list_text_files(paths):
        yield from iter_file_texts(f)


def iter_jsonl_zst(path: Path) -> Iterator[str]:
    """The "text" of every line of a zstandard-compressed JSON-lines file, decompressed as a stream.

    (dclm-baseline ships as these; the first bytes are the zstd magic 28 b5 2f fd.) A damaged one is named
    as a download to delete: 04 fetches it again."""
    try:
        with open_text(path, fix="delete it (it is downloaded again) or leave it out") as f:
            yield from iter_jsonl_texts(f, path)
    except UnicodeDecodeError:
        raise UserError(f"{path} does not decompress to UTF-8 text: delete it or leave it out")


def read_documents(path: Path) -> Iterator[str]:
    """Documents of one file as 04's sources read them: .jsonl.zst with `iter_jsonl_zst`, .jsonl/.txt/.parquet
    with `iter_file_texts` (row group by row group)."""
    if Path(path).name.endswith(".jsonl.zst"):
        return iter_jsonl_zst(path)
    return iter_file_texts(path)


def first_bytes(paths: Iterable[str | os.PathLike], max_bytes: int) -> bytes:
    """The first `max_bytes` UTF-8 bytes of the documents under `paths`, documents joined by a newline: text for
    a byte-level model (vocab 256), which needs no tokenizer (02's and 03's tiny experiments)."""
    chunks, total = [], 0
    for text in iter_texts(paths):
        chunks.append(text.encode("utf-8"))
        total += len(chunks[-1])
        if total >= max_bytes:
            break
    return b"\n".join(chunks)[:max_bytes]
