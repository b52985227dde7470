"""The build track's HellaSwag scorer (spec: docs/build/hellaswag.md), checked against 06's evaluate_hellaswag.

The student's score(rows, encode, logits, window) gets raw rows, the checker's tokenizer (encode, a callback) and
the checker's small scoring LM (logits, a callback that refuses more than `window` tokens). Each example's four
summed log-probabilities, then its two decisions, then acc and acc_norm must equal 06's (lm-eval's rules); the
message names the first example and ending that differ. 06's numbers come from build_cases.py.
"""
from __future__ import annotations

import math
import types

import torch
import torch.nn as nn

from exercises.checker import build_cases
from exercises.checker.report import Wrong, call, fresh_seed, run_seed

WINDOW, WIDTH = 40, 16


class ScoringLM(nn.Module):
    """A small causal LM with position embeddings (so where a cut context starts matters): token ids (B, T) → logits."""

    def __init__(self, vocab: int, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.config = types.SimpleNamespace(block_size=WINDOW)      # 06 reads the window here
        self.wte = nn.Parameter(torch.randn(vocab, WIDTH, generator=gen))
        self.wpe = nn.Parameter(torch.randn(WINDOW, WIDTH, generator=gen))
        self.mix = nn.Parameter(torch.randn(WIDTH, WIDTH, generator=gen) / WIDTH ** 0.5)
        self.head = nn.Parameter(torch.randn(vocab, WIDTH, generator=gen) / WIDTH ** 0.5)

    def forward(self, idx):
        h = self.wte[idx] + self.wpe[:idx.shape[1]]
        prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
        return 2 * (h + torch.tanh(prev @ self.mix.T)) @ self.head.T


def scoring_tokenizer(rows) -> str:
    from exercises.checker.checks_build_tokenizer import hf_tokenizer
    text = [" ".join([r["activity_label"], r["ctx_a"], r["ctx_b"], *r["endings"]]) for r in rows]
    return hf_tokenizer(text, 258 + 120, 2).to_str()


def tokenizer_from(text: str):
    from tokenizers import Tokenizer
    return Tokenizer.from_str(text)


def check_hellaswag(ex) -> None:
    ref = build_cases.expected("hellaswag", fresh_seed("build:hellaswag") % 100_000)
    tok = tokenizer_from(ref["tokenizer"])
    model = ScoringLM(tok.get_vocab_size(), ref["model_seed"]).eval()

    def encode(text):
        return tok.encode(str(text), add_special_tokens=False).ids

    def logits(ids):
        ids = [int(i) for i in ids]
        if not 1 <= len(ids) <= WINDOW:
            raise Wrong(case, f"logits was given {len(ids)} tokens; the model reads 1 to {WINDOW} (the window)",
                        "cut a request longer than window + 1 tokens from the LEFT: keep its last window + 1 tokens, "
                        "feed all but the last")
        with torch.no_grad():
            return model(torch.tensor([ids]))[0].float()

    where = "a handout's stored rows" if ref["stored"] else f"10 validation rows drawn with seed {run_seed()} and 2 made ones"
    case = (f"score(<{len(ref['rows'])} rows: {where}>, encode, logits, window {WINDOW}) — the checker's BPE "
            f"({tok.get_vocab_size()} tokens) and small LM")
    got = call(lambda: ex.score(ref["rows"], encode, logits, WINDOW), case)
    if not (isinstance(got, dict) and all(k in got for k in ("acc", "acc_norm", "pred", "pred_norm", "sums"))):
        raise Wrong(case, f"score should return a dict with acc, acc_norm, pred, pred_norm, sums; got "
                    f"{sorted(got) if isinstance(got, dict) else type(got).__name__}")
    for i, row in enumerate(ref["rows"]):
        label = f"{case}; example {i} ({row['activity_label']!r}: {row['ctx_a'][:40]!r}…)"
        for j, (g, w) in enumerate(zip(list(got["sums"][i]), ref["sums"][i])):
            if not math.isclose(float(g), w, rel_tol=1e-5, abs_tol=1e-4):
                raise Wrong(label, f"ending {j}: summed log-prob expected {w:.5f}, got {float(g):.5f} (06: "
                            f"{[round(v, 3) for v in ref['sums'][i]]})",
                            "context = preprocess(activity_label + ': ' + ctx_a + ' ' + ctx_b.capitalize()), "
                            "continuation = ' ' + preprocess(ending); a trailing space of the context moves to the "
                            "continuation; its tokens are encode(context + continuation) after len(encode(context)); "
                            "cut from the left to window + 1 tokens; sum the continuation's log-probs only")
        for key, what, scores in (("pred", "the largest sum", "sums"),
                                  ("pred_norm", "the largest sum / len(choice) in characters", "per_char")):
            if int(got[key][i]) != ref[key][i]:
                raise Wrong(label, f"{key}: expected {ref[key][i]}, got {int(got[key][i])} — {what}; 06's scores "
                            f"{[round(v, 4) for v in ref[scores][i]]}",
                            "len(choice) counts the characters of the preprocessed ending, not the joining space, not "
                            "its tokens; on a tie the first ending wins")
    for key in ("acc", "acc_norm"):
        if not math.isclose(float(got[key]), ref[key], abs_tol=1e-9):
            raise Wrong(case, f"{key}: expected {ref[key]}, got {got[key]}", "the fraction of examples whose choice "
                        "is the label")
