"""exercises/: every worked solution passes its check, every blank stub fails it, and the checks catch
the subtle slips students make (each wrong variant below differs from a solution in one detail)."""
import collections
import math
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from helpers import REPO_DIR

from exercises import check
from exercises.solutions import (acc_norm, balance_loss, bpe_merge, newton_schulz_step, rope, router_top2,
                                 wsd_schedule)

NAMES = list(check.EXERCISES)


@pytest.mark.parametrize("name", NAMES)
def test_solution_passes(name):
    passed, message = check.check_one(name, solution=True)
    assert passed and message == f"correct: {name}", message


@pytest.mark.parametrize("name", NAMES)
def test_blank_stub_fails_with_its_todo(name):
    passed, message = check.check_one(name, solution=False)
    assert not passed
    assert message.startswith(f"not done yet: TODO in exercises/{name}.py"), message


def test_every_exercise_has_a_stub_a_solution_and_a_readme_row():
    readme = (REPO_DIR / "exercises" / "README.md").read_text()
    for name in NAMES:
        assert (REPO_DIR / "exercises" / f"{name}.py").exists()
        assert (REPO_DIR / "exercises" / "solutions" / f"{name}.py").exists()
        assert f"python -m exercises.check {name}" in readme


# --- wrong variants: one slip each; the check must say "wrong" and point at the right thing ---------------

def with_functions(base, **replaced):
    """A module-like object: `base`'s functions, some of them replaced by a wrong version."""
    return types.SimpleNamespace(**{**vars(base), **replaced})


def rope_interleaved(x, offset=0, base=50000.0):
    """The RoPE paper's pairs (2i, 2i+1) instead of linnet's (i, i + hd/2)."""
    B, H, T, hd = x.shape
    inv_freq = base ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    angle = torch.arange(offset, offset + T, dtype=torch.float32)[:, None] * inv_freq
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()], -1).flatten(-2)


def rope_base_10000(x, offset=0, base=50000.0):
    return rope.rope(x, offset, 10000.0)


def rope_ignores_offset(x, offset=0, base=50000.0):
    return rope.rope(x, 0, base)


def router_not_renormalised(logits):
    return torch.softmax(logits, -1).topk(2, dim=-1)


def router_naive_softmax(logits):
    """exp / sum without subtracting the max: NaN for large logits."""
    e = logits.exp()
    w, i = (e / e.sum(-1, keepdim=True)).topk(2, dim=-1)
    return w / w.sum(-1, keepdim=True), i


def balance_mean_of_squares(probs):
    return probs.shape[-1] * (probs ** 2).mean(0).sum()


def balance_without_e(probs):
    return (probs.mean(0) ** 2).sum()


def ns_gram_on_wrong_side(X, coefficients=newton_schulz_step.NS_COEFFICIENTS):
    """A = Xᵀ·X then B·X: right for no X that is not symmetric (X·(XᵀX) would be fine: it equals (XXᵀ)·X)."""
    a, b, c = coefficients
    A = X.mT @ X
    return a * X + (b * A + c * A @ A) @ X


def ns_swapped_b_c(X, coefficients=newton_schulz_step.NS_COEFFICIENTS):
    a, b, c = coefficients
    return newton_schulz_step.newton_schulz_step(X, (a, c, b))


def ns_in_bf16(X, coefficients=newton_schulz_step.NS_COEFFICIENTS):
    return newton_schulz_step.newton_schulz_step(X.bfloat16(), coefficients).to(X.dtype)


def wsd_warmup_from_zero(step, planned_steps, warmup_frac=0.1, decay_start_frac=0.8, min_ratio=0.06):
    warmup = max(1, int(warmup_frac * planned_steps))
    if step < warmup:
        return step / warmup
    return wsd_schedule.lr_multiplier(step, planned_steps, warmup_frac, decay_start_frac, min_ratio)


def wsd_decay_to_planned(step, planned_steps, warmup_frac=0.1, decay_start_frac=0.8, min_ratio=0.06):
    """Cosine over (planned - decay_start) steps: never quite reaches min_ratio at the last step."""
    decay_start = int(decay_start_frac * planned_steps)
    if step < max(decay_start, max(1, int(warmup_frac * planned_steps))):
        return wsd_schedule.lr_multiplier(step, planned_steps, warmup_frac, decay_start_frac, min_ratio)
    progress = min(1.0, (step - decay_start) / max(1, planned_steps - decay_start))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def acc_norm_bytes(token_logprobs, endings):
    return int(np.argmax([lp.sum() / len(e.encode()) for lp, e in zip(token_logprobs, endings)]))


def acc_norm_per_token(token_logprobs, endings):
    return int(np.argmax([lp.mean() for lp in token_logprobs]))


def acc_norm_joining_space(token_logprobs, endings):
    return int(np.argmax([lp.sum() / len(" " + e) for lp, e in zip(token_logprobs, endings)]))


def acc_norm_last_on_tie(token_logprobs, endings):
    scores = [lp.sum() / len(e) for lp, e in zip(token_logprobs, endings)]
    return max(range(len(scores)), key=lambda i: (scores[i], i))


def merge_overlapping(word, pair):
    """Merges ('a','a','a') into ('aa','aa'): uses the middle token twice."""
    out = [word[i] + word[i + 1] for i in range(len(word) - 1) if (word[i], word[i + 1]) == pair]
    return tuple(out) if out else word


def bpe_tie_alphabetical(words, vocab):
    pairs = bpe_merge.count_pairs(words)
    best = min(pairs, key=lambda p: (-pairs[p], p))
    new_words = collections.Counter()
    for word, n in words.items():
        new_words[bpe_merge.merge_pair(word, best)] += n
    return best, dict(new_words)


def bpe_words_overwritten(words, vocab):
    """new_words[merged] = n instead of += n: loses counts when two words become one."""
    best, _ = bpe_merge.bpe_merge_step(words, vocab)
    return best, {bpe_merge.merge_pair(word, best): n for word, n in words.items()}


def count_pairs_unweighted(words):
    return collections.Counter(pair for word in words for pair in zip(word, word[1:]))


WRONG = [
    ("rope", rope, dict(rope=rope_interleaved), "out["),
    ("rope", rope, dict(rope=rope_base_10000), "out["),
    ("rope", rope, dict(rope=rope_ignores_offset), "offset 1000"),
    ("router_top2", router_top2, dict(router_top2=router_not_renormalised), "top_w"),
    ("router_top2", router_top2, dict(router_top2=router_naive_softmax), "stable softmax"),
    ("balance_loss", balance_loss, dict(balance_loss=balance_mean_of_squares), "balance"),
    ("balance_loss", balance_loss, dict(balance_loss=balance_without_e), "balance"),
    ("newton_schulz_step", newton_schulz_step, dict(newton_schulz_step=ns_gram_on_wrong_side), "out["),
    ("newton_schulz_step", newton_schulz_step, dict(newton_schulz_step=ns_swapped_b_c), "out["),
    ("newton_schulz_step", newton_schulz_step, dict(newton_schulz_step=ns_in_bf16), "float64"),
    ("wsd_schedule", wsd_schedule, dict(lr_multiplier=wsd_warmup_from_zero), "step 0,"),
    ("wsd_schedule", wsd_schedule, dict(lr_multiplier=wsd_decay_to_planned), "multiplier"),
    ("acc_norm", acc_norm, dict(acc_norm_choice=acc_norm_bytes), "not bytes"),
    ("acc_norm", acc_norm, dict(acc_norm_choice=acc_norm_per_token), "chosen ending"),
    ("acc_norm", acc_norm, dict(acc_norm_choice=acc_norm_joining_space), "chosen ending"),
    ("acc_norm", acc_norm, dict(acc_norm_choice=acc_norm_last_on_tie), "tie"),
    ("bpe_merge", bpe_merge, dict(merge_pair=merge_overlapping), "merge_pair(('a', 'a', 'a'), ('a', 'a'))"),
    ("bpe_merge", bpe_merge, dict(bpe_merge_step=bpe_tie_alphabetical), "on a tie"),
    ("bpe_merge", bpe_merge, dict(bpe_merge_step=bpe_words_overwritten), "should have count"),
    ("bpe_merge", bpe_merge, dict(count_pairs=count_pairs_unweighted), "count of pair"),
]


@pytest.mark.parametrize("name, base, replaced, expected_text", WRONG,
                         ids=[f"{n}-{next(iter(r.values())).__name__}" for n, _, r, _ in WRONG])
def test_check_catches_a_subtle_slip(name, base, replaced, expected_text):
    passed, message = check.run_check(name, with_functions(base, **replaced))
    assert not passed and message.startswith(f"wrong: {name}"), message
    assert expected_text in message, message


def test_a_crash_names_the_input_and_the_students_line():
    def broken(x, offset=0, base=50000.0):
        return x @ torch.ones(3)                 # a shape bug
    passed, message = check.run_check("rope", types.SimpleNamespace(rope=broken))
    assert not passed and message.startswith("error: rope raised RuntimeError"), message
    assert "input:    x of shape (2, 3, 16, 64)" in message and "test_exercises.py" in message, message


def test_command_line_as_a_student_runs_it():
    run = lambda *args: subprocess.run([sys.executable, "-m", "exercises.check", *args], cwd=REPO_DIR,
                                       capture_output=True, text=True, timeout=120)
    solved = run("--all", "--solution")
    assert solved.returncode == 0, solved.stdout + solved.stderr
    assert solved.stdout.splitlines() == [f"correct: {n}" for n in NAMES] + ["7 of 7 exercises correct"]
    blank = run("rope")
    assert blank.returncode == 1 and blank.stdout.startswith("not done yet: TODO in exercises/rope.py"), blank.stdout
    typo = run("ropee")
    assert typo.returncode == 1 and typo.stderr.strip().startswith("error: there is no exercise 'ropee'"), typo.stderr
