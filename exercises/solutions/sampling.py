"""Worked solution for exercises/sampling.py (lesson: 02_model.py, section 6, LLM.generate, LLM._sample)."""
from __future__ import annotations

import torch


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, gen: torch.Generator) -> int:
    """One token id from logits (V,): argmax at temperature 0, else logits / T → top-k → softmax → multinomial."""
    logits = logits.float()                                          # (V,)
    if temperature == 0:
        return int(logits.argmax())                                  # greedy: no draw at all
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]      # the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))     # ties with the k-th stay in
    probs = torch.softmax(logits, dim=-1)                            # (V,)
    return int(torch.multinomial(probs, 1, generator=gen))


def generate(forward, prompt: list[int], max_new_tokens: int, temperature: float, top_k: int | None,
             seed: int, block_size: int) -> list[int]:
    """prompt + max_new_tokens sampled ids; forward(new_ids, past) gives the logits of the last new id."""
    gen = torch.Generator().manual_seed(seed)                        # one generator for every draw
    ids = list(prompt)
    cached = None                                                    # tokens in the KV cache (None: no cache)
    feed = ids[-block_size:]
    for _ in range(max_new_tokens):
        if cached is None or cached >= block_size:                   # start, or the cache is full
            cached, feed = 0, ids[-block_size:]                      # re-read the window from position 0
        logits = forward(feed, cached)                               # (V,) at position cached + len(feed) − 1
        cached += len(feed)
        nxt = sample_next(logits, temperature, top_k, gen)
        ids.append(nxt)
        feed = [nxt]                                                 # next step: only the new token
    return ids
