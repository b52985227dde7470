"""The bookkeeping of a folder of shards (04_data.py writes it; 05 and 06 read it): manifest.json, progress.json,
sha256, checks that a shard on disk is whole, and the resume of a killed run.

A finished folder holds shard_00000.npy, shard_00001.npy, ... and manifest.json (written LAST, so a killed run
never looks finished). While 04 runs, progress.json records every finished shard with the settings it was made
with (`run_config`); a rerun keeps the shards whose sha256 still matches and deletes everything else it wrote
(`resume_point`). `check_shards` is the cheap check (a stat and a 128-byte read per shard) that 05 and 06 run
whenever they open the folder; `verify_shards` hashes every byte. Nothing here knows 04: the file name of a
shard (04's `shard_name`) is passed in where it is needed.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from house.cli import UserError
from house.files import write_json
from house.paths import shown


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
    print(f"note: {shown(path)} is damaged ({problem}): ignoring it, the shards it "
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
    --overwrite; else a UserError naming what differs, before anything is deleted."""
    differs = ", ".join(k for k in config if saved.get(k) != config[k]) or "format"
    if not overwrite:
        raise UserError(f"{shown(out_dir)} holds shards made with other settings ({differs} differ): "
                        f"pass another --out for these, or --overwrite to replace them")
    print(f"note: {shown(out_dir)} holds shards made with other settings ({differs}): replacing them (--overwrite)")


def remove_outputs(out_dir: Path, keep: int, shard_name) -> None:
    """Delete 04's stale files in out_dir: temp files, and shards from index `keep` on (`shard_name(i)`: the
    file name 04 gives shard i)."""
    for path in out_dir.glob(".*.tmp*"):
        path.unlink()
    for path in out_dir.glob("shard_*.npy"):
        index = path.stem.removeprefix("shard_")
        if index.isdigit() and path.name == shard_name(int(index)) and int(index) >= keep:
            path.unlink()                    # only our own names: a user's shard_00003.bak.npy stays


def resume_point(out_dir: Path, config: dict, shard_name, overwrite: bool = False) -> tuple[list[dict], bool]:
    """What an earlier run left in out_dir that this one keeps: (verified shard records, all done?).

    Everything else goes: temp files of a killed write, shards after the verified ones, and the
    manifest when the run is not complete (it is written again, last). The manifest goes FIRST (one
    unlink, atomic), before any shard it lists is touched: a run killed in between leaves no manifest
    beside missing shards, so 05 cannot train on a half-deleted folder."""
    records, complete = verified_shards(out_dir, config, overwrite)
    if not complete:
        (out_dir / "manifest.json").unlink(missing_ok=True)
    remove_outputs(out_dir, len(records), shard_name)
    if complete:
        print(f"all {len(records)} shards in {shown(out_dir)} are already done (sha256 verified)")
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
    """Raise a UserError at the first listed shard that is not whole (and, with `sha256`, not byte-exact)."""
    for record in records:
        path = Path(data_dir) / record["file"]
        problem = shard_problem(data_dir, record)
        if problem is None and sha256 and sha256_file(path) != record["sha256"]:
            problem = "changed (its sha256 differs from the manifest's)"
        if problem is not None:
            raise UserError(f"{shown(path)} is {problem}: rerun the python 04_data.py command that made "
                            f"{shown(Path(data_dir))} (it keeps the shards that verify and rebuilds the rest)")


def verify_shards(data_dir, manifest: dict, sha256: bool = True) -> dict:
    """`python 04_data.py --verify --out DIR`: every shard of the manifest (as 04's read_manifest gave it, sizes
    already checked) checked by sha256 too; returns the manifest."""
    if sha256:
        check_shards(data_dir, manifest["shards"], sha256=True)
    n_bytes = sum((Path(data_dir) / r["file"]).stat().st_size for r in manifest["shards"])
    print(f"all {len(manifest['shards'])} shards in {shown(Path(data_dir))} are whole"
          + (f" and match their sha256 ({n_bytes / 1e6:.1f} MB read)" if sha256 else ""))
    return manifest


def kept_after_interrupt(out_dir) -> str:
    """What an interrupted 04 run left in out_dir for a rerun, in words (04's line after Ctrl-C): the finished
    shards progress.json lists (a rerun verifies them by sha256 and goes on after them), or a finished folder."""
    out_dir = Path(out_dir)
    if (out_dir / "manifest.json").is_file():
        return f"the shards in {shown(out_dir)} are finished (manifest.json); rerun the same command to draw the plots"
    try:
        saved = json.loads((out_dir / "progress.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None
    n = len(saved["shards"]) if manifest_problem(saved, ("config", "shards")) is None else 0
    if n == 0:
        return f"no shard was finished in {shown(out_dir)}; rerun the same command to start again"
    return (f"{n} finished shard{'s' if n != 1 else ''} kept in {shown(out_dir)} (listed in progress.json); rerun the "
            "same command to resume after them")


def progress_writer(out_dir: Path, config: dict):
    """The packer's `write_progress(records)`: progress.json = the settings + the shards finished so far."""
    return lambda records: write_json(out_dir / "progress.json", {"config": config, "shards": records})


def make_manifest(config: dict, records: list[dict], vocab_size: int, eot: int) -> dict:
    """Everything a reader needs to trust and use the shards; totals are sums over the shard records.

    Bytes per token = UTF-8 bytes of the documents / their tokens, each document's leading <|endoftext|>
    one token of 0 bytes: a 10-byte document encoded as 3 ids counts 10 / 4."""
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
        "tokenizer_sha256": config["tokenizer_sha256"], "vocab_size": vocab_size, "eot_id": eot,
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


def no_training_shard(out_dir: Path, record: dict, eot: int, val_tokens: int, least: int) -> UserError:
    """The error for a stream that ended inside the validation shard, with advice that works (`split_advice`,
    from the documents' token counts: each starts with EOT). The shard and progress.json are removed first, so a
    rerun with another --val-tokens starts clean instead of meeting shards "made with other settings"."""
    path = out_dir / record["file"]
    tokens = np.load(path)                                                     # (n,) uint16
    lengths = np.diff(np.append(np.flatnonzero(tokens == eot), len(tokens)))   # (documents,) tokens of each
    path.unlink()
    (out_dir / "progress.json").unlink(missing_ok=True)
    return UserError(f"all {len(tokens):,} tokens went to the validation shard (it takes whole documents until "
                           f"it holds --val-tokens, now {val_tokens:,}): "
                           + split_advice(lengths, sum(record["source_bytes"].values()), least))


def split_advice(lengths: np.ndarray, n_bytes: int, least: int = 1_025) -> str:
    """What to do when documents of `lengths` tokens (`n_bytes` of text) all went to the validation shard: the
    --val-tokens that gives validation about a tenth and training at least `least` tokens, else how much text
    is missing. `least` = one window of linnet's 1,024 tokens + its target (04's MIN_SHARD_TOKENS); 05's
    tiny batch, 8 windows of 64, fits in it.

    >>> split_advice(np.array([400] * 30), 30_000)
    'pass --val-tokens 1200 (validation: the first 3 of 30 documents, 1,200 tokens; training: 10,800 tokens)'
    >>> split_advice(np.array([400] * 4), 4_000).rsplit(": ", 1)[1]
    'add about 2 KB of text (more documents), then pass --val-tokens 1025'"""
    total, cum = int(lengths.sum()), np.cumsum(lengths)
    for want in (max(least, total // 10), least):
        k = int(np.searchsorted(cum, want))                  # the validation shard: documents 0 … k
        if k < len(lengths) and total - cum[k] >= least:
            return (f"pass --val-tokens {want} (validation: the first {k + 1:,} of {len(lengths):,} documents, "
                    f"{cum[k]:,} tokens; training: {total - cum[k]:,} tokens)")
    if len(lengths) == 1:
        more = f" and add about {kb_of(2 * least - total, n_bytes / total)} KB of text" if total < 2 * least else ""
        return (f"the text is one document ({total:,} tokens): split it into documents (a .txt file is split at blank "
                f"lines, a .jsonl file holds one per line){more}")
    smallest_val = int(cum[np.searchsorted(cum, least)]) if total >= least else least   # whole documents, ≥ least
    return (f"whole documents cannot give validation and training {least:,} tokens each ({total:,} tokens in "
            f"{len(lengths):,} documents): add about {kb_of(smallest_val + least - total, n_bytes / total)} KB of text "
            f"(more documents), then pass --val-tokens {least}")


def kb_of(tokens: int, bytes_per_token: float) -> int:
    """Kilobytes of text that hold `tokens` tokens, with a fifth more for text that compresses better, rounded
    up: kb_of(625, 2.5) == 2."""
    return max(1, math.ceil(1.2 * tokens * bytes_per_token / 1000))
