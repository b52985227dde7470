"""Check an exercise against the lesson's real code: `python -m exercises.check NAME` (from the repo root).

    python -m exercises.check rope                # checks exercises/rope.py, the file you edit
    python -m exercises.check rope --solution     # checks the worked solution in exercises/solutions/
    python -m exercises.check --all               # every exercise, one line each
    python -m exercises.check --list              # the exercises and the lesson each one belongs to

Every check feeds your function fixed-seed random inputs of several shapes, plus the edge cases that
catch the usual slips, and compares what it returns with what the NUMBERED LESSON FILE computes on the
same input (01_tokenizer.count_pairs, 02_model.apply_rope, 03_muon.newton_schulz, 05_train.lr_multiplier,
06_eval.choose_endings, ...). Nothing here holds a second copy of the answer: if a lesson changes, the
check follows it. It prints `correct: NAME` and exits 0, or the first wrong value (which input, expected
vs got, where) and exits 1. Inputs are seeded, so a failure shows up the same way every run.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib
import math
import sys
import traceback
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))  # the lessons are imported by their file names: 01_tokenizer, ...

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# exercise -> (lesson file, what the student implements); the order is the order of the lessons
EXERCISES = {
    "bpe_merge": ("01_tokenizer.py", "count pairs, merge one pair, one BPE training step"),
    "rope": ("02_model.py", "rotary position embedding, rotate-half pairs, base 50000"),
    "router_top2": ("02_model.py", "softmax -> top-2 experts -> renormalise the two weights"),
    "balance_loss": ("02_model.py", "linnet's balance loss E * sum_e (mean prob_e)^2"),
    "newton_schulz_step": ("03_muon.py", "one quintic Newton-Schulz step (3.4445, -4.7750, 2.0315)"),
    "wsd_schedule": ("05_train.py", "the warm-up / stable / cosine-decay learning-rate multiplier"),
    "acc_norm": ("06_eval.py", "HellaSwag acc_norm: summed log-prob / characters, argmax"),
}


# --- 1. How a check reports: Wrong (a value differs), Crashed (your code raised) ----------------------

class Wrong(Exception):
    """Your function returned a wrong value; the message names the input, expected vs got, and where."""

    def __init__(self, case: str, detail: str, hint: str = ""):
        super().__init__(detail)
        self.case, self.detail, self.hint = case, detail, hint

    def report(self) -> str:
        lines = [f"  input:    {self.case}", f"  {self.detail}"]
        if self.hint:
            lines.append(f"  hint:     {self.hint}")
        return "\n".join(lines)


class Crashed(Exception):
    """Your function raised something other than NotImplementedError on one input."""

    def __init__(self, case: str, error: BaseException):
        super().__init__(str(error))
        self.case, self.error = case, error


def call(fn, case: str, *args):
    """fn(*args), turning any exception except NotImplementedError into Crashed(case, ...)."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001 — any bug in the student's code is reported, with its input
        raise Crashed(case, error) from error


def fmt_index(index) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def check_shape(got, expected: torch.Tensor, case: str, name: str, hint: str = "") -> None:
    """Raise Wrong unless `got` is a tensor of the same shape as `expected`."""
    if not isinstance(got, torch.Tensor):
        raise Wrong(case, f"{name} should be a torch.Tensor, got {type(got).__name__}", hint)
    if tuple(got.shape) != tuple(expected.shape):
        raise Wrong(case, f"{name} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}", hint)


def compare_tensors(got, expected: torch.Tensor, case: str, name: str = "out", atol: float = 1e-5,
                    rtol: float = 1e-5, hint: str = "") -> None:
    """Raise Wrong at the first element of `got` that is not close to `expected` (row-major order)."""
    check_shape(got, expected, case, name, hint)
    g, e = got.detach().double().cpu(), expected.detach().double().cpu()
    bad = ~torch.isclose(g, e, rtol=rtol, atol=atol)  # NaN is never close: a NaN is reported too
    if bad.any():
        index = torch.nonzero(bad)[0].tolist()
        where = f"{name}{fmt_index(index)}" if index else name
        count = f"{int(bad.sum()):,} of {bad.numel():,} values differ; " if bad.numel() > 1 else ""
        raise Wrong(case, f"{where}: expected {e[tuple(index)].item():.6g}, got {g[tuple(index)].item():.6g}   "
                          f"({count}tolerance {atol:g} + {rtol:g}·|expected|)", hint)


# --- 2. bpe_merge (01_tokenizer.py, section 3: count_pairs, merge_pair, train_bpe_scratch) ------------

BPE_TEXTS = [
    "the cat sat on the mat; the cat ate the rat.",
    "aaaa aaa aa a banana bandana",                 # overlapping pairs: ('a','a') in 'aaaa' merges twice
    "abab abba baba ab ba ab ba",                   # equal counts: the tie rule decides
    "low lower lowest newer wider new wide",        # Sennrich et al.'s classic example
    "café naïve — 東京 2024!",                        # multi-byte UTF-8: tokens are byte-characters
]


def random_words(gen: np.random.Generator, n: int, alphabet: str = "abcĠ") -> dict[tuple[str, ...], int]:
    words = {}
    for _ in range(n):
        word = tuple(gen.choice(list(alphabet), size=int(gen.integers(1, 7))))
        words[tuple(str(t) for t in word)] = int(gen.integers(1, 6))
    return words


def check_bpe_merge(ex) -> None:
    tokenizer_lib = importlib.import_module("01_tokenizer")
    gen = np.random.default_rng(0)

    # count_pairs: a Counter of adjacent pairs, each weighted by its word's count
    cases = [("01's docstring example", {("a", "a", "a"): 2, ("b", "a"): 1}),
             ("words of one token each (no pairs at all)", {("a",): 3, ("b",): 1}),
             ("words made of merged tokens", {("th", "e"): 5, ("Ġ", "th", "e"): 7})]
    cases += [(f"random words #{i} (alphabet 'abcĠ', counts 1-5)", random_words(gen, 12)) for i in range(20)]
    for why, words in cases:
        case = f"count_pairs({words}) — {why}"
        got = call(ex.count_pairs, case, dict(words))
        expected = tokenizer_lib.count_pairs(words)
        if not isinstance(got, dict):
            raise Wrong(case, f"count_pairs should return a Counter (or dict), got {type(got).__name__}")
        got_nonzero = {pair: n for pair, n in got.items() if n}
        for pair in sorted(set(expected) | set(got_nonzero)):
            if got_nonzero.get(pair, 0) != expected.get(pair, 0):
                raise Wrong(case, f"count of pair {pair}: expected {expected.get(pair, 0)}, "
                            f"got {got_nonzero.get(pair, 0)}",
                            "each adjacent pair counts once per occurrence, times how often its word occurs")

    # merge_pair: left to right, never overlapping
    cases = [(("a", "a", "a"), ("a", "a")), (("a", "a", "a", "a"), ("a", "a")), (("a", "b", "a", "b"), ("a", "b")),
             (("x", "a", "b"), ("a", "b")), (("a",), ("a", "b")), (("b", "a"), ("a", "b")),
             (("Ġ", "th", "e"), ("th", "e"))]
    for _ in range(30):
        (word, _n), = random_words(gen, 1, "ab").items()
        cases.append((word, tuple(str(t) for t in gen.choice(list("ab"), size=2))))
    for word, pair in cases:
        case = f"merge_pair({word}, {pair})"
        got = call(ex.merge_pair, case, word, pair)
        expected = tokenizer_lib.merge_pair(word, pair)
        if isinstance(got, list) and tuple(got) == expected:
            raise Wrong(case, f"right tokens {expected}, but as a list: return a tuple",
                        "words are dict keys (word -> count), so they must be hashable tuples")
        if got != expected:
            raise Wrong(case, f"expected {expected}, got {got}",
                        "scan left to right; after merging at i, continue at i + 2, so ('a','a','a') -> ('aa','a')")

    # bpe_merge_step: first two hand-made steps, then every merge of train_bpe_scratch, one step at a time
    _, start_vocab = tokenizer_lib.train_bpe_scratch(["ab"], tokenizer_lib.MIN_VOCAB_SIZE)   # specials + the 256 byte-characters
    vocab = {**start_vocab, "ab": len(start_vocab), "bc": len(start_vocab) + 1}
    for words, why in [({("a", "b", "c"): 1, ("ab", "c"): 2, ("a", "b"): 3},
                        "two splits of 'abc' that become the same word after merging ('a', 'b')"),
                       ({("x", "y"): 5, ("y", "x"): 1, ("x", "y", "x"): 1}, "one clear winner")]:
        pairs = tokenizer_lib.count_pairs(words)
        best = max(pairs, key=pairs.get)                # these words have one most frequent pair, no tie
        check_bpe_step(ex, tokenizer_lib, words, vocab, best, f"bpe_merge_step({words}, vocab) — {why}")
    for text in BPE_TEXTS:
        vocab_size = tokenizer_lib.MIN_VOCAB_SIZE + 30
        merges, _ = tokenizer_lib.train_bpe_scratch([text], vocab_size)
        vocab, words = dict(start_vocab), dict(tokenizer_lib.count_words([text]))
        for step, best in enumerate(merges, start=1):
            case = f"step {step} of training BPE on {text!r} (01's train_bpe_scratch, vocab_size {vocab_size})"
            words = check_bpe_step(ex, tokenizer_lib, words, vocab, best, case)
            vocab.setdefault(best[0] + best[1], len(vocab))


def check_bpe_step(ex, tokenizer_lib, words: dict, vocab: dict, best: tuple[str, str], case: str) -> dict:
    """Compare ex.bpe_merge_step(words, vocab) with merging `best` by 01's merge_pair; returns the merged words."""
    got = call(ex.bpe_merge_step, case, dict(words), dict(vocab))
    if not (isinstance(got, tuple) and len(got) == 2):
        raise Wrong(case, f"bpe_merge_step should return (best_pair, new_words), got {type(got).__name__}")
    got_pair, got_words = got
    pairs = tokenizer_lib.count_pairs(words)
    if tuple(got_pair) != best:
        hint = ("the two pairs have the same count: on a tie the pair with the smallest (vocab[left], "
                "vocab[right]) wins — the oldest tokens, not the alphabetically first"
                if pairs.get(tuple(got_pair), 0) == pairs[best] else "pick the pair with the largest count")
        raise Wrong(case, f"best pair: expected {best} (count {pairs[best]}), got {tuple(got_pair)} "
                    f"(count {pairs.get(tuple(got_pair), 0)})", hint)
    expected_words = collections.Counter()
    for word, n in words.items():
        expected_words[tokenizer_lib.merge_pair(word, best)] += n
    got_words = {w: n for w, n in dict(got_words).items() if n}
    for word in sorted(set(expected_words) | set(got_words)):
        if got_words.get(word, 0) != expected_words.get(word, 0):
            raise Wrong(case, f"after merging {best}: word {word} should have count "
                        f"{expected_words.get(word, 0)}, got {got_words.get(word, 0)}",
                        "rebuild the word counts with merge_pair applied to every word; two words can "
                        "become the same after a merge, so add their counts")
    return dict(expected_words)


# --- 3. rope (02_model.py, section 3: RotaryEmbedding + rotate_half + apply_rope) -------------------

def check_rope(ex) -> None:
    model_lib = importlib.import_module("02_model")
    gen = torch.Generator().manual_seed(0)
    cases = [((2, 3, 16, 64), 0, 50000.0, "linnet's head size 64"),
             ((1, 2, 5, 8), 0, 50000.0, "a small head, 8 dims = 4 pairs"),
             ((1, 1, 1, 64), 0, 50000.0, "one token at position 0 (RoPE must leave it unchanged)"),
             ((2, 2, 4, 64), 1000, 50000.0, "generation with a cache: positions 1000..1003"),
             ((1, 2, 6, 32), 7, 10000.0, "head size 32, base 10000 (the original RoPE paper's base)")]
    for shape, offset, base, why in cases:
        x = torch.randn(*shape, generator=gen)
        case = f"x of shape {shape}, offset {offset}, base {base:g} — {why}"
        got = call(ex.rope, case, x.clone(), offset, base)
        cos, sin = model_lib.RotaryEmbedding(shape[-1], base)(shape[-2], offset)
        expected = model_lib.apply_rope(x, cos, sin)
        # an fp32 angle at position p is only good to ≈ p·6e-8 rad: two correct fp32 codes may differ that much
        atol = 1e-4 + 2e-7 * (offset + shape[-2]) * x.abs().max().item()
        compare_tensors(got, expected, case, atol=atol, rtol=1e-4,
                        hint="pair dim i with dim i + head_dim/2 (rotate half), angle = position · base^(-2i/head_dim)")


# --- 4. router_top2 and balance_loss (02_model.py, section 5: route and balance_loss) -----------------
# MoE.forward hands its router logits to 02's `route` (softmax → top-k → renormalise) and the router's
# probabilities to `balance_loss`; the check calls those two lesson functions on the same logits.

def real_moe_router(logits: torch.Tensor, k: int = 2) -> dict:
    """02's route and balance_loss on router logits (N, E): top_e, top_w (N, k) and balance (scalar)."""
    model_lib = importlib.import_module("02_model")
    probs, top_w, top_e = model_lib.route(logits, k)   # (N, E), (N, k), (N, k)
    return dict(top_e=top_e, top_w=top_w, balance=model_lib.balance_loss(probs))


def router_cases() -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [("logits (5, 8): 5 tokens, linnet's 8 experts", torch.randn(5, 8, generator=gen)),
            ("logits (64, 8), scaled ×4: confident router", 4 * torch.randn(64, 8, generator=gen)),
            ("logits (7, 4): 4 experts (05's tiny preset)", torch.randn(7, 4, generator=gen)),
            ("logits (1, 8): a single token", torch.randn(1, 8, generator=gen)),
            ("logits (3, 8) in the hundreds: a stable softmax must not overflow",
             300 + 50 * torch.randn(3, 8, generator=gen))]


def check_router_top2(ex) -> None:
    for case, logits in router_cases():
        got = call(ex.router_top2, case, logits.clone())
        if not (isinstance(got, tuple) and len(got) == 2):
            raise Wrong(case, f"router_top2 should return (top_w, top_e), got {type(got).__name__}")
        top_w, top_e = got
        ref = real_moe_router(logits)
        check_shape(top_w, ref["top_w"], case, "top_w")
        check_shape(top_e, ref["top_e"], case, "top_e")
        if not torch.isfinite(top_w).all():
            index = torch.nonzero(~torch.isfinite(top_w))[0].tolist()
            raise Wrong(case, f"top_w{fmt_index(index)} is {top_w[tuple(index)].item()}",
                        "exp() overflows above ≈ 88 in float32: subtract each row's max logit before exp "
                        "(softmax is unchanged by that), or use torch.softmax, which does it for you")
        # the two chosen experts may come in either order: sort both answers by expert id before comparing
        got_e, order = top_e.long().sort(dim=-1)
        exp_e, exp_order = ref["top_e"].sort(dim=-1)
        compare_tensors(got_e, exp_e, case, "top_e (sorted by expert id)", atol=0, rtol=0,
                        hint="top-2 = the two experts with the largest probability (torch.topk)")
        compare_tensors(top_w.gather(-1, order), ref["top_w"].gather(-1, exp_order), case, "top_w (sorted by expert id)", atol=1e-5, rtol=1e-5,
                        hint="softmax over ALL experts first, then keep the top 2 and divide them by their sum "
                             "(so each row sums to 1)")


def check_balance_loss(ex) -> None:
    gen = torch.Generator().manual_seed(1)
    cases = router_cases()[:4] + [
        ("logits (16, 8) all equal: uniform router, balance must be exactly 1", torch.zeros(16, 8)),
        ("logits (10, 8) with expert 3 at +20: collapsed router, balance ≈ 8", torch.randn(10, 8, generator=gen)
         + 20 * F.one_hot(torch.tensor(3), 8))]
    for case, logits in cases:
        probs = F.softmax(logits.float(), dim=-1)       # (N, E): what MoE.forward computes before routing
        case = case.replace("logits", "probs = softmax(logits) of shape", 1)
        got = call(ex.balance_loss, case, probs.clone())
        expected = real_moe_router(logits)["balance"]
        if isinstance(got, (int, float)):
            got = torch.tensor(float(got))              # a Python number is fine too
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        compare_tensors(got, expected, case, "balance", atol=1e-5, rtol=1e-5,
                        hint="average each expert's probability over the tokens FIRST, then square and sum, "
                             "times the number of experts E (1.0 for a uniform router)")


# --- 5. newton_schulz_step (03_muon.py, section 1: ns_polynomial, newton_schulz) -----------------------

def matrix_with_singular_values(s: torch.Tensor, rows: int, cols: int, batch=(), seed: int = 0):
    """X = U·diag(s)·Vᵀ in float64 with random orthonormal U (rows×r), V (cols×r), r = len(s)."""
    gen = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(*batch, rows, len(s), generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(*batch, cols, len(s), generator=gen, dtype=torch.float64))
    return U, V, U @ torch.diag_embed(s.expand(*batch, len(s))) @ V.mT


def check_newton_schulz_step(ex) -> None:
    muon = importlib.import_module("03_muon")
    # (a) exact maths in float64: one step maps U·diag(s)·Vᵀ to U·diag(φ(s))·Vᵀ, φ = 03's ns_polynomial
    for rows, cols, batch, why in [(4, 4, (), "square"), (3, 7, (), "wide (m < n)"), (7, 3, (), "tall (m > n)"),
                                   (4, 6, (8,), "a batch of 8 stacked experts (..., m, n)")]:
        r = min(rows, cols)
        s = torch.linspace(0.05, 1.0, r, dtype=torch.float64)
        U, V, X = matrix_with_singular_values(s, rows, cols, batch, seed=rows * 10 + cols)
        case = f"X of shape {tuple(X.shape)}, float64, {why}, singular values {[round(v, 3) for v in s.tolist()]}"
        got = call(ex.newton_schulz_step, case, X.clone())
        expected = U @ torch.diag_embed(muon.ns_polynomial(s).expand(*batch, r)) @ V.mT
        compare_tensors(got, expected, case, atol=1e-6, rtol=1e-6,
                        hint="A = X·Xᵀ (use X.mT so batches work), B = b·A + c·A·A, return a·X + B·X; "
                             "stay in X's dtype")
    # (b) against 03's real newton_schulz (bf16): one step, then five steps, on gradient-like matrices
    gen = torch.Generator().manual_seed(0)
    for rows, cols, steps in [(64, 32, 1), (32, 96, 1), (48, 48, 5)]:
        G = torch.randn(rows, cols, generator=gen)
        X = G / G.norm()                                # 03 divides by the Frobenius norm first
        case = (f"G = randn({rows}, {cols}); X = G / ‖G‖_F; {steps} of your steps in float32 vs 03's "
                f"newton_schulz(G, steps={steps}) (bf16)")
        got = X.clone()
        for _ in range(steps):
            got = call(ex.newton_schulz_step, case, got)
        expected = muon.newton_schulz(G, steps=steps).float()
        scale = expected.abs().max().item()
        compare_tensors(got, expected, case, atol=0.03 * scale, rtol=0.03,
                        hint="03 runs in bf16, so the tolerance here is loose; if (a) passed this one should too")


# --- 6. wsd_schedule (05_train.py, section 1: lr_multiplier) -----------------------------------------

def check_wsd_schedule(ex) -> None:
    train = importlib.import_module("05_train")
    cases = [(20, 0.10, 0.80, 0.06, "20 steps: warm-up over steps 0-1, stable to 15, cosine over 16-19"),
             (300, 0.10, 0.80, 0.1, "05's tiny preset: 300 steps, min_lr/lr = 3e-4/3e-3"),
             (100, 0.05, 0.50, 0.0, "short warm-up, decay from half-way down to 0"),
             (5, 0.10, 0.80, 0.06, "5 steps: 10 % of 5 rounds down to 0, so warm-up lasts 1 step"),
             (1, 0.10, 0.80, 0.06, "a single step"),
             (18_965, 0.10, 0.80, 0.06, "linnet: 18,965 planned steps, min_lr/lr = 6e-5/1e-3")]
    for planned, warmup_frac, decay_frac, min_ratio, why in cases:
        cfg = dataclasses.replace(train.PRESETS["linnet"], planned_steps=planned, warmup_frac=warmup_frac,
                                  decay_start_frac=decay_frac, lr=1.0, min_lr=min_ratio)
        args = (planned, warmup_frac, decay_frac, min_ratio)
        for step in range(planned + 3):               # +3: steps past the plan stay at the minimum
            case = (f"step {step}, planned_steps {planned}, warmup_frac {warmup_frac}, decay_start_frac "
                    f"{decay_frac}, min_ratio {min_ratio} — {why}")
            got = call(ex.lr_multiplier, case, step, *args)
            expected = train.lr_multiplier(step, cfg)
            if not isinstance(got, (int, float)) or not math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12):
                around = range(max(0, step - 2), step + 3)
                yours = [call(ex.lr_multiplier, case, s, *args) for s in around]
                raise Wrong(case, f"multiplier: expected {expected!r}, got {got!r}\n"
                            f"  steps {around.start}-{around.stop - 1}: 05 gives "
                            f"{[round(train.lr_multiplier(s, cfg), 6) for s in around]}, yours "
                            f"{[round(y, 6) if isinstance(y, (int, float)) else y for y in yours]}",
                            "warm-up ends at max(1, int(warmup_frac·planned)) and step 0 already gets 1/warmup; "
                            "the cosine runs from int(decay_start_frac·planned) to planned - 1 and then stays "
                            "at min_ratio")


# --- 7. acc_norm (06_eval.py, section 4: choose_endings) ------------------------------------------------

def check_acc_norm(ex) -> None:
    ev = importlib.import_module("06_eval")
    gen = np.random.default_rng(0)
    a = np.array
    cases = [("06's docstring example", [a([-3.0]), a([-1.0] * 5)], ["a" * 30, "b" * 40]),
             ("characters, not bytes: 'é' is 1 character but 2 UTF-8 bytes",
              [a([-2.0, -2.0]), a([-1.0, -2.1])], ["éééé", "abcd"]),
             ("per character, not per token", [a([-1.0] * 6), a([-2.5])], ["abcdefghijkl", "abcdef"]),
             ("a tie (-1 per character everywhere): the first ending wins", [a([-2.0]), a([-1.0, -3.0]), a([-1.0])],
              ["ab", "abcd", "a"]),
             ("one ending only", [a([-5.0, -1.0])], ["x"])]
    letters = list("abcdefghij éü東—")
    for i in range(300):
        n_tokens = gen.integers(1, 12, size=4)
        logprobs = [gen.uniform(-6, 0, size=int(n)) for n in n_tokens]
        choices = ["".join(gen.choice(letters, size=int(gen.integers(1, 40)))) for _ in range(4)]
        cases.append((f"random example #{i}: 4 endings of {n_tokens.tolist()} tokens", logprobs, choices))
    for why, logprobs, choices in cases:
        case = (f"{why}; token log-probs {[np.round(lp, 3).tolist() for lp in logprobs]}, "
                f"endings {choices}")
        got = call(ex.acc_norm_choice, case, [lp.copy() for lp in logprobs], list(choices))
        expected = ev.choose_endings(logprobs, choices)
        if not isinstance(got, (int, np.integer)) or int(got) != expected["pred_norm"]:
            per_char = ", ".join(f"{v:.4f}" for v in expected["logprob_per_char"])
            raise Wrong(case, f"chosen ending: expected {expected['pred_norm']}, got {got!r}   "
                              f"(06's sum/len(ending) per ending: {per_char})",
                        "score = sum of the ending's token log-probs / len(ending) in characters (Python len of "
                        "the str); return the index of the highest, the first one on a tie")


CHECKS = {"bpe_merge": check_bpe_merge, "rope": check_rope, "router_top2": check_router_top2,
          "balance_loss": check_balance_loss, "newton_schulz_step": check_newton_schulz_step,
          "wsd_schedule": check_wsd_schedule, "acc_norm": check_acc_norm}
assert CHECKS.keys() == EXERCISES.keys()


# --- 8. Running a check and saying what happened -------------------------------------------------------

def load_exercise(name: str, solution: bool = False):
    """exercises.<name> (the file a student edits) or exercises.solutions.<name>."""
    return importlib.import_module(f"exercises.{'solutions.' if solution else ''}{name}")


def run_check(name: str, module) -> tuple[bool, str]:
    """Check `module` (anything with the exercise's functions); returns (passed, what to print)."""
    try:
        CHECKS[name](module)
    except NotImplementedError as todo:
        return False, f"not done yet: {todo}"
    except Wrong as wrong:
        return False, f"wrong: {name}\n{wrong.report()}"
    except Crashed as crash:
        students_frames = crash.error.__traceback__.tb_next   # skip call() in this file: show the student's code
        trace = "".join(traceback.format_exception(type(crash.error), crash.error, students_frames)).rstrip()
        return False, f"error: {name} raised {type(crash.error).__name__}: {crash.error}\n  input:    {crash.case}\n{trace}"
    except AttributeError as missing:  # the module lacks the function the check calls
        return False, f"error: {name} — {missing}: keep the function names from the exercise file"
    return True, f"correct: {name}"


def check_one(name: str, solution: bool) -> tuple[bool, str]:
    where = f"exercises/{'solutions/' if solution else ''}{name}.py"
    try:
        module = load_exercise(name, solution)
    except NotImplementedError as todo:
        return False, f"not done yet: {todo}"
    except Exception as error:  # noqa: BLE001 — a syntax error in the student's file, say where
        return False, f"error: {where} does not import: {type(error).__name__}: {error}"
    return run_check(name, module)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exercises.check",
        description="Check an exercise against the numbered lesson's real implementation.",
        epilog="Exercises: " + ", ".join(EXERCISES) + ". Run from the repo root.")
    parser.add_argument("name", nargs="?", help="which exercise (the file name in exercises/, without .py)")
    parser.add_argument("--all", action="store_true", help="check every exercise, one line each")
    parser.add_argument("--solution", action="store_true",
                        help="check the worked solution in exercises/solutions/ instead of your file")
    parser.add_argument("--list", action="store_true", help="list the exercises and their lessons")
    args = parser.parse_args(argv)
    if args.list:
        for name, (lesson_file, what) in EXERCISES.items():
            print(f"{name:20s} {lesson_file:16s} {what}")
        return 0
    if args.all == bool(args.name):
        raise SystemExit("error: name one exercise (python -m exercises.check rope) or pass --all; "
                         f"exercises: {', '.join(EXERCISES)}")
    if args.name and args.name not in EXERCISES:
        raise SystemExit(f"error: there is no exercise {args.name!r}; choose one of: {', '.join(EXERCISES)}")
    names = list(EXERCISES) if args.all else [args.name]
    n_correct = 0
    for name in names:
        passed, message = check_one(name, args.solution)
        print(message, flush=True)
        n_correct += passed
    if args.all:
        print(f"{n_correct} of {len(names)} exercises correct")
    return 0 if n_correct == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
