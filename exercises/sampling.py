"""Exercise sampling — temperature, top-k, a seeded generator and the KV cache's positions (lesson:
02_model.py, section 6, LLM.generate and LLM._sample). About 25 lines.

1. sample_next(logits, temperature, top_k, gen) picks the next token from the logits (V,) of the last
   position, the way 02's _sample does:
     * temperature 0 means greedy: the id of the largest logit (argmax; no random draw);
     * otherwise divide the logits by the temperature (below 1 sharpens, above 1 flattens), then, if
       top_k is not None, keep only the logits >= the k-th largest one (k = min(top_k, V); ties with the
       k-th are kept) and set the rest to −inf; softmax; draw ONE id with
       torch.multinomial(probs, 1, generator=gen). The generator makes the draw repeatable: the same
       seed gives the same text, and the check compares your draws with 02's, one by one.
   Return a Python int.

2. generate(forward, prompt, max_new_tokens, temperature, top_k, seed, block_size) continues a list of
   token ids with max_new_tokens sampled ids and returns prompt + them (one list). Make ONE generator,
   torch.Generator().manual_seed(seed), for all the draws. The model is the function you are given:

       forward(new_ids, past) → logits (V,) of the LAST of new_ids

   new_ids are the tokens the model has not seen yet and `past` is how many tokens its KV cache already
   holds: they sit at positions past .. past + len(new_ids) − 1. The cache remembers what it was fed, so
   a step feeds only the one token sampled last, at position past = the cache's length. At the start
   (past = 0) feed the prompt — its last block_size tokens, since the model's positions stop at
   block_size − 1. When the cache is full (it holds block_size tokens), start again: feed the last
   block_size ids with past = 0 (02 re-reads the whole window; the old cache is dropped).

   Example, block_size 4, prompt [5, 6, 7]: forward([5, 6, 7], 0) → sample a; forward([a], 3) → b
   (the cache now holds 4 = block_size); so the next step restarts: forward([6, 7, a, b], 0) → c; the
   cache holds 4 again, so the step after restarts too: forward([7, a, b, c], 0) → d.

Check:     python -m exercises.check sampling   (compares with 02's LLM.generate on a small model)
Solution:  exercises/solutions/sampling.py
"""
from __future__ import annotations

import torch


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, gen: torch.Generator) -> int:
    """One token id from logits (V,): argmax at temperature 0, else logits / T → top-k → softmax → multinomial."""
    raise NotImplementedError("TODO in exercises/sampling.py: sample_next — greedy at temperature 0, else "
                              "divide by T, keep the top k, softmax, torch.multinomial(probs, 1, generator=gen)")


def generate(forward, prompt: list[int], max_new_tokens: int, temperature: float, top_k: int | None,
             seed: int, block_size: int) -> list[int]:
    """prompt + max_new_tokens sampled ids; forward(new_ids, past) gives the logits of the last new id."""
    raise NotImplementedError("TODO in exercises/sampling.py: generate — one seeded generator; feed the prompt "
                              "with past 0, then one token at a time at past = the cache's length; restart "
                              "from the last block_size ids when the cache is full")
