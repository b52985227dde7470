"""exercises/: every worked solution passes its check, every blank stub fails it, and the checks catch
the subtle slips students make (each wrong variant below differs from a solution in one detail)."""
import collections
import hashlib
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import REPO_DIR

from exercises.checker import checks_01_tokenizer, rules
from exercises.checker import run as check
from exercises.solutions import (acc_norm, balance_loss, bpe_merge, bpe_trainer, fp8_quantize, gqa_attention,
                                 hellaswag_requests, model_forward, moe_forward, muon_update, newton_schulz_step,
                                 rms_cross_entropy, rope, router_top2, sampling, shard_loader, train_step,
                                 wsd_schedule)

NAMES = list(check.EXERCISES)
LIMIT = 20.0          # seconds per exercise in these tests (the command line's default is 60)


@pytest.mark.parametrize("name", NAMES)
def test_solution_passes(name):
    """In this process (fast); the command-line test below runs every solution in its own guarded process."""
    passed, message = check.run_check(name, check.load_exercise(name, solution=True))
    assert passed and message == f"correct: {name}", message


@pytest.mark.parametrize("name", NAMES)
def test_blank_stub_fails_with_its_todo(name):
    passed, message = check.run_check(name, check.load_exercise(name))
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


def router_swapped(logits):
    """Right numbers, outputs swapped: (top_e, top_w)."""
    top_w, top_e = router_top2.router_top2(logits)
    return top_e, top_w


def gqa_variant(h, c_attn_w, c_proj_w, n_head, n_kv_head, rope_base=50000.0, tile=False, mask_diagonal=1,
                norm_first=False, scale=True):
    """The solution with one switch flipped: tile the KV heads, mask from another diagonal, QK-norm before
    RoPE, or no 1/sqrt(hd)."""
    B, T, C = h.shape
    hd, kv = C // n_head, n_kv_head * (C // n_head)
    q, k, v = (h @ c_attn_w.T).split([C, kv, kv], dim=-1)
    q, k, v = (t.view(B, T, -1, hd).transpose(1, 2) for t in (q, k, v))
    norm = lambda t: torch.nn.functional.layer_norm(t, (hd,), eps=1e-5)
    if norm_first:
        q, k = norm(q), norm(k)
    angle = torch.arange(T, dtype=torch.float32)[:, None] * rope_base ** (-torch.arange(0, hd, 2) / hd)
    cos, sin = torch.cat([angle, angle], -1).cos(), torch.cat([angle, angle], -1).sin()
    q, k = (t * cos + gqa_attention.rotate_half(t) * sin for t in (q, k))
    if not norm_first:
        q, k = norm(q), norm(k)
    g = n_head // n_kv_head
    k, v = ((t.repeat(1, g, 1, 1) if tile else t.repeat_interleave(g, dim=1)) for t in (k, v))
    scores = q @ k.mT / (math.sqrt(hd) if scale else 1.0)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(mask_diagonal), float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C) @ c_proj_w.T


def gqa_tiled_kv(*args):
    return gqa_variant(*args, tile=True)                # head i reads KV head i % n_kv instead of i // g


def gqa_sees_next_token(*args):
    return gqa_variant(*args, mask_diagonal=2)          # the mask lets position t read t + 1


def gqa_norm_before_rope(*args):
    return gqa_variant(*args, norm_first=True)


def gqa_unscaled(*args):
    return gqa_variant(*args, scale=False)


def moe_variant(x, router_w, w_v, c_proj, k=2, swap_gate=False, renormalise=True, balance_from_top=False):
    B, T, C = x.shape
    E = w_v.shape[0]
    xs = x.reshape(B * T, C)
    probs = torch.softmax(xs @ router_w.T, -1)
    top_w, top_e = probs.topk(k, -1)
    if renormalise:
        top_w = top_w / top_w.sum(-1, keepdim=True)
    y = torch.zeros_like(xs)
    for e in range(E):
        token, slot = torch.nonzero(top_e == e, as_tuple=True)
        gate, value = (xs[token] @ w_v[e].T).chunk(2, -1)
        if swap_gate:
            gate, value = value, gate
        y.index_add_(0, token, ((torch.nn.functional.silu(gate) * value) @ c_proj[e].T) * top_w[token, slot, None])
    used = torch.zeros_like(probs).scatter(-1, top_e, top_w) if balance_from_top else probs
    return y.view(B, T, C), E * (used.mean(0) ** 2).sum()


def moe_gate_value_swapped(*args):
    return moe_variant(*args, swap_gate=True)


def moe_not_renormalised(*args):
    return moe_variant(*args, renormalise=False)


def moe_balance_from_top_k(*args):
    return moe_variant(*args, balance_from_top=True)


def moe_swapped_outputs(*args):
    y, balance = moe_forward.moe_forward(*args)
    return balance, y


def muon_variant(p, grad, buf, lr, momentum=0.95, weight_decay=0.1, nesterov=True, ns_steps=5, plain_sum=False,
                 no_max=False, decay_scaled=False, one_norm=False):
    buf = momentum * buf + (grad if plain_sum else (1 - momentum) * grad)
    u = (1 - momentum) * grad + momentum * buf if nesterov else buf
    O = muon_update.orthogonalise(u, ns_steps).float()
    if one_norm:                                        # one Frobenius norm for the whole stack
        a, b, c = muon_update.NS_COEFFICIENTS
        X = (u / u.norm()).bfloat16()
        for _ in range(ns_steps):
            A = X @ X.mT
            X = a * X + (b * A + c * (A @ A)) @ X
        O = X.float()
    A, B = p.shape[-2], p.shape[-1]
    scaled = lr * math.sqrt(A / B if no_max else max(1.0, A / B))
    return p * (1 - (scaled if decay_scaled else lr) * weight_decay) - scaled * O, buf


def muon_buffer_plain_sum(*args):
    return muon_variant(*args, plain_sum=True)          # torch's docstring: buf ← μ·buf + g


def muon_no_max_in_lr(*args):
    return muon_variant(*args, no_max=True)             # lr·sqrt(A/B): wide matrices get a smaller step


def muon_decay_with_scaled_lr(*args):
    return muon_variant(*args, decay_scaled=True)


def muon_one_norm_for_the_stack(*args):
    return muon_variant(*args, one_norm=True)


def muon_without_nesterov(p, grad, buf, lr, momentum=0.95, weight_decay=0.1, nesterov=True, ns_steps=5):
    return muon_update.muon_update(p, grad, buf, lr, momentum, weight_decay, False, ns_steps)


def train_variant(model, optimizers, batches, grad_clip, divide=True, clipped_norm=False, zero=True,
                  last_loss=False):
    batches = list(batches)
    losses = []
    for x, y in batches:
        _, loss = model(x, y)
        (loss / len(batches) if divide else loss).backward()
        losses.append(loss.detach())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    factor = torch.clamp(grad_clip / (norm + 1e-6), max=1.0)
    for g in grads:
        g.mul_(factor)
    for opt in optimizers:
        opt.step()
        if zero:
            opt.zero_grad()
    return (losses[-1] if last_loss else torch.stack(losses).mean()), (norm * factor if clipped_norm else norm)


def train_summed_gradients(*args):
    return train_variant(*args, divide=False)


def train_norm_after_clipping(*args):
    return train_variant(*args, clipped_norm=True)


def train_never_zeroed(*args):
    return train_variant(*args, zero=False)


def train_last_loss(*args):
    return train_variant(*args, last_loss=True)


def hellaswag_no_whitespace_move(tokenizer, examples, mode, nanogpt, eot):
    """lm-eval without moving the context's trailing whitespace to the continuation."""
    if mode != "lm-eval":
        return hellaswag_requests.hellaswag_requests(tokenizer, examples, mode, nanogpt, eot)
    pairs = [p for ex in examples for p in hellaswag_requests.pairs_of(ex, mode)]
    contexts = hellaswag_requests.encode(tokenizer, [c for c, _ in pairs])
    wholes = hellaswag_requests.encode(tokenizer, [c + k for c, k in pairs])
    requests = [(c or [eot], w[len(c):]) for c, w in zip(contexts, wholes)]
    if nanogpt:
        requests += hellaswag_requests.encode_pairs(
            tokenizer, [p for ex in examples for p in hellaswag_requests.pairs_of(ex, "nanogpt")], "nanogpt", eot)
    return requests


def hellaswag_empty_context_kept(tokenizer, examples, mode, nanogpt, eot):
    return [([] if ctx == [eot] else ctx, cont)
            for ctx, cont in hellaswag_requests.hellaswag_requests(tokenizer, examples, mode, nanogpt, eot)]


def hellaswag_nanogpt_interleaved(tokenizer, examples, mode, nanogpt, eot):
    requests = []
    for ex in examples:
        requests += hellaswag_requests.hellaswag_requests(tokenizer, [ex], mode, nanogpt, eot)
    return requests


def hellaswag_nanogpt_preprocessed(tokenizer, examples, mode, nanogpt, eot):
    """nanoGPT-style requests built from the preprocessed context and choices instead of the raw strings."""
    if mode == "nanogpt":
        examples = [{**ex, "raw_ctx": ex["context"], "raw_endings": ex["choices"]} for ex in examples]
    return hellaswag_requests.hellaswag_requests(tokenizer, examples, mode, nanogpt, eot)


def bpe_variant(words, vocab, vocab_size, min_frequency=2, alphabetical=False, weighted=True, first_only=False,
                min_count=True):
    """The bpe_trainer solution with one switch flipped."""
    vocab, counts, merges = dict(vocab), collections.Counter(tuple(w) for w in words), []
    while len(vocab) < vocab_size:
        pairs = collections.Counter()
        for word, n in counts.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += n if weighted else 1
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p) if alphabetical else (-pairs[p], vocab[p[0]], vocab[p[1]]))
        if min_count and pairs[best] < min_frequency:
            break
        merges.append(best)
        vocab.setdefault(best[0] + best[1], len(vocab))
        merged = collections.Counter()
        for word, n in counts.items():
            merged[checks_01_tokenizer.first_only_merge(word, best) if first_only else bpe_trainer.merge_pair(word, best)] += n
        counts = merged
    return merges


def bpe_ties_alphabetical(*args):
    return bpe_variant(*args, alphabetical=True)


def bpe_pairs_not_weighted(*args):
    return bpe_variant(*args, weighted=False)          # each pair once per occurrence, whatever its word's count


def bpe_first_occurrence_only(*args):
    return bpe_variant(*args, first_only=True)


def bpe_no_min_frequency(*args):
    return bpe_variant(*args, min_count=False)


class LoaderYIsX(shard_loader.ShardLoader):
    def get_batch(self, epoch, batch):
        x, _ = super().get_batch(epoch, batch)
        return x, x.clone()


class LoaderYBefore(shard_loader.ShardLoader):
    """y[b, t] = the token BEFORE x[b, t] (shifted the wrong way; the first one repeated)."""
    def get_batch(self, epoch, batch):
        x, _ = super().get_batch(epoch, batch)
        return x, torch.cat([x[:, :1], x[:, :-1]], dim=1)


class LoaderStrideTPlus1(shard_loader.ShardLoader):
    """Windows at multiples of T + 1: no token shared between windows."""
    def epoch_order(self, epoch):
        order = super().epoch_order(epoch)
        return np.stack([order[:, 0], order[:, 1] // self.T * (self.T + 1)], axis=1)


class LoaderTooManyWindows(shard_loader.ShardLoader):
    """n // T windows per shard: the last one has no (T+1)-th token when T divides n."""
    def __init__(self, shards, B, T, seed=0):
        super().__init__(shards, B, T, seed)
        self.windows_per_shard = [len(s) // T for s in shards]
        self.batches_per_epoch = sum(self.windows_per_shard) // B


class LoaderStateSkipsOne(shard_loader.ShardLoader):
    def state_dict(self):
        return {"epoch": self.epoch, "batch": self.batch + 1}


class LoaderResumeRestartsEpoch(shard_loader.ShardLoader):
    def load_state_dict(self, state):
        self.epoch, self.batch = state["epoch"], 0


class LoaderStateBeforeMoving(shard_loader.ShardLoader):
    """Counts a batch as used only when the NEXT one is asked for: the state names the batch just seen."""
    def __iter__(self):
        while True:
            while self.batch < self.batches_per_epoch:
                yield self.get_batch(self.epoch, self.batch)
                self.batch += 1
            self.epoch, self.batch = self.epoch + 1, 0


def fp8_scale_not_power_of_two(x):
    scale = x.abs().amax(-1).float().clamp_min(1e-30) / 448
    return (x.float() / scale[..., None]).to(torch.float8_e4m3fn), scale


def fp8_scale_rounded_down(x):
    scale = torch.exp2(torch.floor(torch.log2(x.abs().amax(-1).float().clamp_min(1e-30) / 448)))
    return (x.float() / scale[..., None]).clamp(-448, 448).to(torch.float8_e4m3fn), scale


def fp8_one_scale_per_tensor(x):
    amax = x.abs().amax().float().clamp_min(1e-30).expand(x.shape[:-1])
    scale = torch.exp2(torch.ceil(torch.log2(amax / 448)))
    return (x.float() / scale[..., None]).to(torch.float8_e4m3fn), scale


def fp8_e5m2(x):
    q, scale = fp8_quantize.quantize_rows(x)
    return q.float().to(torch.float8_e5m2), scale


def fp8_matmul_without_scales(x, w):
    return fp8_quantize.quantize_rows(x)[0].float() @ fp8_quantize.quantize_rows(w)[0].float().T


def fp8_matmul_not_quantized(x, w):
    return x.float() @ w.float().T


def gqa_no_transpose(h, c_attn_w, c_proj_w, n_head, n_kv_head, rope_base=50000.0):
    """The heads (B, nh, T, hd) reshaped straight to (B, T, C): the mask was right, the merge mixes positions."""
    B, T, C = h.shape
    y = gqa_variant(h, c_attn_w, c_proj_w, n_head, n_kv_head, rope_base) @ torch.linalg.inv(c_proj_w.T)
    heads = y.view(B, T, n_head, C // n_head).transpose(1, 2)          # (B, nh, T, hd), as before the merge
    return heads.reshape(B, T, C) @ c_proj_w.T


def bpe_min_frequency_inclusive(words, vocab, vocab_size, min_frequency=2):
    """Stops at a pair seen exactly min_frequency times (<= instead of <)."""
    return bpe_variant(words, vocab, vocab_size, min_frequency + 1)


def rms_subtracts_mean(x, weight, eps=1e-6):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), weight, None, eps)


def rms_eps_outside(x, weight, eps=1e-6):
    return x / ((x * x).mean(-1, keepdim=True).sqrt() + eps) * weight


def lse_naive(x):
    return x.exp().sum(-1).log()


def ce_variant(logits, targets, ignore_index=-1, total=False, all_tokens=False):
    V = logits.shape[-1]
    flat, tgt = logits.reshape(-1, V), targets.reshape(-1)
    keep = tgt != ignore_index
    losses = rms_cross_entropy.log_sum_exp(flat[keep]) - flat[keep].gather(1, tgt[keep][:, None]).squeeze(1)
    return losses.sum() if total else losses.sum() / (tgt.numel() if all_tokens else keep.sum())


def ce_sum(*args):
    return ce_variant(*args, total=True)


def ce_divides_by_all(*args):
    return ce_variant(*args, all_tokens=True)


def sample_global_rng(logits, temperature, top_k, gen):
    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return int(torch.multinomial(torch.softmax(logits, -1), 1))            # the global generator


def sample_exactly_k(logits, temperature, top_k, gen):
    """Keeps exactly k logits by index: drops some of those equal to the k-th largest."""
    if temperature == 0 or top_k is None:
        return sampling.sample_next(logits, temperature, top_k, gen)
    logits = logits / temperature
    index = torch.topk(logits, min(top_k, logits.numel())).indices
    masked = torch.full_like(logits, float("-inf")).scatter(0, index, logits[index])
    return int(torch.multinomial(torch.softmax(masked, -1), 1, generator=gen))


def generate_variant(forward, prompt, max_new_tokens, temperature, top_k, seed, block_size, restart=True,
                     cache=True, reseed=False):
    gen = torch.Generator().manual_seed(seed)
    ids, cached, feed = list(prompt), None, list(prompt)[-block_size:]
    for _ in range(max_new_tokens):
        if cached is None or (restart and cached >= block_size) or not cache:
            cached, feed = 0, ids[-block_size:]
        logits = forward(feed, cached)
        cached += len(feed)
        if reseed:
            gen = torch.Generator().manual_seed(seed)
        ids.append(sampling.sample_next(logits, temperature, top_k, gen))
        feed = [ids[-1]]
    return ids


def generate_never_restarts(*args):
    return generate_variant(*args, restart=False)


def generate_without_cache(*args):
    return generate_variant(*args, cache=False)                  # re-reads the window every step


def generate_reseeded_every_step(*args):
    return generate_variant(*args, reseed=True)


def forward_variant(idx, wte, blocks, ln_f_weight, targets=None, training=False, balance_coef=0.01,
                    final_norm=True, balance="mean", post_norm=False):
    norm = model_forward.rmsnorm
    x, balances = wte[idx], []
    for block in blocks:
        if post_norm:
            x = norm(x + block["attn"](x), block["ln1"])
            y, b = block["moe"](x)
            x = norm(x + y, block["ln2"])
        else:
            x = x + block["attn"](norm(x, block["ln1"]))
            y, b = block["moe"](norm(x, block["ln2"]))
            x = x + y
        balances.append(b)
    logits = (norm(x, ln_f_weight) if final_norm else x) @ wte.T
    if targets is None:
        return logits, None
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
    if training and balance:
        loss = loss + balance_coef * (torch.stack(balances).mean() if balance == "mean" else torch.stack(balances).sum())
    return logits, loss


def forward_no_final_norm(*args):
    return forward_variant(*args, final_norm=False)


def forward_no_balance(*args):
    return forward_variant(*args, balance=None)


def forward_balance_summed(*args):
    return forward_variant(*args, balance="sum")


def forward_post_norm(*args):
    return forward_variant(*args, post_norm=True)


def rope_float64(x, offset=0, base=50000.0):
    return rope.rope(x, offset, base).double()


def rope_float16(x, offset=0, base=50000.0):
    return rope.rope(x, offset, base).half()


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
    ("bpe_trainer", bpe_trainer, dict(train_bpe=bpe_ties_alphabetical), "not the alphabetically first pair"),
    ("bpe_trainer", bpe_trainer, dict(train_bpe=bpe_pairs_not_weighted), "TIMES how often its word occurs"),
    ("bpe_trainer", bpe_trainer, dict(train_bpe=bpe_first_occurrence_only), "merging only the FIRST occurrence"),
    ("bpe_trainer", bpe_trainer, dict(train_bpe=bpe_no_min_frequency), "below min_frequency"),
    ("shard_loader", shard_loader, dict(ShardLoader=LoaderYIsX), "y is x itself"),
    ("shard_loader", shard_loader, dict(ShardLoader=LoaderYBefore), "y is shifted the wrong way"),
    ("shard_loader", shard_loader, dict(ShardLoader=LoaderStrideTPlus1), "share one token at their edges"),
    ("shard_loader", shard_loader, dict(ShardLoader=LoaderTooManyWindows), "(n − 1) // T windows"),
    ("shard_loader", shard_loader, dict(ShardLoader=LoaderStateSkipsOne), "the batch AFTER the next one"),
    ("shard_loader", shard_loader, dict(ShardLoader=LoaderResumeRestartsEpoch), "resuming restarted the epoch"),
    ("shard_loader", shard_loader, dict(ShardLoader=LoaderStateBeforeMoving), "the batch the run had ALREADY seen"),
    ("router_top2", router_top2, dict(router_top2=router_swapped), "the outputs are in the wrong order"),
    ("fp8_quantize", fp8_quantize, dict(quantize_rows=fp8_scale_not_power_of_two), "rounded UP to a power of two"),
    ("fp8_quantize", fp8_quantize, dict(quantize_rows=fp8_scale_rounded_down), "not rounded down"),
    ("fp8_quantize", fp8_quantize, dict(quantize_rows=fp8_one_scale_per_tensor), "one scale per ROW"),
    ("fp8_quantize", fp8_quantize, dict(quantize_rows=fp8_e5m2), "torch.float8_e4m3fn"),
    ("fp8_quantize", fp8_quantize, dict(fp8_matmul=fp8_matmul_without_scales), "multiply row i by x_scale[i]"),
    ("fp8_quantize", fp8_quantize, dict(fp8_matmul=fp8_matmul_not_quantized), "quantize BOTH x and w"),
    ("gqa_attention", gqa_attention, dict(gqa_attention=gqa_tiled_kv), "query head i reads KV head i // (n_head"),
    ("gqa_attention", gqa_attention, dict(gqa_attention=gqa_sees_next_token), "the future leaks into the past"),
    ("gqa_attention", gqa_attention, dict(gqa_attention=gqa_norm_before_rope), "AFTER RoPE"),
    ("gqa_attention", gqa_attention, dict(gqa_attention=gqa_unscaled), "1/sqrt(head_dim) scale"),
    ("moe_forward", moe_forward, dict(moe_forward=moe_gate_value_swapped), "gate = the FIRST ffn_dim rows"),
    ("moe_forward", moe_forward, dict(moe_forward=moe_not_renormalised), "a multiple of the right one"),
    ("moe_forward", moe_forward, dict(moe_forward=moe_balance_from_top_k), "not the top-k weights"),
    ("moe_forward", moe_forward, dict(moe_forward=moe_swapped_outputs), "the outputs are in the wrong order"),
    ("muon_update", muon_update, dict(muon_update=muon_buffer_plain_sum), "running AVERAGE"),
    ("muon_update", muon_update, dict(muon_update=muon_no_max_in_lr), "wide matrices get no boost"),
    ("muon_update", muon_update, dict(muon_update=muon_decay_with_scaled_lr), "the decay uses the RAW lr"),
    ("muon_update", muon_update, dict(muon_update=muon_one_norm_for_the_stack), "one Frobenius norm per slice"),
    ("muon_update", muon_update, dict(muon_update=muon_without_nesterov), "Nesterov update"),
    ("train_step", train_step, dict(train_step=train_summed_gradients), "Divide each micro-batch's loss"),
    ("train_step", train_step, dict(train_step=train_norm_after_clipping), "BEFORE clipping"),
    ("train_step", train_step, dict(train_step=train_never_zeroed), "previous step's gradients are still there"),
    ("train_step", train_step, dict(train_step=train_last_loss), "MEAN of the micro-batches' losses"),
    ("hellaswag_requests", hellaswag_requests, dict(hellaswag_requests=hellaswag_no_whitespace_move),
     "move the context's trailing whitespace"),
    ("hellaswag_requests", hellaswag_requests, dict(hellaswag_requests=hellaswag_empty_context_kept),
     "an empty context becomes [eot]"),
    ("hellaswag_requests", hellaswag_requests, dict(hellaswag_requests=hellaswag_nanogpt_interleaved),
     "right but in the wrong order"),
    ("hellaswag_requests", hellaswag_requests, dict(hellaswag_requests=hellaswag_nanogpt_preprocessed),
     "the RAW context"),
    ("gqa_attention", gqa_attention, dict(gqa_attention=gqa_no_transpose), "merged WITHOUT a transpose"),
    ("bpe_trainer", bpe_trainer, dict(train_bpe=bpe_min_frequency_inclusive), "not <="),
    ("rope", rope, dict(rope=rope_float64), "out has dtype float64, expected float32: a dtype error"),
    ("rope", rope, dict(rope=rope_float16), "out has dtype float16, expected float32: a dtype error"),
    ("rms_cross_entropy", rms_cross_entropy, dict(rmsnorm=rms_subtracts_mean), "does not subtract the mean"),
    ("rms_cross_entropy", rms_cross_entropy, dict(rmsnorm=rms_eps_outside), "eps goes INSIDE the square root"),
    ("rms_cross_entropy", rms_cross_entropy, dict(log_sum_exp=lse_naive), "subtract each row's max"),
    ("rms_cross_entropy", rms_cross_entropy, dict(cross_entropy_loss=ce_sum), "that is the SUM over the tokens"),
    ("rms_cross_entropy", rms_cross_entropy, dict(cross_entropy_loss=ce_divides_by_all),
     "count neither in the sum nor"),
    ("sampling", sampling, dict(sample_next=sample_global_rng), "not the global one"),
    ("sampling", sampling, dict(sample_next=sample_exactly_k), "keep them ALL"),
    ("sampling", sampling, dict(generate=generate_never_restarts), "beyond block_size"),
    ("sampling", sampling, dict(generate=generate_without_cache), "feed only the token sampled last"),
    ("sampling", sampling, dict(generate=generate_reseeded_every_step), "made once, used for every draw"),
    ("model_forward", model_forward, dict(llm_forward=forward_no_final_norm), "apply the final RMSNorm"),
    ("model_forward", model_forward, dict(llm_forward=forward_no_balance), "in training mode add balance_coef"),
    ("model_forward", model_forward, dict(llm_forward=forward_balance_summed), "not their sum"),
    ("model_forward", model_forward, dict(llm_forward=forward_post_norm), "pre-norm with residuals"),
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


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "exercises.check", *args], cwd=REPO_DIR, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_command_line_as_a_student_runs_it():
    """Every solution and every blank stub, each in its own guarded process, as `--all` runs them."""
    solved = run_cli("--all", "--solution", "--seed", "7", "--time-limit", str(LIMIT))
    assert solved.returncode == 0, solved.stdout + solved.stderr
    assert solved.stdout.splitlines() == (["seed 7: every exercise adds a case drawn from it (--seed 7 replays this run)"]
                                          + [f"correct: {n}" for n in NAMES]
                                          + [f"{len(NAMES)} of {len(NAMES)} exercises correct"])
    blank = run_cli("--all", "--time-limit", str(LIMIT))
    lines = blank.stdout.splitlines()
    assert blank.returncode == 1 and lines[-1] == f"0 of {len(NAMES)} exercises correct", blank.stdout + blank.stderr
    assert lines[0].startswith("seed ") and "replays this run" in lines[0], lines[0]
    assert lines[1:-1] == [line for line in lines[1:-1] if line.startswith("not done yet: TODO in exercises/")]
    assert len(lines) == len(NAMES) + 2, lines
    typo = run_cli("ropee")
    assert typo.returncode == 1 and typo.stderr.strip().startswith("error: there is no exercise 'ropee'"), typo.stderr
    strict = run_cli("rope", "--strict", "--solution")
    assert strict.returncode == 1 and "--strict grades the students' files" in strict.stderr, strict.stderr


# --- pass-through stubs: a file that hands the work to the lesson (or the solution) is refused ----------

PASS_THROUGH = {
    "fp8_quantize": ("import importlib\n\nquantize_rows = importlib.import_module('02_model').quantize_rows\n\n"
                     "def fp8_matmul(x, w):\n    return x @ w.T\n", "names '02_model' in code"),
    "gqa_attention": ("import importlib\nimport torch\n\n"
                      "def gqa_attention(h, c_attn_w, c_proj_w, n_head, n_kv_head, rope_base=50000.0):\n"
                      "    model_lib = importlib.import_module('02_model')\n    return model_lib.apply_rope(h, 1, 0)\n",
                      "names '02_model' in code"),
    "moe_forward": ("def moe_forward(x, router_w, w_v, c_proj, k=2):\n    model_lib = __import__('02_model')\n"
                    "    return model_lib.MoE\n", "names '02_model' in code"),
    "muon_update": ("import runpy\nLESSON = runpy.run_path('03_muon.py')\n\n"
                    "def muon_update(p, grad, buf, lr, momentum=0.95, weight_decay=0.1, nesterov=True, ns_steps=5):\n"
                    "    return LESSON['muon_update_'](p, grad, buf, {})\n", "names '03_muon.py' in code"),
    "train_step": ("from exercises.solutions.train_step import train_step\n",
                   "imports exercises.solutions.train_step"),
    "hellaswag_requests": ("import sys\n\ndef hellaswag_requests(tokenizer, examples, mode, nanogpt, eot):\n"
                           "    return sys.modules['06_eval'].hellaswag_requests(tokenizer, examples, mode, nanogpt)\n",
                           "names '06_eval' in code"),
    "bpe_trainer": ("import importlib\n\ndef train_bpe(words, vocab, vocab_size, min_frequency=2):\n"
                    "    lesson = importlib.import_module('01_tokenizer')\n"
                    "    return lesson.train_bpe_scratch([''.join(words)], vocab_size, min_frequency)[0]\n",
                    "names '01_tokenizer' in code"),
    "shard_loader": ("from importlib import import_module\n\nShardLoader = import_module('04_data').ShardLoader\n",
                     "names '04_data' in code"),
    "router_top2": ('"""Docstrings may name 02_model.py freely; code may not."""\n'
                    "import importlib\n\ndef router_top2(logits):\n"
                    "    _, w, e = importlib.import_module('02_model').route(logits, 2)\n    return w, e\n",
                    "names '02_model' in code"),
}


@pytest.mark.parametrize("name", list(PASS_THROUGH))
def test_a_pass_through_stub_is_refused(name, tmp_path):
    source, why = PASS_THROUGH[name]
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    module = types.ModuleType(name)
    module.__file__ = str(path)          # the check reads the file; nothing in it is run
    passed, message = check.run_check(name, module)
    assert not passed and message.startswith(f"refused: {name} — {name}.py line"), message
    assert why in message and "compare" in message, message


def test_a_real_pass_through_would_otherwise_pass():
    """Why the refusal exists: router_top2 handed to 02's route passes every value check."""
    model_lib = sys.modules.get("02_model") or __import__("importlib").import_module("02_model")
    def router_top2(logits):
        _, w, e = model_lib.route(logits, 2)
        return w, e
    check.CHECKS["router_top2"](types.SimpleNamespace(router_top2=router_top2))   # no Wrong raised


@pytest.mark.parametrize("name, call_text", [("gqa_attention", "F.scaled_dot_product_attention(q, k, v)"),
                                             ("bpe_trainer", "trainers.BpeTrainer(vocab_size=300)"),
                                             ("train_step", "torch.nn.utils.clip_grad_norm_(ps, 1.0)")])
def test_the_library_call_that_does_the_exercise_is_refused(name, call_text):
    fn = types.FunctionType(compile(f"def f():\n    return {call_text}\n", f"<{name}>", "exec").co_consts[0], {})
    source = f"def f():\n    return {call_text}\n"
    module = types.SimpleNamespace(f=fn)
    check_sources = rules.student_sources
    try:
        rules.student_sources = lambda m: [("f", source)]
        passed, message = check.run_check(name, module)
    finally:
        rules.student_sources = check_sources
    assert not passed and message.startswith(f"refused: {name}") and "this exercise is to" in message, message


# --- the student's own process: cheats that get past any reading of the source, and ways out ------------
# Each stub below is a file run the way `python -m exercises.check NAME` runs it: in its own process, with
# the lessons and the solutions out of reach. None of them names a lesson in a way the `ast` check sees.

ROUTER_VIA = "def router_top2(logits):\n    _, w, e = {}.route(logits, 2)\n    return w, e\n"
CHEATS = {
    "import_module of a computed name": ("router_top2", "import importlib\n" + ROUTER_VIA.format(
        'importlib.import_module("0" + "2_model")'), "refused: router_top2 — your code imports 02_model"),
    "__import__ of a computed name": ("router_top2", ROUTER_VIA.format('__import__("02_" + "model")'),
                                      "refused: router_top2 — your code imports 02_model"),
    "exec of the lesson's file": ("router_top2", "from pathlib import Path\nimport types\nLESSON = types.ModuleType('m')\n"
                                  "def router_top2(logits):\n"
                                  f"    path = Path({str(REPO_DIR)!r}) / ('0' + '2_model.py')\n"
                                  "    exec(compile(path.read_text(), 'x.py', 'exec'), LESSON.__dict__)\n"
                                  "    _, w, e = LESSON.route(logits, 2)\n    return w, e\n",
                                  "refused: router_top2 — your code opens "),
    "exec of a solution file": ("router_top2", "import runpy, pathlib\n\ndef router_top2(logits):\n"
                                f"    folder = pathlib.Path({str(REPO_DIR)!r}) / 'exercises' / ('sol' + 'utions')\n"
                                "    return runpy.run_path(str(folder / 'router_top2.py'))['router_top2'](logits)\n",
                                "refused: router_top2 — your code opens "),
    "a lookup in sys.modules at call time": ("router_top2", "import sys\n" + ROUTER_VIA.format(
        'sys.modules["0" + "2_model"]'), "error: router_top2 raised KeyError: '02_model'"),
    "import_module of the solutions": ("router_top2", "import importlib\n\ndef router_top2(logits):\n"
                                       "    return importlib.import_module('exercises.sol' + 'utions.router_top2')"
                                       ".router_top2(logits)\n",
                                       "refused: router_top2 — your code imports exercises.solutions"),
    "import_module of the lesson's fast twin": (
        "fp8_quantize", "import importlib\n\nFP8 = importlib.import_module('fa' + 'st.fp8')\n"
        "quantize_rows = FP8.quantize_rows\n\ndef fp8_matmul(x, w):\n    return x @ w.T\n",
        "refused: fp8_quantize — your code imports fast"),
    "exec of the fast twin's file": ("fp8_quantize", "import runpy, pathlib\n\ndef quantize_rows(x):\n"
                                     f"    path = pathlib.Path({str(REPO_DIR)!r}) / ('fa' + 'st') / 'fp8.py'\n"
                                     "    return runpy.run_path(str(path))['quantize_rows'](x)\n\n"
                                     "def fp8_matmul(x, w):\n    return x @ w.T\n",
                                     "refused: fp8_quantize — your code opens "),
    "another Python process": ("router_top2", "import subprocess, sys\n\ndef router_top2(logits):\n"
                               "    subprocess.run([sys.executable, '-c', 'print(1)'])\n",
                               "refused: router_top2 — your code starts another process"),
    "getattr of the forbidden library call": (
        "gqa_attention", "import torch.nn.functional as F\n\n"
        "def gqa_attention(h, c_attn_w, c_proj_w, n_head, n_kv_head, rope_base=50000.0):\n"
        "    attend = getattr(F, 'scaled_dot_' + 'product_attention')\n"
        "    q = h.view(h.shape[0], h.shape[1], n_head, -1).transpose(1, 2)\n"
        "    return attend(q, q, q, is_causal=True).transpose(1, 2).reshape(h.shape) @ c_proj_w.T\n",
        "refused: gqa_attention — your code calls scaled_dot_product_attention"),
    "the forbidden call caught and hidden": (
        "gqa_attention", "import torch, torch.nn.functional as F\n\n"
        "def gqa_attention(h, c_attn_w, c_proj_w, n_head, n_kv_head, rope_base=50000.0):\n"
        "    try:\n        getattr(F, 'scaled_dot_' + 'product_attention')(h, h, h)\n"
        "    except Exception:\n        pass\n    return torch.zeros_like(h)\n",
        "refused: gqa_attention — your code calls scaled_dot_product_attention"),
    "the refusal caught and its record cleared": (
        "router_top2", "import importlib, sys\n\ndef router_top2(logits):\n    try:\n"
        "        lesson = importlib.import_module('0' + '2_model')\n    except Exception:\n"
        "        sys.modules['exercises.checker.student'].VIOLATIONS.clear()\n    return logits.topk(2)\n",
        "refused: router_top2 — your code imports 02_model"),
}


@pytest.mark.parametrize("cheat", list(CHEATS))
def test_a_cheat_at_run_time_is_refused(cheat, tmp_path):
    name, source, expected = CHEATS[cheat]
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    passed, message = check.run_check(name, path, time_limit=LIMIT)
    assert not passed and message.startswith(expected), message


def test_replayed_outputs_fail_on_the_fresh_case(tmp_path):
    """A file that looks up recorded outputs (all the inputs of one run) passes that run and no other."""
    recorded = {}
    def recording(x, offset=0, base=50000.0):
        out = rope.rope(x, offset, base)
        recorded[(x.numpy().tobytes(), offset, base)] = out
        return out
    assert check.run_check("rope", types.SimpleNamespace(rope=recording), seed=11)[0]
    torch.save(recorded, tmp_path / "table.pt")
    path = tmp_path / "rope.py"
    path.write_text("import torch\n\n"      # by its full path: the file runs as a copy, in a folder of its own
                    f"TABLE = torch.load({str(tmp_path / 'table.pt')!r})\n\n"
                    "def rope(x, offset=0, base=50000.0):\n"
                    "    return TABLE.get((x.numpy().tobytes(), offset, base), torch.zeros_like(x))\n")
    assert len(recorded) == 6
    assert check.run_check("rope", path, seed=11, time_limit=LIMIT) == (True, "correct: rope")
    passed, message = check.run_check("rope", path, seed=12, time_limit=LIMIT)
    assert not passed and message.startswith("wrong: rope") and "fresh seed 12" in message, message


WAYS_OUT = {
    "while True": ("def rope(x, offset=0, base=50000.0):\n    while True:\n        pass\n",
                   "error: rope took longer than 3 s"),
    "exit() in the function": ("def rope(x, offset=0, base=50000.0):\n    exit()\n", "error: rope called exit()"),
    "SystemExit at import": ("raise SystemExit(3)\n", "error: rope called exit() (SystemExit 3)"),
    "os._exit": ("import os\n\ndef rope(x, offset=0, base=50000.0):\n    os._exit(0)\n",
                 "error: rope ended its own process"),
    "a syntax error": ("def rope(x:\n", "error: "),
}


@pytest.mark.parametrize("way", list(WAYS_OUT))
def test_a_way_out_is_one_clear_line(way, tmp_path):
    source, expected = WAYS_OUT[way]
    path = tmp_path / "rope.py"
    path.write_text(source)
    start = __import__("time").monotonic()
    passed, message = check.run_check("rope", path, time_limit=3.0)
    assert not passed and message.startswith(expected), message
    assert __import__("time").monotonic() - start < 30
    if way == "while True":
        assert message.count("\n") == 0, message


def test_all_goes_on_after_an_exit_and_says_how_many_are_correct(tmp_path, monkeypatch):
    """exit() in one stub: --all still checks the rest and ends with 'N of M exercises correct', status 1."""
    stub = tmp_path / "rope.py"
    stub.write_text("exit()\n")
    real = check.exercise_path
    monkeypatch.setattr(check, "exercise_path", lambda name, solution=False: stub if name == "rope" else real(name, True))
    monkeypatch.setattr(check, "EXERCISES", {n: check.EXERCISES[n] for n in ("rope", "router_top2", "acc_norm")})
    lines = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    assert check.main(["--all", "--time-limit", str(LIMIT)]) == 1
    assert lines[1].startswith("error: rope called exit()") and lines[2:] == [
        "correct: router_top2", "correct: acc_norm", "2 of 3 exercises correct"], lines


def test_what_the_students_process_sends_back_is_never_run(tmp_path):
    """An object whose unpickling would import the lesson stays in the student's process: the check sees a handle."""
    path = tmp_path / "router_top2.py"
    path.write_text("class Sneaky:\n    def __reduce__(self):\n        return (__import__, ('0' + '2_model',))\n\n"
                    "def router_top2(logits):\n    return Sneaky(), Sneaky()\n")
    passed, message = check.run_check("router_top2", path, time_limit=LIMIT)
    assert not passed and message.startswith("wrong: router_top2") and "should be a float tensor" in message, message


# --- what grades the student: out of its reach by any name, unchanged after every run (issue 32) --------
# Each test runs the real command (`python -m exercises.check acc_norm`) on a student's file in a copy of the
# repo's code, so that a cheat that got through could not touch this repo.

def repo_copy(tmp_path):
    """The lessons, house/, fast/ and exercises/ (checker and solutions included) copied into tmp_path/repo."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for lesson_file in REPO_DIR.glob("0[1-6]_*.py"):
        shutil.copy2(lesson_file, repo)
    for folder in ("house", "fast", "exercises"):
        shutil.copytree(REPO_DIR / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return repo


def check_in(repo, source: str, *args):
    """Write `source` as the student's exercises/acc_norm.py in `repo` and check it there, as a student does
    (its temporary folders, and what a refusal keeps, in tmp_path/tmp: never in this machine's /tmp)."""
    (repo / "exercises" / "acc_norm.py").write_text(source)
    (repo.parent / "tmp").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "exercises.check", "acc_norm", "--time-limit", str(LIMIT), *args],
                          cwd=repo, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TMPDIR": str(repo.parent / "tmp")})


def verdict_of(result) -> str:
    """The checker's verdict: the line after the seed line (stdout)."""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("seed ") and len(lines) >= 2, result.stdout + result.stderr
    return lines[1]


# 06's choose_endings taken out of the lesson's source (what a cheat does with the bytes it read): it passes
# wherever SOURCE came from, as any copy of the lesson would
FROM_THE_LESSON = '''
import ast
import numpy as np


def choose_from(source):
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "choose_endings")
    space = {"np": np}
    exec(compile(ast.Module([fn], []), "mine.py", "exec"), space)
    return space["choose_endings"]


CHOOSE = choose_from(SOURCE)


def acc_norm_choice(token_logprobs, endings):
    return CHOOSE(token_logprobs, endings)["pred_norm"]
'''
LESSON = "'0' + '6_eval.py'"      # the lesson's name, out of sight of the reading of the source (rules.py)
HARD_LINKS = {
    "made by the file": "import os\nos.link({repo!r} + '/' + {lesson}, 'ev.txt')\nSOURCE = open('ev.txt').read()\n",
    "made before the run": "SOURCE = open({link!r}).read()\n",
}


@pytest.mark.slow
@pytest.mark.parametrize("when", list(HARD_LINKS))
def test_a_hard_link_to_the_lesson_is_the_lesson(when, tmp_path):
    repo = repo_copy(tmp_path)
    plain_copy, link = tmp_path / "copy.txt", tmp_path / "link.txt"
    shutil.copy(repo / "06_eval.py", plain_copy)
    copied = check_in(repo, f"SOURCE = open({str(plain_copy)!r}).read()\n" + FROM_THE_LESSON)
    assert copied.returncode == 0 and verdict_of(copied) == "correct: acc_norm", copied.stdout + copied.stderr
    os.link(repo / "06_eval.py", link)
    cheat = HARD_LINKS[when].format(repo=str(repo), lesson=LESSON, link=str(link))
    result = check_in(repo, cheat + FROM_THE_LESSON)
    expected = ("refused: acc_norm — your code makes a hard link to " if when == "made by the file" else
                f"refused: acc_norm — your code opens {link}, which is 06_eval.py: ")
    assert result.returncode == 1 and verdict_of(result).startswith(expected), result.stdout + result.stderr
    assert "would compare it with itself" in verdict_of(result)


@pytest.mark.slow
def test_a_relative_path_from_a_folder_held_open_is_the_lesson(tmp_path):
    """os.open(name, dir_fd=fd) after chdir("/"): the `open` event does not say which folder it starts from."""
    repo = repo_copy(tmp_path)
    cheat = (f"import os\nfolder = os.open({str(repo)!r}, os.O_RDONLY)\nos.chdir('/')\n"
             f"fd = os.open({LESSON}, os.O_RDONLY, dir_fd=folder)\nSOURCE = os.read(fd, 10**7).decode()\n")
    result = check_in(repo, cheat + FROM_THE_LESSON)
    assert result.returncode == 1, result.stdout + result.stderr
    assert verdict_of(result).startswith("refused: acc_norm — your code opens 06_eval.py: the check compares")


RUN_CHECK_SAYS_CORRECT = repr("\ndef run_check(name, *args, **kwargs):\n    return True, 'correct: ' + name\n")
REWRITES = {   # a WRONG acc_norm that rewrites the checker at import so that the next run would say "correct"
    "open for append": ("with open(CHECKER, 'a') as f:\n    f.write(NEW)\n",
                        "your code writes {checker}: the lessons, the worked solutions, fast/, house/ and the checker"),
    "os.replace of a new file": ("open('new.py', 'w').write(open(CHECKER).read() + NEW)\n"
                                 "os.replace('new.py', CHECKER)\n",
                                 "your code replaces {checker}: "),
    "os.open with dir_fd": ("folder = os.open(os.path.dirname(CHECKER), os.O_RDONLY)\n"
                            "fd = os.open('run.py', os.O_WRONLY | os.O_APPEND, dir_fd=folder)\n"
                            "os.write(fd, NEW.encode())\n",
                            "your code writes run.py, which is exercises/checker/run.py: "),
    "ctypes, unseen by the audit hook": ("import ctypes\nlibc = ctypes.CDLL(None)\n"
                                         "fd = libc.open(CHECKER.encode(), os.O_WRONLY | os.O_APPEND)\n"
                                         "libc.write(fd, NEW.encode(), len(NEW.encode()))\nlibc.close(fd)\n",
                                         "exercises/checker/run.py was changed while your code ran: "),
}


@pytest.mark.slow
@pytest.mark.parametrize("how", list(REWRITES))
def test_rewriting_the_checker_at_import_is_refused_and_undone(how, tmp_path):
    repo = repo_copy(tmp_path)
    checker, student = repo / "exercises" / "checker" / "run.py", repo / "exercises" / "acc_norm.py"
    fingerprint = lambda: {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in repo.rglob("*")  # noqa: E731
                           if p.is_file() and p != student}
    before = fingerprint()
    code, expected = REWRITES[how]
    cheat = (f"import os\nCHECKER = {str(checker)!r}\nNEW = {RUN_CHECK_SAYS_CORRECT}\n" + code +
             "\n\ndef acc_norm_choice(token_logprobs, endings):\n    return 0\n")
    for run in range(2):                      # the second run of the same wrong file is as wrong as the first
        result = check_in(repo, cheat)
        said = verdict_of(result)
        assert result.returncode == 1 and said.startswith("refused: acc_norm — "), result.stdout + result.stderr
        assert expected.format(checker=checker) in said, said
        assert "correct: acc_norm" not in result.stdout
        assert fingerprint() == before        # the lessons, the solutions, fast/, house/ and the checker: as they were
    if how.startswith("ctypes"):
        assert said.endswith("; it was put back"), said


# --- what else writes in the repo while a check runs: an editor, `python 05_train.py`, the student saving ------
# The comparison after a run cannot tell who changed a file, so it counts only what could change a verdict
# (guarded.py) and destroys nothing: what it puts back, it first keeps outside the repo.

CORRECT = ("import numpy as np\n\n\ndef acc_norm_choice(token_logprobs, endings):\n"
           "    return int(np.argmax([float(np.sum(lp)) / len(e) for lp, e in zip(token_logprobs, endings)]))\n")


def check_while(repo, outside, source: str = CORRECT):
    """check_in, while `outside(repo)` — another program — writes in the repo: the student's code, once started,
    waits until the writer is done, so that every write falls inside the student's run."""
    started, done, failed = repo.parent / "started", repo.parent / "done", []
    wait = (f"import os as _os, time as _time\nopen({str(started)!r}, 'w').close()\n_END = _time.time() + 60\n"
            f"while not _os.path.exists({str(done)!r}) and _time.time() < _END:\n    _time.sleep(0.01)\n")

    def writer():
        deadline = time.monotonic() + 240
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            if started.exists():
                outside(repo)
        except BaseException as error:  # noqa: BLE001 — raised again below, in the test's own thread
            failed.append(error)
        finally:
            done.touch()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = check_in(repo, wait + source)
    finally:
        done.touch()
        thread.join()
    if failed:
        raise failed[0]
    assert started.exists(), result.stdout + result.stderr
    return result


def kept_at(result, change: str) -> Path:
    """Where the refusal says what was there is kept: its line `  CHANGE — kept at PATH`."""
    found = re.search(rf"^  {re.escape(change)} — kept at (\S+)$", result.stdout, re.MULTILINE)
    assert found, result.stdout + result.stderr
    return Path(found.group(1))


NOTHING_THAT_GRADES = {   # what other programs add (or remove) while a check runs, none of it read by the checker
    "out/run/latest.pt": b"a checkpoint: python 05_train.py in another terminal",
    "out/run/log.jsonl": b'{"step": 1}\n',
    "wandb/run-1/files/output.log": b"wandb's own folder",
    "train.log": b"a log",
    ".02_model.py.swp": b"vim's swap file of a lesson being edited",
    "02_model.py~": b"an editor's backup",
    "house/.cli.py.swp": b"vim's swap file in a graded folder",
    "notebooks/.ipynb_checkpoints/02_model-checkpoint.ipynb": b"{}",
    "exercises/notes.txt": b"the student's notes",
    "exercises/.ipynb_checkpoints/rope-checkpoint.py": b"x = 1\n",
}


@pytest.mark.slow
def test_what_another_program_adds_to_the_repo_is_left_alone(tmp_path):
    """out/ (checkpoints), wandb/, logs, swap and backup files, .ipynb_checkpoints/, added while a check runs —
    and an old run's folder removed meanwhile: none of them can change what the checker imports or grades, so
    they stay as the other program left them, and the verdict is the student's."""
    repo = repo_copy(tmp_path)
    (repo / "notebooks").mkdir()
    (repo / "notebooks" / "02_model.ipynb").write_text("{}")
    (repo / "runs" / "old").mkdir(parents=True)
    (repo / "runs" / "old" / "model.pt").write_bytes(b"an old run, removed by its owner during the check")

    def another_program(repo):
        for name, data in NOTHING_THAT_GRADES.items():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_bytes(data)
        shutil.rmtree(repo / "runs")

    result = check_while(repo, another_program)
    assert result.returncode == 0 and verdict_of(result) == "correct: acc_norm", result.stdout + result.stderr
    for name, data in NOTHING_THAT_GRADES.items():
        assert (repo / name).read_bytes() == data, name
    assert not (repo / "runs").exists()
    assert not list((tmp_path / "tmp").glob("linnet-check-kept-*"))       # nothing was moved away


@pytest.mark.slow
def test_the_students_files_saved_during_a_check_stay_as_saved(tmp_path):
    """The student saves exercises/acc_norm.py (the file being checked) and exercises/rope.py while the check
    runs (as during `--all`): neither is put back, the run is not refused, and it checked the bytes it copied."""
    repo = repo_copy(tmp_path)
    saved = {"acc_norm.py": "# saved during the check\ndef acc_norm_choice(token_logprobs, endings):\n    return 0\n",
             "rope.py": "# saved during the check\n"}

    def the_students_editor(repo):
        for name, text in saved.items():
            (repo / "exercises" / name).write_text(text)

    result = check_while(repo, the_students_editor)
    assert result.returncode == 0 and verdict_of(result) == "correct: acc_norm", result.stdout + result.stderr
    for name, text in saved.items():
        assert (repo / "exercises" / name).read_text() == text, name


EDITS = {   # how an editor saves a lesson: both leave 02_model.py with the edited bytes
    "in place": lambda path, data: path.write_bytes(data),
    "a new file renamed over it": lambda path, data: (path.with_name(".02_model.py.new").write_bytes(data),
                                                      os.replace(path.with_name(".02_model.py.new"), path)),
}


@pytest.mark.slow
@pytest.mark.parametrize("how", list(EDITS))
def test_a_lesson_edited_during_a_check_is_refused_and_the_edit_kept(how, tmp_path):
    """02_model.py saved by an editor while the check runs: the run is refused (the lesson it was graded by
    changed), the lesson is put back for the next run, and the edited bytes are at the path the message names,
    outside the repo."""
    repo = repo_copy(tmp_path)
    lesson = repo / "02_model.py"
    original = lesson.read_bytes()
    edited = original + b"\n# an edit saved during the check\n"
    result = check_while(repo, lambda repo: EDITS[how](lesson, edited))
    said = verdict_of(result)
    assert result.returncode == 1 and said.startswith("refused: acc_norm — 02_model.py was changed while your code "
                                                      "ran: "), result.stdout + result.stderr
    assert said.endswith("; it was put back"), said
    assert lesson.read_bytes() == original
    kept = kept_at(result, "changed 02_model.py")
    assert kept.read_bytes() == edited
    assert kept.is_relative_to(tmp_path / "tmp") and not kept.is_relative_to(repo)


LIBC_WRITES = ("import ctypes, os\nlibc = ctypes.CDLL(None)\nREPO = {repo!r}\n\n\n"
               "def make(name, data=None):\n"
               "    path = (REPO + '/' + name).encode()\n"
               "    if data is None:\n        return libc.mkdir(path, 0o755)\n"
               "    fd = libc.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n"
               "    libc.write(fd, data, len(data))\n    libc.close(fd)\n\n\n")
ADDED_BY_CTYPES = {   # what a file adds through ctypes (unseen by the audit hook) -> what the refusal lists
    "a module in the root": ("make('numpy.py', b'raise SystemExit')\n", ["added numpy.py"]),
    "a package in the root": ("make('pkg')\nmake('pkg/__init__.py', b'')\nmake('pkg/data.txt', b'x')\n",
                              ["added pkg"]),
    "a namespace package's module": ("make('ns')\nmake('ns/mod.py', b'')\n", ["added ns"]),
    "a .pyc in the root's __pycache__": ("make('__pycache__/x.cpython-312.pyc', b'junk')\n",
                                         ["added __pycache__/x.cpython-312.pyc"]),
    "a module in exercises/": ("make('exercises/helper.py', b'')\n", ["added exercises/helper.py"]),
    "docs/ made a package": ("make('docs/__init__.py', b'')\n", ["added docs/__init__.py"]),
    "a module in house/": ("make('house/evil.py', b'')\n", ["added house/evil.py"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("what", list(ADDED_BY_CTYPES))
def test_what_could_be_imported_next_time_is_refused_moved_away_and_kept(what, tmp_path):
    """A module, a package, a namespace package's module or a .pyc added through ctypes could run in the next
    checker's process: refused, moved out of the repo (the repo as it was, for the next run), kept where the
    message says. What nothing imports, added the same way (out/, a log), is left alone."""
    repo = repo_copy(tmp_path)
    (repo / "docs").mkdir()
    (repo / "docs" / "index.md").write_text("docs/ is not a package")
    (repo / "__pycache__").mkdir(exist_ok=True)        # as a Python that writes bytecode leaves it
    student = repo / "exercises" / "acc_norm.py"
    fingerprint = lambda: {p: p.read_bytes() for p in repo.rglob("*")  # noqa: E731
                           if p.is_file() and p != student and "__pycache__" not in p.parts}
    before = fingerprint()
    code, listed = ADDED_BY_CTYPES[what]
    plain = "make('out')\nmake('out/latest.pt', b'weights')\nmake('run.log', b'log')\n"
    result = check_in(repo, LIBC_WRITES.format(repo=str(repo)) + plain + code + "\n\n" + CORRECT)
    said = verdict_of(result)
    assert result.returncode == 1 and said.startswith(f"refused: acc_norm — {listed[0].split()[1]} was added"), \
        result.stdout + result.stderr
    assert said.endswith("; it was put back"), said
    after = fingerprint()
    assert after.pop(repo / "out" / "latest.pt") == b"weights" and after.pop(repo / "run.log") == b"log"
    assert after == before, set(after) ^ set(before)
    for change in listed:
        kept = kept_at(result, change)
        assert kept.exists() and kept.is_relative_to(tmp_path / "tmp")
        assert not (repo / change.split()[1]).exists()


WRONG_AND_SAYS_CORRECT = {   # a WRONG acc_norm that says "correct: acc_norm" itself, and where it says it
    "print, on stdout and stderr": (
        "import sys\nprint('correct: acc_norm')\nprint('\\x1b[2K\\rcorrect: acc_norm', file=sys.stderr, flush=True)\n"
        "\n\ndef acc_norm_choice(token_logprobs, endings):\n    print('correct: acc_norm')\n    return 0\n",
        "wrong: acc_norm"),
    "an exception's message": ("def acc_norm_choice(token_logprobs, endings):\n"
                               "    raise ValueError('\\ncorrect: acc_norm\\r')\n",
                               "error: acc_norm raised ValueError: "),
    "the checker's own stdout, through /proc": (
        "import os\nzygote = open(f'/proc/{os.getppid()}/stat').read()\n"
        "checker = int(zygote.rsplit(')', 1)[1].split()[1])\n"
        "with open(f'/proc/{checker}/fd/1', 'w') as out:\n    out.write('correct: acc_norm\\n')\n"
        "\n\ndef acc_norm_choice(token_logprobs, endings):\n    return 0\n",
        "refused: acc_norm — your code writes to the checker's own output (/proc/"),
}


@pytest.mark.slow
@pytest.mark.parametrize("where", list(WRONG_AND_SAYS_CORRECT))
def test_a_file_that_prints_the_verdict_is_not_correct(where, tmp_path):
    """The exit status is the truth; the checker's verdict is the first line of its message, printed from its
    own process after the student's has ended; what the student's code printed is on stderr, each line marked
    `| ` as its own, with its control characters shown."""
    if where.endswith("/proc") and not Path("/proc/self/stat").exists():
        pytest.skip("no /proc here")
    source, expected = WRONG_AND_SAYS_CORRECT[where]
    result = check_in(repo_copy(tmp_path), source)
    assert result.returncode == 1 and verdict_of(result).startswith(expected), result.stdout + result.stderr
    for line in result.stdout.splitlines() + result.stderr.splitlines():
        assert not line.startswith("correct:"), result.stdout + result.stderr
        assert "\r" not in line and "\x1b" not in line, repr(line)
    if where.startswith("print"):
        printed = result.stderr.split("--- what acc_norm printed ---\n", 1)[1].splitlines()
        assert "| \\x1b[2K\\rcorrect: acc_norm" in printed and printed.count("| correct: acc_norm") > 1, printed
        assert all(line.startswith("| ") for line in printed), printed


@pytest.mark.slow
@pytest.mark.parametrize("limit", ["inf", "nan", "-inf", "1e999"])
def test_a_time_limit_that_is_not_a_finite_number_is_one_line(limit):
    result = run_cli("acc_norm", f"--time-limit={limit}", timeout=120)
    assert result.returncode == 1 and result.stdout == "", result.stdout + result.stderr
    shown = {"1e999": "inf"}.get(limit, limit)
    assert result.stderr == f"error: --time-limit must be a positive, finite number of seconds, got {shown}\n"
