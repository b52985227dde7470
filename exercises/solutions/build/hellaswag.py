"""Worked solution of the build track's HellaSwag scorer (spec: docs/build/hellaswag.md): lm-eval's rules."""
from __future__ import annotations

import re

import torch


def preprocess(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def continuation_sum(context: str, ending: str, encode, logits, window: int) -> float:
    cont = " " + ending
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:                                       # the context's trailing space moves to the continuation
        context, cont = context[:-n_spaces], context[-n_spaces:] + cont
    ctx_ids = list(encode(context))
    cont_ids = list(encode(context + cont))[len(ctx_ids):]
    full = (ctx_ids + cont_ids)[-(window + 1):]        # cut from the left
    n = min(len(cont_ids), window)
    logprobs = torch.log_softmax(logits(full[:-1]).float(), dim=-1)            # (T, V)
    targets = torch.tensor(full[1:])
    return float(logprobs[torch.arange(len(targets)), targets][-n:].double().sum())


def score(rows, encode, logits, window: int) -> dict:
    pred, pred_norm, sums = [], [], []
    for row in rows:
        context = preprocess(row["activity_label"] + ": " + row["ctx_a"] + " " + row["ctx_b"].capitalize())
        choices = [preprocess(e) for e in row["endings"]]
        s = [continuation_sum(context, c, encode, logits, window) for c in choices]
        per_char = [v / max(len(c), 1) for v, c in zip(s, choices)]
        sums.append(s)
        pred.append(max(range(4), key=lambda j: (s[j], -j)))          # the first of equal maxima
        pred_norm.append(max(range(4), key=lambda j: (per_char[j], -j)))
    labels = [int(row["label"]) for row in rows]
    return dict(acc=sum(p == y for p, y in zip(pred, labels)) / len(rows),
                acc_norm=sum(p == y for p, y in zip(pred_norm, labels)) / len(rows),
                pred=pred, pred_norm=pred_norm, sums=sums)
