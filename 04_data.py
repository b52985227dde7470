"""04 — the data: fineweb-edu + dclm, mixed, tokenized into uint16 shards, read back by a resumable loader.

linnet-497M learned from two public Hugging Face datasets: the first 700,000 documents of fineweb-edu
(`sample-10BT`, educational web pages) and the first 250,000 of dclm-baseline-1.0 (filtered general web
text). This file downloads them, mixes them, turns every document into token ids with the tokenizer from
01, packs the ids into `.npy` shards, and gives the training loop (05) a loader that can stop and resume
on the exact next batch.

What you will learn
  * streaming a corpus that does not fit in memory: Parquet one row group at a time, `.jsonl.zst`
    decompressed as a stream, documents pulled one by one through a generator;
  * mixing sources deterministically (a seeded weighted round-robin) — and why linnet's own order
    (all dclm first, then fineweb-edu; `--linnet-order`) made its validation number a dclm-only number;
  * packing: `<|endoftext|>` in front of every document, ids as uint16 (vocab ≤ 65,536), shards of
    100M tokens, shard 0 = validation (whole documents only, from both sources);
  * a job you can kill: every shard appears whole (temp file + rename), `manifest.json` comes last, and
    a rerun keeps the verified shards and writes byte-identical output;
  * the loader: windows of T+1 tokens give (x, y) with y = x shifted by one; shuffled per epoch, split
    across ranks, and resumable from two integers (epoch, batch) — never from a copy of the data.

Run it
  python 04_data.py --preset tiny     # the course corpus (or --data / --source), a few seconds on a CPU
  python 04_data.py                   # the real job: downloads 700k fineweb-edu + 250k dclm documents as
                                      # data/raw/*.jsonl, then (once 01 trained on them) tokenizes them
  python 04_data.py --linnet-order    # linnet's exact order: all dclm, then all fineweb-edu
  python 04_data.py --verify --out out/04_data   # check every shard (size + sha256) against the manifest;
                                      # 05 and 06 check sizes by themselves whenever they open the shards
  python 04_data.py --preset tiny --source docs=embedded/corpus/python-docs.jsonl.zst --source bard=embedded/corpus/shakespeare.jsonl.zst
                                      # any .jsonl / .jsonl.zst / .txt / .parquet files (NAME=PATH)
The real job runs in three steps, like linnet's: `python 04_data.py` (download; it stops and says
what is next), `python 01_tokenizer.py` (train the 32k tokenizer on data/raw/), `python 04_data.py`.

What it writes (into --out, default out/04_data/)
  shard_00000.npy              validation: whole documents from the start of the mixed stream
  shard_00001.npy, ...         training: exactly --shard-tokens each (the last one shorter)
  manifest.json                written LAST: tokenizer sha256, vocab, eot id, sources, the mix, documents /
                               tokens / bytes per source and per shard, sha256 of every shard,
                               val_bytes_per_token (for bits per byte in 05 and 06)
  progress.json                while running only: the shards finished so far (what a rerun resumes from)
  doc_lengths.png, tokens_per_source.png, bytes_per_token.png, window.png

How this file reads: 1 sources, 2 the mix, 3 encoding, 4 packing into shards, 5 the loader, 6 plots,
7 the script. The appendix at the end holds what you may skip at first: reading the two datasets from
the Hugging Face Hub, and the bookkeeping that lets a killed run resume. The plumbing every lesson
shares (paths, `--preset/--out`, saving plots, reading .jsonl/.txt/.parquet) is in `house.py`.

Reference numbers (linnet): vocab 32,768 → uint16 shards of 100M tokens, shard 0 = validation;
≈ 950k documents ≈ 1B tokens; 5,281 steps × 524,288 tokens ≈ 2.77B tokens, so the loader goes through the
training shards 2–3 times. Validation ≈ 1.21 bits per byte, measured on dclm text only (its order).
On the course corpus the tiny preset (vocab 1,024) gives ≈ 2.3 bytes per token (2.53 python-docs, 2.15
Shakespeare); tokenizing runs at ≈ 2–6 MB/s on 2 cores and 13 MB/s on a 16-core GPU host (BENCHMARKS.md):
minutes for linnet's few GB.

Conventions (read before comparing numbers)
  * bytes per token = UTF-8 bytes of the documents / their tokens, where each document's leading
    `<|endoftext|>` is one token of 0 bytes. So a 10-byte document encoded as 3 ids counts 10 / 4.
  * documents and bytes of a document are counted in the shard where it STARTS; its tokens are
    counted in the shard where they lie (a training document may run on into the next shard).
  * the validation shard holds whole documents only: it ends with the first document that brings it
    to at least --val-tokens, so no validation text leaks into training. linnet instead cut at exactly
    100M tokens (one document was split between validation and training).
  * the mix: `--mix fineweb-edu:700000,dclm:250000` (documents per source). Document k of a source with
    n documents is due at time (k + phase) / n, phase drawn from --seed; the stream takes whichever is
    due first. So every stretch of the stream holds the sources in proportion (±1 document).

Honest limits
  * Documents are the FIRST n of each source (as linnet did), not a random sample: the head of
    fineweb-edu's first Parquet file is one slice of the crawl.
  * Text that literally contains `<|endoftext|>` encodes to the special token (as in GPT-2 and linnet).
  * The loader drops the last partial batch of each epoch and the last < T tokens of each shard, and
    windows never cross shard boundaries.
  * A rerun is byte-identical only with the same inputs (same files, same tokenizer, same settings);
    the manifest records them, and different settings start over.
"""
from __future__ import annotations

import argparse
import hashlib
import heapq
import importlib
import io
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

import house

tokenizer_lib = importlib.import_module("01_tokenizer")   # EOT, load_tokenizer, tokenizer_sha256

# --- 1. Sources: where documents come from --------------------------------------------------------------
# A source is anything with `.name`, `.kind`, `.location` and `iter_documents()` yielding strings. The
# generator reads one file at a time and one row group / line at a time, so memory never grows with
# the corpus. Empty texts are skipped (as linnet did). linnet's two Hugging Face datasets arrive the same
# way: the appendix (`HFSource`, `download_raw`) streams their first documents once into
# data/raw/<name>.jsonl, and from then on they are LocalSources like any file of yours.

LOCAL_SUFFIXES = house.TEXT_SUFFIXES + (".jsonl.zst",)


def iter_jsonl_zst(path: Path) -> Iterator[str]:
    """The "text" of every line of a zstandard-compressed JSON-lines file, decompressed as a stream.

    (dclm-baseline ships as these; the first bytes are the zstd magic 28 b5 2f fd.)"""
    import zstandard

    try:
        with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as reader:
            yield from house.iter_jsonl_texts(io.TextIOWrapper(reader, encoding="utf-8"), path)   # house's reader
    except zstandard.ZstdError as e:
        raise SystemExit(f"error: {path} is not valid zstandard data ({e}): delete it (it is downloaded again) or leave it out")
    except UnicodeDecodeError:
        raise SystemExit(f"error: {path} does not decompress to UTF-8 text: delete it or leave it out")


def read_documents(path: Path) -> Iterator[str]:
    """Documents of one file: .jsonl.zst here, .jsonl/.txt/.parquet with house's reader (row group by row group)."""
    if path.name.endswith(".jsonl.zst"):
        return iter_jsonl_zst(path)
    return house.iter_file_texts(path)


class LocalSource:
    """Documents from local files: `LocalSource("shakespeare", ["../shared/data/corpus/shakespeare.jsonl"])`.

    Paths can be files (.jsonl, .jsonl.zst, .txt, .parquet) or directories of them (read in sorted order).
    `origin` says where the files came from when they are a download (kept in the manifest)."""
    kind = "local"

    def __init__(self, name: str, paths: Iterable[str | os.PathLike], origin: str | None = None):
        self.name = name
        self.files = house.list_text_files(list(paths), suffixes=LOCAL_SUFFIXES)
        if not self.files:
            raise SystemExit(f"error: source {name}: no {'/'.join(LOCAL_SUFFIXES)} files in {list(map(str, paths))}: check the path")
        self.origin = origin
        self.location = [str(f) for f in self.files] + ([origin] if origin else [])

    def iter_documents(self) -> Iterator[str]:
        for path in self.files:
            yield from read_documents(path)


def parse_source_arg(arg: str) -> LocalSource:
    """`--source NAME=PATH` → LocalSource(NAME, [PATH])."""
    name, sep, path = arg.partition("=")
    if not sep or not name or not path:
        raise SystemExit(f"error: --source {arg!r}: write it as NAME=PATH, e.g. --source shakespeare=../shared/data/corpus/shakespeare.jsonl")
    return LocalSource(name, [path])


def count_documents(source) -> int:
    """How many non-empty documents a source holds (one pass over it)."""
    return sum(1 for _ in source.iter_documents())


# --- 2. The mix: which source the next document comes from ---------------------------------------------

LINNET_MIX = {"fineweb-edu": 700_000, "dclm": 250_000}   # documents per source (linnet's defaults)


def mix_schedule(counts: dict[str, int], seed: int = 0) -> Iterator[str]:
    """Source names in stream order: `counts[name]` times each, spread evenly (a weighted round-robin).

    Document k of a source with n documents is due at time (k + phase) / n, with one phase in [0, 1)
    per source drawn from `seed`; the stream always takes the document due first. A source with 70 % of
    the documents fills 70 % of every stretch of the stream, ± 1 document.

    >>> "".join(name[0] for name in mix_schedule({"fineweb-edu": 7, "dclm": 3}, seed=0))
    'ffdffdffdf'"""
    rng = random.Random(seed)
    names = sorted(counts)
    phase = {name: rng.random() for name in names}
    due = [(phase[name] / counts[name], i, name, 0) for i, name in enumerate(names) if counts[name] > 0]
    heapq.heapify(due)
    while due:
        _, i, name, k = heapq.heappop(due)
        yield name
        if k + 1 < counts[name]:
            heapq.heappush(due, ((k + 1 + phase[name]) / counts[name], i, name, k + 1))


def linnet_schedule(counts: dict[str, int]) -> Iterator[str]:
    """linnet's order: every document of each source in turn, sources in file-name order (dclm < fineweb-edu).

    >>> "".join(name[0] for name in linnet_schedule({"fineweb-edu": 3, "dclm": 2}))
    'ddfff'"""
    for name in sorted(counts):
        yield from [name] * counts[name]


def iter_mixed_documents(sources, counts: dict[str, int], seed: int = 0, linnet_order: bool = False) -> Iterator[tuple[str, str]]:
    """(source name, text) in stream order: the first counts[name] documents of each source, interleaved."""
    documents = {s.name: s.iter_documents() for s in sources}
    taken = {name: 0 for name in counts}
    schedule = linnet_schedule(counts) if linnet_order else mix_schedule(counts, seed)
    for name in schedule:
        text = next(documents[name], None)
        if text is None:
            raise SystemExit(f"error: source {name} has only {taken[name]:,} documents but the mix asks for "
                             f"{counts[name]:,}: lower it, e.g. --mix {name}:{taken[name]}")
        taken[name] += 1
        yield name, text


# --- 3. Encoding: documents → token ids, with every core ------------------------------------------------
# `encode_batch` spreads a batch over threads, one document per task; a single 1 MB document is then
# one thread's work while the others wait. So long documents are cut into pieces first — but only where
# the GPT-2 pre-tokenizer cuts anyway, so that the pieces' ids, concatenated, ARE the document's ids.
# Such a place: just before the last "\n" of a whitespace run that is followed by a non-space character.
# The regex `\s+(?!\S)|\s+` gives that "\n" a pre-token of its own in the whole text, and the piece
# that starts with it splits exactly the same way (the regex looks ahead, never behind). A test checks
# the claim on the course corpus and on random whitespace-heavy strings. (On the 2-core course machine
# it measured about as fast either way; docs/PERFORMANCE.md saw 2.4 → 2.9 MB/s; it matters on a 16-core host,
# where one long document would otherwise keep 15 cores waiting.)

PIECE_CHARS = 8_192          # documents longer than this are cut into pieces of about this size
BATCH_CHARS = 4_000_000      # characters handed to one encode_batch call


def split_for_encoding(text: str, piece_chars: int = PIECE_CHARS) -> list[str]:
    """Cut `text` into pieces of ≈ `piece_chars`, each starting with a "\\n" followed by a non-space.

    >>> split_for_encoding("aaaa\\nbbbb\\n\\ncccc", piece_chars=3)
    ['aaaa', '\\nbbbb\\n', '\\ncccc']"""
    pieces, start = [], 0
    while len(text) - start > piece_chars:
        cut = text.find("\n", start + piece_chars)
        while cut != -1 and (cut + 1 >= len(text) or text[cut + 1].isspace()):
            cut = text.find("\n", cut + 1)
        if cut == -1:
            break
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def encode_documents(tokenizer, texts: list[str], eot: int, piece_chars: int = PIECE_CHARS) -> list[np.ndarray]:
    """[EOT] + ids of each text, as uint16 arrays; long texts are encoded in pieces (same ids, more cores)."""
    pieces, owner = [], []
    for d, text in enumerate(texts):
        for piece in split_for_encoding(text, piece_chars):
            pieces.append(piece)
            owner.append(d)
    ids: list[list[int]] = [[eot] for _ in texts]
    for d, encoding in zip(owner, tokenizer.encode_batch_fast(pieces, add_special_tokens=False)):
        ids[d].extend(encoding.ids)
    return [np.array(x, dtype=np.uint16) for x in ids]


def check_vocab_fits_uint16(tokenizer) -> None:
    """Token ids are stored as uint16 (0…65,535): refuse a larger vocabulary with one clear line."""
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    if vocab_size > tokenizer_lib.MAX_VOCAB_SIZE:  # 65,536
        raise SystemExit(f"error: the tokenizer has {vocab_size:,} tokens but shards store ids as uint16 "
                         "(at most 65,536 tokens): train one with python 01_tokenizer.py --vocab-size 65536 or less")


# --- 4. Packing ids into shards ---------------------------------------------------------------------------
# The stream of documents is a fixed function of (sources, mix, seed), so the stream of token ids is
# too, and shard k is a fixed slice of it. After each shard we record where the NEXT one starts in the
# stream: (document index, token offset inside that document). So a rerun can verify the finished
# shards, skip that many documents without tokenizing them, and carry on (the bookkeeping — progress.json,
# sha256 checks, removing stale files — is in the appendix: `resume_point`).

def shard_name(index: int) -> str:
    """The file of shard `index`.

    >>> shard_name(3)
    'shard_00003.npy'"""
    return f"shard_{index:05d}.npy"


def length_bin(n_tokens: int) -> int:
    """Half-octave bin of a document length: bin b holds lengths in [2^(b/2), 2^((b+1)/2))."""
    return int(2 * math.log2(n_tokens))


class ShardPacker:
    """Appends each document's [EOT] + ids to the current shard and writes full shards atomically.

    Shard 0 (validation) takes whole documents until it holds ≥ `val_tokens`; every later shard holds
    exactly `shard_tokens` (a document runs on into the next shard). `records` are the finished shards."""

    def __init__(self, out_dir: Path, shard_tokens: int, val_tokens: int, source_names: list[str],
                 records: list[dict], write_progress, on_shard_written=None):
        self.out_dir, self.shard_tokens, self.val_tokens = Path(out_dir), shard_tokens, val_tokens
        self.source_names, self.records = source_names, list(records)
        self.write_progress, self.on_shard_written = write_progress, on_shard_written
        self.index = len(self.records)
        self._start_shard()

    def _start_shard(self):
        self.pieces: list[np.ndarray] = []
        self.fill = 0
        self.stats = {key: {name: 0 for name in self.source_names}
                      for key in ("source_documents", "source_tokens", "source_bytes")}
        self.stats["source_length_hist"] = {name: {} for name in self.source_names}

    def add(self, doc_index: int, source: str, ids: np.ndarray, n_bytes: int, skip: int = 0) -> None:
        """Add one document's ids (from token `skip` on: a resumed run's first, half-written document)."""
        if skip == 0:  # the document starts in this shard
            self.stats["source_documents"][source] += 1
            self.stats["source_bytes"][source] += n_bytes
            hist, b = self.stats["source_length_hist"][source], str(length_bin(len(ids)))
            hist[b] = hist.get(b, 0) + 1
        pos = skip
        while pos < len(ids):
            room = len(ids) - pos if self.index == 0 else self.shard_tokens - self.fill
            take = min(room, len(ids) - pos)
            self.pieces.append(ids[pos:pos + take])
            self.fill += take
            self.stats["source_tokens"][source] += take
            pos += take
            if self.index > 0 and self.fill == self.shard_tokens:
                self._write(end=(doc_index, pos) if pos < len(ids) else (doc_index + 1, 0))
        if self.index == 0 and self.fill >= self.val_tokens:
            self._write(end=(doc_index + 1, 0))

    def finish(self, n_documents: int) -> None:
        """Write the last, shorter shard (if any tokens are left)."""
        if self.fill > 0:
            self._write(end=(n_documents, 0))

    def _write(self, end: tuple[int, int]) -> None:
        tokens = np.concatenate(self.pieces)   # (n,) uint16
        path = self.out_dir / shard_name(self.index)
        with house.atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, tokens)
            digest = sha256_file(tmp)
        record = {"index": self.index, "file": path.name, "split": "val" if self.index == 0 else "train",
                  "tokens": int(len(tokens)), "sha256": digest, "end_doc": end[0], "end_offset": end[1], **self.stats}
        self.records.append(record)
        self.write_progress(self.records)
        if self.on_shard_written is not None:
            self.on_shard_written(record)
        self.index += 1
        self._start_shard()


def build_shards(sources, counts: dict[str, int], tokenizer, out_dir, *, tokenizer_sha256: str, seed: int = 0,
                 linnet_order: bool = False, shard_tokens: int = 100_000_000, val_tokens: int = 100_000_000,
                 on_shard_written=None, show_progress: bool = True, overwrite: bool = False) -> dict:
    """Tokenize the mixed stream into out_dir/shard_*.npy and write manifest.json last; returns the manifest.

    The steps: keep what an earlier run finished (`resume_point`), stream the rest of the mix through
    `encode_documents` into a `ShardPacker` (`tokenize_into`), then write the manifest — last, so a
    killed run never looks finished. Reruns resume: finished shards whose sha256 matches are kept, the
    rest is redone, byte-identical. Shards made with OTHER settings are replaced only with `overwrite`
    (else one line, before anything is deleted). `on_shard_written(record)` is called after each shard (the
    tests use it to simulate a crash)."""
    check_vocab_fits_uint16(tokenizer)
    eot = tokenizer_lib.eot_id(tokenizer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = run_config(sources, counts, tokenizer_sha256, seed, linnet_order, shard_tokens, val_tokens)
    records, complete = resume_point(out_dir, config, overwrite)
    if complete:
        return make_manifest(config, records, tokenizer, eot)

    packer = ShardPacker(out_dir, shard_tokens, val_tokens, [s.name for s in sources], records,
                         write_progress=progress_writer(out_dir, config), on_shard_written=on_shard_written)
    start = (records[-1]["end_doc"], records[-1]["end_offset"]) if records else (0, 0)
    stream = iter_mixed_documents(sources, counts, seed, linnet_order)
    tokenize_into(packer, tokenizer, eot, stream, sum(counts.values()), start, show_progress)
    if len(packer.records) < 2:
        raise SystemExit(f"error: all {packer.records[0]['tokens']:,} tokens went to the validation shard: "
                         f"lower --val-tokens (now {val_tokens:,}) or add more text")
    manifest = make_manifest(config, packer.records, tokenizer, eot)
    house.write_json(out_dir / "manifest.json", manifest)
    (out_dir / "progress.json").unlink(missing_ok=True)
    return manifest


def tokenize_into(packer: ShardPacker, tokenizer, eot: int, stream, n_documents: int,
                  start: tuple[int, int] = (0, 0), show_progress: bool = True) -> None:
    """Encode the (source, text) stream batch by batch into `packer`, then write its last shard.

    `start` = (document, token offset) where the unfinished work begins: the documents before it are
    read (to keep the stream in step) but not tokenized, and that document's first `offset` tokens are
    already in a finished shard."""
    from tqdm import tqdm

    start_doc, start_offset = start
    for _ in range(start_doc):   # already in finished shards: read, not tokenized
        next(stream)
    started, n_bytes, doc_index = time.perf_counter(), 0, start_doc
    with tqdm(total=n_documents, initial=start_doc, unit="doc", desc="tokenizing", disable=not show_progress) as bar:
        for batch in iter_batches(stream, BATCH_CHARS):   # `with`: an error's line starts after the bar, not on it
            doc_index, batch_bytes = pack_batch(packer, tokenizer, eot, batch, doc_index, start_doc, start_offset)
            n_bytes += batch_bytes
            bar.update(len(batch))
            bar.set_postfix(MB_per_s=f"{n_bytes / 1e6 / (time.perf_counter() - started):.2f}")
    seconds = time.perf_counter() - started
    print(f"tokenized {n_bytes / 1e6:.2f} MB in {seconds:.1f} s: {n_bytes / 1e6 / seconds:.2f} MB/s "
          f"on {os.cpu_count()} cores")
    packer.finish(n_documents)


def iter_batches(stream: Iterable[tuple[str, str]], max_chars: int = BATCH_CHARS) -> Iterator[list[tuple[str, str]]]:
    """Group (source, text) pairs into lists of at least `max_chars` characters (the last: what is left).

    >>> [len(batch) for batch in iter_batches([("a", "xx"), ("a", "yyy"), ("b", "z")], max_chars=4)]
    [2, 1]"""
    batch, chars = [], 0
    for source, text in stream:
        batch.append((source, text))
        chars += len(text)
        if chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def pack_batch(packer: ShardPacker, tokenizer, eot: int, batch, doc_index: int, start_doc: int,
               start_offset: int) -> tuple[int, int]:
    """Encode one batch of (source, text), add it to the packer; returns (next document index, UTF-8 bytes)."""
    n_bytes = 0
    for (source, text), ids in zip(batch, encode_documents(tokenizer, [t for _, t in batch], eot)):
        skip = start_offset if doc_index == start_doc else 0
        n_bytes += len(text.encode("utf-8"))
        packer.add(doc_index, source, ids, len(text.encode("utf-8")), skip=skip)
        doc_index += 1
    return doc_index, n_bytes


def make_manifest(config: dict, records: list[dict], tokenizer, eot: int) -> dict:
    """Everything a reader needs to trust and use the shards; totals are sums over the shard records."""
    names = [s["name"] for s in config["sources"]]
    per_source = {}
    for name in names:
        documents = sum(r["source_documents"][name] for r in records)
        tokens = sum(r["source_tokens"][name] for r in records)
        n_bytes = sum(r["source_bytes"][name] for r in records)
        per_source[name] = {"documents": documents, "tokens": tokens, "bytes": n_bytes,
                            "bytes_per_token": n_bytes / max(tokens, 1),
                            "val_documents": records[0]["source_documents"][name],
                            "val_tokens": records[0]["source_tokens"][name]}
    val = records[0]
    return {
        "tokenizer_sha256": config["tokenizer_sha256"], "vocab_size": tokenizer.get_vocab_size(), "eot_id": eot,
        "dtype": "uint16", "seed": config["seed"], "order": config["order"], "mix": config["mix"],
        "sources": config["sources"], "per_source": per_source,
        "documents": sum(p["documents"] for p in per_source.values()),
        "tokens": sum(r["tokens"] for r in records), "bytes": sum(p["bytes"] for p in per_source.values()),
        "val_tokens": val["tokens"], "val_bytes": sum(val["source_bytes"].values()),
        "val_bytes_per_token": sum(val["source_bytes"].values()) / val["tokens"],
        "bytes_per_token_convention": "UTF-8 bytes of the documents / their tokens; each document's leading "
                                      "<|endoftext|> is one token of 0 bytes",
        "shards": records, "config": config,
    }


# --- 5. Reading shards back ------------------------------------------------------------------------------

def read_manifest(data_dir, needs: tuple[str, ...] = ()) -> dict:
    """The manifest of a finished 04 run, or one line saying how to make one (or that it is corrupt).

    Every shard it lists is checked first, cheaply (exists, holds its recorded number of tokens, has the
    byte size that takes): a damaged shard stops 05 and 06 here, not at step 100. `python 04_data.py
    --verify --out DIR` checks the sha256 of every shard too (`verify_shards`, in the appendix). `needs`:
    the keys the caller reads besides the shard list, e.g. 05's ("tokenizer_sha256", "vocab_size")."""
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise SystemExit(f"error: no shards in {house.shown(Path(data_dir))}: run python 04_data.py (--preset tiny for the small one) first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:                       # not JSON, not UTF-8, or empty: a copy cut short, a full disk
        manifest = None
    problem = manifest_problem(manifest, ("shards", *needs), READ_SHARD_KEYS) or manifest_values_problem(manifest)
    if problem is not None:
        raise SystemExit(f"error: {house.shown(path)} is corrupt ({problem}): rerun the python 04_data.py command "
                         f"that made {house.shown(Path(data_dir))} to rebuild it")
    check_shards(data_dir, manifest["shards"])
    return manifest


def load_shard(data_dir, record: dict) -> np.ndarray:
    """One shard as a read-only memory map: (n_tokens,) uint16, nothing read until it is indexed."""
    check_shards(data_dir, [record])         # a file cut short would fail deep inside np.load otherwise
    return np.load(Path(data_dir) / record["file"], mmap_mode="r")


class ShardLoader:
    """Batches (x, y) of shape (B, T), int64, y = x shifted by one, from the shards of one split.

    A window is T+1 consecutive tokens of one shard, starting at a multiple of T (windows share one
    token at their edges, never more). Each epoch visits the training shards in a shuffled order and
    each shard's windows in a shuffled order, both seeded by `seed + epoch`; `split="val"` reads shard 0
    in order. Global batch g of an epoch is windows [g·B·W, (g+1)·B·W) of that order (W = world_size);
    rank r takes its r-th slice of B, so ranks never share a window. `state_dict()` is (epoch, batch):
    after `load_state_dict`, iterating yields exactly the batch the interrupted run would have seen next.

    With linnet's settings (B=32, T=1024, W=1) a 100M-token shard holds 97,656 windows = 3,051 batches."""

    def __init__(self, data_dir, split: str, B: int, T: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        if split not in ("train", "val"):
            raise SystemExit(f"error: split must be 'train' or 'val', not {split!r}")
        if not 0 <= rank < world_size:
            raise SystemExit(f"error: rank {rank} is not in 0..{world_size - 1}")
        self.data_dir, self.split, self.B, self.T = Path(data_dir), split, B, T
        self.rank, self.world_size, self.seed = rank, world_size, seed
        manifest = read_manifest(data_dir)
        self.shards = [r for r in manifest["shards"] if r["split"] == split]
        self.data_id = hashlib.sha256("".join(r["sha256"] for r in self.shards).encode()).hexdigest()[:16]
        self.windows_per_shard = [max(0, (r["tokens"] - 1) // T) for r in self.shards]
        self.batches_per_epoch = sum(self.windows_per_shard) // (B * world_size)
        if self.batches_per_epoch == 0:
            raise SystemExit(f"error: the {split} shards in {house.shown(self.data_dir)} hold {sum(self.windows_per_shard):,} "
                             f"windows of {T}+1 tokens, fewer than one batch ({B} × {world_size} ranks): "
                             "lower the batch size or sequence length, or make more data")
        self.epoch, self.batch = 0, 0
        self._maps: dict[int, np.ndarray] = {}
        self._order_epoch, self._order = None, None

    def __len__(self) -> int:
        return self.batches_per_epoch

    def epoch_order(self, epoch: int) -> np.ndarray:
        """(n_windows, 2) int64 rows of (shard position, start token), in the order of `epoch`."""
        rng = np.random.default_rng(self.seed + epoch) if self.split == "train" else None
        shard_order = rng.permutation(len(self.shards)) if rng is not None else np.arange(len(self.shards))
        rows = []
        for s in shard_order:
            n = self.windows_per_shard[s]
            windows = rng.permutation(n) if rng is not None else np.arange(n)
            rows.append(np.stack([np.full(n, s), windows * self.T], axis=1))
        return np.concatenate(rows).astype(np.int64)

    def batch_windows(self, epoch: int, batch: int) -> np.ndarray:
        """(B, 2) rows of (shard position, start token): this rank's slice of global batch `batch`."""
        if self._order_epoch != epoch:
            self._order_epoch, self._order = epoch, self.epoch_order(epoch)
        first = (batch * self.world_size + self.rank) * self.B
        return self._order[first:first + self.B]

    def get_batch(self, epoch: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (x, y) of global batch `batch` in `epoch`: two (B, T) int64 tensors."""
        windows = np.empty((self.B, self.T + 1), dtype=np.int64)                 # (B, T+1)
        for row, (s, start) in enumerate(self.batch_windows(epoch, batch)):
            windows[row] = self._tokens(int(s))[start:start + self.T + 1]
        tensor = torch.from_numpy(windows)
        return tensor[:, :-1].contiguous(), tensor[:, 1:].contiguous()           # (B, T), (B, T)

    def _tokens(self, s: int) -> np.ndarray:
        if s not in self._maps:
            self._maps[s] = load_shard(self.data_dir, self.shards[s])
        return self._maps[s]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless: epoch after epoch, starting from the current (epoch, batch)."""
        while True:
            while self.batch < self.batches_per_epoch:
                x, y = self.get_batch(self.epoch, self.batch)
                self.batch += 1     # before yielding: state_dict() now names the NEXT batch
                yield x, y
            self.epoch, self.batch = self.epoch + 1, 0

    def iter_once(self, max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over epoch 0 from its first batch (for evaluation); does not move the loader's state."""
        n = self.batches_per_epoch if max_batches is None else min(max_batches, self.batches_per_epoch)
        for batch in range(n):
            yield self.get_batch(0, batch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed, "split": self.split, "B": self.B,
                "T": self.T, "world_size": self.world_size, "data_id": self.data_id}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "split", "B", "T", "world_size", "data_id"):
            if state[key] != getattr(self, key):
                raise SystemExit(f"error: the saved loader position was made with {key}={state[key]!r}, this loader has "
                                 f"{getattr(self, key)!r}: resume with the same data and settings, or start a new run")
        self.epoch, self.batch = state["epoch"], state["batch"]


def val_batches(data_dir, B: int, T: int, max_batches: int | None = None, rank: int = 0, world_size: int = 1):
    """The validation batches in order, once (at most `max_batches`): `for x, y in val_batches(dir, 16, 1024, 20)`."""
    return ShardLoader(data_dir, "val", B, T, rank=rank, world_size=world_size).iter_once(max_batches)


# --- 6. Plots: each returns a figure; main saves it with its caption -------------------------------------

def plot_doc_lengths(manifest: dict):
    """How many documents of each length, per source (summed over the shard records' half-octave histograms)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in manifest["per_source"]:
        hist: dict[int, int] = {}
        for record in manifest["shards"]:
            for b, n in record["source_length_hist"][name].items():
                hist[int(b)] = hist.get(int(b), 0) + n
        bins = np.arange(min(hist), max(hist) + 2)
        edges = 2.0 ** (bins / 2)
        ax.stairs([hist.get(int(b), 0) for b in bins[:-1]], edges, label=f"{name} ({sum(hist.values()):,} docs)",
                  linewidth=2)
    ax.set_xscale("log")
    ax.set_xlabel("document length (tokens, including its <|endoftext|>; half-octave bins)")
    ax.set_ylabel("documents")
    ax.set_title("How long are the documents of each source?")
    ax.legend()
    return fig


def plot_tokens_per_source(manifest: dict):
    """Tokens per source, stacked: training shards below, the validation shard (0) on top."""
    import matplotlib.pyplot as plt

    names = list(manifest["per_source"])
    val = [manifest["per_source"][n]["val_tokens"] for n in names]
    train = [manifest["per_source"][n]["tokens"] - v for n, v in zip(names, val)]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(names, train, label="training shards")
    ax.bar(names, val, bottom=train, label="validation shard (0)")
    for i, n in enumerate(names):
        p = manifest["per_source"][n]
        ax.text(i, p["tokens"], f"{p['tokens']:,} tok\n{p['documents']:,} docs", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("tokens")
    ax.set_title(f"Tokens per source ({manifest['order']} order, seed {manifest['seed']})")
    ax.margins(y=0.2)
    ax.legend()
    return fig


def plot_bytes_per_token(manifest: dict):
    """UTF-8 bytes per token of each source, with the validation shard's value as a dashed line."""
    import matplotlib.pyplot as plt

    names = list(manifest["per_source"])
    values = [manifest["per_source"][n]["bytes_per_token"] for n in names]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(names, values, color="tab:green")
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.2f}", ha="center", va="bottom")
    ax.axhline(manifest["val_bytes_per_token"], color="black", linestyle="--",
               label=f"validation shard: {manifest['val_bytes_per_token']:.2f}")
    ax.set_ylabel("UTF-8 bytes per token (EOT = 0 bytes)")
    ax.set_title("How much text one token carries, per source")
    ax.margins(y=0.15)
    ax.legend(loc="lower right")
    return fig


def window_with_boundaries(loader: ShardLoader, eot: int, min_boundaries: int = 2, search: int = 5_000) -> np.ndarray:
    """The first training window (in epoch-0 order) with ≥ `min_boundaries` EOTs, else the one with most."""
    best, best_count = None, -1
    for s, start in loader.epoch_order(0)[:search]:
        tokens = np.asarray(loader._tokens(int(s))[start:start + loader.T])
        count = int((tokens == eot).sum())
        if count > best_count:
            best, best_count = tokens, count
        if count >= min_boundaries:
            break
    return best


def plot_window(tokens: np.ndarray, eot: int, tokenizer, per_row: int = 20):
    """The window as the model reads it: one cell per token, its text written in it, rows of `per_row`;
    cells coloured by the document they belong to, <|endoftext|> in red where the next document starts."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    rows = -(-len(tokens) // per_row)
    fig, ax = plt.subplots(figsize=(per_row * 0.72, rows * 0.42 + 1.2))
    document = np.cumsum(tokens == eot)                                 # which document each token is in
    for i, token in enumerate(tokens.tolist()):
        row, col = divmod(i, per_row)
        colour = "tab:red" if token == eot else ("#cfe2f3" if document[i] % 2 == 0 else "#fde4c8")
        ax.add_patch(Rectangle((col, -row), 0.95, 0.9, color=colour))
        text = "EOT" if token == eot else tokenizer.decode([token]).replace("\n", "⏎").replace(" ", "␣")
        ax.text(col + 0.47, -row + 0.45, text[:7], ha="center", va="center", fontsize=6.5,
                color="white" if token == eot else "black")
    ax.set_xlim(0, per_row)
    ax.set_ylim(-rows + 0.9, 1)
    ax.axis("off")
    ax.set_title(f"One training window of {len(tokens)} tokens, as the model reads it (left to right, row by row): "
                 f"{int((tokens == eot).sum())} document boundaries (red EOT); blue and orange = consecutive "
                 "documents; ␣ = space, ⏎ = newline", fontsize=9)
    return fig


# --- 7. The script ----------------------------------------------------------------------------------------

PRESETS = {  # shard and validation sizes in tokens
    "linnet": {"shard_tokens": 100_000_000, "val_tokens": 100_000_000},
    "tiny": {"shard_tokens": 500_000, "val_tokens": 200_000},
}


def parse_mix(mix: str | None) -> dict[str, int]:
    """`"fineweb-edu:700000,dclm:250000"` → {"fineweb-edu": 700000, "dclm": 250000}."""
    counts = {}
    for part in (mix or "").split(","):
        if not part.strip():
            continue
        name, sep, number = part.strip().rpartition(":")
        if not sep or not name or not number.replace("_", "").isdigit():
            raise SystemExit(f"error: --mix {mix!r}: write it as NAME:DOCUMENTS,..., e.g. --mix fineweb-edu:700000,dclm:250000")
        counts[name] = int(number)
    return counts


def resolve_sources(args) -> tuple[list, dict[str, int]]:
    """The sources and their document counts for this run (see --help for the order of preference)."""
    counts = parse_mix(args.mix)
    if args.source:
        sources = [parse_source_arg(s) for s in args.source]
    elif args.preset == "tiny" or args.data is not None:
        files = house.find_tiny_data(args.data) if args.preset == "tiny" else house.list_text_files([args.data], LOCAL_SUFFIXES)
        sources = [LocalSource(f.name.split(".")[0], [f]) for f in files]
    else:
        counts = counts or dict(LINNET_MIX)
        sources = hub_sources(counts, args.cache_dir)     # the appendix: downloads into data/raw/ once
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise SystemExit(f"error: two sources share a name ({names}): give each --source its own NAME")
    unknown = set(counts) - set(names)
    if unknown:
        raise SystemExit(f"error: --mix names {sorted(unknown)}, but the sources are {names}")
    for s in sources:
        if s.name not in counts:
            counts[s.name] = count_documents(s)
        if counts[s.name] == 0:
            raise SystemExit(f"error: source {s.name} has no non-empty documents ({s.location[0]}): check the file")
    return sources, {s.name: counts[s.name] for s in sources}


MIN_SHARD_TOKENS = 1_025          # one training window at linnet's sequence length: 1,024 tokens + the last target


def shard_tokens_arg(text: str) -> int:
    """argparse `type=` for --shard-tokens: a positive integer of at least MIN_SHARD_TOKENS."""
    value = house.positive_int(text)
    if value < MIN_SHARD_TOKENS:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_SHARD_TOKENS:,} (one window of 1,024 tokens + its "
                                         f"target; smaller shards only make more files), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = house.ArgumentParser(
        description="Lesson 04: mix fineweb-edu + dclm (or your files), tokenize into uint16 shards "
                    "(<|endoftext|> before every document; shard 0 = validation), write manifest.json, plot.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="where the text comes from, in this order:\n"
               "  --source NAME=PATH ...   your files (.jsonl 'text' field, .jsonl.zst, .txt, .parquet, or dirs)\n"
               "  --preset tiny            --data PATH, or --data hub (a fineweb-edu sample), else embedded/corpus\n"
               "                           (one source per file, named by the file)\n"
               "  (default, linnet)        the Hub: first 700k fineweb-edu sample-10BT + 250k dclm documents,\n"
               "                           downloaded once into data/raw/*.jsonl (needs internet)\n"
               "examples:\n"
               "  python 04_data.py --preset tiny\n"
               "  python 04_data.py                     # download, then: python 01_tokenizer.py; python 04_data.py\n"
               "  python 04_data.py --linnet-order      # linnet's exact order: all dclm, then fineweb-edu\n"
               "Rerunning resumes: finished shards are verified by sha256 and kept.")
    house.add_common_args(parser, "04_data")
    parser.add_argument("--source", action="append", metavar="NAME=PATH",
                        help="a local source (repeatable); documents are read in sorted file order")
    parser.add_argument("--data", type=Path, default=None,
                        help="the tiny preset's text, as in 01 (a file or a directory; one source per file)")
    parser.add_argument("--mix", default=None, metavar="NAME:DOCS,...",
                        help="documents per source (default: fineweb-edu:700000,dclm:250000 for the Hub; "
                             "all documents of local sources)")
    parser.add_argument("--seed", type=house.seed, default=0, help="seed of the interleaving, 0 to 2**32 - 1 (default: %(default)s)")
    parser.add_argument("--linnet-order", action="store_true",
                        help="no interleaving: all of each source in name order (dclm, then fineweb-edu), as "
                             "linnet did; shard 0 (validation) is then dclm only")
    parser.add_argument("--tokenizer", type=Path, default=house.OUT_DIR / "01_tokenizer" / "tokenizer.json",
                        help="tokenizer.json from 01 (default: out/01_tokenizer/tokenizer.json)")
    parser.add_argument("--shard-tokens", type=shard_tokens_arg, default=None,
                        help=f"tokens per training shard, at least {MIN_SHARD_TOKENS:,}: one window of linnet's 1,024 "
                             "tokens plus its target (smaller shards only make more files: at 1 token per shard a "
                             "run writes one file per token, for hours) (default: 100M linnet, 500k tiny)")
    parser.add_argument("--val-tokens", type=house.positive_int, default=None,
                        help="the validation shard takes whole documents until it holds at least this many tokens "
                             "(default: 100M linnet, as linnet's shard 0; 200k tiny)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace shards in --out that were made with other settings (tokenizer, sources, mix, "
                             "seed, sizes); without it 04 refuses, since a checkpoint may need them")
    parser.add_argument("--verify", action="store_true",
                        help="build nothing: check every shard in --out against manifest.json (size and sha256) "
                             "and say which one is damaged (05 and 06 check sizes on their own)")
    parser.add_argument("--cache-dir", type=Path, default=HF_CACHE_DIR,
                        help="where Hub files are downloaded (default: data/hf)")
    return parser


@house.speaks
def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.verify:
        return verify_shards(args.out, sha256=True)   # the appendix: check the shards in --out, build nothing
    house.check_writable(args.out)          # a read-only --out fails now, not after tokenizing
    with house.folder_lock(args.out):       # one writer per folder
        return make_shards(args)


def make_shards(args) -> dict:
    """Tokenize the sources into shards in args.out, print what they hold, save the plots."""
    sizes = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in PRESETS[args.preset].items()}
    if min(sizes.values()) < 1:
        raise SystemExit("error: --shard-tokens and --val-tokens must be positive")
    sources, counts = resolve_sources(args)
    if not args.tokenizer.is_file():
        raise SystemExit(f"error: no tokenizer at {house.shown(args.tokenizer)}: run python 01_tokenizer.py --preset tiny "
                         "first (python 01_tokenizer.py for the real one), or pass --tokenizer")
    tokenizer = tokenizer_lib.load_tokenizer(args.tokenizer)
    print("sources: " + ", ".join(f"{s.name} ({counts[s.name]:,} docs)" for s in sources)
          + f"; order: {'linnet (no interleaving)' if args.linnet_order else f'interleaved, seed {args.seed}'}")

    manifest = build_shards(sources, counts, tokenizer, args.out, tokenizer_sha256=tokenizer_lib.tokenizer_sha256(args.tokenizer),
                            seed=args.seed, linnet_order=args.linnet_order, show_progress=True,
                            overwrite=args.overwrite, **sizes)
    for name, p in manifest["per_source"].items():
        print(f"  {name:<16} {p['documents']:>9,} docs {p['tokens']:>13,} tokens {p['bytes'] / 1e6:9.2f} MB "
              f"{p['bytes_per_token']:5.2f} bytes/token   (validation: {p['val_documents']:,} docs, {p['val_tokens']:,} tokens)")
    print(f"{len(manifest['shards'])} shards in {house.shown(args.out)} ({manifest['tokens']:,} tokens, shard 0 = validation "
          f"with {manifest['val_tokens']:,}); val bytes/token {manifest['val_bytes_per_token']:.3f}")

    house.save_plot(plot_doc_lengths(manifest), args.out, "doc_lengths",
                    "document lengths per source on a log axis: where each source's mass sits, and its long tail")
    house.save_plot(plot_tokens_per_source(manifest), args.out, "tokens_per_source",
                    "tokens each source contributes; the orange cap shows the validation shard draws from every source")
    house.save_plot(plot_bytes_per_token(manifest), args.out, "bytes_per_token",
                    "bytes per token per source: text like the tokenizer's training text compresses better")
    window = window_with_boundaries(ShardLoader(args.out, "train", 1, 300, seed=args.seed), manifest["eot_id"])
    house.save_plot(plot_window(window, manifest["eot_id"], tokenizer), args.out, "window",
                    "one window packs several documents end to end; causal attention also reads across the red "
                    "<|endoftext|> into the previous document's tokens")
    return manifest


# --- Appendix: machinery ----------------------------------------------------------------------------------
# What you may skip on a first reading: (A) reading linnet's two datasets from the Hugging Face Hub, and
# (B) the bookkeeping that lets a killed run resume (progress.json, sha256 checks, stale files).

# (A) The Hugging Face Hub. The two datasets (docs/DATA.md): files are listed on the Hub, kept when they
# start with `prefix` and end with `suffix`, and read in sorted order. Every call names the pinned
# `revision` (house.HUB_REVISIONS, the one place it is set), so a repo that renames its files later does not
# change what is read. Listing walks only the folders the prefix leads to, one at a time, as far as the
# stream reads: dclm has ~28k files, and 250k documents need a few of the first folder's.

HF_CACHE_DIR = house.DATA_CACHE_DIR / "hf"   # hf_hub_download's cache (resumable downloads)
HF_DATASETS = {
    "fineweb-edu": {"repo": "HuggingFaceFW/fineweb-edu", "prefix": "sample/10BT/", "suffix": ".parquet",
                    "license": "ODC-By 1.0", "revision": house.HUB_REVISIONS["HuggingFaceFW/fineweb-edu"]},   # sample/10BT/000_00000.parquet, 001_00000.parquet, ... (text column)
    "dclm": {"repo": "mlfoundations/dclm-baseline-1.0", "prefix": "global-shard_", "suffix": ".jsonl.zst",
             "license": "CC-BY-4.0", "revision": house.HUB_REVISIONS["mlfoundations/dclm-baseline-1.0"]},           # global-shard_01_of_10/local-shard_0_of_10/shard_00000000_processed.jsonl.zst
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
            raise SystemExit(f"error: no {self.prefix}*{self.suffix} files in {self.local_dir or self.repo}@{self.revision}")

    def list_folder(self, folder: str) -> list[tuple[str, bool]]:
        """(repo-relative path, is a folder) of one folder's entries: the mirror's, or the Hub's at `revision`."""
        if self.local_dir is not None:
            if not self.local_dir.is_dir():
                raise SystemExit(f"error: {self.local_dir} does not exist: pass a directory laid out like {self.repo}")
            here = self.local_dir / folder
            return [(p.relative_to(self.local_dir).as_posix(), p.is_dir()) for p in here.iterdir()] if here.is_dir() else []
        import huggingface_hub

        try:
            return [(e.path, isinstance(e, huggingface_hub.hf_api.RepoFolder)) for e in huggingface_hub.HfApi().list_repo_tree(
                self.repo, path_in_repo=folder or None, repo_type="dataset", revision=self.revision)]
        except house.hub_errors() as e:
            raise SystemExit(f"error: cannot list {self.repo}/{folder} at revision {self.revision} on the Hugging Face Hub "
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
        except house.hub_errors() as e:
            # huggingface_hub (2.x) retries a cut-off transfer itself, then deletes the partial file if it fails.
            raise SystemExit(f"error: download of {self.repo}/{filename} failed ({type(e).__name__}): check your connection "
                             f"(HF_ENDPOINT, HTTPS_PROXY) and rerun; the files already downloaded stay in "
                             f"{house.shown(self.cache_dir)}, this one starts again from its beginning")

    def iter_documents(self) -> Iterator[str]:
        for filename in self.iter_files():
            yield from read_documents(self.fetch(filename))


def download_raw(source: HFSource, n_documents: int, raw_dir: Path = house.RAW_DATA_DIR) -> Path:
    """Stream the first `n_documents` of an HF source into raw_dir/<name>.jsonl (as linnet did); kept if done.

    A sidecar <name>.meta.json records the count, so asking for a different count downloads again."""
    out, meta = raw_dir / f"{source.name}.jsonl", raw_dir / f"{source.name}.meta.json"
    want = {"repo": source.repo, "revision": source.revision, "files": f"{source.prefix}*{source.suffix}",
            "documents": n_documents}
    if out.exists() and meta.exists() and json.loads(meta.read_text()) == want:
        return out
    for stale in raw_dir.glob(f".{out.name}.tmp*"):    # a killed download's temp file (house.atomic_path)
        stale.unlink()
    from tqdm import tqdm

    with house.atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        documents = source.iter_documents()
        for i in tqdm(range(n_documents), desc=f"downloading {source.name}", unit="doc"):
            text = next(documents, None)
            if text is None:
                raise SystemExit(f"error: {source.repo} has only {i:,} documents: lower --mix {source.name}")
            f.write(json.dumps({"text": text, "id": f"{source.name}-{i}"}) + "\n")
    house.write_json(meta, want)
    return out


def hub_sources(counts: dict[str, int], cache_dir: Path) -> list[LocalSource]:
    """linnet's sources: the first counts[name] documents of each Hub dataset, downloaded once into
    data/raw/<name>.jsonl (kept while its .meta.json matches) and read back as LocalSources."""
    sources = []
    for name in counts:
        if name not in HF_DATASETS:
            raise SystemExit(f"error: --mix names {name!r}, but the Hub sources are {sorted(HF_DATASETS)}; "
                             "pass your own files with --source NAME=PATH")
        raw = house.RAW_DATA_DIR / f"{name}.jsonl"
        meta = house.RAW_DATA_DIR / f"{name}.meta.json"
        hf = HFSource(name, cache_dir=cache_dir, **HF_DATASETS[name])
        saved = json.loads(meta.read_text()) if meta.exists() else {}
        if not (raw.exists() and saved.get("documents") == counts[name] and saved.get("revision") == hf.revision):
            if not house.has_internet():
                raise SystemExit("error: no internet to download fineweb-edu and dclm from the Hugging Face Hub: "
                                 "pass local text instead, e.g. --source python-docs=embedded/corpus/python-docs.jsonl.zst "
                                 "(NAME=PATH, repeatable), or run --preset tiny")
            raw = download_raw(hf, counts[name], raw_dir=house.RAW_DATA_DIR)
        sources.append(LocalSource(name, [raw], origin=f"{hf.location}, first {counts[name]:,} documents"))
    return sources


# (B) Resuming a killed run. build_shards records every finished shard in progress.json (with the settings
# it was made with); a rerun keeps the shards whose sha256 still matches and deletes everything else it
# wrote. manifest.json replaces progress.json at the very end.

def run_config(sources, counts: dict[str, int], tokenizer_sha256: str, seed: int, linnet_order: bool,
               shard_tokens: int, val_tokens: int) -> dict:
    """Everything the shards depend on; a rerun keeps finished shards only if it is equal (the manifest keeps it)."""
    return {"format": 1, "tokenizer_sha256": tokenizer_sha256, "seed": seed, "order": "linnet" if linnet_order else "interleaved",
            "mix": dict(counts), "shard_tokens": shard_tokens, "val_tokens": val_tokens,
            "sources": [{"name": s.name, "kind": s.kind, "location": s.location} for s in sources]}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read 4 MB at a time (recorded per shard, checked on a rerun)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


MANIFEST_KEYS = ("tokenizer_sha256", "vocab_size", "eot_id", "val_bytes_per_token", "shards", "config")   # what 04-06 read
READ_SHARD_KEYS = ("file", "split", "tokens", "sha256")            # per shard: what reading the shards needs
SHARD_KEYS = (*READ_SHARD_KEYS, "end_doc", "end_offset")            # ...and what a rerun needs to resume


def manifest_problem(saved, keys=MANIFEST_KEYS, shard_keys=SHARD_KEYS) -> str | None:
    """What makes a parsed manifest.json (or progress.json, `keys=("config", "shards")`) unusable; None if nothing."""
    if saved is None:
        return "empty, or not valid JSON"
    if not isinstance(saved, dict):
        return "not a JSON object"
    missing = [key for key in keys if key not in saved]
    if missing:
        return f"no {', '.join(missing)}"
    if not (isinstance(saved["shards"], list) and all(isinstance(r, dict) and all(k in r for k in shard_keys)
                                                      for r in saved["shards"])):
        return f"a shard record without {', '.join(shard_keys)}"
    return None


def manifest_values_problem(manifest: dict) -> str | None:
    """What makes a well-formed manifest's values unusable (read_manifest checks them before any training):
    a shard record with a path instead of a file name, a split other than train/val or a token count below 1;
    no validation shard; a vocab_size, eot_id or val_bytes_per_token that cannot be right.
    Only the keys present are checked (read_manifest's `needs` says which must be). None if nothing.

    >>> manifest_values_problem({"shards": [{"file": "shard_00001.npy", "split": "train", "tokens": 9}]})
    'no validation shard (split "val")'
    >>> manifest_values_problem({"shards": [{"file": "shard_00000.npy", "split": "val", "tokens": 9}],
    ...                          "val_bytes_per_token": 0})
    'val_bytes_per_token 0 is not a number > 0'"""
    def count(v, low):                     # an int (not a bool: JSON true) of at least `low`
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    for r in manifest["shards"]:
        if not (isinstance(r["file"], str) and r["file"] and Path(r["file"]).name == r["file"]):
            return f"shard file {r['file']!r} is not a file name in the folder"
        if r["split"] not in ("train", "val"):
            return f"{r['file']} has split {r['split']!r}, not 'train' or 'val'"
        if not count(r["tokens"], 1):
            return f"{r['file']} lists {r['tokens']!r} tokens, not a whole number >= 1"
    if not any(r["split"] == "val" for r in manifest["shards"]):     # (no training shard: ShardLoader says so)
        return 'no validation shard (split "val")'
    if "vocab_size" in manifest and not count(manifest["vocab_size"], 2):
        return f"vocab_size {manifest['vocab_size']!r} is not a whole number >= 2"
    if "eot_id" in manifest and not (count(manifest["eot_id"], 0) and manifest["eot_id"] < manifest.get("vocab_size", 2 ** 16)):
        return f"eot_id {manifest['eot_id']!r} is not a token id of the vocabulary"
    bpt = manifest.get("val_bytes_per_token", 1.0)
    if not (isinstance(bpt, (int, float)) and not isinstance(bpt, bool) and math.isfinite(bpt) and bpt > 0):
        return f"val_bytes_per_token {bpt!r} is not a number > 0"
    return None


def read_saved_records(path: Path, keys) -> dict | None:
    """manifest.json or progress.json parsed, or None with a note when it is damaged (the run starts over)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        saved = None
    problem = manifest_problem(saved, keys)
    if problem is None:
        return saved
    print(f"note: {house.shown(path)} is damaged ({problem}): ignoring it, the shards it "
          "would list are rebuilt")
    return None


def verified_shards(out_dir: Path, config: dict, overwrite: bool = False) -> tuple[list[dict], bool]:
    """The finished shards a rerun can keep: recorded with the same config and matching sha256 on disk.

    Returns (records, complete). Reads manifest.json (a finished run) or progress.json (an unfinished one);
    a damaged one is ignored (`read_saved_records`)."""
    for name, complete in (("manifest.json", True), ("progress.json", False)):
        path = out_dir / name
        if path.exists():
            saved = read_saved_records(path, MANIFEST_KEYS if complete else ("config", "shards"))
            if saved is None:
                continue
            if saved.get("config") != config:
                refuse_other_shards(out_dir, saved.get("config") or {}, config, overwrite)
                return [], False
            kept = []
            for record in saved["shards"]:
                shard = out_dir / record["file"]
                if not shard.exists() or sha256_file(shard) != record["sha256"]:
                    return kept, False
                kept.append(record)
            return kept, complete
    return [], False


def refuse_other_shards(out_dir: Path, saved: dict, config: dict, overwrite: bool) -> None:
    """Shards made with other settings are another data set (a checkpoint may need them): replaced only with
    --overwrite; else one line naming what differs, before anything is deleted."""
    differs = ", ".join(k for k in config if saved.get(k) != config[k]) or "format"
    if not overwrite:
        raise SystemExit(f"error: {house.shown(out_dir)} holds shards made with other settings ({differs} differ): "
                         f"pass another --out for these, or --overwrite to replace them")
    print(f"note: {house.shown(out_dir)} holds shards made with other settings ({differs}): replacing them (--overwrite)")


def remove_outputs(out_dir: Path, keep: int) -> None:
    """Delete this script's stale files in out_dir: temp files, and shards from index `keep` on."""
    for path in out_dir.glob(".*.tmp*"):
        path.unlink()
    for path in out_dir.glob("shard_*.npy"):
        index = path.stem.removeprefix("shard_")
        if index.isdigit() and path.name == shard_name(int(index)) and int(index) >= keep:
            path.unlink()                    # only our own names: a user's shard_00003.bak.npy stays


def resume_point(out_dir: Path, config: dict, overwrite: bool = False) -> tuple[list[dict], bool]:
    """What an earlier run left in out_dir that this one keeps: (verified shard records, all done?).

    Everything else goes: temp files of a killed write, shards after the verified ones, and the
    manifest when the run is not complete (it is written again, last). The manifest goes FIRST (one
    unlink, atomic), before any shard it lists is touched: a run killed in between leaves no manifest
    beside missing shards, so 05 cannot train on a half-deleted folder."""
    records, complete = verified_shards(out_dir, config, overwrite)
    if not complete:
        (out_dir / "manifest.json").unlink(missing_ok=True)
    remove_outputs(out_dir, keep=len(records))
    if complete:
        print(f"all {len(records)} shards in {house.shown(out_dir)} are already done (sha256 verified)")
        return records, True
    if records:
        print(f"resuming: {len(records)} finished shards verified; skipping {records[-1]['end_doc']:,} documents")
    return records, False


def shard_problem(data_dir, record: dict) -> str | None:
    """What is wrong with one shard on disk, without hashing it (a stat and a 128-byte read); None if whole.

    Whole: the file exists, its .npy header says (tokens,) uint16 with the manifest's token count, and its
    size is that header plus 2 bytes per token (a file cut short by a full disk or a copy fails this)."""
    path = Path(data_dir) / record["file"]
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            shape, _, dtype = read_header[version](f)
            header_bytes = f.tell()
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError, KeyError):
        return "damaged (not a readable .npy file)"
    if dtype != np.uint16 or tuple(shape) != (record["tokens"],):
        return f"not what the manifest lists (it holds {tuple(shape)} {dtype}, not ({record['tokens']},) uint16)"
    if size != header_bytes + 2 * record["tokens"]:
        return f"truncated ({size:,} bytes, its {record['tokens']:,} tokens need {header_bytes + 2 * record['tokens']:,})"
    return None


def check_shards(data_dir, records: list[dict], sha256: bool = False) -> None:
    """Stop with one line at the first listed shard that is not whole (and, with `sha256`, not byte-exact)."""
    for record in records:
        path = Path(data_dir) / record["file"]
        problem = shard_problem(data_dir, record)
        if problem is None and sha256 and sha256_file(path) != record["sha256"]:
            problem = "changed (its sha256 differs from the manifest's)"
        if problem is not None:
            raise SystemExit(f"error: {house.shown(path)} is {problem}: rerun the python 04_data.py command that made "
                             f"{house.shown(Path(data_dir))} (it keeps the shards that verify and rebuilds the rest)")


def verify_shards(data_dir, sha256: bool = True) -> dict:
    """`python 04_data.py --verify --out DIR`: every shard of the manifest checked, by sha256 too; the manifest."""
    manifest = read_manifest(data_dir)         # sizes, always
    if sha256:
        check_shards(data_dir, manifest["shards"], sha256=True)
    n_bytes = sum((Path(data_dir) / r["file"]).stat().st_size for r in manifest["shards"])
    print(f"all {len(manifest['shards'])} shards in {house.shown(Path(data_dir))} are whole"
          + (f" and match their sha256 ({n_bytes / 1e6:.1f} MB read)" if sha256 else ""))
    return manifest


def progress_writer(out_dir: Path, config: dict):
    """The packer's `write_progress(records)`: progress.json = the settings + the shards finished so far."""
    return lambda records: house.write_json(out_dir / "progress.json", {"config": config, "shards": records})


if __name__ == "__main__":
    main()
