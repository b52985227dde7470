"""06 — evaluating linnet: HellaSwag exactly as lm-evaluation-harness scores it, bits per byte, sampling.

A model answers a multiple-choice question without generating anything: it scores each ending by the log-probability
it gives the ending's tokens, and picks the best. Built in this order: 1 the data (HellaSwag validation, cleaned as
lm-eval does); 2 requests, three tokenisations; 3 scoring them — a plain one-at-a-time reference, then the batched
path (many endings per forward pass, sorted by length, padded on the right: a causal model never looks right);
4 the three accuracies (acc = summed log-prob, acc_norm = per character, the nanoGPT rule = mean per token) and
which one is linnet's "≈ 38 %" (acc, first 3,000 examples, separate tokenisation: docs/HELLASWAG.md); 5 where a
model beats guessing (binomial sd: 0.43 points on 10,042 examples, 3.1 on 200); 6 bits per byte, the
tokenizer-independent loss; 7 plots; 8 main. What makes scoring faster still (each context once, tokenising ahead)
is fast/hellaswag.py; how fast, BENCHMARKS.md "HellaSwag timing".

    python 06_eval.py --preset tiny       # a CPU, < 1 min: 05's tiny checkpoint, else random weights (≈ 25 %)
    python 06_eval.py                     # out/05_train/latest.pt on all 10,042 examples
    python 06_eval.py --checkpoint linnet/ --linnet-compat   # linnet's published weights and its own protocol
    python 06_eval.py --sample "The capital of France is"

Writes (out/06_eval/): results.json (every number, per-example scores), hellaswag_methods.png (three scorings
against reference models), hellaswag_breakdown.png (by source, split, context length, with the ±2 sd band of
guessing), hellaswag_examples.png (a few examples, the score of every ending).
Not here: few-shot, the test split (its labels are not public); bit-identity with lm-eval (it batches in its own
way: expect ~1e-3 in bf16 log-probs). Bits per byte divides by the bytes of exactly the tokens scored; linnet
divided by bytes per token over all its text (docs/DATA.md).
"""
from __future__ import annotations

import argparse
import functools
import importlib
import math
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import house
from fast import hellaswag as hellaswag_fast
from house import checkpoints

tokenizer_lib = importlib.import_module("01_tokenizer")
model_lib = importlib.import_module("02_model")
data_lib = importlib.import_module("04_data")

MODES = ("lm-eval", "linnet", "nanogpt")   # the three ways to turn an example into requests (section 2)
LINNET_COMPAT_LIMIT = 3000                  # linnet's final evaluation used lm-eval's limit=3000


# --- 1. The data: HellaSwag validation, preprocessed as lm-eval does ----------------------------------

def preprocess(text: str) -> str:
    """lm-eval's HellaSwag clean-up of WikiHow artefacts, in its exact order.

    1. strip surrounding whitespace; 2. every " [title]" becomes ". "; 3. delete every [...] span (non-greedy);
    4. each double space becomes one (a single pass, so three spaces become two).

    >>> preprocess("How to dance [title] Stand up. [step] Move your feet.")
    'How to dance. Stand up. Move your feet.'
    >>> preprocess("[substeps] Many schools offer classes.")   # strip comes first: a space survives
    ' Many schools offer classes.'

    That quirk is lm-eval's too (the choice is scored as "  Many…"): reproduced, not fixed, to stay comparable."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    text = text.replace("  ", " ")
    return text


def prepare_example(row: dict) -> dict:
    """One raw jsonl row → what the three scorings need.

    `context` is lm-eval's query: preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())
    (str.capitalize upper-cases the first letter and lower-cases the rest); `choices` are the
    preprocessed endings. `raw_ctx` / `raw_endings` are kept for the nanoGPT-style scoring."""
    context = preprocess(row["activity_label"] + ": " + row["ctx_a"] + " " + row["ctx_b"].capitalize())
    return {
        "ind": row["ind"],
        "context": context,
        "choices": [preprocess(e) for e in row["endings"]],
        "raw_ctx": row["ctx"],
        "raw_endings": list(row["endings"]),
        "label": int(row["label"]),
        "source": row["source_id"].split("~")[0],          # "activitynet" or "wikihow"
        "split_type": row["split_type"],                   # "zeroshot" or "indomain"
        "activity_label": row["activity_label"],
    }


def load_hellaswag(path: str | Path | None = None, limit: int | None = None) -> list[dict]:
    """Read the HellaSwag jsonl (the rowanz/hellaswag schema), first `limit` examples if given.

    `path=None` finds the file with house/sources.py's `find_hellaswag_file` (cache, ../shared/data, embedded/).
    The full validation file gives 10,042 examples with labels 0/1/2/3 = 2515/2485/2584/2458.
    A line that is not a complete example, or repeats one, is a UserError naming the file and line."""
    path = house.sources.find_hellaswag_file(path)
    try:
        examples = [prepare_example(row) for row in house.sources.read_hellaswag_rows(path, limit)]
    except UnicodeDecodeError:
        raise house.UserError(f"{path} is not UTF-8 text: pass the HellaSwag validation jsonl (rowanz/hellaswag)") from None
    if not examples:
        raise house.UserError(f"{path} has no examples: pass the HellaSwag validation jsonl")
    return examples


# --- 2. Turning an example into token requests: three tokenisations ----------------------------------
# A request is (context_ids, continuation_ids): the model reads context + continuation and we sum (or
# average) the log-probabilities of the continuation tokens only. The three scorings differ in *which*
# strings and *how* they are tokenised:
#
#   mode       context string                      continuation       tokenisation
#   "lm-eval"  preprocess(label: ctx_a Ctx_b)      " " + choice       whole string encoded once, split after
#                                                                     len(encode(context)) tokens
#   "linnet"   same                                " " + choice       encode(context) + encode(continuation)
#   "nanogpt"  raw ctx                             " " + raw ending   encode(ctx) + encode(" " + ending)
#
# With a byte-level BPE whose pre-tokenizer splits before " word", the lm-eval and linnet tokenisations
# agree on almost every example (a merge would have to cross the space); they can differ on odd
# whitespace. The nanoGPT variant scores different *text* (no activity label, no bracket clean-up),
# and averages per token, so it is a genuinely different number (typically 1–2 points below acc_norm).

def split_trailing_space(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval moves whitespace at the end of the context to the front of the continuation.

    >>> split_trailing_space("Hello ", "world")
    ('Hello', ' world')"""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


def encode_many(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of many strings at once (`encode_batch` uses all cores), no special tokens added."""
    return [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def encode_requests(tokenizer, pairs: list[tuple[str, str]], mode: str, eot: int) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) strings → (context_ids, continuation_ids), tokenised as `mode` says.

    "lm-eval": encode(context + continuation) once, encode(context) alone, continuation ids = the whole
    encoding minus its first len(context ids) tokens (lm-eval's HFLM `_encode_pair`).
    "linnet"/"nanogpt": the two strings are encoded separately and simply concatenated.
    An empty context becomes [eot], as lm-eval does for models without a BOS token."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if mode == "lm-eval":
        pairs = [split_trailing_space(c, k) for c, k in pairs]
    unique = list(dict.fromkeys(c for c, _ in pairs))            # an example's 4 requests share one context:
    encoded = dict(zip(unique, encode_many(tokenizer, unique)))   # encode it once (same string, same ids)
    contexts = [encoded[c] for c, _ in pairs]
    if mode == "lm-eval":
        wholes = encode_many(tokenizer, [c + k for c, k in pairs])
        continuations = [whole[len(ctx):] for whole, ctx in zip(wholes, contexts)]
    else:
        continuations = encode_many(tokenizer, [k for _, k in pairs])
    return [(ctx or [eot], cont) for ctx, cont in zip(contexts, continuations)]


def example_pairs(example: dict, mode: str) -> list[tuple[str, str]]:
    """The 4 (context, continuation) strings of one example for `mode` (see the table above)."""
    if mode == "nanogpt":
        return [(example["raw_ctx"], " " + ending) for ending in example["raw_endings"]]
    return [(example["context"], " " + choice) for choice in example["choices"]]


# --- 3. Scoring requests: the plain reference, then the batched fast path ----------------------------

def model_logits(model, idx: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) for token ids (B, T). 02's `forward(idx)` returns (logits, loss)."""
    out = model(idx)
    return out[0] if isinstance(out, tuple) else out


def unwrap(model):
    """The 02 model inside a DDP wrapper (`.module`) or a torch.compile wrapper (`._orig_mod`)."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def window_of(model) -> int:
    """How many tokens the model reads at once (its block_size: 1024 for linnet), wrapped or not."""
    return unwrap(model).config.block_size


def cut_to_window(context_ids: list[int], continuation_ids: list[int], window: int) -> tuple[list[int], int]:
    """The tokens for one request (inputs are all but the last, targets all but the first) and how
    many of its last targets are continuation tokens to score.

    Longer than window + 1 tokens, the context is cut from the left, as lm-eval does (linnet's 1,024-token window
    never cuts a HellaSwag example). Only a toy window (the tiny model reads 64) is shorter than an ending: then
    the ending's first tokens become the context and its last `window` tokens are scored (lm-eval has no rule).

    >>> cut_to_window([1, 2, 3, 4], [5, 6], window=3)
    ([3, 4, 5, 6], 2)
    >>> cut_to_window([1, 2], [5, 6, 7, 8], window=3)
    ([5, 6, 7, 8], 3)"""
    full = (context_ids + continuation_ids)[-(window + 1):]
    return full, min(len(continuation_ids), window)


def fit_to_window(context_ids: list[int], continuation_ids: list[int], window: int) -> tuple[list[int], list[int]]:
    """A request as the model reads it, still as (context, continuation): the same lists if it fits in
    window + 1 tokens, else `cut_to_window`'s tokens split again.

    >>> fit_to_window([1, 2, 3, 4], [5, 6], window=3)
    ([3, 4], [5, 6])"""
    if len(context_ids) + len(continuation_ids) <= window + 1:
        return context_ids, continuation_ids
    full, n = cut_to_window(context_ids, continuation_ids, window)
    return full[:-n], full[-n:]


@torch.no_grad()
def score_requests_reference(model, requests, batch_size: int | None = None, window: int | None = None,
                             device=None, batch_tokens: int | None = None, advance=None) -> list[np.ndarray]:
    """Plain scorer: one request per forward pass, no padding, full log-softmax, no autocast.

    Returns, per request, the log-probabilities (nats) of its continuation tokens, each given every
    token before it. Slow but obviously right; `score_requests` must agree with it. It takes the same
    arguments as `score_requests` so that either can be called; `batch_size` and `batch_tokens` do not
    apply here (one request is one forward pass). `advance(n)`, if given, is told of every n requests done."""
    window = window or window_of(model)
    device = device or next(model.parameters()).device
    results = []
    for context_ids, continuation_ids in requests:
        full, n_cont = cut_to_window(context_ids, continuation_ids, window)
        idx = torch.tensor(full[:-1], device=device)[None]          # (1, T)
        targets = torch.tensor(full[1:], device=device)             # (T,)
        logprobs = model_logits(model, idx)[0].float().log_softmax(-1)  # (T, V)
        token_logprobs = logprobs[torch.arange(len(targets)), targets]  # (T,)
        results.append(token_logprobs[-n_cont:].cpu().double().numpy())
        if advance is not None:
            advance(1)
    return results


def pad_batch(rows: list[tuple[list[int], int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(full tokens, n continuation tokens) rows → inputs, targets and a mask of the targets to score,
    each (B, T), padded on the right with 0 (False in the mask) to the longest row.

    >>> idx, targets, scored = pad_batch([([7, 8, 9], 1), ([5, 6], 1)])
    >>> idx.tolist(), targets.tolist(), scored.tolist()
    ([[7, 8], [5, 0]], [[8, 9], [6, 0]], [[False, True], [True, False]])"""
    max_len = max(len(full) for full, _ in rows) - 1
    idx = np.zeros((len(rows), max_len), dtype=np.int64)          # (B, T) inputs
    targets = np.zeros((len(rows), max_len), dtype=np.int64)      # (B, T) next tokens
    scored = np.zeros((len(rows), max_len), dtype=bool)           # (B, T) True at continuation targets
    for row, (full, n_cont) in enumerate(rows):
        idx[row, :len(full) - 1] = full[:-1]
        targets[row, :len(full) - 1] = full[1:]
        scored[row, len(full) - 1 - n_cont:len(full) - 1] = True
    return idx, targets, scored


def plan_batches(lengths: list[int], batch_tokens: int, batch_size: int | None = None) -> list[list[int]]:
    """Request indices grouped into batches by a token budget, longest first.

    A batch takes the next-longest request while rows × its longest row ≤ `batch_tokens` (and rows ≤
    `batch_size` if given). Sorted, neighbours have nearly the same length, so little is padding; a budget in
    tokens keeps every forward about as big (many short rows, fewer long ones). A longer request goes alone.

    >>> plan_batches([3, 9, 4, 8], batch_tokens=18)   # 9 + 8 → 2 rows × 9; then 4 + 3 → 2 × 4
    [[1, 3], [2, 0]]"""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])   # stable: ties keep their order
    batches: list[list[int]] = []
    for i in order:
        batch = batches[-1] if batches else None
        if batch and (len(batch) + 1) * lengths[batch[0]] <= batch_tokens \
                and (batch_size is None or len(batch) < batch_size):
            batch.append(i)
        else:
            batches.append([i])
    return batches


def continuation_logits(model, idx: torch.Tensor, positions: torch.Tensor, compiled: bool = False) -> torch.Tensor:
    """Logits (N, V) at the flat positions `positions` (N,) of idx (B, T) only.

    02's model runs as usual up to its final norm (`LLM.hidden`); the lm_head (C → V = 32,768, the one
    matmul whose output is T·V) then runs only on the N rows we score — HellaSwag's endings are about a
    third of its tokens — so the (B, T, V) logits are never made. `compiled`: run `hidden` through
    torch.compile (fast/hellaswag.py's `compiled_hidden`). Any other model (a test's bigram table) gives its full logits,
    and we keep the same rows."""
    core = unwrap(model)
    if not (hasattr(core, "hidden") and hasattr(core, "head")):
        return model_logits(model, idx).flatten(0, 1)[positions]
    core.check_input(idx)
    hidden = hellaswag_fast.compiled_hidden(core) if compiled else core.hidden
    x, _ = hidden(idx)                                             # (B, T, C)
    return core.head(x.flatten(0, 1)[positions])                   # (N, V): the lm_head (02's LLM.head)


@torch.no_grad()
def score_requests(model, requests, batch_size: int | None = None, window: int | None = None,
                   device=None, batch_tokens: int | None = None, compiled: bool = False,
                   share_prefix: bool = True, advance=None) -> list[np.ndarray]:
    """Fast scorer, same output as `score_requests_reference` (to float rounding), in the same order.

    1. Batches by a token budget, longest first (`plan_batches`): `batch_tokens` padded tokens per forward
       (default 65,536 on CUDA, 8,192 on a CPU), at most `batch_size` rows. Rows are padded on the right:
       harmless, since attention is causal and the MoE dropless (padding takes no expert slot from a token).
    2. Every batch is padded on the host and copied to the device once, before the loop; inside it nothing
       comes back to the host (a `.item()` would wait for the GPU): log-probs go into one device buffer.
    3. The lm_head and the log-softmax (fp32) run only at continuation positions (`continuation_logits`).
    4. On CUDA the forward runs under bf16 autocast; `compiled=True` through torch.compile (fast/hellaswag.py):
       worth its ≈ 70 s of compiling only when one process scores again and again (BENCHMARKS.md).
    5. `share_prefix` (02's model, eager): each context once, its endings after it under a mask
       (fast/hellaswag.py, `score_packed`): about half the tokens of whole rows, the same numbers up to float
       rounding; whole rows (steps 1–4) when packing would save little (a window that cuts contexts apart).
    `advance(n)`, if given, is told of every n requests done."""
    if not requests:
        return []
    window = window or window_of(model)
    device = torch.device(device or next(model.parameters()).device)
    batch_tokens = batch_tokens or (65_536 if device.type == "cuda" else 8_192)
    core = unwrap(model)
    if share_prefix and not compiled and isinstance(core, model_lib.LLM):
        fitted = [fit_to_window(c, k, window) for c, k in requests]
        scores = hellaswag_fast.score_packed(core, fitted, device, plan_batches, batch_tokens, batch_size, advance)
        if scores is not None:
            return scores
    inputs = [cut_to_window(c, k, window) for c, k in requests]
    return score_whole_rows(model, inputs, device, batch_tokens, batch_size, compiled, advance)


def score_whole_rows(model, rows: list[tuple[list[int], int]], device, batch_tokens: int,
                     batch_size: int | None = None, compiled: bool = False, advance=None) -> list[np.ndarray]:
    """Steps 1–4 of `score_requests`: rows (full tokens, n continuation tokens) from `cut_to_window`
    → each row's n continuation log-probs, every row read whole. `advance(n)`: told of every n rows done."""
    if not rows:
        return []
    batches = plan_batches([len(full) - 1 for full, _ in rows], batch_tokens, batch_size)
    padded = [pad_batch([rows[i] for i in batch]) for batch in batches]       # (B, T) arrays each
    all_idx, all_positions, all_targets = hellaswag_fast.upload([np.concatenate([idx.ravel() for idx, _, _ in padded]),
                                                  np.concatenate([np.flatnonzero(scored) for _, _, scored in padded]),
                                                  np.concatenate([targets[scored] for _, targets, scored in padded])],
                                                 device)                     # flat, batch after batch
    token_logprobs = torch.empty(len(all_targets), dtype=torch.float32, device=device)
    tok, pos = 0, 0
    for idx, _, scored in hellaswag_fast.attention_for_many_shapes(padded):
        (B, T), n = idx.shape, int(scored.sum())
        if advance is not None:
            advance(B)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = continuation_logits(model, all_idx[tok:tok + B * T].view(B, T), all_positions[pos:pos + n],
                                         compiled)
        logprobs = logits.float().log_softmax(-1)                               # (n, V) in fp32
        token_logprobs[pos:pos + n] = logprobs.gather(1, all_targets[pos:pos + n, None])[:, 0]
        tok, pos = tok + B * T, pos + n
    flat = token_logprobs.double().cpu().numpy()           # the one host sync: rows in batch order
    results: list[np.ndarray | None] = [None] * len(rows)
    start = 0
    for i in (i for batch in batches for i in batch):
        results[i] = flat[start:start + rows[i][1]]
        start += rows[i][1]
    return results


# --- 4. From log-probs to the three accuracies ----------------------------------------------------

def choose_endings(token_logprobs: list[np.ndarray], choices: list[str]) -> dict:
    """The three decisions for one example, from its 4 endings' continuation-token log-probs.

    acc:      argmax of the sum of log-probs              (long endings pay for every token)
    acc_norm: argmax of sum / len(choice) in characters   (lm-eval: the preprocessed choice, no joining space)
    mean:     argmax of the mean log-prob per token       (the nanoGPT/llm.c rule, with the "nanogpt" requests)
    Ties go to the first ending (np.argmax), as in lm-eval.

    >>> r = choose_endings([np.array([-3.0]), np.array([-1.0] * 5)], ["a" * 30, "b" * 40])
    >>> r["pred"], r["pred_norm"], r["pred_mean"]   # sum -3 > -5; -3/30 > -5/40; mean -1 > -3
    (0, 0, 1)"""
    sums = np.array([lp.sum() for lp in token_logprobs])
    per_char = sums / np.array([max(len(c), 1) for c in choices])
    means = np.array([lp.mean() for lp in token_logprobs])
    return {"logprob_sum": sums.tolist(), "logprob_per_char": per_char.tolist(), "logprob_mean": means.tolist(),
            "pred": int(np.argmax(sums)), "pred_norm": int(np.argmax(per_char)), "pred_mean": int(np.argmax(means))}


def hellaswag_requests(tokenizer, examples: list[dict], mode: str, nanogpt: bool) -> list:
    """All requests for `examples`: 4 per example in `mode` (example i → requests 4i…4i+3), then, if
    `nanogpt`, the 4 nanoGPT-style requests of each example after them (4(n+i)…4(n+i)+3)."""
    eot = tokenizer_lib.eot_id(tokenizer)
    pairs = [p for ex in examples for p in example_pairs(ex, mode)]
    requests = encode_requests(tokenizer, pairs, mode, eot)
    if nanogpt:
        nano_pairs = [p for ex in examples for p in example_pairs(ex, "nanogpt")]
        requests += encode_requests(tokenizer, nano_pairs, "nanogpt", eot)
    return requests


def example_record(example: dict, context_ids: list[int], scores: list[np.ndarray],
                   nano_scores: list[np.ndarray] | None) -> dict:
    """What we keep of one scored example: its labels and groups, the three decisions and their scores."""
    record = {"ind": example["ind"], "label": example["label"], "source": example["source"],
              "split_type": example["split_type"], "context_tokens": len(context_ids),
              "context": example["context"], "choices": example["choices"]}
    record.update(choose_endings(scores, example["choices"]))
    if nano_scores is not None:
        nano = choose_endings(nano_scores, example["raw_endings"])
        record["nanogpt_mean"], record["pred_nanogpt"] = nano["logprob_mean"], nano["pred_mean"]
    return record


def accuracy(records: list[dict], pred: str) -> float:
    """The fraction of records whose decision `pred` ("pred", "pred_norm", …) is the label.

    >>> accuracy([{"pred": 1, "label": 1}, {"pred": 0, "label": 2}], "pred")
    0.5"""
    return float(np.mean([r[pred] == r["label"] for r in records]))


def evaluate_hellaswag(model, tokenizer, examples: list[dict], batch_size: int | None = None, device=None,
                       mode: str = "lm-eval", nanogpt: bool = True, window: int | None = None,
                       reference: bool = False, batch_tokens: int | None = None, compiled: bool = False,
                       share_prefix: bool = True, progress: bool = False) -> dict:
    """Score `examples` and return acc, acc_norm, acc_nanogpt (fractions), n and per-example records.

    mode "lm-eval": acc and acc_norm with lm-eval's whole-string tokenisation (the standard numbers).
    mode "linnet":  the same with context and ending tokenised separately — linnet's protocol; its
                    ≈ 38 % is `acc` in this mode on the first 3,000 examples.
    nanogpt=True also scores the nanoGPT-style requests (raw ctx, " " + raw ending, mean log-prob per
    token) — a second set of 4 requests per example — for `acc_nanogpt`.
    reference=True scores with the plain `score_requests_reference` instead of the batched one.
    batch_tokens / batch_size: the fast scorer's budget of padded tokens per forward pass and optional
    cap on rows (`score_requests`; defaults: 65,536 tokens on CUDA, 8,192 on a CPU, no row cap);
    compiled: torch.compile the fast scorer's forward (the first call compiles: ~1 minute on an H200).
    Every distinct token sequence is scored once (fast/hellaswag.py), with `share_prefix` every context
    (`score_requests`, step 5). progress: a bar of examples done. The model is put in eval mode for the call
    and back as it was (05 calls this mid-training)."""
    if mode not in ("lm-eval", "linnet"):
        raise ValueError(f"mode must be 'lm-eval' or 'linnet', not {mode!r}")
    started, window, was_training = time.time(), window or window_of(model), model.training
    score = score_requests_reference if reference else \
        functools.partial(score_requests, compiled=compiled, share_prefix=share_prefix)
    bar = house.progress(total=len(examples), unit="example", desc="HellaSwag", disable=not progress,
                         bar_format="{desc}: {n:.0f}/{total} examples [{elapsed}<{remaining}]")
    model.eval()
    records, counts = [], np.zeros(2, dtype=int)
    try:
        with hellaswag_fast.gc_paused():                     # ~500k small lists and tuples (fast/hellaswag.py)
            requests_of = lambda part: hellaswag_requests(tokenizer, part, mode, nanogpt)   # noqa: E731
            parts = hellaswag_fast.tokenized_ahead(requests_of, examples, split=next(model.parameters()).is_cuda)
            for part, requests in parts:                     # the next part is tokenised meanwhile
                fitted = [fit_to_window(c, k, window) for c, k in requests]
                distinct, owner = hellaswag_fast.distinct_requests(fitted)   # each sequence once, for all 3 scorings
                done = lambda k, n=len(part) / len(distinct): bar.update(k * n)   # noqa: E731 (k requests of a part)
                distinct_scores = score(model, distinct, batch_size, window, device, batch_tokens=batch_tokens,
                                        advance=done)
                scores, n = [distinct_scores[j] for j in owner], len(part)
                records += [example_record(ex, requests[4 * i][0], scores[4 * i:4 * i + 4],
                                           scores[4 * (n + i):4 * (n + i) + 4] if nanogpt else None)
                            for i, ex in enumerate(part)]
                counts += (len(requests), len(distinct))
    finally:
        bar.close()
        model.train(was_training)
    return {"mode": mode, "n": len(examples), "acc": accuracy(records, "pred"), "acc_norm": accuracy(records, "pred_norm"),
            "acc_nanogpt": accuracy(records, "pred_nanogpt") if nanogpt else None,
            "requests": int(counts[0]), "distinct_requests": int(counts[1]),
            "seconds": time.time() - started, "records": records}


def binomial_sd(n: int, p: float = 0.25) -> float:
    """Standard deviation of an accuracy measured on n examples when the true rate is p.

    >>> round(100 * binomial_sd(1000), 2)   # points, for guessing on 1,000 examples
    1.37"""
    return math.sqrt(p * (1 - p) / n)


# --- 5. Breakdowns: where does the model do better than guessing? -------------------------------------

def accuracy_by(records: list[dict], key, pred: str = "pred_norm") -> dict:
    """{group: (accuracy, n)} for records grouped by `key` (a field name or a function of a record)."""
    groups = defaultdict(list)
    for r in records:
        groups[key(r) if callable(key) else r[key]].append(r[pred] == r["label"])
    return {g: (float(np.mean(v)), len(v)) for g, v in sorted(groups.items())}


def context_length_bins(records: list[dict], n_bins: int = 4) -> list[int]:
    """Bin edges (in context tokens) that cut the examples into `n_bins` groups of about equal size."""
    lengths = np.array([r["context_tokens"] for r in records])
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, n_bins + 1)).round().astype(int))
    return edges.tolist()


def length_bin_label(length: int, edges: list[int]) -> str:
    """The name of the bin that holds `length`, e.g. '41–57 tok'; bins are (lo, hi], the first [lo, hi]."""
    for lo, hi in zip(edges[:-1], edges[1:]):
        if length <= hi:
            return f"{lo if lo == edges[0] else lo + 1}–{hi} tok"
    return f">{edges[-1]} tok"


def breakdowns(records: list[dict]) -> dict:
    """acc_norm by source (ActivityNet/WikiHow), split type (zeroshot/indomain) and context length."""
    edges = context_length_bins(records)
    by_length = accuracy_by(records, lambda r: length_bin_label(r["context_tokens"], edges))
    by_length = dict(sorted(by_length.items(), key=lambda kv: int(re.match(r">?(\d+)", kv[0]).group(1))))
    return {"source": accuracy_by(records, "source"), "split_type": accuracy_by(records, "split_type"),
            "context_length": by_length}


# --- 6. Bits per byte on the validation shard ----------------------------------------------------------

@torch.no_grad()
def bits_per_byte(model, data_dir: str | Path, tokenizer, batch_size: int = 8, seq_len: int | None = None,
                  max_batches: int | None = None, device=None, progress: bool = False) -> dict:
    """Cross-entropy on 04's validation shard, in bits per byte of text.

    bpb = total nats / (ln 2 · total bytes), both summed over exactly the tokens scored: each target token
    brings the bytes of text it stands for (01's `token_byte_counts`; <|endoftext|> brings 0). Dividing by
    bytes makes models with different tokenizers comparable: a tokenizer with longer tokens has a higher
    loss per token but not per byte. Worked example, the tiny run's last evaluation: 4.422 nats/token
    over the 200,704 tokens of the validation shard, which hold 468,088 bytes (2.33 bytes/token), is
    4.422 × 200,704 / (ln 2 × 468,088) ≈ 2.74 bits per byte.
    Reads 04's validation windows in order, at most `max_batches` batches (None: the whole shard; `tokens`
    says how many were scored). linnet's ≈ 1.21 was measured on dclm text only (docs/DATA.md): our mixed
    validation shard gives another number for the same model. Cross-entropy alone (no balance term).
    progress: a bar of batches done."""
    byte_counts = torch.from_numpy(tokenizer_lib.token_byte_counts(tokenizer))   # (V,) bytes per token id
    seq_len = seq_len or window_of(model)
    device = torch.device(device or next(model.parameters()).device)
    was_training = model.training
    model.eval()
    total_nats, total_tokens, total_bytes = 0.0, 0, 0
    loader = data_lib.ShardLoader(data_dir, "val", batch_size, seq_len)
    n = len(loader) if max_batches is None else min(max_batches, len(loader))
    try:
        for x, y in house.progress(loader.iter_once(n), total=n, desc="bits per byte", unit="batch", disable=not progress):
            if int(y.max()) >= len(byte_counts):
                raise house.UserError(f"the shards in {house.shown(Path(data_dir))} hold token id {int(y.max())}, "
                                      f"beyond this tokenizer's {len(byte_counts):,} tokens: pass the tokenizer they were made with")
            total_bytes += int(byte_counts[y].sum())
            x, y = x.to(device), y.to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model_logits(model, x)                                        # (B, T, V)
            total_nats += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
            total_tokens += y.numel()
    finally:
        model.train(was_training)
    loss = total_nats / total_tokens
    return {"loss": loss, "bpb": total_nats / (math.log(2) * total_bytes), "tokens": total_tokens,
            "bytes": total_bytes, "bytes_per_token": total_bytes / total_tokens}


# --- 7. Plots -----------------------------------------------------------------------------------------

REFERENCE_LINES = [(25.0, "random guess", "grey"), (31.1, "GPT-2 124M acc_norm", "tab:blue"),
                   (38.0, "linnet acc (first 3,000, separate tok.)", "tab:red")]


def plot_methods(results: dict, linnet_result: dict | None, label: str):
    """Bars: acc, acc_norm, nanoGPT-style (and linnet's protocol), against reference models."""
    import matplotlib.pyplot as plt

    names = ["acc", "acc_norm", "nanoGPT-style\n(mean/token)"]
    values = [results["acc"], results["acc_norm"], results["acc_nanogpt"]]
    if linnet_result is not None:
        names.append(f"linnet protocol\nacc, first {linnet_result['n']:,}")
        values.append(linnet_result["acc"])
    values = [100 * v for v in values]
    sds = [100 * binomial_sd(results["n"])] * 3 + ([100 * binomial_sd(linnet_result["n"])] if linnet_result else [])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bars = ax.bar(names, values, color=["tab:orange", "tab:green", "tab:purple", "tab:red"][:len(names)],
                  yerr=[2 * sd for sd in sds], capsize=6)
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, v / 2, f"{v:.1f}", ha="center", color="white", fontsize=12)
    for y, text, color in REFERENCE_LINES:
        ax.axhline(y, ls="--", color=color, lw=1, label=f"{text}: {y}")
    ax.set_ylim(0, max(45, max(values) + 8))
    ax.set_ylabel("HellaSwag accuracy (%)")
    ax.set_title(f"{label}: one model, three scorings (n = {results['n']:,}, error bars ±2 binomial sd)")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def plot_breakdown(records: list[dict], label: str):
    """acc_norm by source, split type and context length, each bar with the ±2 sd band of guessing."""
    import matplotlib.pyplot as plt

    parts = breakdowns(records)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True,
                             gridspec_kw={"width_ratios": [2, 2, len(parts["context_length"])]})
    for ax, (title, groups) in zip(axes, [("by source", parts["source"]), ("by split type", parts["split_type"]),
                                          ("by context length (tokens)", parts["context_length"])]):
        names = list(groups)
        accs = [100 * groups[g][0] for g in names]
        errs = [200 * binomial_sd(groups[g][1]) for g in names]
        ax.bar(names, accs, color="tab:green", alpha=0.8)
        ax.errorbar(names, [25] * len(names), yerr=errs, fmt="none", ecolor="grey", capsize=8, lw=2,
                    label="guessing: 25 ± 2 sd")
        for x, (a, g) in enumerate(zip(accs, names)):
            ax.text(x + 0.08, a + 0.8, f"{a:.1f}\nn={groups[g][1]:,}", ha="left", fontsize=8)
        ax.axhline(25, color="grey", ls="--", lw=1)
        ax.set_title(title if len(names) > 1 else f"{title} (only {names[0]} in this subset)")
        ax.tick_params(axis="x", labelsize=8)
    axes[0].set_ylabel("acc_norm (%)")
    axes[0].set_ylim(0, max(50, max(100 * g[0] for p in parts.values() for g in p.values()) + 10))
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"{label}: where is the model above the grey guessing band?")
    return fig


def plot_examples(records: list[dict], label: str, k: int = 4):
    """k examples: the model's acc_norm score (log-prob per character) of each ending as a dot on one axis
    (no bars: the scores are negative and only their order and gaps mean something); right one green."""
    import matplotlib.pyplot as plt
    import textwrap

    fig, axes = plt.subplots(k, 1, figsize=(11, 2.6 * k))
    for ax, r in zip(np.atleast_1d(axes), records[:k]):
        scores = np.array(r["logprob_per_char"])
        colors = ["tab:green" if i == r["label"] else "gray" for i in range(4)]
        ax.hlines(range(4), scores.min() - 1, scores.max() + 1, color="0.9", linewidth=1, zorder=0)
        ax.scatter(scores, range(4), s=90, c=colors, zorder=2)
        pick = int(r["pred_norm"])
        ax.scatter([scores[pick]], [pick], s=260, facecolors="none", edgecolors="black", linewidths=2, zorder=3)
        for i, s in enumerate(scores):
            ax.text(s, i, f"    {s:.3f}", va="center", fontsize=8)
        ax.set_yticks(range(4))
        ax.set_yticklabels([textwrap.shorten(c, 60) for c in r["choices"]], fontsize=8)
        ax.invert_yaxis()
        pad = np.ptp(scores) + 1e-3
        ax.set_xlim(scores.min() - 0.15 * pad, scores.max() + 0.35 * pad)
        verdict = "right" if r["pred_norm"] == r["label"] else "wrong"
        ax.set_title(textwrap.shorten(r["context"], 110) + f"   [{verdict}]", fontsize=9, loc="left")
        ax.set_xlabel("log-prob per character (further right = preferred); green = correct, black ring = the "
                      "model's pick (acc_norm)", fontsize=8)
    fig.suptitle(f"{label}: per-ending scores on the first {k} examples")
    fig.tight_layout()
    return fig


# --- 8. main -----------------------------------------------------------------------------------------

DEFAULT_CHECKPOINT = house.OUT_DIR / "05_train" / "latest.pt"
DEFAULT_TOKENIZER = house.OUT_DIR / "01_tokenizer" / "tokenizer.json"
DEFAULT_DATA_DIR = house.OUT_DIR / "04_data"
BPB_TOKENS = 655_360      # bits per byte scores at most this many validation tokens (the whole shard if smaller)
CPU_LIMIT = 1_000         # HellaSwag examples scored by default on a CPU (a tiny model: ≈ 25 s on 2 cores)
MAX_SAMPLE = 10_000       # the longest --sample, in tokens
RANDOM_LABEL = "random-weights tiny model"   # what --preset tiny scores before 05 has made a checkpoint


def load_model(path: str | Path, device=None):
    """A model from a 05 checkpoint, an exported folder or linnet's weights (02's `load_any_checkpoint`)."""
    path = Path(path)
    if not path.exists():
        raise house.NotFound(f"no checkpoint at {path}: train one with python 05_train.py, "
                              f"or pass --checkpoint PATH (a 05 .pt, or linnet's pytorch_model.bin)")
    model, tokenizer_sha256 = model_lib.load_any_checkpoint(path)   # a 05 .pt: its saved config; else 02's loader
    checkpoints.check_finite(model, path)           # a diverged run's NaN weights: one line, not a 25% score
    model.tokenizer_sha256 = tokenizer_sha256     # which tokenizer it was trained with, when the file says
    return model.to(device or house.default_device()).eval()


def tiny_random_model(vocab_size: int, device=None, seed: int = 0, block_size: int = 64, moe_impl: str = "auto"):
    """A random-weights model of the shape and 64-token window 05's tiny preset trains (02's TINY_TRAINING_SHAPE):
    what `--preset tiny` scores before 05 made a checkpoint, and the control beside a trained one."""
    torch.manual_seed(seed)
    config = model_lib.LLMConfig(block_size=block_size, vocab_size=vocab_size, moe_impl=moe_impl,
                                 **model_lib.TINY_TRAINING_SHAPE)
    return model_lib.LLM(config).to(device or "cpu").eval()


def tokenizer_for(path: Path, preset: str, checkpoint: Path | None = None):
    """The tokenizer at `path`; an exported folder given as `checkpoint` brings its own tokenizer.json, which
    wins (a --tokenizer other than the default that differs from it is refused: 02's pick_tokenizer); for the
    tiny preset, a vocab-1024 one trained in memory if it is missing."""
    if checkpoint is not None and checkpoints.exported_tokenizer(checkpoint) is not None:
        given = None if Path(path).resolve() == DEFAULT_TOKENIZER.resolve() else path
        path = checkpoints.pick_tokenizer(checkpoint, given, DEFAULT_TOKENIZER)
        print(f"tokenizer: {house.shown(path)} (the exported folder's own)")
    if path.is_file():
        return tokenizer_lib.load_tokenizer(path)
    if preset != "tiny" or Path(path).resolve() != DEFAULT_TOKENIZER.resolve():   # a --tokenizer you named must exist
        raise house.NotFound(f"no tokenizer at {path}: run python 01_tokenizer.py first, or pass --tokenizer PATH")
    print(f"no tokenizer at {path}: training a vocab-1024 one in memory (run python 01_tokenizer.py --preset tiny to keep one)")
    texts = house.iter_texts(house.find_tiny_data())
    return tokenizer_lib.train_tokenizer(texts, tokenizer_lib.TINY_VOCAB_SIZE, show_progress=False)


def get_model(args, tokenizer, device):
    """The checkpoint if there is one; for the tiny preset without one, a random-weights tiny model."""
    path = args.checkpoint or DEFAULT_CHECKPOINT
    if args.checkpoint is None and args.preset == "tiny" and not path.exists():
        print("=" * 78 + "\nRANDOM WEIGHTS: no checkpoint at out/05_train/latest.pt, so this scores an untrained tiny "
              "model.\nExpect ~25% (guessing). Run python 05_train.py --preset tiny for a trained one.\n" + "=" * 78)
        return tiny_random_model(tokenizer.get_vocab_size(), device), RANDOM_LABEL
    model = load_model(path, device)
    if torch.device(device).type == "cuda":
        model = model.to(torch.bfloat16)  # evaluation only: bf16 weights, as bench/hellaswag_speed.py measures
    trained_with = getattr(model, "tokenizer_sha256", None)
    if trained_with and trained_with != tokenizer_lib.tokenizer_sha256(tokenizer):
        raise house.UserError(f"{path} was trained with another tokenizer than {args.tokenizer}: "
                              f"pass the --tokenizer it was trained with (05 used the one from 01)")
    if tokenizer.get_vocab_size() > model.config.vocab_size:
        raise house.UserError(f"the tokenizer has {tokenizer.get_vocab_size()} tokens but the model only "
                              f"{model.config.vocab_size}: pass the --tokenizer the model was trained with")
    return model, house.shown(path)


def build_parser() -> argparse.ArgumentParser:
    parser = house.ArgumentParser(
        description="Evaluate a linnet model: HellaSwag 0-shot (lm-eval's acc and acc_norm, plus the nanoGPT-style "
                    "number), bits per byte on 04's validation shard, and a sample. --preset tiny runs in under a "
                    "minute on a CPU (a random-weights tiny model if 05 has not made a checkpoint: expect ~25%).")
    house.add_common_args(parser, "06_eval")
    add = parser.add_argument
    add("--checkpoint", type=Path, default=None,
        help="a 05 .pt, linnet's pytorch_model.bin/.safetensors, or a directory (default: out/05_train/latest.pt)")
    add("--tokenizer", type=Path, default=DEFAULT_TOKENIZER, help="tokenizer.json from 01 (default: out/01_tokenizer/)")
    add("--hellaswag-file", type=Path, default=None, help="the HellaSwag validation jsonl (default: a cached download, "
        "else ../shared/data/hellaswag, else the copy in embedded/hellaswag)")
    add("--limit", type=house.positive_int, default=None, help="score only the first N examples (default: all "
        f"10,042 on a GPU, the first {CPU_LIMIT:,} on a CPU; tiny: 200)")
    add("--batch-tokens", type=house.positive_int, default=None,
        help="padded tokens per forward pass when scoring (default: 65536 on CUDA, 8192 on CPU)")
    add("--batch-size", type=house.positive_int, default=None,
        help="at most this many sequences (endings) per forward pass (default: no cap, --batch-tokens decides)")
    add("--linnet-compat", action="store_true", help="also linnet's protocol: acc, separate tokenisation, first 3,000")
    add("--no-hellaswag", action="store_true", help="skip HellaSwag")
    add("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="04's shards with the validation one (default: out/04_data/)")
    add("--bpb-batches", type=house.positive_int, default=None, help="validation batches for bits per byte (default: "
        "what 05 scores: up to 655,360 tokens, in batches of 8 windows, of 32 for windows over 256 tokens)")
    add("--sample", type=house.prompt, default=None, help="also generate a continuation of this prompt")
    add("--max-new-tokens", type=house.int_from_to(1, MAX_SAMPLE), default=50,
        help=f"length of the sample, at most {MAX_SAMPLE:,} (default: %(default)s)")
    add("--temperature", type=house.non_negative_float, default=0.8, help="0 = greedy (default: %(default)s)")
    add("--top-k", type=house.positive_int, default=50, help="sample among the k likeliest tokens (default: %(default)s)")
    add("--device", choices=house.DEVICES, default=None, help="default: the best available")
    add("--overwrite", action="store_true", help="replace a results.json in --out that holds another model's results")
    add("--compile", action="store_true", help="torch.compile the HellaSwag forward: pays off only when one process "
        "scores many times (≈ 70 s of compiling on an H200; BENCHMARKS.md)")
    return parser


def read_hellaswag(args, device) -> tuple[Path, list[dict], list[dict] | None]:
    """The HellaSwag file, its first --limit examples and (--linnet-compat) its first 3,000: read and checked
    row by row before the model loads, so a bad file costs seconds, not a big checkpoint's load."""
    default = 200 if args.preset == "tiny" else CPU_LIMIT if device.type == "cpu" else None
    limit = args.limit if args.limit is not None else default
    path = house.sources.find_hellaswag_file(args.hellaswag_file)
    examples = load_hellaswag(path, limit)
    compat = None
    if args.linnet_compat:
        compat = examples[:LINNET_COMPAT_LIMIT] if len(examples) >= LINNET_COMPAT_LIMIT else load_hellaswag(path, LINNET_COMPAT_LIMIT)
    return path, examples, compat


def run_hellaswag(args, model, tokenizer, label: str, device, hellaswag) -> dict:
    """Score HellaSwag (and linnet's protocol with --linnet-compat), print the numbers, save the 3 plots.
    `hellaswag`: what read_hellaswag returned."""
    batching = {"batch_size": args.batch_size, "batch_tokens": args.batch_tokens, "compiled": args.compile}
    hs_path, examples, compat = hellaswag
    print(f"HellaSwag: {len(examples):,} examples on {device}" + (f" (the first {CPU_LIMIT:,} of 10,042 on a CPU by "
          f"default; --limit 10042 scores all)" if args.limit is None and len(examples) == CPU_LIMIT else "")
          + "; the bar shows the time left, --limit N scores fewer")
    result = evaluate_hellaswag(model, tokenizer, examples, device=device, progress=True, **batching)
    sd = 100 * binomial_sd(result["n"])
    print(f"HellaSwag ({hs_path.name}, first {result['n']:,} examples, {result['seconds']:.1f} s): "
          f"acc {100 * result['acc']:.1f}  acc_norm {100 * result['acc_norm']:.1f}  "
          f"nanoGPT-style {100 * result['acc_nanogpt']:.1f}  (guessing: 25 ± {sd:.1f} sd)")
    summary, linnet_result = {}, None
    if compat is not None:
        linnet_result = evaluate_hellaswag(model, tokenizer, compat, device=device, mode="linnet", nanogpt=False,
                                           **batching)
        print(f"linnet's number (acc, separate tokenisation, first {linnet_result['n']:,}): "
              f"{100 * linnet_result['acc']:.1f}  (model card ≈ 38)")
        summary["linnet_protocol"] = {k: v for k, v in linnet_result.items() if k != "records"}
    for name, groups in breakdowns(result["records"]).items():
        print(f"  acc_norm by {name}: " + ", ".join(f"{g} {100 * a:.1f} (n={n})" for g, (a, n) in groups.items()))
    summary["hellaswag"] = result
    house.save_plot(plot_methods(result, linnet_result, label), args.out, "hellaswag_methods",
                    "acc vs acc_norm vs nanoGPT-style for one model: bars inside the grey 25% band are guessing")
    house.save_plot(plot_breakdown(result["records"], label), args.out, "hellaswag_breakdown",
                    "acc_norm per source / split / context length: a bar is only signal above its ±2 sd band")
    house.save_plot(plot_examples(result["records"], label), args.out, "hellaswag_examples",
                    "the model's per-character score of each ending: is the green (correct) dot the rightmost?")
    return summary


def run_bpb(args, model, tokenizer, device) -> dict | None:
    """Bits per byte if 04's shards are there and were made with this tokenizer; else say why not."""
    if not (args.data_dir / "manifest.json").is_file():
        print(f"bits per byte: skipped (no shards in {args.data_dir}: run python 04_data.py --preset {args.preset})")
        return None
    manifest = data_lib.read_manifest(args.data_dir)
    expected = manifest.get("tokenizer_sha256")
    if expected and expected != tokenizer_lib.tokenizer_sha256(tokenizer):
        print(f"bits per byte: skipped (the shards in {args.data_dir} were made with another tokenizer)")
        return None
    # what 05 scores during training, so that the same weights give the same number: batches of 8 windows of a
    # tiny model's 64 tokens, 32 of linnet's 1,024; at most BPB_TOKENS (655,360 = 05's 20 linnet batches)
    window = window_of(model)
    batch = 8 if window <= 256 else 32
    batches = args.bpb_batches or -(-BPB_TOKENS // (batch * window))
    result = bits_per_byte(model, args.data_dir, tokenizer, batch, max_batches=batches, device=device, progress=True)
    print(f"bits per byte: {result['bpb']:.3f} (loss {result['loss']:.3f} nats/token over {result['tokens']:,} "
          f"validation tokens in windows of {window} = {result['bytes']:,} bytes, {result['bytes_per_token']:.2f} "
          f"bytes/token; linnet ≈ 1.21 on dclm text)")
    return result


@house.speaks
def main(argv=None):
    args = build_parser().parse_args(argv)
    started, device = time.time(), house.pick_device(args.device)
    label = house.shown(args.checkpoint or DEFAULT_CHECKPOINT)
    house.files.check_results_file(args.out / "results.json", label, args.overwrite, replaceable=(RANDOM_LABEL,))
    hellaswag = None if args.no_hellaswag else read_hellaswag(args, device)   # a bad file fails now, not after the load
    if device.type == "cpu" and args.preset == "tiny":
        # a 64-wide model gains nothing from a second thread, and on a busy 2-core machine spinning threads
        # made 200 examples take 28 s instead of 3 s: one thread, as 03 and 05 do for the tiny preset
        torch.set_num_threads(1)
    tokenizer = tokenizer_for(args.tokenizer, args.preset, args.checkpoint)
    model, label = get_model(args, tokenizer, device)
    print(f"scoring: {label} ({sum(p.numel() for p in model.parameters()):,} parameters, window "
          f"{model.config.block_size} tokens) on {device}")
    summary = {"model": label, "preset": args.preset}
    try:
        if not args.no_hellaswag:
            summary.update(run_hellaswag(args, model, tokenizer, label, device, hellaswag))
        summary["bpb"] = run_bpb(args, model, tokenizer, device)
    except (RuntimeError, MemoryError) as e:
        if not house.is_out_of_memory(e):
            raise
        raise house.UserError(f"out of memory on {device} while scoring: pass a smaller --batch-tokens (now "
                              f"{args.batch_tokens or 'the default'}) or --bpb-batches") from None
    if args.sample is not None:
        summary["sample"] = model.generate(args.sample, tokenizer, max_new_tokens=args.max_new_tokens,
                                           temperature=args.temperature, top_k=args.top_k)
        print(f"sample: {summary['sample']!r}")
    house.write_json(args.out / "results.json", summary)
    print(f"wrote {args.out / 'results.json'} in {time.time() - started:.1f} s total")

if __name__ == "__main__":
    main()
