"""Worked solution for exercises/hellaswag_requests.py (lesson: 06_eval.py, section 2)."""
from __future__ import annotations


def encode(tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def move_trailing_space(context: str, continuation: str) -> tuple[str, str]:
    stripped = context.rstrip()
    return stripped, context[len(stripped):] + continuation


def pairs_of(example: dict, mode: str) -> list[tuple[str, str]]:
    if mode == "nanogpt":
        return [(example["raw_ctx"], " " + ending) for ending in example["raw_endings"]]
    return [(example["context"], " " + choice) for choice in example["choices"]]


def encode_pairs(tokenizer, pairs, mode: str, eot: int) -> list[tuple[list[int], list[int]]]:
    if mode == "lm-eval":
        pairs = [move_trailing_space(c, k) for c, k in pairs]
    contexts = encode(tokenizer, [c for c, _ in pairs])
    if mode == "lm-eval":   # encode the whole string once; the continuation is what follows the context's ids
        wholes = encode(tokenizer, [c + k for c, k in pairs])
        continuations = [whole[len(ctx):] for whole, ctx in zip(wholes, contexts)]
    else:
        continuations = encode(tokenizer, [k for _, k in pairs])
    return [(ctx or [eot], cont) for ctx, cont in zip(contexts, continuations)]


def hellaswag_requests(tokenizer, examples: list[dict], mode: str, nanogpt: bool, eot: int
                       ) -> list[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) for every ending of every example, as 06 builds them."""
    requests = encode_pairs(tokenizer, [p for ex in examples for p in pairs_of(ex, mode)], mode, eot)
    if nanogpt:
        requests += encode_pairs(tokenizer, [p for ex in examples for p in pairs_of(ex, "nanogpt")], "nanogpt", eot)
    return requests
