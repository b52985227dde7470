"""Exercise bpe_merge — one step of byte-pair-encoding training (lesson: 01_tokenizer.py, section 3).

BPE training starts from words written as tuples of single byte-characters and repeats one step:
count every adjacent pair of tokens, merge the most frequent pair into one token everywhere, and
record that merge. You write the three pieces of that step.

Words are a dict {word: count}, each word a tuple of token strings (01's count_words makes them;
a space shows as "Ġ"), e.g. {("Ġ", "t", "h", "e"): 7, ("t", "h", "e"): 2}.

1. count_pairs(words) -> Counter {(left, right): count}. Each adjacent pair counts once per
   occurrence in a word, times how often that word occurs:
       count_pairs({("a", "a", "a"): 2, ("b", "a"): 1}) == Counter({("a", "a"): 4, ("b", "a"): 1})
2. merge_pair(word, pair) -> the word (a tuple) with every occurrence of `pair` replaced by ONE
   token (left + right), scanning left to right without overlaps:
       merge_pair(("a", "a", "a"), ("a", "a")) == ("aa", "a")
       merge_pair(("x", "a", "b"), ("a", "b")) == ("x", "ab")
3. bpe_merge_step(words, vocab) -> (best_pair, new_words):
   * best_pair: the pair with the largest count. On a TIE (very common in small corpora), the
     pair whose (vocab[left], vocab[right]) is smallest wins: the pair of the OLDEST tokens, which
     is what HF's BpeTrainer does — not the alphabetically first pair. `vocab` maps token -> id
     (the 2 special tokens, then the 256 byte-characters, then one id per merge so far).
   * new_words: merge_pair applied to every word; if two words become equal, add their counts.
   You do not change `vocab`: the check adds the new token to it between steps.

Check:     python -m exercises.check bpe_merge   (compares with 01's count_pairs, merge_pair and
           every merge of train_bpe_scratch on a few texts)
Solution:  exercises/solutions/bpe_merge.py
"""
from __future__ import annotations

import collections


def count_pairs(words: dict[tuple[str, ...], int]) -> collections.Counter:
    """Occurrences of each adjacent token pair, weighted by how often its word occurs."""
    raise NotImplementedError("TODO in exercises/bpe_merge.py: count_pairs — for each word and its count n, "
                              "add n to every adjacent pair (word[i], word[i+1])")


def merge_pair(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """`word` with every occurrence of `pair` replaced by one token, left to right, never overlapping."""
    raise NotImplementedError("TODO in exercises/bpe_merge.py: merge_pair — walk the word with an index i; "
                              "on a match append word[i] + word[i+1] and jump by 2, else keep word[i]")


def bpe_merge_step(words: dict[tuple[str, ...], int], vocab: dict[str, int]
                   ) -> tuple[tuple[str, str], dict[tuple[str, ...], int]]:
    """One training step: (the pair to merge, the words with that pair merged)."""
    raise NotImplementedError("TODO in exercises/bpe_merge.py: bpe_merge_step — count pairs, pick the most "
                              "frequent (ties: smallest (vocab[left], vocab[right])), merge it in every word")
