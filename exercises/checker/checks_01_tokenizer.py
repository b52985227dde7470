"""The checks of 01_tokenizer.py's exercises: bpe_merge and bpe_trainer."""
from __future__ import annotations

import collections
import importlib
import itertools

import numpy as np

from exercises.checker.report import Wrong, call, describe, fresh_seed, run_seed


# --- bpe_merge (01_tokenizer.py, section 3: count_pairs, merge_pair, train_bpe_scratch) ---------------

BPE_TEXTS = [
    "the cat sat on the mat; the cat ate the rat.",
    "aaaa aaa aa a banana bandana",                 # overlapping pairs: ('a','a') in 'aaaa' merges twice
    "abab abba baba ab ba ab ba",                   # equal counts: the tie rule decides
    "low lower lowest newer wider new wide",        # Sennrich et al.'s classic example
    "café naïve — 東京 2024!",                        # multi-byte UTF-8: tokens are byte-characters
]


def random_words(gen: np.random.Generator, n: int, alphabet: str = "abcĠ") -> dict[tuple[str, ...], int]:
    words = {}
    for _ in range(n):
        word = tuple(gen.choice(list(alphabet), size=int(gen.integers(1, 7))))
        words[tuple(str(t) for t in word)] = int(gen.integers(1, 6))
    return words


def check_bpe_merge(ex) -> None:
    tokenizer_lib = importlib.import_module("01_tokenizer")
    gen = np.random.default_rng(0)

    # count_pairs: a Counter of adjacent pairs, each weighted by its word's count
    cases = [("01's docstring example", {("a", "a", "a"): 2, ("b", "a"): 1}),
             ("words of one token each (no pairs at all)", {("a",): 3, ("b",): 1}),
             ("words made of merged tokens", {("th", "e"): 5, ("Ġ", "th", "e"): 7})]
    cases += [(f"random words #{i} (alphabet 'abcĠ', counts 1-5)", random_words(gen, 12)) for i in range(20)]
    fresh = np.random.default_rng(fresh_seed("bpe_merge"))
    cases += [(f"fresh random words (seed {run_seed()})", random_words(fresh, 15, "abcdĠ"))]
    for why, words in cases:
        case = f"count_pairs({words}) — {why}"
        got = call(ex.count_pairs, case, dict(words))
        expected = tokenizer_lib.count_pairs(words)
        if not isinstance(got, dict):
            raise Wrong(case, f"count_pairs should return a Counter (or dict), got {type(got).__name__}")
        got_nonzero = {pair: n for pair, n in got.items() if n}
        for pair in sorted(set(expected) | set(got_nonzero)):
            if got_nonzero.get(pair, 0) != expected.get(pair, 0):
                raise Wrong(case, f"count of pair {pair}: expected {expected.get(pair, 0)}, "
                            f"got {got_nonzero.get(pair, 0)}",
                            "each adjacent pair counts once per occurrence, times how often its word occurs")

    # merge_pair: left to right, never overlapping
    cases = [(("a", "a", "a"), ("a", "a")), (("a", "a", "a", "a"), ("a", "a")), (("a", "b", "a", "b"), ("a", "b")),
             (("x", "a", "b"), ("a", "b")), (("a",), ("a", "b")), (("b", "a"), ("a", "b")),
             (("Ġ", "th", "e"), ("th", "e"))]
    for _ in range(30):
        (word, _n), = random_words(gen, 1, "ab").items()
        cases.append((word, tuple(str(t) for t in gen.choice(list("ab"), size=2))))
    for _ in range(5):                                  # fresh words: recorded answers do not pass
        (word, _n), = random_words(fresh, 1, "ab").items()
        cases.append((word, tuple(str(t) for t in fresh.choice(list("ab"), size=2))))
    for word, pair in cases:
        case = f"merge_pair({word}, {pair})"
        got = call(ex.merge_pair, case, word, pair)
        expected = tokenizer_lib.merge_pair(word, pair)
        if isinstance(got, list) and tuple(got) == expected:
            raise Wrong(case, f"right tokens {expected}, but as a list: return a tuple",
                        "words are dict keys (word -> count), so they must be hashable tuples")
        if got != expected:
            raise Wrong(case, f"expected {expected}, got {got}",
                        "scan left to right; after merging at i, continue at i + 2, so ('a','a','a') -> ('aa','a')")

    # bpe_merge_step: first two hand-made steps, then every merge of train_bpe_scratch, one step at a time
    _, start_vocab = tokenizer_lib.train_bpe_scratch(["ab"], tokenizer_lib.MIN_VOCAB_SIZE)   # specials + the 256 byte-characters
    vocab = {**start_vocab, "ab": len(start_vocab), "bc": len(start_vocab) + 1}
    for words, why in [({("a", "b", "c"): 1, ("ab", "c"): 2, ("a", "b"): 3},
                        "two splits of 'abc' that become the same word after merging ('a', 'b')"),
                       ({("x", "y"): 5, ("y", "x"): 1, ("x", "y", "x"): 1}, "one clear winner")]:
        pairs = tokenizer_lib.count_pairs(words)
        best = max(pairs, key=pairs.get)                # these words have one most frequent pair, no tie
        check_bpe_step(ex, tokenizer_lib, words, vocab, best, f"bpe_merge_step({words}, vocab) — {why}")
    for text in BPE_TEXTS:
        vocab_size = tokenizer_lib.MIN_VOCAB_SIZE + 30
        merges, _ = tokenizer_lib.train_bpe_scratch([text], vocab_size)
        vocab, words = dict(start_vocab), dict(tokenizer_lib.count_words([text]))
        for step, best in enumerate(merges, start=1):
            case = f"step {step} of training BPE on {text!r} (01's train_bpe_scratch, vocab_size {vocab_size})"
            words = check_bpe_step(ex, tokenizer_lib, words, vocab, best, case)
            vocab.setdefault(best[0] + best[1], len(vocab))


def check_bpe_step(ex, tokenizer_lib, words: dict, vocab: dict, best: tuple[str, str], case: str) -> dict:
    """Compare ex.bpe_merge_step(words, vocab) with merging `best` by 01's merge_pair; returns the merged words."""
    got = call(ex.bpe_merge_step, case, dict(words), dict(vocab))
    if not (isinstance(got, tuple) and len(got) == 2):
        raise Wrong(case, f"bpe_merge_step should return (best_pair, new_words), got {type(got).__name__}")
    got_pair, got_words = got
    pairs = tokenizer_lib.count_pairs(words)
    if tuple(got_pair) != best:
        hint = ("the two pairs have the same count: on a tie the pair with the smallest (vocab[left], "
                "vocab[right]) wins — the oldest tokens, not the alphabetically first"
                if pairs.get(tuple(got_pair), 0) == pairs[best] else "pick the pair with the largest count")
        raise Wrong(case, f"best pair: expected {best} (count {pairs[best]}), got {tuple(got_pair)} "
                    f"(count {pairs.get(tuple(got_pair), 0)})", hint)
    expected_words = collections.Counter()
    for word, n in words.items():
        expected_words[tokenizer_lib.merge_pair(word, best)] += n
    got_words = {w: n for w, n in dict(got_words).items() if n}
    for word in sorted(set(expected_words) | set(got_words)):
        if got_words.get(word, 0) != expected_words.get(word, 0):
            raise Wrong(case, f"after merging {best}: word {word} should have count "
                        f"{expected_words.get(word, 0)}, got {got_words.get(word, 0)}",
                        "rebuild the word counts with merge_pair applied to every word; two words can "
                        "become the same after a merge, so add their counts")
    return dict(expected_words)


# --- bpe_trainer (01_tokenizer.py, section 3: train_bpe_scratch; section 4: train_tokenizer) --------------

def bpe_trainer_texts() -> list[tuple[str, list[str], int, int]]:
    """(why, texts, vocab_size, min_frequency): small texts, edge cases, and a few KB of real text."""
    import house
    tokenizer_lib = importlib.import_module("01_tokenizer")
    base = tokenizer_lib.MIN_VOCAB_SIZE
    cases = [(f"{text!r}", [text], base + 30, 2 if text.isascii() else 1) for text in BPE_TEXTS]
    cases += [("a tie at the first step: ('a','b') and ('b','a') both occur 4 times", ["ab ba ab ba ab ba ab ba"], base + 5, 2),
              ("words of one character only: no pair to merge", ["a!b?c;d"], base + 10, 1),
              ("min_frequency 1: pairs that occur once are merged too", ["low lower lowest newer wider"], base + 40, 1),
              ("min_frequency 3: stops at the first pair seen fewer than 3 times", [BPE_TEXTS[0] * 2], base + 40, 3),
              ("one word repeated against one long word: 'xy' is 4 times in one word, 'ab' once in each of 5",
               ["ab ab ab ab ab xyxyxyxy"], base + 10, 2),
              ("the vocabulary limit stops training: room for 8 merges, many pairs left above min_frequency",
               [BPE_TEXTS[0] * 3], base + 8, 2)]
    files = [house.EMBEDDED_CORPUS_DIR / name for name in ("shakespeare.jsonl.zst", "python-docs.jsonl.zst")]
    if all(path.is_file() for path in files):
        texts = ["\n".join(itertools.islice(house.iter_file_texts(path), 3))[:3000] for path in files]
        why = "the first 3,000 characters of shakespeare and of python-docs (embedded/corpus)"
    else:
        texts = [" ".join(BPE_TEXTS) * 20, "def train_bpe(words, vocab):\n    return merges\n" * 10]
        why = "a built-in text of 3,670 characters (embedded/corpus is not here)"
    fresh = np.random.default_rng(fresh_seed("bpe_trainer"))
    words = ["".join(fresh.choice(list("abcde"), size=int(fresh.integers(1, 6)))) for _ in range(12)]
    text = " ".join(fresh.choice(words, size=80))
    return cases + [(why, texts, base + 150, 2), (f"80 random words (fresh seed {run_seed()})", [text], base + 25, 2)]


def first_only_merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """`pair` merged at its FIRST occurrence only (the slip the check recognises, not the rule)."""
    for i in range(len(word) - 1):
        if (word[i], word[i + 1]) == pair:
            return word[:i] + (word[i] + word[i + 1],) + word[i + 2:]
    return word


def bpe_state(tokenizer_lib, words: list[str], vocab: dict, merges: list, merge=None) -> tuple[dict, dict]:
    """(word counts, vocab) after applying `merges` in order, with 01's merge_pair (or `merge`)."""
    merge = merge or tokenizer_lib.merge_pair
    counts, vocab = collections.Counter(tuple(w) for w in words), dict(vocab)
    for pair in merges:
        merged = collections.Counter()
        for word, n in counts.items():
            merged[merge(word, pair)] += n
        counts = merged
        vocab.setdefault(pair[0] + pair[1], len(vocab))
    return counts, vocab


def best_pair(pairs: dict, vocab: dict):
    return min(pairs, key=lambda p: (-pairs[p], vocab[p[0]], vocab[p[1]])) if pairs else None


def bpe_merge_hint(tokenizer_lib, words, vocab, expected, got, i, min_frequency,
                   vocab_size: int = 0) -> tuple[str, str]:
    """(what differs at merge i, a hint naming the likely slip)."""
    counts, state_vocab = bpe_state(tokenizer_lib, words, vocab, expected[:i])
    pairs = tokenizer_lib.count_pairs(counts)
    right = f"your first {i} merges are right; " if i else ""
    # what two common slips would pick next (None: they would stop here)
    unweighted = collections.Counter(pair for word in counts for pair in zip(word, word[1:]))
    first_counts, first_vocab = bpe_state(tokenizer_lib, words, vocab, expected[:i], first_only_merge)
    first_pairs = tokenizer_lib.count_pairs(first_counts)
    slips = [(unweighted, state_vocab, "yours follows from counting each pair once per distinct word: count it once "
              "per occurrence TIMES how often its word occurs"),
             (first_pairs, first_vocab, "yours follows from merging only the FIRST occurrence of a pair in each "
              "word: replace EVERY occurrence, left to right, without overlap (('a','a','a','a') → ('aa','aa'))")]
    slip_picks = [(b if b is not None and counts_[b] >= min_frequency else None, hint)
                  for counts_, v, hint in slips for b in [best_pair(counts_, v)]]
    if i >= len(got):
        best = expected[i]
        made = [a + b for a, b in expected[:i]]
        repeated = next((m for k, m in enumerate(made) if m in made[:k] or m in vocab), None)
        if pairs[best] == min_frequency:
            hint = (f"{best} occurs exactly min_frequency = {min_frequency} times, and a pair seen min_frequency "
                    "times IS merged: stop only when the best count is BELOW min_frequency (count < "
                    "min_frequency, not <=)")
        elif repeated is not None and len(got) == vocab_size - len(vocab):
            hint = (f"an earlier merge made {repeated!r}, a token that was already in the vocab: it added no id, so "
                    "the vocab is not full yet — stop when len(vocab) reaches vocab_size, not after "
                    "vocab_size − (start size) merges")
        else:
            hint = next((h for pick, h in slip_picks if pick is None), f"keep going while the vocab has fewer "
                        f"than vocab_size tokens, some pair is left and the best one occurs at least min_frequency "
                        f"({min_frequency}) times")
        return (f"{right}you stopped after {len(got)} merges, expected {len(expected)}: merge {i} should be {best} "
                f"(count {pairs[best]})", hint)
    if i >= len(expected):
        best = best_pair(pairs, state_vocab)
        why = ("no pair is left" if best is None else f"the best pair {best} occurs {pairs[best]}×, below "
               f"min_frequency {min_frequency}" if pairs[best] < min_frequency else
               f"the vocab is full ({len(state_vocab)} tokens): a merge whose token already exists adds no id")
        return (f"{right}you went on to merge {got[i]}, expected to stop after {len(expected)} merges: {why}",
                "stop when the vocab holds vocab_size tokens, no pair is left, or the best pair occurs fewer than "
                "min_frequency times")
    best, mine = expected[i], tuple(got[i])
    what = f"{right}merge {i}: expected {best} (count {pairs[best]}), got {mine} (count {pairs.get(mine, 0)})"
    if pairs.get(mine, 0) == pairs[best]:
        ids = lambda p: (state_vocab.get(p[0]), state_vocab.get(p[1]))
        return what, (f"a tie: both occur {pairs[best]} times. The pair with the smallest (vocab[left], vocab[right]) "
                      f"wins — {best} has ids {ids(best)}, yours {ids(mine)}: the OLDEST tokens, "
                      "not the alphabetically first pair")
    hint = next((h for pick, h in slip_picks if pick == mine), None)
    return what, hint or "count the pairs of the words as they are after the previous merges, then take the most frequent"


def check_bpe_trainer(ex) -> None:
    tokenizer_lib = importlib.import_module("01_tokenizer")
    _, start_vocab = tokenizer_lib.train_bpe_scratch([""], tokenizer_lib.MIN_VOCAB_SIZE)   # specials + 256 bytes
    for why, texts, vocab_size, min_frequency in bpe_trainer_texts():
        words = [w for text in texts for w in tokenizer_lib.split_words(text)]
        expected, _ = tokenizer_lib.train_bpe_scratch(texts, vocab_size, min_frequency)
        hf = tokenizer_lib.tokenizer_merges(tokenizer_lib.train_tokenizer(texts, vocab_size, min_frequency,
                                                                          show_progress=False))
        if hf != expected:     # the lesson's own claim; if it ever fails, the check cannot say who is right
            raise RuntimeError(f"01's train_bpe_scratch and HF's BpeTrainer disagree on {why}: fix 01 first")
        case = (f"train_bpe(<{len(words)} words of {why}>, vocab, vocab_size {vocab_size}, "
                f"min_frequency {min_frequency}) — {len(expected)} merges expected (01's train_bpe_scratch and "
                "HF's BpeTrainer agree)")
        got = call(ex.train_bpe, case, list(words), dict(start_vocab), vocab_size, min_frequency)
        if not (isinstance(got, (list, tuple)) and all(isinstance(m, (tuple, list)) and len(m) == 2
                                                        and all(isinstance(t, str) for t in m) for m in got)):
            raise Wrong(case, f"train_bpe should return a list of (left, right) pairs of str; got {describe(got)}"
                        + (f" whose first item is {got[0]!r:.60}" if isinstance(got, (list, tuple)) and got else ""))
        got = [tuple(m) for m in got]
        if got != expected:
            i = next(i for i in range(max(len(got), len(expected)))
                     if i >= len(got) or i >= len(expected) or got[i] != expected[i])
            detail, hint = bpe_merge_hint(tokenizer_lib, words, start_vocab, expected, got, i, min_frequency,
                                          vocab_size)
            raise Wrong(case, detail, hint)


CHECKS = {"bpe_merge": check_bpe_merge, "bpe_trainer": check_bpe_trainer}
