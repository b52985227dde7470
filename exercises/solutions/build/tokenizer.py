"""Worked solution of the build track's tokenizer (spec: docs/build/tokenizer.md): byte-level BPE, trained
with incremental pair counts and a heap (HF's merges, HF's tie rule), and an encoder/decoder."""
from __future__ import annotations

import collections
import heapq

import regex

SPECIALS = ["<|endoftext|>", "<|padding|>"]
SPLIT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
SPECIAL_SPLIT = regex.compile("(" + "|".join(regex.escape(s) for s in SPECIALS) + ")")


def byte_chars() -> dict[int, str]:
    """GPT-2's table: printable bytes stay themselves, the other bytes become chr(256), chr(257), ... in order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {b: chr(b) for b in keep}, 256
    for b in range(256):
        if b not in table:
            table[b], shifted = chr(shifted), shifted + 1
    return table


BYTE_CHAR = byte_chars()
CHAR_BYTE = {c: b for b, c in BYTE_CHAR.items()}


def words_of(text: str) -> list[str]:
    """The pre-tokenizer: GPT-2's regex, then each word's UTF-8 bytes as byte-characters."""
    return ["".join(BYTE_CHAR[b] for b in w.encode("utf-8", "surrogateescape")) for w in SPLIT.findall(text)]


def start_vocab() -> dict[str, int]:
    return {tok: i for i, tok in enumerate([*SPECIALS, *sorted(BYTE_CHAR.values())])}


def merged(word: tuple, pair: tuple) -> tuple:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train(texts: list[str], vocab_size: int, min_frequency: int = 2) -> list[tuple[str, str]]:
    vocab = start_vocab()
    counts = collections.Counter(tuple(w) for text in texts for w in words_of(text))
    words, freq = list(counts), list(counts.values())
    pairs, where = collections.Counter(), collections.defaultdict(set)
    for i, word in enumerate(words):
        for pair in zip(word, word[1:]):
            pairs[pair] += freq[i]
            where[pair].add(i)
    heap = [(-n, vocab[a], vocab[b], (a, b)) for (a, b), n in pairs.items()]
    heapq.heapify(heap)
    merges = []
    while len(vocab) < vocab_size and heap:
        n, _, _, best = heapq.heappop(heap)
        if pairs.get(best, 0) != -n:
            continue                                   # a stale entry: the count changed since it was pushed
        if -n < min_frequency:
            break
        merges.append(best)
        vocab.setdefault(best[0] + best[1], len(vocab))
        changed = set()
        for i in where.pop(best):
            old, new = words[i], merged(words[i], best)
            if old == new:
                continue
            for pair in zip(old, old[1:]):
                pairs[pair] -= freq[i]
                changed.add(pair)
            for pair in zip(new, new[1:]):
                pairs[pair] += freq[i]
                where[pair].add(i)
                changed.add(pair)
            words[i] = new
        for pair in changed:
            if pairs[pair] > 0 and pair != best:
                heapq.heappush(heap, (-pairs[pair], vocab[pair[0]], vocab[pair[1]], pair))
            elif pairs[pair] <= 0:
                del pairs[pair]
        pairs.pop(best, None)
    return merges


class Tokenizer:
    def __init__(self, merges: list[tuple[str, str]]):
        self.vocab = start_vocab()
        for a, b in merges:
            self.vocab.setdefault(a + b, len(self.vocab))
        self.rank = {tuple(pair): r for r, pair in enumerate(merges)}
        self.bytes = {i: (tok.encode() if tok in SPECIALS else bytes(CHAR_BYTE[c] for c in tok))
                      for tok, i in self.vocab.items()}
        self.cache: dict[str, list[int]] = {}

    def encode_word(self, word: str) -> list[int]:
        if word not in self.cache:
            parts = list(word)
            while len(parts) > 1:
                r, i = min((self.rank.get(p, len(self.rank)), i) for i, p in enumerate(zip(parts, parts[1:])))
                if r == len(self.rank):
                    break
                parts[i:i + 2] = [parts[i] + parts[i + 1]]
            self.cache[word] = [self.vocab[p] for p in parts]
        return self.cache[word]

    def encode(self, text: str) -> list[int]:
        ids = []
        for piece in SPECIAL_SPLIT.split(text):
            if piece in SPECIALS:
                ids.append(self.vocab[piece])
            else:
                for word in words_of(piece):
                    ids += self.encode_word(word)
        return ids

    def decode_bytes(self, ids: list[int]) -> bytes:
        return b"".join(self.bytes[int(i)] for i in ids)

    def decode(self, ids: list[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", "replace")
