"""Exercise hellaswag_requests — turning HellaSwag examples into token requests (lesson: 06_eval.py,
section 2: split_trailing_space, encode_requests, example_pairs; section 4: hellaswag_requests).
About 30 lines.

A request is (context_ids, continuation_ids): the model reads both and we add up the log-probabilities
of the continuation tokens only. Every example has 4 endings, so 4 requests. An example (already
prepared by 06's prepare_example) is a dict with "context" and "choices" (lm-eval's preprocessed
strings) and "raw_ctx" and "raw_endings" (the dataset's strings as they are).

The (context, continuation) strings of one ending, by `mode`:
    "lm-eval", "linnet":  (example["context"], " " + choice)      for each of the 4 choices
    "nanogpt":            (example["raw_ctx"], " " + ending)      for each of the 4 raw endings

How they become ids (tokenizer is an HF `tokenizers.Tokenizer`; encode without special tokens:
tokenizer.encode_batch(texts, add_special_tokens=False), then .ids of each):
    "linnet", "nanogpt": encode the context and the continuation separately.
    "lm-eval": first, whitespace at the END of the context moves to the FRONT of the continuation
        ("Hello " + " world" → "Hello" + "  world"); then the whole string context + continuation is
        encoded once, the context alone too, and the continuation ids are the whole encoding minus its
        first len(context ids) tokens. (BPE merges never cross the cut in the other modes; here they
        could, and lm-eval scores what the model would really read.)
    In every mode an EMPTY context (no ids) becomes [eot]: a model without a BOS token needs one token to
    predict the first continuation token from.

Order: the 4 requests of example 0, then of example 1, ... (example i → requests 4i..4i+3). With
nanogpt=True, the 4 nanoGPT-style requests of every example come AFTER all of those, in the same order.

Shapes: tokenizer; examples a list of dicts; mode one of "lm-eval", "linnet", "nanogpt"; nanogpt a bool;
eot the id of <|endoftext|> → a list of (context_ids: list[int], continuation_ids: list[int]).

Check:     python -m exercises.check hellaswag_requests   (compares with 06's hellaswag_requests on
           hand-made examples: brackets, a context ending in a space, an empty context)
Solution:  exercises/solutions/hellaswag_requests.py
"""
from __future__ import annotations


def hellaswag_requests(tokenizer, examples: list[dict], mode: str, nanogpt: bool, eot: int
                       ) -> list[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) for every ending of every example, as 06 builds them."""
    raise NotImplementedError("TODO in exercises/hellaswag_requests.py: the requests of every example, "
                              "tokenised as `mode` says (see the docstring)")
