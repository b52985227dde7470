"""01 — the linnet tokenizer: byte-level BPE, built by hand and then with Hugging Face `tokenizers`.

Builds, in order: 1 bytes as printable characters (GPT-2's table: a space is `Ġ`, a newline `Ċ`; nothing is ever
out of vocabulary), 2 pre-tokenization (the GPT-2 regex cuts words first, so merges never cross a word boundary;
training cuts words at 256 characters, so no long line stalls it), 3 BPE from scratch (count pairs, merge the
most frequent, repeat; ties go to the pair of the OLDEST tokens), 4 the real tokenizer with HF `tokenizers` (it
learns the very same merges; train, save atomically, load, fingerprint), 5 measuring (bytes per token, encoding
with every core), 6 plots, 7 the script.

Run it
  python 01_tokenizer.py --preset tiny      # vocab 1,024 on embedded/corpus (or --data PATH): seconds on a CPU
  python 01_tokenizer.py                    # vocab 32,768 on data/raw/ (python 04_data.py downloads it there)
  python 01_tokenizer.py --tokenizer out/01_tokenizer/tokenizer.json --data some.jsonl   # measure + plot only

Writes (into --out, default out/01_tokenizer/): tokenizer.json (loads with `tokenizers.Tokenizer.from_file` and
`transformers.PreTrainedTokenizerFast(tokenizer_file=...)`; later lessons find it through `load_tokenizer`),
compression.png (bytes per token as the vocabulary grows), token_lengths.png, token_boundaries.png (one sentence
cut at three vocabulary sizes). Ids: `<|endoftext|>` 0 (04 puts it before every document), `<|padding|>` 1, the
256 byte-characters 2…257 by code point, then one id per merge in the order it was learned.

Not handled: the hand-written trainer recounts every pair after every merge (fine for a few KB; the Rust
trainer counts incrementally); the trainer holds one count per distinct word, so memory grows with the corpus's
vocabulary (not its size); text containing `<|endoftext|>` encodes to the special token (as in GPT-2 and
linnet), and `decode` drops it unless skip_special_tokens=False; no normalisation (NFC/NFKC).
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

import house
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

# --- 1. Bytes as printable characters ----------------------------------------------------------------
# Byte-level BPE works on UTF-8 bytes, so any string can be tokenized: "é" is the two bytes C3 A9,
# "😀" is four. GPT-2 (and HF's ByteLevel) shows each byte as one printable unicode character so that
# tokens can be stored as JSON strings: printable bytes stay themselves, the others (space, newline,
# control bytes, ...) are shifted to code points 256+. That is why a space shows up as "Ġ" (256 + 32).

EOT = "<|endoftext|>"     # id 0: separates documents (04_data puts it in front of each one)
PAD = "<|padding|>"       # id 1: fills batches to equal length; never trained on
SPECIAL_TOKENS = [EOT, PAD]
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)   # 258: the bytes and the specials, before any merge
MAX_VOCAB_SIZE = 65_536                      # 04_data stores token ids as uint16
# linnet: 2 specials + 256 bytes + 32,510 merges, min frequency 2, no prefix space; trained on the 16 MB course
# corpus (not linnet's data) it gives ≈ 4.0 bytes/token (python docs 4.2, Shakespeare 3.6; BENCHMARKS.md)
LINNET_VOCAB_SIZE = 32_768
TINY_VOCAB_SIZE = 1_024      # ≈ 2.3 bytes/token on embedded/corpus (python docs 2.5, Shakespeare 2.1)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: each of the 256 byte values -> one printable character.

    >>> table = bytes_to_unicode(); table[ord("a")], table[ord(" ")], table[ord("\\n")]
    ('a', 'Ġ', 'Ċ')"""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = 256
    for b in range(256):
        if b not in table:
            table[b] = chr(shifted)
            shifted += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def token_bytes(token: str) -> bytes:
    """The raw bytes behind a byte-level token string: token_bytes("Ġthe") == b" the"."""
    return bytes(CHAR_TO_BYTE[c] for c in token)


# --- 2. Pre-tokenization: cut text into words before merging -----------------------------------------
# BPE never merges across these cuts. The GPT-2 regex keeps a leading space with its word (" world"),
# splits letters from digits from punctuation, and keeps runs of whitespace apart. Python's `re` has no
# \p{L} (any letter), so we let HF's Rust regex do the cut and do the byte mapping ourselves.
# TRAINING cuts words at MAX_WORD_CHARS: the same regex with each `+` bounded (a run of 600 "-" is 256 + 256 + 88;
# a word's leading space comes on top: " ?\p{L}{1,256}").
# Each merge rewrites every word that holds its pair (HF's trainer in time that grows faster than the word's
# length), so a 1 MB line of "-" (one word) stalls training; cut, it is a few thousand copies of one
# 256-character word, counted once. No word of embedded/corpus is that long (its longest, a table rule in the
# Python docs, has 132), so its tokenizer is unchanged. Encoding does not cut: the saved tokenizer applies its
# merges to whole words.

GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_SPLITTER = pre_tokenizers.Split(Regex(GPT2_SPLIT_PATTERN), behavior="isolated")
MAX_WORD_CHARS = 256
TRAINING_SPLITTER = pre_tokenizers.Split(Regex(GPT2_SPLIT_PATTERN.replace("+", f"{{1,{MAX_WORD_CHARS}}}")),
                                         behavior="isolated")   # ' ?\p{L}{1,256}|...|\s{1,256}'


def split_words(text: str, splitter=GPT2_SPLITTER) -> list[str]:
    """Text -> words, each written in byte-characters (what HF's ByteLevel pre-tokenizer does);
    `splitter=TRAINING_SPLITTER` cuts words longer than MAX_WORD_CHARS.

    >>> split_words("Hello world's 2024!")
    ['Hello', 'Ġworld', "'s", 'Ġ2024', '!']
    >>> [len(w) for w in split_words("-" * 600, TRAINING_SPLITTER)]
    [256, 256, 88]"""
    words = [piece for piece, _offsets in splitter.pre_tokenize_str(text)]
    return ["".join(BYTE_TO_CHAR[b] for b in word.encode("utf-8")) for word in words]


# --- 3. BPE from scratch: count pairs, merge the best, repeat ----------------------------------------

def count_words(texts: Iterable[str]) -> collections.Counter:
    """How often each word occurs (words cut at MAX_WORD_CHARS); a word is a tuple of tokens, at first one
    byte-character each.

    >>> count_words(["the cat the"])[("Ġ", "t", "h", "e")]
    1"""
    counts = collections.Counter()
    for text in texts:
        counts.update(tuple(word) for word in split_words(text, TRAINING_SPLITTER))
    return counts


def count_pairs(words: dict[tuple[str, ...], int]) -> collections.Counter:
    """Occurrences of each adjacent token pair, weighted by how often its word occurs.

    >>> count_pairs({("a", "a", "a"): 2, ("b", "a"): 1})
    Counter({('a', 'a'): 4, ('b', 'a'): 1})"""
    pairs = collections.Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            pairs[pair] += n
    return pairs


def merge_pair(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """Replace each occurrence of `pair` in `word` by one token, left to right, never overlapping.

    >>> merge_pair(("a", "a", "a"), ("a", "a"))
    ('aa', 'a')"""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train_bpe_scratch(texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
                      special_tokens: list[str] = SPECIAL_TOKENS) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Byte-level BPE training in plain Python; returns (merges in order, vocab token -> id).

    Same rules as HF's BpeTrainer, found by experiment (tests/test_01_tokenizer.py checks every merge):
      * ids: the special tokens first, then the 256 byte-characters sorted by code point;
      * each step merges the most frequent pair; on a TIE, the pair whose (left id, right id) is
        smallest wins — the pair of the oldest tokens, not the alphabetically first one;
      * stop when the vocab is full or the best pair occurs fewer than `min_frequency` times;
      * a merge whose result is already a token (e.g. "ab"+"c" after "a"+"bc") adds no new id.
    Recounting all pairs every step makes this O(merges × words): a few KB only."""
    vocab = {token: i for i, token in enumerate([*special_tokens, *sorted(BYTE_TO_CHAR.values())])}
    words = count_words(texts)
    merges = []
    while len(vocab) < vocab_size:
        pairs = count_pairs(words)
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], vocab[p[0]], vocab[p[1]]))
        if pairs[best] < min_frequency:
            break
        merges.append(best)
        vocab.setdefault(best[0] + best[1], len(vocab))
        merged = collections.Counter()
        for word, n in words.items():
            merged[merge_pair(word, best)] += n
        words = merged
    return merges, vocab


def encode_scratch(text: str, merges: list[tuple[str, str]], vocab: dict[str, int]) -> list[int]:
    """Encode with learned merges: in each word, apply the earliest-learned merge present, repeat.

    (Specials are not recognised here; HF's `encode` gives the same ids on any other text.)"""
    rank = {pair: i for i, pair in enumerate(merges)}
    ids = []
    for word in split_words(text):
        parts = list(word)
        while len(parts) > 1:
            best_rank, i = min((rank.get(pair, len(rank)), i) for i, pair in enumerate(zip(parts, parts[1:])))
            if best_rank == len(rank):
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        ids += [vocab[p] for p in parts]
    return ids


# --- 4. The real tokenizer: HF `tokenizers` (Rust, multi-core) -----------------------------------------
# The same algorithm, with incremental pair counts. The pieces below are exactly what HF's
# `ByteLevelBPETokenizer()` assembles (a test checks it), written out so that you see each one.

def check_vocab_size(vocab_size: int) -> None:
    """Raise a UserError if `vocab_size` cannot work (too small for the bytes, too big for uint16)."""
    if vocab_size <= MIN_VOCAB_SIZE:
        raise house.UserError(f"vocab size {vocab_size} is too small: use at least {MIN_VOCAB_SIZE + 1} "
                              f"(256 bytes + {len(SPECIAL_TOKENS)} special tokens + at least one merge), "
                              f"e.g. --vocab-size {TINY_VOCAB_SIZE}")
    if vocab_size > MAX_VOCAB_SIZE:
        raise house.UserError(f"vocab size {vocab_size} is too big: 04_data stores ids as uint16, use at most {MAX_VOCAB_SIZE}")


def new_byte_level_bpe() -> Tokenizer:
    """An untrained byte-level BPE tokenizer: GPT-2 pre-tokenizer (no prefix space) + byte decoder."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # split_words + bytes
    tokenizer.decoder = decoders.ByteLevel()                                       # byte-chars -> text
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)            # offsets only
    return tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
                    show_progress: bool = True) -> Tokenizer:
    """Train linnet's tokenizer on a stream of documents (consumed once, never held in memory).

    `texts` can be a generator such as `house.iter_texts(files)`; `train_from_iterator` pulls batches of
    it while Rust threads count words, cut at MAX_WORD_CHARS as `count_words` cuts them (section 2).
    Specials get ids 0 (EOT) and 1 (PAD)."""
    check_vocab_size(vocab_size)
    texts = iter(texts)
    first = next(texts, None)
    if first is None:
        raise house.UserError("the training text is empty (no non-empty documents): pass --data with "
                              ".jsonl (a \"text\" field), .txt or .parquet files that contain text")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=show_progress,
                                  special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer = new_byte_level_bpe()
    whole_words = tokenizer.pre_tokenizer                 # ByteLevel = GPT2_SPLITTER + bytes; for training:
    bytes_only = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([TRAINING_SPLITTER, bytes_only])   # words cut at 256
    tokenizer.train_from_iterator(itertools.chain([first], texts), trainer=trainer)
    tokenizer.pre_tokenizer = whole_words                 # the saved tokenizer encodes whole words
    return tokenizer


def tokenizer_merges(tokenizer: Tokenizer) -> list[tuple[str, str]]:
    """The learned merges, in order, as (left, right) pairs (read from the tokenizer's JSON)."""
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


def tokenizer_json(tokenizer: Tokenizer) -> str:
    """The exact text `save_tokenizer` writes (pretty JSON, the same as `tokenizer.save`)."""
    return tokenizer.to_str(pretty=True)


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike) -> Path:
    """Write `tokenizer.json` atomically: a crash leaves the old file (or none), never half a file."""
    path = Path(path)
    with house.atomic_path(path) as tmp:
        tmp.write_text(tokenizer_json(tokenizer), encoding="utf-8")
    return path


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer.json, or raise a UserError (NotFound if it is missing) that says how to make one.

    >>> load_tokenizer("out/01_tokenizer/tokenizer.json").token_to_id(EOT)
    0"""
    path = Path(path)
    if path.is_dir():                        # a folder holding one (01's --out, an exported model folder)
        if not (path / "tokenizer.json").is_file():
            raise house.UserError(f"{house.shown(path)} is a folder without a tokenizer.json: pass the file itself, "
                                  "or the folder 01_tokenizer.py wrote it to")
        path = path / "tokenizer.json"
    if not path.is_file():
        raise house.NotFound(f"{house.shown(path)} is missing: run python 01_tokenizer.py --preset tiny "
                             "(or python 01_tokenizer.py for the real one) to train it")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust parser's message, e.g. "EOF while parsing a value at line 1"
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise house.UserError(f"{house.shown(path)} is not a valid tokenizer.json ({reason}): delete it and "
                              "retrain with python 01_tokenizer.py --preset tiny")
    if tokenizer.token_to_id(EOT) is None:
        raise house.UserError(f"{house.shown(path)} has no {EOT} token: it is not a linnet tokenizer; "
                              "retrain with python 01_tokenizer.py --preset tiny")
    return tokenizer


def eot_id(tokenizer: Tokenizer) -> int:
    """The id of `<|endoftext|>`: 0 for every tokenizer this file trains."""
    token_id = tokenizer.token_to_id(EOT)
    if token_id is None:
        raise house.UserError(f"this tokenizer has no {EOT} token: retrain it with python 01_tokenizer.py")
    return token_id


def tokenizer_sha256(path_or_tokenizer: str | os.PathLike | Tokenizer) -> str:
    """A fingerprint for "which tokenizer made these token ids" (04_data records it next to shards).

    For a file: sha256 of its bytes. For a Tokenizer: sha256 of what `save_tokenizer` would write,
    so a tokenizer and the file saved from it (or loaded from it) give the same hex string."""
    if isinstance(path_or_tokenizer, Tokenizer):
        data = tokenizer_json(path_or_tokenizer).encode("utf-8")
    else:
        data = Path(path_or_tokenizer).read_bytes()
    return hashlib.sha256(data).hexdigest()


def truncate_tokenizer(tokenizer: Tokenizer, vocab_size: int) -> Tokenizer:
    """The tokenizer that training would have returned with a smaller `vocab_size`.

    BPE is greedy, so a 1,024-token run starts with the same merges as a 512-token run: keep the
    ids below `vocab_size` and the merges up to the first one that makes a token beyond it.
    (One training run then gives the whole compression curve; a test checks the claim.)"""
    spec = json.loads(tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    kept_merges = []
    for left, right in tokenizer_merges(tokenizer):
        if vocab[left + right] >= vocab_size:
            break
        kept_merges.append([left, right])
    spec["model"]["vocab"] = {token: i for token, i in vocab.items() if i < vocab_size}
    spec["model"]["merges"] = kept_merges
    return Tokenizer.from_str(json.dumps(spec))


# --- 5. Measuring: bytes per token, and throughput with all cores ------------------------------------

def read_docs(path: Path, max_bytes: int | None) -> list[str]:
    """The first documents of one file, about `max_bytes` of UTF-8 (None: all; the last doc is cut,
    by characters, so a non-ASCII cut can be a few bytes over)."""
    return [d for batch in iter_doc_batches(path, max_bytes) for d in batch if d]


def bytes_per_token(tokenizer: Tokenizer, texts: list[str]) -> float:
    """UTF-8 bytes divided by tokens: how much text one token carries (higher = better compression).

    Byte-level with no merges gives exactly 1.0; linnet's 32k tokenizer about 4 on English prose."""
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False))
    return n_bytes / max(n_tokens, 1)


def token_byte_counts(tokenizer: Tokenizer) -> np.ndarray:
    """(V,) int64: how many bytes of text each token id stands for; 0 for the special tokens.

    Summed over a sequence of ids this gives the exact UTF-8 length of the text they decode to, which is
    what bits per byte divides by (06): `counts[ids].sum() == len(tokenizer.decode(ids).encode())`
    whenever the ids hold no special token. Tiny tokenizer: counts[id of "Ġthe"] == 4."""
    counts = np.zeros(tokenizer.get_vocab_size(), dtype=np.int64)
    specials = set(SPECIAL_TOKENS)
    for token, token_id in tokenizer.get_vocab().items():
        counts[token_id] = 0 if token in specials else len(token_bytes(token))
    return counts


def iter_doc_batches(path: Path, max_bytes: int | None, batch_bytes: int = 8_000_000) -> Iterator[list[str]]:
    """The documents of `read_docs(path, max_bytes)`, streamed in lists of about `batch_bytes` bytes."""
    batch, batch_size, total = [], 0, 0
    for text in house.iter_file_texts(path):
        size = len(text.encode("utf-8"))
        if max_bytes is not None and total + size > max_bytes:
            text, size = text[:max(0, max_bytes - total)], max_bytes - total
        batch.append(text)
        batch_size, total = batch_size + size, total + size
        if batch_size >= batch_bytes or (max_bytes is not None and total >= max_bytes):
            yield batch
            batch, batch_size = [], 0
        if max_bytes is not None and total >= max_bytes:
            return
    if batch:
        yield batch


def measure_file(tokenizer: Tokenizer, path: Path, max_bytes: int | None) -> dict:
    """Encode (the start of) one file with `encode_batch` — every core — and time only the encoding.

    Batches of ~8 MB keep memory flat: an Encoding holds ids, offsets, strings... ~100 bytes a token."""
    n_bytes = n_tokens = 0
    seconds = 0.0
    for docs in iter_doc_batches(path, max_bytes):
        start = time.perf_counter()
        encodings = tokenizer.encode_batch(docs, add_special_tokens=False)
        seconds += time.perf_counter() - start
        n_tokens += sum(len(e.ids) for e in encodings)
        n_bytes += sum(len(d.encode("utf-8")) for d in docs)
    return {"file": path.name, "bytes": n_bytes, "tokens": n_tokens, "seconds": seconds,
            "mb_per_s": n_bytes / 1e6 / max(seconds, 1e-9), "bytes_per_token": n_bytes / max(n_tokens, 1)}


def vocab_sizes_to_plot(vocab_size: int) -> list[int]:
    """258, then 384, 512, 768, 1024, ... (powers of two and 1.5×) up to `vocab_size`, then `vocab_size`.

    >>> vocab_sizes_to_plot(1024)
    [258, 384, 512, 768, 1024]"""
    sizes, power = [MIN_VOCAB_SIZE], 256
    while power < vocab_size:
        sizes += [s for s in (int(power * 1.5), power * 2) if s < vocab_size]
        power *= 2
    return sizes + [vocab_size]


# --- 6. Plots: each plot_* returns a figure; `save_plots` (section 7) saves it with its caption ----------

def compression_curves(tokenizer: Tokenizer, samples: dict[str, list[str]]) -> tuple[list[int], dict[str, list[float]]]:
    """(vocab sizes, {file name: bytes per token at each size}), from truncations of one tokenizer."""
    sizes = vocab_sizes_to_plot(tokenizer.get_vocab_size())
    truncated = [truncate_tokenizer(tokenizer, s) for s in sizes]
    return sizes, {name: [bytes_per_token(t, texts) for t in truncated] for name, texts in samples.items()}


def plot_compression(sizes: list[int], curves: dict[str, list[float]]):
    """Bytes per token vs vocab size, one line per corpus file (the output of `compression_curves`)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, curve in curves.items():
        ax.plot(sizes, curve, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [f"{s:,}" for s in sizes], rotation=45 if len(sizes) > 6 else 0)
    ax.minorticks_off()
    ax.set_xlabel("vocabulary size (log scale; 258 = bytes + specials, no merges)")
    ax.set_ylabel("bytes per token (higher = shorter sequences)")
    ax.set_title("Compression grows with the vocabulary, but each doubling buys less")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def token_lengths(tokenizer: Tokenizer, texts: list[str]):
    """(byte length of each learned token, ids 258+; byte length of each token of the encoded `texts`)."""
    length_of_id = token_byte_counts(tokenizer)                        # (V,)
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    used_ids = np.concatenate([np.array(e.ids, dtype=np.int64) for e in encodings])
    return length_of_id[MIN_VOCAB_SIZE:], length_of_id[used_ids]


def length_histogram(lengths, longest: int):
    """Counts of lengths 1, 2, ..., `longest` (shorter ones count as 1, longer ones as `longest`)."""
    import numpy as np

    return np.histogram(np.clip(lengths, 1, longest), bins=np.arange(1, longest + 2))[0]


def plot_token_lengths(learned, in_text, longest: int):
    """Byte length of the learned tokens: over the vocabulary, and over tokens as used in text."""
    import matplotlib.pyplot as plt
    import numpy as np

    lengths = np.arange(1, longest + 1)
    in_vocab, used = length_histogram(learned, longest), length_histogram(in_text, longest)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.bar(lengths - 0.2, in_vocab / in_vocab.sum(), width=0.4, label="learned tokens (vocabulary, ids 258+)")
    ax.bar(lengths + 0.2, used / used.sum(), width=0.4, label="tokens in encoded text")
    ax.set_xlabel(f"token length in bytes (last bar: {longest} or more)")
    ax.set_ylabel("fraction")
    ax.set_title("How long are the tokens? Vocabulary vs running text")
    ax.legend()
    return fig


def token_boundaries(tokenizer: Tokenizer, sentence: str) -> dict[int, list[str]]:
    """{vocab size: the sentence's tokens as text} at three sizes: bytes only, a middle one, the full vocab."""
    full = tokenizer.get_vocab_size()
    middle = 512 if full <= 4096 else 2048
    rows = {}
    for size in sorted({MIN_VOCAB_SIZE, min(middle, full), full}):
        ids = truncate_tokenizer(tokenizer, size).encode(sentence, add_special_tokens=False).ids
        rows[size] = [token_bytes(tokenizer.id_to_token(i)).decode("utf-8", errors="replace") for i in ids]
    return rows


def plot_token_boundaries(sentence: str, rows: dict[int, list[str]]):
    """`sentence` cut into tokens at each vocab size (`token_boundaries`); a coloured box per token."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    colours = ["#a6cee3", "#fdbf6f", "#b2df8a", "#fb9a99", "#cab2d6"]
    n_chars = len(sentence)
    fig, ax = plt.subplots(figsize=(0.125 * n_chars + 2, 0.9 * len(rows) + 0.6))
    for row, (size, tokens) in enumerate(rows.items()):
        y, x = len(rows) - 1 - row, 0.0
        for k, token in enumerate(tokens):
            label = token.replace(" ", "·")
            width = max(len(label), 1)
            ax.add_patch(Rectangle((x, y + 0.1), width, 0.8, facecolor=colours[k % len(colours)], edgecolor="white"))
            ax.text(x + width / 2, y + 0.5, label, ha="center", va="center", family="monospace", fontsize=10)
            x += width
        ax.text(-0.5, y + 0.5, f"vocab {size:,}: {len(tokens)} tokens", ha="right", va="center", fontsize=10)
    ax.set_xlim(0, n_chars + 1)
    ax.set_ylim(0, len(rows))
    ax.axis("off")
    ax.set_title("The same sentence, one coloured box per token (· is a space, � a piece of a multi-byte character)")
    return fig


# --- 7. The script ---------------------------------------------------------------------------------------

EXAMPLE_SENTENCE = "The tokenizer's job — turning text into integers: def encode(text): return ids"
LESSON_BYTES = 4_000          # the hand-written trainer runs on this much text
LESSON_MERGES = 64


def run_scratch_lesson(files: list[Path]) -> None:
    """Train the hand-written BPE on a few KB and check that HF learns the very same merges."""
    text = "".join(itertools.islice(house.iter_texts(files), 20))[:LESSON_BYTES]
    if not text:
        raise house.UserError(f"no text in {', '.join(house.shown(f) for f in files)}: pass --data with files that contain text")
    start = time.perf_counter()
    merges, _vocab = train_bpe_scratch([text], MIN_VOCAB_SIZE + LESSON_MERGES)
    seconds = time.perf_counter() - start
    hf_merges = tokenizer_merges(train_tokenizer([text], MIN_VOCAB_SIZE + LESSON_MERGES, show_progress=False))
    agree = sum(a == b for a, b in zip(merges, hf_merges))
    print(f"scratch BPE on {len(text.encode()):,} bytes: {len(merges)} merges in {seconds:.2f} s; first ten: "
          + " ".join(f"{a}+{b}" for a, b in merges[:10]))
    print(f"HF BpeTrainer on the same text: {len(hf_merges)} merges, {agree} identical in order "
          "(ties go to the pair with the smallest token ids)")


def save_plots(tokenizer: Tokenizer, samples: dict[str, list[str]], out_dir: Path) -> None:
    """Draw the three plots and save each with `house.save_plot`, captioned with what to look at."""
    import numpy as np

    sizes, curves = compression_curves(tokenizer, samples)
    first, last = next(iter(curves.values())), max(curves, key=lambda n: curves[n][-1])
    house.save_plot(plot_compression(sizes, curves), out_dir, "compression",
                    f"bytes/token rise from 1.0 (raw bytes) to {curves[last][-1]:.2f} ({last}) at vocab {sizes[-1]:,}; "
                    f"the first step (258 -> {sizes[1]:,}) gains {first[1] - first[0]:.2f}, the last ({sizes[-2]:,} -> {sizes[-1]:,}) only {first[-1] - first[-2]:.2f}")

    learned, in_text = token_lengths(tokenizer, [t for texts in samples.values() for t in texts])
    longest = min(int(learned.max(initial=1)), 24)                 # the last bar: this many bytes or more
    typical = int(np.argmax(length_histogram(learned, longest))) + 1
    house.save_plot(plot_token_lengths(learned, in_text, longest), out_dir, "token_lengths",
                    f"learned tokens are most often {typical} bytes (median {np.median(learned):.0f}, longest {int(learned.max())}); "
                    f"a token in running text carries {in_text.mean():.2f} bytes on average")

    rows = token_boundaries(tokenizer, EXAMPLE_SENTENCE)
    house.save_plot(plot_token_boundaries(EXAMPLE_SENTENCE, rows), out_dir, "token_boundaries",
                    f"the same sentence is {' -> '.join(str(len(tokens)) for tokens in rows.values())} tokens at vocab "
                    f"{' -> '.join(f'{s:,}' for s in rows)}; spaces stick to the word after them")


def data_files(args) -> list[Path]:
    """The tiny preset's text (`house.find_tiny_data`), or the real job's: --data, else data/raw/ from 04_data."""
    if args.preset == "tiny":
        files = house.find_tiny_data(args.data)
    elif args.data is not None:
        files = house.list_text_files([args.data])
    elif house.RAW_DATA_DIR.is_dir():
        files = house.list_text_files([house.RAW_DATA_DIR])
    else:
        raise house.NotFound(f"{house.shown(house.RAW_DATA_DIR)}/ is missing: run python 04_data.py first (it downloads "
                             "fineweb-edu + dclm there), or pass --data PATH, or try --preset tiny")
    if not files:
        raise house.UserError(f"no .jsonl/.txt/.parquet files in {house.shown(args.data or house.RAW_DATA_DIR)}: pass --data with text files")
    return files


def build_parser() -> argparse.ArgumentParser:
    parser = house.ArgumentParser(
        description="Lesson 01: byte-level BPE by hand, then linnet's 32k tokenizer with HF tokenizers.\n\n"
                    "BPE starts from the 256 bytes and keeps gluing the most frequent adjacent pair into a new\n"
                    "token. This script trains a hand-written BPE on 4 KB and checks HF learns the same merges,\n"
                    "then trains the real tokenizer (streamed: memory does not grow with the corpus), saves\n"
                    "<out>/tokenizer.json, prints bytes/token and encoding speed (MB/s) per file, and plots\n"
                    "compression vs vocab size, token lengths and one sentence cut into tokens.\n\n"
                    f"Training cuts words (pre-tokens) longer than {MAX_WORD_CHARS} characters into pieces of "
                    f"{MAX_WORD_CHARS}, so a\nmegabyte-long line of one character cannot stall it; the saved tokenizer "
                    "encodes whole words.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python 01_tokenizer.py --preset tiny    # vocab 1,024 on the corpus in embedded/ (or --data\n"
               "                                          # PATH, or --data hub for fineweb-edu): seconds\n"
               "  python 01_tokenizer.py                  # vocab 32,768 on data/raw/ (run python 04_data.py\n"
               "                                          # first) -> out/01_tokenizer/tokenizer.json\n"
               "  python 01_tokenizer.py --data my_text/ --out out/my_tok   # any .jsonl/.txt/.parquet\n"
               "Both presets write <out>/tokenizer.json (default out/01_tokenizer/tokenizer.json);\n"
               "later lessons load it from there. <|endoftext|> is id 0, <|padding|> id 1.")
    house.add_common_args(parser, "01_tokenizer")
    parser.add_argument("--data", type=Path, default=None,
                        help="text to train on: a .jsonl ('text' field) / .txt (one document per paragraph: split at "
                             "blank lines) / .parquet file or a directory of them, or 'hub' for a fineweb-edu sample "
                             "(default: data/raw/ from 04_data.py for linnet; for tiny: embedded/corpus)")
    parser.add_argument("--vocab-size", type=house.positive_int, default=None,
                        help=f"tokens in the vocabulary, specials included (default: {LINNET_VOCAB_SIZE:,} linnet, "
                             f"{TINY_VOCAB_SIZE:,} tiny; at least {MIN_VOCAB_SIZE + 1})")
    parser.add_argument("--min-frequency", type=house.positive_int, default=2,
                        help="stop merging when the best pair occurs fewer times than this (default: %(default)s)")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="skip training: load this tokenizer.json and only measure and plot it")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a DIFFERENT tokenizer.json already in --out (without it 01 refuses: shards and "
                             "checkpoints made with the old one need it)")
    parser.add_argument("--measure-mb", type=house.non_negative_float, default=None,
                        help="encode at most this many MB of each file to time it (default: 2 tiny, 64 linnet; 0 = all)")
    return parser


def save_new_tokenizer(tokenizer: Tokenizer, out_path: Path, overwrite: bool) -> None:
    """Save, unless `out_path` holds ANOTHER tokenizer: shards (04) and checkpoints (05) made with that one
    would no longer match it, so it is replaced only with --overwrite (the same tokenizer again is fine)."""
    if out_path.exists() and not overwrite and tokenizer_sha256(out_path) != tokenizer_sha256(tokenizer):
        raise house.UserError(f"{house.shown(out_path)} already holds another tokenizer (shards and checkpoints "
                              f"made with it need it): pass another --out, or --overwrite to replace it")
    save_tokenizer(tokenizer, out_path)
    print(f"saved {house.shown(out_path)} (sha256 {tokenizer_sha256(out_path)[:16]}…)")


@house.speaks
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    house.check_writable(args.out)          # a read-only --out fails now, not after training
    with house.folder_lock(args.out):       # one writer per folder
        run(args)


def run(args) -> None:
    """Train (or load) the tokenizer, save it, measure it, plot it."""
    vocab_size = args.vocab_size or (TINY_VOCAB_SIZE if args.preset == "tiny" else LINNET_VOCAB_SIZE)
    check_vocab_size(vocab_size)
    measure_mb = args.measure_mb if args.measure_mb is not None else (2 if args.preset == "tiny" else 64)
    files = data_files(args)
    print(f"text: {', '.join(house.shown(f) for f in files[:4])}{' ...' if len(files) > 4 else ''} ({len(files)} file{'s' if len(files) != 1 else ''})")

    loaded = load_tokenizer(args.tokenizer) if args.tokenizer is not None else None  # fail fast if corrupt

    run_scratch_lesson(files)

    out_path = Path(args.out) / "tokenizer.json"
    if loaded is not None:
        tokenizer = loaded
        print(f"loaded {house.shown(args.tokenizer)}: vocab {tokenizer.get_vocab_size():,} (no training)")
    else:
        start = time.perf_counter()
        tokenizer = train_tokenizer(house.iter_texts(files), vocab_size, args.min_frequency, show_progress=args.preset == "linnet")
        print(f"trained vocab {tokenizer.get_vocab_size():,} in {time.perf_counter() - start:.1f} s "
              f"({len(tokenizer_merges(tokenizer)):,} merges; {EOT}={eot_id(tokenizer)}, {PAD}={tokenizer.token_to_id(PAD)})")
        if tokenizer.get_vocab_size() < vocab_size:
            print(f"note: only {tokenizer.get_vocab_size():,} of {vocab_size:,} tokens: no pair left occurs "
                  f"{args.min_frequency}+ times in this text; give it more text for the full size")
        save_new_tokenizer(tokenizer, out_path, args.overwrite)

    max_bytes = int(measure_mb * 1e6) if measure_mb > 0 else None
    results = [measure_file(tokenizer, f, max_bytes) for f in files]
    for r in results:
        print(f"  {r['file']:<28} {r['bytes'] / 1e6:8.2f} MB  {r['bytes_per_token']:5.2f} bytes/token  {r['mb_per_s']:6.2f} MB/s")
    total_bytes, total_tokens = sum(r["bytes"] for r in results), sum(r["tokens"] for r in results)
    total_s = sum(r["seconds"] for r in results)
    print(f"  {'all':<28} {total_bytes / 1e6:8.2f} MB  {total_bytes / max(total_tokens, 1):5.2f} bytes/token  "
          f"{total_bytes / 1e6 / max(total_s, 1e-9):6.2f} MB/s  (encode_batch on {os.cpu_count()} cores)")

    samples = {f.name: read_docs(f, 200_000) for f in files[:6]}
    save_plots(tokenizer, samples, args.out)


if __name__ == "__main__":
    main()
