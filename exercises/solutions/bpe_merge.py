"""Worked solution for exercises/bpe_merge.py (lesson: 01_tokenizer.py, section 3)."""
from __future__ import annotations

import collections


def count_pairs(words: dict[tuple[str, ...], int]) -> collections.Counter:
    """Occurrences of each adjacent token pair, weighted by how often its word occurs."""
    pairs = collections.Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):        # (w0, w1), (w1, w2), ...
            pairs[pair] += n
    return pairs


def merge_pair(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """`word` with every occurrence of `pair` replaced by one token, left to right, never overlapping."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2                               # the right token is used up: no overlapping match
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def bpe_merge_step(words: dict[tuple[str, ...], int], vocab: dict[str, int]
                   ) -> tuple[tuple[str, str], dict[tuple[str, ...], int]]:
    """One training step: (the pair to merge, the words with that pair merged)."""
    pairs = count_pairs(words)
    # largest count first; among equal counts, the smallest (left id, right id): the oldest tokens
    best = min(pairs, key=lambda p: (-pairs[p], vocab[p[0]], vocab[p[1]]))
    new_words = collections.Counter()
    for word, n in words.items():
        new_words[merge_pair(word, best)] += n   # two words can become one: add their counts
    return best, dict(new_words)
