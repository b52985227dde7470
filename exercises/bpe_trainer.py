"""Exercise bpe_trainer — a whole byte-level BPE trainer, from words to the list of merges (lesson:
01_tokenizer.py, section 3: count_words, count_pairs, merge_pair, train_bpe_scratch). About 30 lines.

You get a text already cut into words by 01's GPT-2 pre-tokenizer (`split_words`), each word written in
byte-characters (every UTF-8 byte is one printable character; a space is "Ġ"), repeats included:
    "the cat the"  →  words = ["the", "Ġcat", "Ġthe"]
and learn the merges, in order, exactly as 01's train_bpe_scratch and HF's BpeTrainer do.

The algorithm:
  * Each distinct word becomes a tuple of one-character tokens with a count: ("Ġ","t","h","e") → 1, ...
    BPE never merges across words, so this dict is all it looks at.
  * Repeat: count every adjacent token pair, WEIGHTED by the count of its word (a pair that occurs twice
    in a word that occurs 5 times counts 10). The pair (a, b) with the largest count wins; it becomes one
    new token a + b, replacing EVERY occurrence of (a, b) in every word, left to right, never overlapping
    (("a","a","a") with ("a","a") → ("aa","a")). Record (a, b) as the next merge. Two words that become
    equal after a merge are the same word: their counts add up.
  * TIES decide a lot on small texts: among pairs with the same count, the winner is the pair whose
    (vocab[a], vocab[b]) is smallest — the pair of the OLDEST tokens (HF's rule), not the alphabetically
    first one.
  * Ids: `vocab` maps token → id and starts with the 2 special tokens (ids 0, 1) and the 256
    byte-characters sorted by code point (ids 2..257). Each merge gives its new token the next id,
    len(vocab) — unless that token already exists (after ("a","bc"), the merge ("ab","c") makes "abc"
    again): then it keeps its id and the vocab does not grow.
  * Stop when the vocab holds `vocab_size` tokens, when no pair is left (every word is one token), or when
    the best pair occurs fewer than `min_frequency` times (that pair is not merged).

Shapes: words a list of str; vocab a dict {token: id} of 258 entries (yours to extend or copy);
vocab_size, min_frequency ints → a list of (left, right) pairs of str, the merges in the order learned.

Check:     python -m exercises.check bpe_trainer   (compares the WHOLE merge list with 01's train_bpe_scratch
           and with HF's BpeTrainer — 01's train_tokenizer — on a few texts and a few KB of the corpus)
Solution:  exercises/solutions/bpe_trainer.py
"""
from __future__ import annotations


def train_bpe(words: list[str], vocab: dict[str, int], vocab_size: int, min_frequency: int = 2
              ) -> list[tuple[str, str]]:
    """The merges byte-level BPE learns from `words`, in order (HF's tie rule and stopping rules)."""
    raise NotImplementedError("TODO in exercises/bpe_trainer.py: train_bpe — learn the merges from the words, "
                              "in order (see the docstring)")
