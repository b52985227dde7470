"""The build track's tokenizer (spec: docs/build/tokenizer.md), checked against HF `tokenizers` itself.

1. train(texts, vocab_size, min_frequency) gives the merges HF's BpeTrainer learns, on corpora this run draws;
2. Tokenizer(merges).encode gives HF's ids (special tokens included), decode_bytes ∘ encode is the identity on
   random bytes, decode on text;
3. a speed floor: training on ~200 KB and encoding it, each within a budget (a recount of every pair per merge
   is too slow; incremental counts are fast enough).
The drivers (drive_*) run in the student's process and return plain data; everything else runs here.
"""
from __future__ import annotations

import collections
import json
import time

import numpy as np

from exercises.checker.report import Wrong, call, describe, fresh_seed, run_seed
from exercises.checker.sandbox import make

SPECIALS = ["<|endoftext|>", "<|padding|>"]
TRAIN_SECONDS, ENCODE_SECONDS = 30.0, 15.0      # the speed floor (the worked solution: ≈ 2 s and ≈ 1 s)
SMALL_TEXTS = [
    ("a tie at the first step: ('a','b') and ('b','a') both occur 4 times", ["ab ba ab ba ab ba ab ba"], 20, 2),
    ("overlapping pairs: 'aaaa' holds ('a','a') twice", ["aaaa aaa aa a banana bandana aaaa"], 12, 2),
    ("Sennrich's example, min_frequency 1", ["low lower lowest newer wider new wide"], 40, 1),
    ("multi-byte UTF-8 and digits", ["café naïve — 東京 2024! café naïve 東京 2024 2024"], 30, 2),
    ("contractions and whitespace runs", ["it's we'll they've I'd   x\n\n\ty it's we'll  \n"], 30, 2),
    ("the vocabulary is full after 8 merges", ["the cat sat on the mat; the cat ate the rat. " * 3], 8, 2),
    ("min_frequency 3 stops early", ["the cat sat on the mat; the cat ate the rat."], 40, 3),
]


# --- the reference: HF's trainer and tokenizer ----------------------------------------------------------

def hf_tokenizer(texts: list[str], vocab_size: int, min_frequency: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def hf_merges(tok) -> list[tuple[str, str]]:
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


def hf_words(texts: list[str]) -> collections.Counter:
    """Word counts as HF's ByteLevel pre-tokenizer cuts them (byte-characters)."""
    from tokenizers import pre_tokenizers
    cut = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return collections.Counter(tuple(w) for text in texts for w, _ in cut.pre_tokenize_str(text))


def replay(words: collections.Counter, merges: list) -> collections.Counter:
    """The words after applying `merges` in order (every occurrence, left to right)."""
    for a, b in merges:
        out = collections.Counter()
        for word, n in words.items():
            new, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    new.append(a + b)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            out[tuple(new)] += n
        words = out
    return words


def pair_counts(words: collections.Counter) -> collections.Counter:
    pairs = collections.Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            pairs[pair] += n
    return pairs


# --- corpora the checker picks -------------------------------------------------------------------------

def corpus(seed: int, n_words: int) -> str:
    """Random text: Zipf-distributed made-up words, some with accents or CJK, numbers, contractions, punctuation,
    line breaks and whitespace runs."""
    gen = np.random.default_rng(seed)
    syllables = ["th", "e", "an", "re", "on", "at", "er", "in", "st", "ou", "al", "é", "ü", "東", "京", "ing", "x"]
    lexicon = ["".join(gen.choice(syllables, size=int(gen.integers(1, 5)))) for _ in range(400)]
    lexicon += ["it's", "we'll", "I'd", "2024", "3.14", "—", "!", "?", ",", ".", "(", ")", "  ", "\n", "\t"]
    weights = 1.0 / np.arange(1, len(lexicon) + 1)
    picks = gen.choice(len(lexicon), size=n_words, p=weights / weights.sum())
    seps = gen.choice([" ", " ", " ", " ", "\n", "", "  "], size=n_words)
    return "".join(lexicon[i] + s for i, s in zip(picks, seps))


def random_byte_strings(seed: int) -> list[bytes]:
    gen = np.random.default_rng(seed)
    fixed = [b"", bytes(range(256)), b"\xff\xfe\x80", "é東😀".encode(), b"\xe6\x9d", b"a\r\n b\t\t c",
             "<|endoftext|>x<|padding|>".encode(), b"\xc3(", b"  \n  "]
    return fixed + [gen.integers(0, 256, size=int(gen.integers(1, 80)), dtype=np.uint8).tobytes() for _ in range(150)]


# --- the drivers: run in the student's process -----------------------------------------------------------

def drive_train(train, texts: list[str], vocab_size: int, min_frequency: int):
    start = time.perf_counter()
    merges = train(list(texts), vocab_size, min_frequency)
    seconds = time.perf_counter() - start
    if isinstance(merges, (list, tuple)) and all(isinstance(m, (list, tuple)) for m in merges):
        merges = [tuple(m) for m in merges]
    return merges, seconds


def drive_encode(tokenizer_class, merges: list, texts: list[str], byte_strings: list[bytes]):
    start = time.perf_counter()
    tok = tokenizer_class([tuple(m) for m in merges])
    ids = [list(tok.encode(t)) for t in texts]
    seconds = time.perf_counter() - start
    texts_back = [tok.decode(i) for i in ids]
    bytes_back = [bytes(tok.decode_bytes(list(tok.encode(b.decode("utf-8", "surrogateescape")))))
                  for b in byte_strings]
    return [[int(i) for i in row] for row in ids], seconds, texts_back, bytes_back


# --- the check ---------------------------------------------------------------------------------------------

def check_tokenizer(ex) -> None:
    seed = fresh_seed("build:tokenizer")
    cases = [(why, texts, 258 + merges, mf) for why, texts, merges, mf in SMALL_TEXTS]
    cases += [(f"a random corpus of 3,000 words (fresh seed {run_seed()})", [corpus(seed, 3000)], 258 + 200, 2),
              (f"a random corpus of 2,000 words, min_frequency 1 (fresh seed {run_seed()})",
               [corpus(seed + 1, 2000)], 258 + 150, 1)]
    for why, texts, vocab_size, min_frequency in cases:
        check_merges(ex, why, texts, vocab_size, min_frequency)
    big = corpus(seed + 2, 40_000)                           # ≈ 200 KB
    case = f"train on a random corpus of {len(big.encode()):,} bytes to vocab_size 1,258 — the speed floor"
    tok = hf_tokenizer([big], 1258, 2)
    merges, seconds = call(lambda: make(ex, drive_train, ex.train, [big], 1258, 2), case)
    if merges != hf_merges(tok):
        raise Wrong(case, "the merges differ from HF's on this corpus (the smaller corpora passed)",
                    "train every merge on the counts as they are after the merges before it")
    if seconds > TRAIN_SECONDS:
        raise Wrong(case, f"training took {seconds:.1f} s, the floor is {TRAIN_SECONDS:g} s",
                    "keep the pair counts from merge to merge and update only the words that hold the merged pair "
                    "(an index pair → words); a heap finds the best pair without scanning all of them")
    check_encoder(ex, tok, big, seed)


def check_merges(ex, why: str, texts: list[str], vocab_size: int, min_frequency: int) -> None:
    expected = hf_merges(hf_tokenizer(texts, vocab_size, min_frequency))
    case = (f"train(<{why}>, vocab_size {vocab_size}, min_frequency {min_frequency}) — HF's BpeTrainer learns "
            f"{len(expected)} merges")
    got, _ = call(lambda: make(ex, drive_train, ex.train, texts, vocab_size, min_frequency), case)
    if not (isinstance(got, list) and all(len(m) == 2 and all(isinstance(t, str) for t in m) for m in got)):
        raise Wrong(case, f"train should return a list of (left, right) pairs of str; got {describe(got)}")
    if got == expected:
        return
    i = next(i for i in range(max(len(got), len(expected)))
             if i >= len(got) or i >= len(expected) or got[i] != expected[i])
    words = replay(hf_words(texts), expected[:i])
    pairs = pair_counts(words)
    right = f"your first {i} merges are right; " if i else ""
    if i >= len(got):
        raise Wrong(case, f"{right}you stopped after {len(got)} merges, expected {len(expected)}: merge {i} is "
                    f"{expected[i]} (count {pairs[expected[i]]})",
                    "stop only when the vocab is full, no pair is left, or the best count is BELOW min_frequency; "
                    "a merge whose token already exists adds no id")
    if i >= len(expected):
        raise Wrong(case, f"{right}you went on to merge {got[i]}; HF stops after {len(expected)} merges",
                    "stop when the vocab holds vocab_size tokens, or the best pair occurs fewer than min_frequency times")
    best, mine = expected[i], got[i]
    what = f"{right}merge {i}: expected {best} (count {pairs[best]}), got {mine} (count {pairs.get(mine, 0)})"
    if pairs.get(mine, 0) == pairs[best]:
        hint = ("a tie: the pair whose (id of left, id of right) is smallest wins — the oldest tokens, not the "
                "alphabetically first (ids: the 2 specials, the 256 byte-characters sorted, then one per new merge)")
    elif mine not in pairs:
        hint = ("your pair occurs in no word: cut the text with the GPT-2 regex first (no pair crosses a cut) and "
                "map each word's UTF-8 bytes to byte-characters")
    else:
        hint = "count each pair once per occurrence, times how often its word occurs, after every merge before it"
    raise Wrong(case, what, hint)


def check_encoder(ex, tok, big: str, seed: int) -> None:
    gen = np.random.default_rng(seed + 3)
    texts = [big[:20_000], "<|endoftext|>Hello world<|padding|><|endoftext|>", "  leading and trailing  ",
             "é東😀 naïve\r\n\ttabs", "".join(chr(int(c)) for c in gen.integers(32, 0x3000, size=300))]
    texts.append(big)                                        # the speed floor: all of it
    byte_strings = random_byte_strings(seed + 4)
    merges = hf_merges(tok)
    case = f"Tokenizer(HF's {len(merges)} merges of the speed corpus).encode(text) vs HF's encode"
    ids, seconds, texts_back, bytes_back = call(
        lambda: make(ex, drive_encode, ex.Tokenizer, merges, texts, byte_strings), case)
    for text, got in zip(texts, ids):
        want = tok.encode(text).ids
        if got != want:
            k = next(k for k in range(max(len(got), len(want))) if k >= len(got) or k >= len(want) or got[k] != want[k])
            piece = tok.decode(want[max(0, k - 3):k + 3], skip_special_tokens=False)
            raise Wrong(f"{case}, text {text[:60]!r}{'…' if len(text) > 60 else ''}",
                        f"token {k}: expected id {want[k] if k < len(want) else 'none (the end)'} "
                        f"({tok.id_to_token(want[k]) if k < len(want) else ''!r}), got "
                        f"{got[k] if k < len(got) else 'none (the end)'} — around {piece!r}",
                        "in each word apply the merge of LOWEST rank first (the order train learned them), "
                        "leftmost on a tie; the two special strings are one id each wherever they occur")
    if seconds > ENCODE_SECONDS:
        raise Wrong(case, f"encoding {len(big.encode()):,} bytes took {seconds:.1f} s, the floor is "
                    f"{ENCODE_SECONDS:g} s", "cache each word's ids: a text repeats its words")
    for text, back in zip(texts, texts_back):
        if back != text:
            k = next((k for k in range(min(len(text), len(back))) if text[k] != back[k]), min(len(text), len(back)))
            raise Wrong(f"decode(encode({text[:60]!r}))", f"differs from the text at character {k}: expected "
                        f"{text[k:k + 10]!r}, got {back[k:k + 10]!r}",
                        "decode the JOINED bytes once (decode_bytes, then UTF-8): a character's bytes can be split "
                        "between two tokens")
    for raw, back in zip(byte_strings, bytes_back):
        if back != raw:
            k = next((k for k in range(min(len(raw), len(back))) if raw[k] != back[k]), min(len(raw), len(back)))
            raise Wrong(f"decode_bytes(encode(b.decode('utf-8', 'surrogateescape'))), b = {raw[:40]!r}"
                        f"{'…' if len(raw) > 40 else ''} ({len(raw)} bytes)",
                        f"got {back[:40]!r} ({len(back)} bytes): the first difference is at byte {k}",
                        "a word's bytes are word.encode('utf-8', 'surrogateescape'); decode_bytes joins each id's "
                        "bytes and decodes nothing")
