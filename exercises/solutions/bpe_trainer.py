"""Worked solution for exercises/bpe_trainer.py (lesson: 01_tokenizer.py, section 3)."""
from __future__ import annotations

import collections


def count_pairs(words: dict[tuple[str, ...], int]) -> collections.Counter:
    """Occurrences of each adjacent token pair, weighted by how often its word occurs."""
    pairs = collections.Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            pairs[pair] += n
    return pairs


def merge_pair(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """`word` with every occurrence of `pair` replaced by one token, left to right, never overlapping."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train_bpe(words: list[str], vocab: dict[str, int], vocab_size: int, min_frequency: int = 2
              ) -> list[tuple[str, str]]:
    """The merges byte-level BPE learns from `words`, in order (HF's tie rule and stopping rules)."""
    vocab = dict(vocab)
    counts = collections.Counter(tuple(word) for word in words)     # word -> count, one token per character
    merges = []
    while len(vocab) < vocab_size:
        pairs = count_pairs(counts)
        if not pairs:
            break                                                   # every word is a single token
        best = min(pairs, key=lambda p: (-pairs[p], vocab[p[0]], vocab[p[1]]))   # ties: the oldest tokens
        if pairs[best] < min_frequency:
            break
        merges.append(best)
        vocab.setdefault(best[0] + best[1], len(vocab))             # an existing token keeps its id
        merged = collections.Counter()
        for word, n in counts.items():
            merged[merge_pair(word, best)] += n                     # two words can become one
        counts = merged
    return merges
