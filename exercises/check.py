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
import ast
import collections
import copy
import dataclasses
import importlib
import inspect
import itertools
import json
import math
import re
import sys
import textwrap
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
    "bpe_trainer": ("01_tokenizer.py", "a whole byte-level BPE trainer: words -> the merge list, HF's tie rule"),
    "rope": ("02_model.py", "rotary position embedding, rotate-half pairs, base 50000"),
    "router_top2": ("02_model.py", "softmax -> top-2 experts -> renormalise the two weights"),
    "balance_loss": ("02_model.py", "linnet's balance loss E * sum_e (mean prob_e)^2"),
    "gqa_attention": ("02_model.py", "causal grouped-query attention: heads, RoPE, QK-norm, repeat KV, mask, softmax"),
    "moe_forward": ("02_model.py", "the MoE layer: router, top-k, SwiGLU experts (reference loop), balance loss"),
    "fp8_quantize": ("02_model.py", "FP8 row-wise scales (powers of two, rounded up) and an FP8 matrix product"),
    "newton_schulz_step": ("03_muon.py", "one quintic Newton-Schulz step (3.4445, -4.7750, 2.0315)"),
    "muon_update": ("03_muon.py", "one Muon step: momentum, Nesterov, Newton-Schulz, shape lr, weight decay"),
    "shard_loader": ("04_data.py", "the shard loader: T+1-token windows, seeded epoch order, resume"),
    "wsd_schedule": ("05_train.py", "the warm-up / stable / cosine-decay learning-rate multiplier"),
    "train_step": ("05_train.py", "one training step: accumulation over micro-batches, global-norm clipping"),
    "acc_norm": ("06_eval.py", "HellaSwag acc_norm: summed log-prob / characters, argmax"),
    "hellaswag_requests": ("06_eval.py", "HellaSwag requests: the three tokenisations, lm-eval's whitespace rule"),
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


def is_float_tensor(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point()


def is_int_tensor(t) -> bool:
    return isinstance(t, torch.Tensor) and not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).replace('torch.', '')} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def check_returns(got, spec: list, case: str, fn: str, single: bool = False) -> None:
    """Check WHAT came back before any value: the number of outputs, their types/dtypes, their order.

    spec: one (name, what it should be, predicate) per output. With single=True the function returns one
    value (not a tuple). Two outputs that would each pass the other's test mean they were swapped."""
    names = ", ".join(name for name, _, _ in spec)
    if single:
        name, what, ok = spec[0]
        if not ok(got):
            raise Wrong(case, f"{fn} should return {name}, {what}; got {describe(got)}")
        return
    if not (isinstance(got, (tuple, list)) and len(got) == len(spec)):
        n = f"{len(got)} values" if isinstance(got, (tuple, list)) else describe(got)
        raise Wrong(case, f"{fn} should return a tuple of {len(spec)} ({names}); got {n}")
    fits = [[ok(value) for _, _, ok in spec] for value in got]      # fits[i][j]: output i looks like spec j
    if all(fits[i][i] for i in range(len(spec))):
        return
    for order in itertools.permutations(range(len(spec))):
        if all(fits[i][j] for i, j in enumerate(order)):
            shown = ", ".join(spec[j][0] for j in order)
            raise Wrong(case, f"the outputs are in the wrong order: you returned ({shown}) — "
                        f"{', '.join(describe(v) for v in got)}", f"return ({names})")
    i = next(i for i in range(len(spec)) if not fits[i][i])
    raise Wrong(case, f"output {i} ({spec[i][0]}) should be {spec[i][1]}; got {describe(got[i])}",
                f"{fn} returns ({names})")


# --- Pass-through refusal: the student's code must not call the lesson it is checked against -----------
# Every check compares the student's function with a numbered lesson. A stub that imports the lesson
# (importlib.import_module("02_model"), __import__, runpy, reading 02_model.py by path) or the worked
# solution would compare the lesson with itself and "pass". The check reads the student's source with
# `ast` and refuses such a file before running anything. It looks at code, not at docstrings or comments
# (which may name the lesson freely). Some exercises also refuse the one library call that would do the
# whole exercise (the point of gqa_attention is to write the mask and softmax yourself).

LESSON_NAME = re.compile(r"0[1-6]_(tokenizer|model|muon|data|train|eval)")
FORBIDDEN_CALLS = {
    "gqa_attention": {"scaled_dot_product_attention": "write the scores, the causal mask and the softmax yourself",
                      "MultiheadAttention": "write the attention yourself"},
    "train_step": {"clip_grad_norm_": "compute the global gradient norm and scale the gradients yourself",
                   "clip_grad_norm": "compute the global gradient norm and scale the gradients yourself"},
    "moe_forward": {"grouped_mm": "loop over the experts (the reference path)"},
    "bpe_trainer": {"BpeTrainer": "count and merge the pairs yourself (HF's trainer is what the check compares with)",
                    "train_from_iterator": "count and merge the pairs yourself"},
}


def student_sources(module) -> list[tuple[str, str]]:
    """(where, source) of the student's code: the module's file, else the source of each of its functions."""
    path = getattr(module, "__file__", None)
    if path and str(path).endswith(".py"):
        return [(Path(path).name, Path(path).read_text(encoding="utf-8"))]
    sources = []
    for value in vars(module).values():
        if inspect.isfunction(value):
            try:
                sources.append((value.__name__, textwrap.dedent(inspect.getsource(value))))
            except (OSError, TypeError):
                pass
    return sources


def docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def pass_through(name: str, module) -> str | None:
    """Why the student's code is refused (one sentence naming the line), or None."""
    forbidden = FORBIDDEN_CALLS.get(name, {})
    for where, source in student_sources(module):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return None                   # the import already failed and said so
        skip = docstring_nodes(tree)
        for node in ast.walk(tree):
            line = f"{where} line {getattr(node, 'lineno', '?')}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                modules += [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
                for mod in modules:
                    if "solutions" in mod or LESSON_NAME.search(mod):
                        return (f"{line} imports {mod}: the check compares your code with the lesson, so handing "
                                "the work to the lesson (or to the worked solution) would compare it with itself")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                found = LESSON_NAME.search(node.value) or ("solutions" in node.value and "exercises" in node.value)
                if found:
                    return (f"{line} names {node.value!r} in code: importing or reading the numbered lesson (or the "
                            "worked solution) would compare the lesson with itself — write the computation yourself")
            called = (node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None)
            if called in forbidden:
                return f"{line} uses {called}: this exercise is to {forbidden[called]}"
    return None


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
        check_returns(got, [("top_w", "a float tensor (N, 2) of weights", is_float_tensor),
                            ("top_e", "an integer tensor (N, 2) of expert ids (int64, as topk gives)", is_int_tensor)],
                      case, "router_top2")
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


# --- 8. gqa_attention (02_model.py, section 4: CausalSelfAttention.project + forward) ------------------

def attention_module(C: int, n_head: int, n_kv_head: int, seed: int, T: int = 16):
    """02's CausalSelfAttention with seeded random weights (std 0.2, so the softmax is far from uniform)."""
    model_lib = importlib.import_module("02_model")
    config = model_lib.LLMConfig(depth=1, n_embd=C, n_head=n_head, n_kv_head=n_kv_head, head_dim=C // n_head,
                                 block_size=max(T, 8), vocab_size=64)
    attn = model_lib.CausalSelfAttention(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for weight in (attn.c_attn.weight, attn.c_proj.weight, attn.l_conv.weight):
            weight.copy_(0.2 * torch.randn(weight.shape, generator=gen))
    return attn


def check_gqa_attention(ex) -> None:
    model_lib = importlib.import_module("02_model")
    cases = [(1, 1, 32, 4, 2, "ONE token: attention can only copy its own value, so RoPE, QK-norm, scaling and "
              "the mask cannot matter here", "the error is in the projection split (q | k | v, in that order), "
              "the heads (view (B, T, heads, hd) then transpose) or which KV head a query head reads: query head "
              "i reads KV head i // (n_head / n_kv_head) (neighbouring query heads share a KV head)"),
             (2, 6, 32, 2, 2, "n_kv_head = n_head (plain multi-head attention, nothing to repeat)",
              "with no repetition, check RoPE (pairs i, i + hd/2, positions from 0), QK-norm (a LayerNorm over "
              "head_dim, eps 1e-5, AFTER RoPE), the 1/sqrt(head_dim) scale and the softmax over the keys"),
             (2, 9, 64, 4, 2, "GQA: 4 query heads share 2 KV heads", "query head i reads KV head i // 2: "
              "repeat each KV head in place (0, 0, 1, 1), not the whole block (0, 1, 0, 1)"),
             (1, 12, 48, 6, 3, "GQA with head_dim 8, 6 query heads on 3 KV heads", "see the hints above")]
    for B, T, C, nh, nkv, why, hint in cases:
        attn = attention_module(C, nh, nkv, seed=T * 7 + nh)
        x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(T))
        h = model_lib.token_shift(x, attn.l_conv.weight)       # the part before attention, done for you
        case = f"h (B, T, C) = {(B, T, C)}, n_head {nh}, n_kv_head {nkv}, head_dim {C // nh} — {why}"
        with torch.no_grad():
            expected = attn(x)
            got = call(ex.gqa_attention, case, h.clone(), attn.c_attn.weight.clone(), attn.c_proj.weight.clone(),
                       nh, nkv, 50000.0)
        check_returns(got, [("y", f"a float32 tensor of shape {tuple(expected.shape)}", is_float_tensor)],
                      case, "gqa_attention", single=True)
        if T > 1:  # causality first: a change in the future must not move the past
            x2 = x.clone()
            x2[:, T // 2:] += torch.randn(B, T - T // 2, C, generator=torch.Generator().manual_seed(1))
            h2 = model_lib.token_shift(x2, attn.l_conv.weight)
            with torch.no_grad():
                got2 = call(ex.gqa_attention, case, h2, attn.c_attn.weight.clone(), attn.c_proj.weight.clone(),
                            nh, nkv, 50000.0)
            moved = (got2[:, :T // 2] - got[:, :T // 2]).abs().max().item()
            if moved > 1e-5:
                raise Wrong(case + f"; then tokens {T // 2}..{T - 1} changed", f"the outputs at positions "
                            f"0..{T // 2 - 1} moved by up to {moved:.3g} when only LATER tokens changed: the "
                            "future leaks into the past",
                            "mask the scores of keys after the query (set them to -inf before the softmax): "
                            "position t may read positions 0..t, itself included")
        compare_tensors(got, expected, case, "y", atol=2e-5, rtol=1e-4, hint=hint)


# --- 9. moe_forward (02_model.py, section 5: MoE.forward with moe_impl="reference") --------------------

def moe_module(C: int, Fd: int, E: int, k: int, seed: int, same_experts: bool = False):
    model_lib = importlib.import_module("02_model")
    config = model_lib.LLMConfig(depth=1, n_embd=C, n_head=1, n_kv_head=1, head_dim=C, ffn_dim=Fd, n_experts=E,
                                 n_active_experts=k, moe_impl="reference", vocab_size=64)
    moe = model_lib.MoE(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        moe.router.weight.copy_(torch.randn(E, C, generator=gen))
        moe.w_v.copy_(0.3 * torch.randn(E, 2 * Fd, C, generator=gen))
        moe.c_proj.copy_(0.3 * torch.randn(E, C, Fd, generator=gen))
        if same_experts:
            moe.w_v.copy_(moe.w_v[:1].expand_as(moe.w_v))
            moe.c_proj.copy_(moe.c_proj[:1].expand_as(moe.c_proj))
    return moe


def check_moe_forward(ex) -> None:
    cases = [(2, 3, 8, 16, 4, 2, True, "all experts have the SAME weights, so routing cannot matter: every "
              "token's output is that one expert's output (the 2 weights sum to 1)",
              "one expert = silu(gate) · value with gate = the FIRST ffn_dim rows of w_v[e] @ x, then c_proj[e]"),
             (2, 5, 8, 16, 4, 2, False, "4 different experts, top-2", "each token: top-2 experts by router "
              "probability, their outputs weighted by the renormalised probabilities and summed"),
             (1, 16, 16, 32, 8, 2, False, "linnet's 8 experts, top-2", "see the hints above"),
             (3, 4, 8, 8, 4, 1, False, "top-1 (k = 1): each token uses one expert, at weight 1", "k is an argument")]
    for B, T, C, Fd, E, k, same, why, hint in cases:
        moe = moe_module(C, Fd, E, k, seed=T + E, same_experts=same)
        x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(T))
        case = f"x (B, T, C) = {(B, T, C)}, ffn_dim {Fd}, {E} experts, k {k} — {why}"
        with torch.no_grad():
            y_ref, stats = moe(x)
            got = call(ex.moe_forward, case, x.clone(), moe.router.weight.clone(), moe.w_v.clone(),
                       moe.c_proj.clone(), k)
        check_returns(got, [("y", "a float tensor (B, T, C)", lambda t: is_float_tensor(t) and t.ndim == 3),
                            ("balance", "a 0-dim float tensor", lambda t: is_float_tensor(t) and t.ndim == 0)],
                      case, "moe_forward")
        y, balance = got
        check_shape(y, y_ref, case, "y")
        if same:   # a per-token multiple of the right answer: the weights do not sum to 1
            g, e = y.reshape(-1, C).double(), y_ref.reshape(-1, C).double()
            ratio = (g * e).sum(-1) / (e * e).sum(-1)
            if ((g - ratio[:, None] * e).abs().max() < 1e-5 and (ratio - 1).abs().max() > 1e-3):
                raise Wrong(case, f"y: each token's output is a multiple of the right one (ratios "
                            f"{[round(r, 3) for r in ratio[:4].tolist()]}...)",
                            "renormalise the k chosen probabilities so that they sum to 1 before weighting")
        compare_tensors(y, y_ref, case, "y", atol=1e-5, rtol=1e-4, hint=hint)
        compare_tensors(balance, stats["balance"], case, "balance", atol=1e-5, rtol=1e-5,
                        hint="from the router's FULL softmax (N, E), not the top-k weights: average over the "
                             "tokens first, then square, sum over experts, times E")


# --- 9b. fp8_quantize (02_model.py, section 5b: quantize_rows; appendix: scaled_grouped_mm_reference) ----

def fp8_cases() -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(5)
    spread = torch.randn(8, 64, generator=gen) * torch.logspace(-3, 3, 8)[:, None]
    with_zero = torch.randn(4, 32, generator=gen)
    with_zero[2] = 0.0
    outlier = torch.randn(3, 48, generator=gen) * 0.01
    outlier[:, 7] = 1000.0
    return [("x (8, 64): rows from 1e-3 to 1e3 in size", spread),
            ("x (4, 32) whose row 2 is all zeros: that row must stay zeros (no log2(0) = -inf)", with_zero),
            ("x (3, 48): one value of 1000 per row, the rest ≈ 0.01 (they round to tiny float8 numbers)", outlier),
            ("x (2, 3, 16): a 3-D tensor, rows along the last dim", torch.randn(2, 3, 16, generator=gen)),
            ("x (5, 32) in bfloat16", torch.randn(5, 32, generator=gen).bfloat16())]


def check_fp8_quantize(ex) -> None:
    model_lib = importlib.import_module("02_model")
    for case, x in fp8_cases():
        got = call(ex.quantize_rows, case, x.clone())
        check_returns(got, [("q", "a torch.float8_e4m3fn tensor", lambda t: isinstance(t, torch.Tensor)
                             and t.dtype == torch.float8_e4m3fn),
                            ("scale", "a float32 tensor", lambda t: isinstance(t, torch.Tensor)
                             and t.dtype == torch.float32)], case, "quantize_rows")
        q_ref, scale_ref = model_lib.quantize_rows(x)
        compare_tensors(got[1], scale_ref, case, "scale", atol=0, rtol=0,
                        hint="one scale per ROW: amax over the last dim / 448, rounded UP to a power of two "
                             "(2 ** ceil(log2(...))) — not amax / 448 itself, not rounded down, not one per tensor")
        compare_tensors(got[0].float(), q_ref.float(), case, "q", atol=0, rtol=0,
                        hint="q = x / scale (in float32), then .to(torch.float8_e4m3fn); with the scale rounded "
                             "UP no value of x / scale is above 448")
    gen = torch.Generator().manual_seed(6)
    for M, N, K in [(4, 3, 16), (16, 8, 64)]:
        x, w = torch.randn(M, K, generator=gen) * 3, torch.randn(N, K, generator=gen) * 0.02
        case = f"fp8_matmul(x {tuple(x.shape)}, w {tuple(w.shape)})"
        got = call(ex.fp8_matmul, case, x.clone(), w.clone())
        check_returns(got, [("out", "a float tensor (M, N)", is_float_tensor)], case, "fp8_matmul", single=True)
        xq, xs = model_lib.quantize_rows(x)
        wq, ws = model_lib.quantize_rows(w)
        expected = model_lib.scaled_grouped_mm_reference(xq, xs, wq[None], ws[None],
                                                         torch.tensor([M], dtype=torch.int32), torch.float32)
        compare_tensors(got, expected, case, "out", atol=1e-6, rtol=1e-5,
                        hint="quantize BOTH x and w row by row, multiply the float8 values as float32 "
                             "(xq.float() @ wq.float().T), then multiply row i by x_scale[i] and column j by "
                             "w_scale[j]")


# --- 10. muon_update (03_muon.py, section 2: Muon.step → muon_update_ → newton_schulz, adjust_lr) ------

def check_muon_update(ex) -> None:
    muon = importlib.import_module("03_muon")
    gen = torch.Generator().manual_seed(0)
    lr, wd = 0.02, 0.1
    base_hint = ("buf ← μ·buf + (1−μ)·g; Nesterov update (1−μ)·g + μ·buf; then Newton–Schulz on EACH matrix "
                 "(divide by its own Frobenius norm, 5 quintic steps; bf16 like 03 matches best)")
    cases = [((32, 32), 0.0, "square, no weight decay: momentum, Nesterov and Newton–Schulz only", base_hint),
             ((32, 32), wd, "square, weight decay 0.1", "decay multiplies p by (1 − lr·weight_decay) with the "
              "lr you were given, before the orthogonal step"),
             ((64, 16), 0.0, "tall 64×16, no decay: the shape-dependent lr", "the step is lr·sqrt(max(1, A/B)) "
              "for an A×B matrix (A = rows): ×2 here"),
             ((16, 64), 0.0, "wide 16×64, no decay", "wide matrices get no boost: sqrt(max(1, A/B)) = 1 when A < B"),
             ((64, 16), wd, "tall 64×16 with decay", "the decay uses the RAW lr, not the shape-scaled one"),
             ((4, 48, 16), wd, "a stack of 4 experts (E, A, B) whose slices have very different scales",
              "each of the E matrices is orthogonalised on its own: one Frobenius norm per slice, and the lr "
              "scale of one A×B slice")]
    for shape, decay, why, hint in cases:
        p = torch.randn(*shape, generator=gen)
        scales = torch.logspace(-2, 1, shape[0])[:, None, None] if len(shape) == 3 else 1.0
        grad = torch.randn(*shape, generator=gen) * scales
        buf = torch.randn(*shape, generator=gen) * scales
        case = (f"p, grad, buf of shape {shape}, lr {lr}, momentum 0.95, weight_decay {decay}, nesterov True, "
                f"5 Newton–Schulz steps — {why}")
        param = torch.nn.Parameter(p.clone())
        opt = muon.Muon([{"params": [param], "stacked": len(shape) == 3}], lr=lr, weight_decay=decay)
        param.grad = grad.clone()
        opt.state[param]["momentum_buffer"] = buf.clone()
        opt.step()
        exp_p, exp_buf = param.detach(), opt.state[param]["momentum_buffer"]
        got = call(ex.muon_update, case, p.clone(), grad.clone(), buf.clone(), lr, 0.95, decay, True, 5)
        check_returns(got, [("new_p", f"a float tensor of shape {shape}", is_float_tensor),
                            ("new_buf", f"a float tensor of shape {shape}", is_float_tensor)], case, "muon_update")
        new_p, new_buf = got
        check_shape(new_p, exp_p, case, "new_p")
        check_shape(new_buf, exp_buf, case, "new_buf")
        if (torch.allclose(new_p.double(), exp_buf.double(), atol=1e-5) and
                torch.allclose(new_buf.double(), exp_p.double(), atol=1e-4)):
            raise Wrong(case, "the outputs are in the wrong order: you returned (new_buf, new_p)",
                        "return (new p, new momentum buffer)")
        compare_tensors(new_buf, exp_buf, case, "new_buf", atol=1e-5, rtol=1e-5,
                        hint="the momentum buffer is a running AVERAGE: μ·buf + (1−μ)·g (torch's lerp), "
                             "not μ·buf + g")
        step = (p * (1 - lr * decay) - exp_p).abs().max().item()   # how far the orthogonal step moved p
        compare_tensors(new_p, exp_p, case, "new_p", atol=0.08 * step, rtol=0, hint=hint)  # bf16 rounding: ≈ 4 %


# --- 11. train_step (05_train.py, section 2: train_step) -------------------------------------------------

def tiny_training_setup(seed: int):
    """A small 02 LLM, its 03 optimizers (Muon + AdamW) and 3 steps × 2 micro-batches of random tokens."""
    model_lib = importlib.import_module("02_model")
    muon = importlib.import_module("03_muon")
    torch.manual_seed(seed)
    config = model_lib.LLMConfig(depth=2, n_embd=32, head_dim=16, n_head=2, n_kv_head=1, ffn_dim=32,
                                 n_experts=4, vocab_size=64, block_size=16)
    model = model_lib.LLM(config).train()
    optimizers, _ = muon.build_optimizers(model, lr=3e-3)
    return model, optimizers


def check_train_step(ex) -> None:
    train = importlib.import_module("05_train")
    gen = torch.Generator().manual_seed(0)
    for grad_clip, n_micro, n_steps, why in [(0.05, 2, 2, "clipping on (grad_clip 0.05 is below the gradient norm)"),
                                             (100.0, 3, 2, "clipping off in effect (grad_clip 100), 3 micro-batches")]:
        batches = [[(torch.randint(0, 64, (2, 8), generator=gen), torch.randint(0, 64, (2, 8), generator=gen))
                    for _ in range(n_micro)] for _ in range(n_steps)]
        ref_model, ref_opts = tiny_training_setup(seed=1)
        model, opts = tiny_training_setup(seed=1)
        cfg = dataclasses.replace(train.PRESETS["tiny"], grad_clip=grad_clip)
        for step, micro in enumerate(batches):
            case = (f"step {step} of {n_steps} on 02's LLM (depth 2, n_embd 32, 4 experts) with 03's Muon + AdamW, "
                    f"{n_micro} micro-batches of (2, 8) tokens, grad_clip {grad_clip} — {why}")
            loss_ref, norm_ref, _ = train.train_step(ref_model, ref_model, ref_opts, micro, cfg, torch.device("cpu"))
            got = call(ex.train_step, case, model, opts, list(micro), grad_clip)
            scalar = lambda t: isinstance(t, torch.Tensor) and t.numel() == 1 and t.is_floating_point()
            check_returns(got, [("loss", "a one-element float tensor", scalar),
                                ("grad_norm", "a one-element float tensor", scalar)], case, "train_step")
            loss, norm = (t.detach().reshape(()) for t in got)
            if math.isclose(loss.item(), norm_ref.item(), rel_tol=1e-4) and math.isclose(norm.item(), loss_ref.item(), rel_tol=1e-4):
                raise Wrong(case, "the outputs are in the wrong order: you returned (grad_norm, loss)",
                            "return (mean loss, grad norm)")
            compare_tensors(loss, loss_ref, case, "loss", atol=1e-5, rtol=1e-5,
                            hint="the MEAN of the micro-batches' losses (not the last one, not the sum)")
            ratio = norm.item() / norm_ref.item()
            compare_tensors(norm, norm_ref, case, "grad_norm", atol=1e-6, rtol=1e-4,
                            hint=f"yours is {ratio:.3g}× 05's. " + (
                                "Divide each micro-batch's loss by the number of micro-batches before backward: "
                                "the gradient must be that of the MEAN loss" if abs(ratio - n_micro) < 1e-3 else
                                "Report the global norm BEFORE clipping (the norm of all gradients together)"
                                if abs(norm.item() - grad_clip) < 1e-4 else
                                "right at step 0 but not later: the previous step's gradients are still there; "
                                "clear them after the optimizers step" if step > 0 else
                                "the global norm: sqrt of the sum of every gradient element squared, over all parameters"))
            for (name, p_ref), p in zip(ref_model.named_parameters(), model.parameters()):
                compare_tensors(p.detach(), p_ref.detach(), case, f"parameter {name} after the step", atol=1e-6,
                                rtol=1e-4, hint="clip (scale every gradient by min(1, grad_clip / (norm + 1e-6))) "
                                "BEFORE the optimizers step; step every optimizer; then zero the gradients, or "
                                "the next step adds onto these")


# --- 12. hellaswag_requests (06_eval.py, section 2: example_pairs, encode_requests, hellaswag_requests) ---

def hellaswag_examples() -> list[dict]:
    """Hand-made examples in 06's prepared form (context/choices preprocessed, raw_ctx/raw_endings raw)."""
    ev = importlib.import_module("06_eval")
    rows = [("Baking cookies", "A woman puts flour in a bowl.", "she", ["stirs it slowly.", "[title] Eat them.",
             "throws the bowl away.", "sings  a song."]),
            ("Personal Care", "How to wash your hands [title] Wet your hands. [step]", "",
             ["[substeps] Use soap and warm water.", "Dry them first.", "Skip it.", "Rub for 20 seconds."]),
            ("", "", "", ["the cat sat on the mat.", "the dog ate it.", "a bird flew.", "nothing happened."]),
            ("Running", "The man ties his shoes ", "then he", ["runs 5 km.", "sits down.", "walks home.", "stops."])]
    examples = []
    for i, (label, ctx_a, ctx_b, endings) in enumerate(rows):
        row = dict(ind=i, activity_label=label, ctx_a=ctx_a, ctx_b=ctx_b, ctx=(ctx_a + " " + ctx_b).strip(),
                   split_type="zeroshot", label=0, endings=endings, source_id="wikihow~1")
        examples.append(ev.prepare_example(row))
    examples[2]["context"] = ""            # an empty context: lm-eval scores it after an EOT token
    examples[3]["context"] += " "          # a context ending in spaces: lm-eval moves them to the continuation
    return examples


def hellaswag_tokenizer():
    tokenizer_lib = importlib.import_module("01_tokenizer")
    text = " ".join(ex["context"] + " " + " ".join(ex["choices"]) for ex in hellaswag_examples())
    return tokenizer_lib, tokenizer_lib.train_tokenizer([text] * 3, tokenizer_lib.MIN_VOCAB_SIZE + 120,
                                                        show_progress=False)


def check_hellaswag_requests(ex) -> None:
    ev = importlib.import_module("06_eval")
    tokenizer_lib, tokenizer = hellaswag_tokenizer()
    eot = tokenizer_lib.eot_id(tokenizer)
    examples = hellaswag_examples()
    hints = {"lm-eval": "lm-eval: move the context's trailing whitespace to the front of the continuation, encode "
                        "context + continuation ONCE and cut it after len(encode(context)) tokens; the "
                        "continuation is \" \" + choice; an empty context becomes [eot]",
             "linnet": "linnet: encode the context and \" \" + choice separately; an empty context becomes [eot]",
             "nanogpt": "nanoGPT: the RAW context and \" \" + the RAW ending (no preprocessing), encoded separately"}
    for mode, nanogpt in [("linnet", False), ("lm-eval", False), ("nanogpt", False), ("lm-eval", True)]:
        case = f"{len(examples)} examples (4 endings each), mode {mode!r}, nanogpt={nanogpt}, eot {eot}"
        expected = ev.hellaswag_requests(tokenizer, examples, mode, nanogpt)
        got = call(ex.hellaswag_requests, case, tokenizer, [dict(e) for e in examples], mode, nanogpt, eot)
        if not isinstance(got, list) or len(got) != len(expected):
            raise Wrong(case, f"expected a list of {len(expected)} requests, got "
                        f"{len(got) if isinstance(got, list) else type(got).__name__}",
                        "4 requests per example in `mode` (example i → 4i..4i+3); with nanogpt=True, the 4 "
                        "nanoGPT requests of every example follow AFTER all of those")
        positions = {}
        for j, (c, k) in enumerate(expected):
            positions.setdefault((tuple(c), tuple(k)), j)
        for i, (request, (ctx, cont)) in enumerate(zip(got, expected)):
            which = "nanogpt" if i >= 4 * len(examples) else mode
            ex_i, ending = (i % (4 * len(examples))) // 4, i % 4
            where = f"request {i} (example {ex_i}, ending {ending}, {which})"
            if not (isinstance(request, (tuple, list)) and len(request) == 2
                    and all(isinstance(ids, list) and all(isinstance(t, int) for t in ids) for ids in request)):
                raise Wrong(case, f"{where} should be (context_ids, continuation_ids), two lists of ints; got "
                            f"{request!r:.80}")
            key = tuple(map(tuple, request))
            if key != (tuple(ctx), tuple(cont)) and key in positions:
                raise Wrong(case, f"{where} is the request expected at position {positions[key]}"
                            ": the requests are right but in the wrong order",
                            "example i → requests 4i..4i+3 in `mode`; with nanogpt=True ALL of those first, then "
                            "the nanoGPT requests of every example, in the same order")
            for part, got_ids, exp_ids in (("context", request[0], ctx), ("continuation", request[1], cont)):
                if got_ids != exp_ids:
                    show = lambda ids: f"{ids} = {[tokenizer.decode([t]) for t in ids]}"
                    raise Wrong(case, f"{where}, {part} ids:\n    expected {show(exp_ids)}\n    got      "
                                f"{show(got_ids)}", hints[which])


# --- 13. bpe_trainer (01_tokenizer.py, section 3: train_bpe_scratch; section 4: train_tokenizer) ----------

def bpe_trainer_texts() -> list[tuple[str, list[str], int, int]]:
    """(why, texts, vocab_size, min_frequency): small texts, edge cases, and a few KB of real text."""
    import house
    tokenizer_lib = importlib.import_module("01_tokenizer")
    base = tokenizer_lib.MIN_VOCAB_SIZE
    cases = [(f"{text!r}", [text], base + 30, 2 if text.isascii() else 1) for text in BPE_TEXTS]
    cases += [("a tie at the first step: ('a','b') and ('b','a') both occur 4 times", ["ab ba ab ba ab ba ab ba"], base + 5, 2),
              ("words of one character only: no pair to merge", ["a!b?c;d"], base + 10, 1),
              ("min_frequency 1: pairs that occur once are merged too", ["low lower lowest newer wider"], base + 40, 1),
              ("min_frequency 3: stops at the first pair seen fewer than 3 times", [BPE_TEXTS[0] * 2], base + 40, 3),
              ("one word repeated against one long word: 'xy' is 4 times in one word, 'ab' once in each of 5",
               ["ab ab ab ab ab xyxyxyxy"], base + 10, 2)]
    files = [house.SHARED_CORPUS_DIR / name for name in ("shakespeare.jsonl", "python-docs.jsonl")]
    if all(path.is_file() for path in files):
        texts = ["\n".join(itertools.islice(house.iter_file_texts(path), 3))[:3000] for path in files]
        why = "the first 3,000 characters of shakespeare.jsonl and of python-docs.jsonl (../shared/data/corpus)"
    else:
        texts = [" ".join(BPE_TEXTS) * 20, "def train_bpe(words, vocab):\n    return merges\n" * 10]
        why = "a built-in text of 3,670 characters (../shared/data/corpus is not here)"
    return cases + [(why, texts, base + 150, 2)]


def first_only_merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """`pair` merged at its FIRST occurrence only (the slip the check recognises, not the rule)."""
    for i in range(len(word) - 1):
        if (word[i], word[i + 1]) == pair:
            return word[:i] + (word[i] + word[i + 1],) + word[i + 2:]
    return word


def bpe_state(tokenizer_lib, words: list[str], vocab: dict, merges: list, merge=None) -> tuple[dict, dict]:
    """(word counts, vocab) after applying `merges` in order, with 01's merge_pair (or `merge`)."""
    merge = merge or tokenizer_lib.merge_pair
    counts, vocab = collections.Counter(tuple(w) for w in words), dict(vocab)
    for pair in merges:
        merged = collections.Counter()
        for word, n in counts.items():
            merged[merge(word, pair)] += n
        counts = merged
        vocab.setdefault(pair[0] + pair[1], len(vocab))
    return counts, vocab


def best_pair(pairs: dict, vocab: dict):
    return min(pairs, key=lambda p: (-pairs[p], vocab[p[0]], vocab[p[1]])) if pairs else None


def bpe_merge_hint(tokenizer_lib, words, vocab, expected, got, i, min_frequency) -> tuple[str, str]:
    """(what differs at merge i, a hint naming the likely slip)."""
    counts, state_vocab = bpe_state(tokenizer_lib, words, vocab, expected[:i])
    pairs = tokenizer_lib.count_pairs(counts)
    right = f"your first {i} merges are right; " if i else ""
    # what two common slips would pick next (None: they would stop here)
    unweighted = collections.Counter(pair for word in counts for pair in zip(word, word[1:]))
    first_counts, first_vocab = bpe_state(tokenizer_lib, words, vocab, expected[:i], first_only_merge)
    first_pairs = tokenizer_lib.count_pairs(first_counts)
    slips = [(unweighted, state_vocab, "yours follows from counting each pair once per distinct word: count it once "
              "per occurrence TIMES how often its word occurs"),
             (first_pairs, first_vocab, "yours follows from merging only the FIRST occurrence of a pair in each "
              "word: replace EVERY occurrence, left to right, without overlap (('a','a','a','a') → ('aa','aa'))")]
    slip_picks = [(b if b is not None and counts_[b] >= min_frequency else None, hint)
                  for counts_, v, hint in slips for b in [best_pair(counts_, v)]]
    if i >= len(got):
        best = expected[i]
        hint = next((h for pick, h in slip_picks if pick is None), f"keep going while the vocab has fewer than "
                    f"vocab_size tokens, some pair is left and the best one occurs at least min_frequency "
                    f"({min_frequency}) times")
        return (f"{right}you stopped after {len(got)} merges, expected {len(expected)}: merge {i} should be {best} "
                f"(count {pairs[best]})", hint)
    if i >= len(expected):
        best = best_pair(pairs, state_vocab)
        why = ("no pair is left" if best is None else f"the best pair {best} occurs {pairs[best]}×, below "
               f"min_frequency {min_frequency}" if pairs[best] < min_frequency else
               f"the vocab is full ({len(state_vocab)} tokens): a merge whose token already exists adds no id")
        return (f"{right}you went on to merge {got[i]}, expected to stop after {len(expected)} merges: {why}",
                "stop when the vocab holds vocab_size tokens, no pair is left, or the best pair occurs fewer than "
                "min_frequency times")
    best, mine = expected[i], tuple(got[i])
    what = f"{right}merge {i}: expected {best} (count {pairs[best]}), got {mine} (count {pairs.get(mine, 0)})"
    if pairs.get(mine, 0) == pairs[best]:
        ids = lambda p: (state_vocab.get(p[0]), state_vocab.get(p[1]))
        return what, (f"a tie: both occur {pairs[best]} times. The pair with the smallest (vocab[left], vocab[right]) "
                      f"wins — {best} has ids {ids(best)}, yours {ids(mine)}: the OLDEST tokens, "
                      "not the alphabetically first pair")
    hint = next((h for pick, h in slip_picks if pick == mine), None)
    return what, hint or "count the pairs of the words as they are after the previous merges, then take the most frequent"


def check_bpe_trainer(ex) -> None:
    tokenizer_lib = importlib.import_module("01_tokenizer")
    _, start_vocab = tokenizer_lib.train_bpe_scratch([""], tokenizer_lib.MIN_VOCAB_SIZE)   # specials + 256 bytes
    for why, texts, vocab_size, min_frequency in bpe_trainer_texts():
        words = [w for text in texts for w in tokenizer_lib.split_words(text)]
        expected, _ = tokenizer_lib.train_bpe_scratch(texts, vocab_size, min_frequency)
        hf = tokenizer_lib.tokenizer_merges(tokenizer_lib.train_tokenizer(texts, vocab_size, min_frequency,
                                                                          show_progress=False))
        if hf != expected:     # the lesson's own claim; if it ever fails, the check cannot say who is right
            raise RuntimeError(f"01's train_bpe_scratch and HF's BpeTrainer disagree on {why}: fix 01 first")
        case = (f"train_bpe(<{len(words)} words of {why}>, vocab, vocab_size {vocab_size}, "
                f"min_frequency {min_frequency}) — {len(expected)} merges expected (01's train_bpe_scratch and "
                "HF's BpeTrainer agree)")
        got = call(ex.train_bpe, case, list(words), dict(start_vocab), vocab_size, min_frequency)
        if not (isinstance(got, (list, tuple)) and all(isinstance(m, (tuple, list)) and len(m) == 2
                                                        and all(isinstance(t, str) for t in m) for m in got)):
            raise Wrong(case, f"train_bpe should return a list of (left, right) pairs of str; got {describe(got)}"
                        + (f" whose first item is {got[0]!r:.60}" if isinstance(got, (list, tuple)) and got else ""))
        got = [tuple(m) for m in got]
        if got != expected:
            i = next(i for i in range(max(len(got), len(expected)))
                     if i >= len(got) or i >= len(expected) or got[i] != expected[i])
            detail, hint = bpe_merge_hint(tokenizer_lib, words, start_vocab, expected, got, i, min_frequency)
            raise Wrong(case, detail, hint)


# --- 14. shard_loader (04_data.py, section 5: ShardLoader.epoch_order, batch_windows, get_batch, state_dict) --

def write_shard_folder(data_dir: Path, sizes: list[int], seed: int) -> list[np.ndarray]:
    """Shards of random uint16 tokens + a manifest.json, written the way 04 writes them (np.save of a 1-D
    uint16 array, one record per shard: index, file, split, tokens, sha256); shard 0 is the val split.
    Returns the train shards' arrays, in manifest order."""
    data_lib = importlib.import_module("04_data")
    gen = np.random.default_rng(seed)
    records, arrays = [], []
    for index, n in enumerate(sizes):
        tokens = gen.integers(0, 60_000, size=n).astype(np.uint16)     # random ids: every window is unique
        path = data_dir / data_lib.shard_name(index)
        np.save(path, tokens)
        records.append({"index": index, "file": path.name, "split": "val" if index == 0 else "train",
                        "tokens": n, "sha256": data_lib.sha256_file(path)})
        arrays.append(tokens)
    (data_dir / "manifest.json").write_text(json.dumps({"shards": records}), encoding="utf-8")
    return arrays[1:]


def find_window(shards: list[np.ndarray], row: np.ndarray) -> tuple[int, int] | None:
    """(shard, start) where `row` occurs as consecutive tokens, or None."""
    for s, tokens in enumerate(shards):
        if len(tokens) >= len(row):
            views = np.lib.stride_tricks.sliding_window_view(tokens.astype(np.int64), len(row))
            hits = np.nonzero((views == row).all(axis=1))[0]
            if len(hits):
                return s, int(hits[0])
    return None


LOADER_ORDER_HINT = ("the epoch's order: rng = np.random.default_rng(seed + epoch); rng.permutation(number of "
                     "shards) first, then rng.permutation(windows of s) for each shard s in that order; batch g "
                     "is windows g·B … g·B + B − 1 of that list")


def compare_batch(got, expected: tuple[torch.Tensor, torch.Tensor], shards: list[np.ndarray], T: int,
                  case: str, what: str = "get_batch") -> None:
    """Raise Wrong unless `got` is 04's (x, y); say which window each wrong row of x really is."""
    int64 = lambda t: isinstance(t, torch.Tensor) and t.dtype == torch.int64
    check_returns(got, [("x", "an int64 tensor (B, T)", int64), ("y", "an int64 tensor (B, T)", int64)], case, what)
    (x, y), (ex, ey) = got, expected
    check_shape(x, ex, case, "x")
    check_shape(y, ey, case, "y")
    if torch.equal(x, ey) and torch.equal(y, ex):
        raise Wrong(case, "x and y are swapped", "x is a window's first T tokens, y its last T (the next tokens)")
    for b in range(ex.shape[0]):
        if torch.equal(x[b], ex[b]):
            continue
        at, want = find_window(shards, x[b].numpy()), find_window(shards, ex[b].numpy())
        detail = (f"x[{b}] is not the window expected: expected tokens {want[1]}…{want[1] + T - 1} of train shard "
                  f"{want[0]}, got " + (f"tokens {at[1]}…{at[1] + T - 1} of train shard {at[0]}" if at else
                                        f"{x[b, :6].tolist()}…, which is not T consecutive tokens of any shard"))
        if at and at[1] % T and at[1] % (T + 1) == 0:
            hint = ("windows start at multiples of T (0, T, 2T, …): each is T + 1 tokens, so consecutive windows "
                    "share one token at their edges — yours start at multiples of T + 1")
        elif at and at[1] % T:
            hint = "a window starts at a multiple of T"
        else:
            hint = LOADER_ORDER_HINT
        raise Wrong(case, detail, hint)
    if not torch.equal(y, ey):
        b = int(torch.nonzero((y != ey).any(dim=1))[0])
        hint = ("y is x itself: y must be x shifted by one — y[b, t] is the token AFTER x[b, t]" if torch.equal(y[b], x[b])
                else "y is shifted the wrong way: y[b, t] is the token AFTER x[b, t] (the window's last T tokens), "
                "not the one before" if torch.equal(y[b, 1:], x[b, :-1]) else
                "y is the window's last T tokens: y[b, t] = the token after x[b, t]")
        raise Wrong(case, f"x is right; y[{b}]: expected {ey[b, :6].tolist()}…, got {y[b, :6].tolist()}…", hint)


def check_shard_loader(ex) -> None:
    import tempfile
    data_lib = importlib.import_module("04_data")
    cases = [([300, 160, 176, 193], 4, 16, 0, "3 train shards of 160, 176 and 193 tokens, B 4, T 16, seed 0"),
             ([50, 97], 3, 8, 7, "one train shard of 97 tokens (12 windows of 8 + 1), B 3, T 8, seed 7"),
             ([40, 10, 129, 64], 2, 16, 3, "train shards of 10 (no window: fewer than T + 1 tokens), 129 and 64 "
                                            "tokens, B 2, T 16, seed 3")]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (sizes, B, T, seed, why) in enumerate(cases):
            data_dir = Path(tmp) / f"shards_{i}"
            data_dir.mkdir()
            shards = write_shard_folder(data_dir, sizes, seed=100 + i)
            real = data_lib.ShardLoader(data_dir, "train", B, T, seed=seed)
            case = f"ShardLoader(<{why}>, B={B}, T={T}, seed={seed})"
            mine = call(ex.ShardLoader, case, [s.copy() for s in shards], B, T, seed)
            n = call(len, f"len({case})", mine)
            if n != len(real):
                raise Wrong(case, f"len(loader): expected {len(real)} batches per epoch, got {n}",
                            "a shard of n tokens holds (n − 1) // T windows (each needs T + 1 tokens); an epoch "
                            "has (all windows) // B batches")
            for epoch, batch in [(e, g) for e in (0, 1) for g in range(len(real))]:
                where = f"{case}.get_batch(epoch {epoch}, batch {batch})"
                compare_batch(call(mine.get_batch, where, epoch, batch), real.get_batch(epoch, batch), shards, T, where)
            check_resume(ex, real, shards, B, T, seed, case)


def check_resume(ex, real, shards: list[np.ndarray], B: int, T: int, seed: int, case: str) -> None:
    """Iterate both loaders past an epoch boundary, save the student's state, resume a fresh loader from it."""
    n_epoch = len(real)
    # stops where a repeated, a skipped and a restarted batch are three different batches come first
    for stop in dict.fromkeys(s for s in (n_epoch + 2, 3, n_epoch - 1, n_epoch, 1) if s > 0):
        real.load_state_dict({**real.state_dict(), "epoch": 0, "batch": 0})
        mine = call(ex.ShardLoader, case, [s.copy() for s in shards], B, T, seed)
        real_it, mine_it = iter(real), call(iter, case, mine)
        for k in range(stop):
            where = f"{case}: batch {k} of iterating from the start ({n_epoch} batches per epoch)"
            compare_batch(call(next, where, mine_it), next(real_it), shards, T, where, "next(iter(loader))")
        where = (f"{case}: iterate {stop} batches, state = loader.state_dict(), then a NEW loader, "
                 f"load_state_dict(state), next(iter(new))")
        state = copy.deepcopy(call(mine.state_dict, where))
        if not isinstance(state, dict):
            raise Wrong(where, f"state_dict should return a dict, got {describe(state)}")
        fresh = call(ex.ShardLoader, where, [s.copy() for s in shards], B, T, seed)
        call(fresh.load_state_dict, where, state)
        got = call(next, where, call(iter, where, fresh))
        expected = next(real_it)
        position = divmod(stop, n_epoch)             # (epoch, batch) of the batch that must come next
        same = lambda e, g: (isinstance(got, (tuple, list)) and len(got) == 2 and
                             all(torch.equal(a, b) for a, b in zip(got, real.get_batch(e, g))))
        slips = [(divmod(stop - 1, n_epoch), "the batch the run had ALREADY seen (the state was taken before "
                  "moving on): count a batch as used before yielding it"),
                 (divmod(stop + 1, n_epoch), "the batch AFTER the next one: one batch is skipped — the state "
                  "names the batch that next() returns next, and resuming starts there"),
                 ((position[0], 0), "the FIRST batch of the epoch: resuming restarted the epoch — keep the "
                  "saved batch index too"),
                 ((0, 0), "the first batch of epoch 0: the saved position was not used")]
        for (e, g), what in slips:
            if (e, g) != position and same(e, g):
                raise Wrong(where, f"the resumed loader returned batch {g} of epoch {e}, expected batch "
                            f"{position[1]} of epoch {position[0]} (your state: {state})", f"it returned {what}")
        compare_batch(got, expected, shards, T, where, "next(iter(resumed loader))")


CHECKS = {"bpe_merge": check_bpe_merge, "bpe_trainer": check_bpe_trainer, "rope": check_rope,
          "router_top2": check_router_top2, "balance_loss": check_balance_loss, "gqa_attention": check_gqa_attention, "moe_forward": check_moe_forward,
          "fp8_quantize": check_fp8_quantize,
          "newton_schulz_step": check_newton_schulz_step, "muon_update": check_muon_update,
          "shard_loader": check_shard_loader,
          "wsd_schedule": check_wsd_schedule, "train_step": check_train_step, "acc_norm": check_acc_norm,
          "hellaswag_requests": check_hellaswag_requests}
assert CHECKS.keys() == EXERCISES.keys()


# --- 15. Running a check and saying what happened -------------------------------------------------------

def load_exercise(name: str, solution: bool = False):
    """exercises.<name> (the file a student edits) or exercises.solutions.<name>."""
    return importlib.import_module(f"exercises.{'solutions.' if solution else ''}{name}")


def run_check(name: str, module) -> tuple[bool, str]:
    """Check `module` (anything with the exercise's functions); returns (passed, what to print).
    A module that hands the work to the lesson (or the solution) is refused before it runs."""
    refused = pass_through(name, module)
    if refused:
        return False, f"refused: {name} — {refused}"
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
