"""04 — the data: fineweb-edu + dclm, mixed, tokenized into uint16 shards, read back by a resumable loader.

Builds, in order: 1 sources (a name and a generator of documents: memory never grows with the corpus),
2 the mix (a seeded weighted round-robin; `--linnet-order` is linnet's all-dclm-then-fineweb-edu), 3 encoding
(`<|endoftext|>` before every document; long ones in pieces that encode to the very same ids), 4 packing into
shards (uint16, shard 0 = validation of whole documents; a killed run resumes, byte-identical), 5 the loader
(windows of T+1 tokens, shuffled per epoch, split across ranks, resumable from (epoch, batch)), 6 plots,
7 the script. The Hub download is house/sources.py; the manifest, sha256 and resume bookkeeping house/shards.py.

Run it
  python 04_data.py --preset tiny     # the course corpus (or --data PATH, --source NAME=PATH): seconds on a CPU
  python 04_data.py                   # linnet: downloads 700k fineweb-edu + 250k dclm documents into data/raw/
                                      # and stops; then python 01_tokenizer.py, then python 04_data.py tokenizes
  python 04_data.py --verify --out out/04_data   # every shard's size and sha256 against the manifest

Writes (into --out, default out/04_data/): shard_00000.npy (validation), shard_00001.npy, ... (training,
--shard-tokens each, the last one shorter), manifest.json LAST (tokenizer sha256, the mix, documents / tokens /
bytes per source and per shard, every shard's sha256, val_bytes_per_token for bits per byte in 05 and 06),
progress.json while running; doc_lengths.png, tokens_per_source.png, bytes_per_token.png, window.png.
docs/DATA.md: linnet's datasets and how this file differs from linnet's pipeline.

Not handled: documents are the FIRST n of each source (as linnet did), not a random sample; text containing
`<|endoftext|>` encodes to the special token; the loader drops each epoch's last partial batch and each shard's
last < T tokens (windows never cross shards); a rerun is byte-identical only with the same inputs.
"""
from __future__ import annotations

import argparse
import hashlib
import heapq
import importlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

import house
from house import shards

tokenizer_lib = importlib.import_module("01_tokenizer")   # EOT, load_tokenizer, tokenizer_sha256

# --- 1. Sources: where documents come from --------------------------------------------------------------
# A source is anything with `.name`, `.kind`, `.location` and `iter_documents()` yielding strings. The
# generator reads one file at a time and one row group / line at a time, so memory never grows with
# the corpus. Empty texts are skipped (as linnet did). linnet's two Hugging Face datasets arrive the same
# way: house/sources.py (`HFSource`, `download_raw`) streams their first documents once into
# data/raw/<name>.jsonl, and from then on they are LocalSources like any file of yours.

LOCAL_SUFFIXES = house.TEXT_SUFFIXES + (".jsonl.zst",)


class LocalSource:
    """Documents from local files: `LocalSource("shakespeare", ["../shared/data/corpus/shakespeare.jsonl"])`.

    Paths can be files (.jsonl, .jsonl.zst, .txt, .parquet) or directories of them (read in sorted order).
    `origin` says where the files came from when they are a download (kept in the manifest)."""
    kind = "local"

    def __init__(self, name: str, paths: Iterable[str | os.PathLike], origin: str | None = None):
        self.name = name
        self.files = house.list_text_files(list(paths), suffixes=LOCAL_SUFFIXES)
        if not self.files:
            raise house.UserError(f"source {name}: no {'/'.join(LOCAL_SUFFIXES)} files in {list(map(str, paths))}: check the path")
        self.origin = origin
        self.location = [str(f) for f in self.files] + ([origin] if origin else [])

    def iter_documents(self) -> Iterator[str]:
        for path in self.files:
            yield from house.text.read_documents(path)   # .jsonl.zst streamed, .parquet a row group at a time


def parse_source_arg(arg: str) -> LocalSource:
    """`--source NAME=PATH` → LocalSource(NAME, [PATH])."""
    name, sep, path = arg.partition("=")
    if not sep or not name or not path:
        raise house.UserError(f"--source {arg!r}: write it as NAME=PATH, e.g. --source shakespeare=../shared/data/corpus/shakespeare.jsonl")
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
            raise house.UserError(f"source {name} has only {taken[name]:,} documents but the mix asks for "
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
# the claim on the course corpus and on random whitespace-heavy strings. (What it gains: docs/PERFORMANCE.md;
# it matters most on a many-core host, where one long document would otherwise keep the other cores waiting.)

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
        raise house.UserError(f"the tokenizer has {vocab_size:,} tokens but shards store ids as uint16 "
                              "(at most 65,536 tokens): train one with python 01_tokenizer.py --vocab-size 65536 or less")


# --- 4. Packing ids into shards ---------------------------------------------------------------------------
# The stream of documents is a fixed function of (sources, mix, seed), so the stream of token ids is
# too, and shard k is a fixed slice of it. After each shard we record where the NEXT one starts in the
# stream: (document index, token offset inside that document). So a rerun can verify the finished
# shards, skip that many documents without tokenizing them, and carry on (the bookkeeping — progress.json,
# sha256 checks, removing stale files — is house/shards.py: `resume_point`).

MIN_SHARD_TOKENS = 1_025          # one training window at linnet's sequence length: 1,024 tokens + the last target


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

    Shard 0 (validation) takes whole documents until it holds ≥ `val_tokens`, so no validation text leaks
    into training (linnet cut at exactly 100M tokens: one document was split between the two); every later
    shard holds exactly `shard_tokens` (a document runs on into the next shard). A document and its bytes are
    counted in the shard where it STARTS, its tokens where they lie. `records` are the finished shards."""

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
            digest = shards.sha256_file(tmp)
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
    (else a UserError, before anything is deleted). `on_shard_written(record)` is called after each shard (the
    tests use it to simulate a crash)."""
    check_vocab_fits_uint16(tokenizer)
    eot = tokenizer_lib.eot_id(tokenizer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = shards.run_config(sources, counts, tokenizer_sha256, seed, linnet_order, shard_tokens, val_tokens)
    records, complete = shards.resume_point(out_dir, config, shard_name, overwrite)
    if complete:
        return shards.make_manifest(config, records, tokenizer.get_vocab_size(), eot)

    packer = ShardPacker(out_dir, shard_tokens, val_tokens, [s.name for s in sources], records,
                         write_progress=shards.progress_writer(out_dir, config), on_shard_written=on_shard_written)
    start = (records[-1]["end_doc"], records[-1]["end_offset"]) if records else (0, 0)
    stream = iter_mixed_documents(sources, counts, seed, linnet_order)
    tokenize_into(packer, tokenizer, eot, stream, sum(counts.values()), start, show_progress)
    if len(packer.records) < 2:
        raise shards.no_training_shard(out_dir, packer.records[0], eot, val_tokens, MIN_SHARD_TOKENS)
    manifest = shards.make_manifest(config, packer.records, tokenizer.get_vocab_size(), eot)
    house.write_json(out_dir / "manifest.json", manifest)
    (out_dir / "progress.json").unlink(missing_ok=True)
    return manifest


def tokenize_into(packer: ShardPacker, tokenizer, eot: int, stream, n_documents: int,
                  start: tuple[int, int] = (0, 0), show_progress: bool = True) -> None:
    """Encode the (source, text) stream batch by batch into `packer`, then write its last shard.

    `start` = (document, token offset) where the unfinished work begins: the documents before it are
    read (to keep the stream in step) but not tokenized, and that document's first `offset` tokens are
    already in a finished shard."""
    start_doc, start_offset = start
    for _ in range(start_doc):   # already in finished shards: read, not tokenized
        next(stream)
    started, n_bytes, doc_index = time.perf_counter(), 0, start_doc
    with house.progress(total=n_documents, initial=start_doc, unit="doc", desc="tokenizing", disable=not show_progress) as bar:
        for batch in iter_batches(stream, BATCH_CHARS):   # `with`: an error's line starts after the bar, not on it
            doc_index, batch_bytes = pack_batch(packer, tokenizer, eot, batch, doc_index, start_doc, start_offset)
            n_bytes += batch_bytes
            bar.set_postfix(MB_per_s=f"{n_bytes / 1e6 / (time.perf_counter() - started):.2f}", refresh=False)
            bar.update(len(batch))   # house.progress: in a log, a plain line every 30 s instead of a redrawn bar
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


# --- 5. Reading shards back ------------------------------------------------------------------------------

def read_manifest(data_dir, needs: tuple[str, ...] = ()) -> dict:
    """The manifest of a finished 04 run, or a UserError that says how to make one (or that it is corrupt).

    Every shard it lists is checked first, cheaply (exists, holds its recorded number of tokens, has the
    byte size that takes): a damaged shard stops 05 and 06 here, not at step 100. `python 04_data.py
    --verify --out DIR` checks the sha256 of every shard too (house/shards.py's `verify_shards`). `needs`:
    the keys the caller reads besides the shard list, e.g. 05's ("tokenizer_sha256", "vocab_size")."""
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise house.NotFound(f"no shards in {house.shown(Path(data_dir))}: run python 04_data.py (--preset tiny for the small one) first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:                       # not JSON, not UTF-8, or empty: a copy cut short, a full disk
        manifest = None
    problem = (shards.manifest_problem(manifest, ("shards", *needs), shards.READ_SHARD_KEYS)
               or shards.manifest_values_problem(manifest))
    if problem is not None:
        raise house.UserError(f"{house.shown(path)} is corrupt ({problem}): rerun the python 04_data.py command "
                              f"that made {house.shown(Path(data_dir))} to rebuild it")
    shards.check_shards(data_dir, manifest["shards"])
    return manifest


def load_shard(data_dir, record: dict) -> np.ndarray:
    """One shard as a read-only memory map: (n_tokens,) uint16, nothing read until it is indexed."""
    shards.check_shards(data_dir, [record])  # a file cut short would fail deep inside np.load otherwise
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
            raise house.UserError(f"split must be 'train' or 'val', not {split!r}")
        if not 0 <= rank < world_size:
            raise house.UserError(f"rank {rank} is not in 0..{world_size - 1}")
        self.data_dir, self.split, self.B, self.T = Path(data_dir), split, B, T
        self.rank, self.world_size, self.seed = rank, world_size, seed
        manifest = read_manifest(data_dir)
        self.shards = [r for r in manifest["shards"] if r["split"] == split]
        self.data_id = hashlib.sha256("".join(r["sha256"] for r in self.shards).encode()).hexdigest()[:16]
        self.windows_per_shard = [max(0, (r["tokens"] - 1) // T) for r in self.shards]
        self.batches_per_epoch = sum(self.windows_per_shard) // (B * world_size)
        if self.batches_per_epoch == 0:
            raise house.UserError(f"the {split} shards in {house.shown(self.data_dir)} hold {sum(self.windows_per_shard):,} "
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
                raise house.UserError(f"the saved loader position was made with {key}={state[key]!r}, this loader has "
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
    # linnet (vocab 32,768): ≈ 950k documents ≈ 1B tokens ≈ 10 shards; 05's 5,281 steps × 524,288 tokens
    # ≈ 2.77B tokens read the training shards 2–3 times (docs/DATA.md)
    "linnet": {"shard_tokens": 100_000_000, "val_tokens": 100_000_000},
    # tiny (vocab 1,024, the course corpus): ≈ 2.3 bytes per token (python-docs 2.53, Shakespeare 2.15)
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
            raise house.UserError(f"--mix {mix!r}: write it as NAME:DOCUMENTS,..., e.g. --mix fineweb-edu:700000,dclm:250000")
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
        sources = [LocalSource(name, [raw], origin=origin)   # downloaded into data/raw/ once (house/sources.py)
                   for name, raw, origin in house.sources.hub_sources(counts, args.cache_dir, house.RAW_DATA_DIR)]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise house.UserError(f"two sources share a name ({names}): give each --source its own NAME")
    unknown = set(counts) - set(names)
    if unknown:
        raise house.UserError(f"--mix names {sorted(unknown)}, but the sources are {names}")
    for s in sources:
        if s.name not in counts:
            counts[s.name] = count_documents(s)
        if counts[s.name] == 0:
            raise house.UserError(f"source {s.name} has no non-empty documents ({s.location[0]}): check the file")
    return sources, {s.name: counts[s.name] for s in sources}


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
               "  --source NAME=PATH ...   your files (.jsonl 'text' field, .jsonl.zst, .txt: a document per\n"
               "                           paragraph, split at blank lines, .parquet, or dirs)\n"
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
                        help="the tiny preset's text, as in 01 (a file or a directory; one source per file; a .txt "
                             "file holds one document per paragraph: split at blank lines)")
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
    parser.add_argument("--cache-dir", type=Path, default=house.sources.HF_CACHE_DIR,
                        help="where Hub files are downloaded (default: data/hf)")
    return parser


@house.speaks
def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    try:
        if args.verify:
            return shards.verify_shards(args.out, read_manifest(args.out))   # check the shards in --out, build nothing
        house.check_writable(args.out)          # a read-only --out fails now, not after tokenizing
        with house.folder_lock(args.out):       # one writer per folder
            return make_shards(args)
    except KeyboardInterrupt as stop:           # Ctrl-C, SIGTERM, SIGHUP: one line on what a rerun keeps
        kept = "nothing was changed (--verify only reads)" if args.verify else shards.kept_after_interrupt(args.out)
        print(f"\ninterrupted: {kept}", file=sys.stderr)
        raise SystemExit(house.cli.exit_status(stop)) from None   # 128 + the signal


def make_shards(args) -> dict:
    """Tokenize the sources into shards in args.out, print what they hold, save the plots."""
    sizes = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in PRESETS[args.preset].items()}
    if min(sizes.values()) < 1:
        raise house.UserError("--shard-tokens and --val-tokens must be positive")
    sources, counts = resolve_sources(args)
    if not args.tokenizer.is_file():
        raise house.NotFound(f"no tokenizer at {house.shown(args.tokenizer)}: run python 01_tokenizer.py --preset tiny "
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


if __name__ == "__main__":
    main()
