"""The checks of 02_model.py's exercises: rope, rms_cross_entropy, router_top2, balance_loss,
gqa_attention, moe_forward, fp8_quantize, model_forward and sampling."""
from __future__ import annotations

import importlib
import math
import types

import numpy as np
import torch
import torch.nn.functional as F

from exercises.checker.report import (Wrong, call, check_returns, check_shape, compare_tensors, describe,
                                      fmt_index, fresh_seed, is_float_tensor, is_int_tensor, run_seed)


# --- rope (02_model.py, section 3: RotaryEmbedding + rotate_half + apply_rope) ----------------------

def check_rope(ex) -> None:
    model_lib = importlib.import_module("02_model")
    gen = torch.Generator().manual_seed(0)
    cases = [((2, 3, 16, 64), 0, 50000.0, "linnet's head size 64"),
             ((1, 2, 5, 8), 0, 50000.0, "a small head, 8 dims = 4 pairs"),
             ((1, 1, 1, 64), 0, 50000.0, "one token at position 0 (RoPE must leave it unchanged)"),
             ((2, 2, 4, 64), 1000, 50000.0, "generation with a cache: positions 1000..1003"),
             ((1, 2, 6, 32), 7, 10000.0, "head size 32, base 10000 (the original RoPE paper's base)")]
    fresh = np.random.default_rng(fresh_seed("rope"))
    cases.append(((int(fresh.integers(1, 3)), int(fresh.integers(1, 4)), int(fresh.integers(1, 12)),
                   int(2 * fresh.integers(2, 33))), int(fresh.integers(0, 500)), 50000.0, f"fresh seed {run_seed()}"))
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


# --- rms_cross_entropy (02_model.py, section 3: RMSNorm; section 6: LLM.forward's cross-entropy) -----------

def check_rms_cross_entropy(ex) -> None:
    model_lib = importlib.import_module("02_model")
    gen = torch.Generator().manual_seed(0)
    fresh = torch.Generator().manual_seed(fresh_seed("rms_cross_entropy"))
    # rmsnorm: against 02's RMSNorm with the same weight
    cases = [("x (2, 5, 64), weight ≈ 1 ± 0.2", torch.randn(2, 5, 64, generator=gen), 64),
             ("x (3, 16) of size ≈ 1e-4: eps matters here (mean(x²) ≈ 1e-8 is below eps = 1e-6)",
              1e-4 * torch.randn(3, 16, generator=gen), 16),
             ("x (4, 8) with a mean of 5: LayerNorm would subtract it, RMSNorm does not",
              5 + torch.randn(4, 8, generator=gen), 8),
             (f"x (3, 7, 32), fresh seed {run_seed()}", 3 * torch.randn(3, 7, 32, generator=fresh), 32)]
    for why, x, C in cases:
        norm = model_lib.RMSNorm(C)
        with torch.no_grad():
            norm.weight.copy_(1 + 0.2 * torch.randn(C, generator=gen))
            expected = norm(x)
        weight = norm.weight.detach().clone()
        case = f"rmsnorm({why}, eps 1e-6)"
        got = call(ex.rmsnorm, case, x.clone(), weight.clone(), 1e-6)
        check_returns(got, [("out", f"a float32 tensor of shape {tuple(x.shape)}", is_float_tensor)], case,
                      "rmsnorm", single=True)
        check_shape(got, expected, case, "out")
        ms = (x.double() ** 2).mean(-1, keepdim=True)
        slips = [((x - x.mean(-1, keepdim=True)) * torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-6) * weight,
                  "RMSNorm does not subtract the mean (that is LayerNorm): x / sqrt(mean(x²) + eps) · weight"),
                 (x / (ms.sqrt() + 1e-6) * weight, "eps goes INSIDE the square root: x · rsqrt(mean(x²) + eps)"),
                 (expected / weight, "multiply by weight at the end (one number per channel)"),
                 (x / (x.double().pow(2).sum(-1, keepdim=True) + 1e-6).sqrt() * weight,
                  "the MEAN of x² over the C channels, not the sum")]
        for slip, hint in slips:
            if not torch.allclose(got.double(), expected.double(), atol=1e-5, rtol=1e-4) and \
                    torch.allclose(got.double(), slip.double(), atol=1e-5, rtol=1e-4):
                compare_tensors(got, expected, case, "out", hint=hint)
        compare_tensors(got, expected, case, "out", atol=1e-5, rtol=1e-4,
                        hint="x · rsqrt(mean(x², last dim) + eps) · weight")
    # log_sum_exp: against torch.logsumexp (what F.cross_entropy computes inside)
    cases = [("x (4, 10)", torch.randn(4, 10, generator=gen)),
             ("x (3, 50) in the hundreds: exp overflows above ≈ 88 in float32",
              400 + 100 * torch.randn(3, 50, generator=gen)),
             ("x (2, 6) near −1000: exp underflows to 0 and log(0) = −inf",
              -1000 + torch.randn(2, 6, generator=gen)),
             ("x (2, 3, 5): a batch of rows", torch.randn(2, 3, 5, generator=gen)),
             (f"x (5, 20), fresh seed {run_seed()}", 30 * torch.randn(5, 20, generator=fresh))]
    for why, x in cases:
        case = f"log_sum_exp({why})"
        got = call(ex.log_sum_exp, case, x.clone())
        expected = torch.logsumexp(x, dim=-1)
        check_returns(got, [("out", f"a float32 tensor of shape {tuple(expected.shape)}", is_float_tensor)], case,
                      "log_sum_exp", single=True)
        check_shape(got, expected, case, "out", hint="reduce over the LAST dim only: (..., V) → (...)")
        if not torch.isfinite(got).all():
            index = torch.nonzero(~torch.isfinite(got))[0].tolist()
            raise Wrong(case, f"out{fmt_index(index)} is {got[tuple(index)].item()}, expected "
                        f"{expected[tuple(index)].item():.6g}", "subtract each row's max m before exp: "
                        "m + log(sum(exp(x − m))) — every exponent is then ≤ 0 and one of them is exactly 0")
        compare_tensors(got, expected, case, "out", atol=1e-4, rtol=1e-5,
                        hint="m + log(sum(exp(x − m))) over the last dim, m = the row's max")
    # log_softmax: against F.log_softmax
    for why, x in [("x (3, 12)", torch.randn(3, 12, generator=gen)),
                   ("x (2, 4, 30) in the hundreds", 500 + 100 * torch.randn(2, 4, 30, generator=gen)),
                   (f"x (4, 9), fresh seed {run_seed()}", 10 * torch.randn(4, 9, generator=fresh))]:
        case = f"stable_log_softmax({why})"
        got = call(ex.stable_log_softmax, case, x.clone())
        expected = F.log_softmax(x, dim=-1)
        check_returns(got, [("out", f"a float32 tensor of shape {tuple(x.shape)}", is_float_tensor)], case,
                      "stable_log_softmax", single=True)
        compare_tensors(got, expected, case, "out", atol=1e-4, rtol=1e-5,
                        hint="x − log_sum_exp(x)[..., None]: subtract each row's log-sum-exp from every entry "
                             "(log(softmax) underflows to −inf for the small probabilities)")
    # cross_entropy_loss: against F.cross_entropy exactly as LLM.forward calls it
    cases = []
    for why, B, T, V, scale, n_ignored, g in [("logits (2, 5, 64)", 2, 5, 64, 1.0, 0, gen),
                                             ("logits (2, 6, 32), 4 targets are −1 (ignored)", 2, 6, 32, 2.0, 4, gen),
                                             ("logits (1, 4, 16) ×300: in the hundreds", 1, 4, 16, 300.0, 0, gen),
                                             ("logits (3, 7, 40) with 5 ignored targets, fresh seed "
                                              f"{run_seed()}", 3, 7, 40, 3.0, 5, fresh)]:
        logits = scale * torch.randn(B, T, V, generator=g)
        targets = torch.randint(0, V, (B, T), generator=g)
        targets.view(-1)[torch.randperm(B * T, generator=g)[:n_ignored]] = -1
        cases.append((why, logits, targets, n_ignored))
    for why, logits, targets, n_ignored in cases:
        case = f"cross_entropy_loss({why}, targets {targets.tolist()}, ignore_index −1)"
        got = call(ex.cross_entropy_loss, case, logits.clone(), targets.clone(), -1)
        expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        check_returns(got, [("loss", "a 0-dim float32 tensor", is_float_tensor)], case, "cross_entropy_loss",
                      single=True)
        n, kept = targets.numel(), targets.numel() - n_ignored
        e, g_ = expected.item(), got.item()
        hint = ("−log softmax(logits)[target] per token = log_sum_exp(logits) − logits[target]; the MEAN over "
                "the tokens whose target is not −1")
        if not math.isfinite(g_):
            hint = "use your log_sum_exp (max subtracted), not log(sum(exp(logits)))"
        elif math.isclose(g_, e * kept, rel_tol=1e-4):
            hint = "that is the SUM over the tokens: divide by the number of tokens not ignored"
        elif n_ignored and math.isclose(g_, e * kept / n, rel_tol=1e-4):
            hint = (f"you divided by all {n} tokens: the {n_ignored} ignored ones count neither in the sum nor "
                    f"in the number you divide by ({kept})")
        elif math.isclose(g_, -e, rel_tol=1e-4):
            hint = "the loss is the NEGATIVE log-probability of the target (log_sum_exp − the target's logit)"
        compare_tensors(got, expected, case, "loss", atol=1e-4, rtol=1e-5, hint=hint)


# --- router_top2 and balance_loss (02_model.py, section 5: route and balance_loss) --------------------
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
             300 + 50 * torch.randn(3, 8, generator=gen)),
            (f"logits (9, 8), fresh seed {run_seed()}",
             2 * torch.randn(9, 8, generator=torch.Generator().manual_seed(fresh_seed("router"))))]


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
    cases = router_cases()[:4] + router_cases()[-1:] + [
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


# --- gqa_attention (02_model.py, section 4: CausalSelfAttention.project + forward) ---------------------

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
    fresh = np.random.default_rng(fresh_seed("gqa_attention"))
    nkv = int(fresh.choice([1, 2]))
    nh = nkv * int(fresh.choice([1, 2, 4]))
    cases.append((int(fresh.integers(1, 3)), int(fresh.integers(2, 14)), nh * 8, nh, nkv, f"fresh seed {run_seed()}",
                  "see the hints above", int(fresh.integers(1000, 10**6))))
    for B, T, C, nh, nkv, why, hint, *seed in cases:
        s = seed[0] if seed else T
        attn = attention_module(C, nh, nkv, seed=s * 7 + nh)
        x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(s))
        h = model_lib.token_shift(x, attn.l_conv.weight)       # the part before attention, done for you
        case = f"h (B, T, C) = {(B, T, C)}, n_head {nh}, n_kv_head {nkv}, head_dim {C // nh} — {why}"
        with torch.no_grad():
            expected = attn(x)
            got = call(ex.gqa_attention, case, h.clone(), attn.c_attn.weight.clone(), attn.c_proj.weight.clone(),
                       nh, nkv, 50000.0)
        check_returns(got, [("y", f"a float32 tensor of shape {tuple(expected.shape)}", is_float_tensor)],
                      case, "gqa_attention", single=True)
        check_shape(got, expected, case, "y")
        if T > 1 and nh > 1 and merged_without_transpose(got, expected, attn.c_proj.weight.detach(), nh):
            raise Wrong(case, "y is the output of heads merged WITHOUT a transpose: (B, n_head, T, hd) reshaped "
                        "straight to (B, T, C) mixes the positions (the mask and the softmax were right)",
                        "bring time before heads first: y.transpose(1, 2).reshape(B, T, C), then the output "
                        "projection")
        if T > 1:  # causality: a change in the future must not move the past
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


def merged_without_transpose(got: torch.Tensor, expected: torch.Tensor, w_proj: torch.Tensor, n_head: int) -> bool:
    """Is `got` what attention gives when the heads (B, nh, T, hd) are reshaped to (B, T, C) without the
    transpose? Undo the output projection of 02's answer (w_proj is square), re-merge it the wrong way."""
    B, T, C = expected.shape
    merged = torch.linalg.solve(w_proj.double(), expected.double().reshape(-1, C).T).T   # (B·T, C) before c_proj
    heads = merged.reshape(B, T, n_head, C // n_head).transpose(1, 2)                    # (B, nh, T, hd)
    wrong = heads.reshape(B, T, C) @ w_proj.double().T                                   # no transpose back
    return bool(torch.allclose(got.double(), wrong, atol=1e-4, rtol=1e-3))


# --- moe_forward (02_model.py, section 5: MoE.forward with moe_impl="reference") -----------------------

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
    fresh = np.random.default_rng(fresh_seed("moe_forward"))
    cases.append((2, int(fresh.integers(1, 9)), 8, 16, int(fresh.choice([4, 8])), int(fresh.integers(1, 3)), False,
                  f"fresh seed {run_seed()}", "see the hints above", int(fresh.integers(1000, 10**6))))
    for B, T, C, Fd, E, k, same, why, hint, *seed in cases:
        s = seed[0] if seed else T
        moe = moe_module(C, Fd, E, k, seed=s + E, same_experts=same)
        x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(s))
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


# --- fp8_quantize (fast/fp8.py, 02's moe_impl "grouped_fp8": quantize_rows, scaled_grouped_mm_reference) -----

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
            ("x (5, 32) in bfloat16", torch.randn(5, 32, generator=gen).bfloat16()),
            (f"x (6, 40), fresh seed {run_seed()}",
             torch.randn(6, 40, generator=torch.Generator().manual_seed(fresh_seed("fp8"))) * 10)]


def check_fp8_quantize(ex) -> None:
    fp8 = importlib.import_module("fast.fp8")
    for case, x in fp8_cases():
        got = call(ex.quantize_rows, case, x.clone())
        check_returns(got, [("q", "a torch.float8_e4m3fn tensor", lambda t: isinstance(t, torch.Tensor)
                             and t.dtype == torch.float8_e4m3fn),
                            ("scale", "a float32 tensor", lambda t: isinstance(t, torch.Tensor)
                             and t.dtype == torch.float32)], case, "quantize_rows")
        q_ref, scale_ref = fp8.quantize_rows(x)
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
        xq, xs = fp8.quantize_rows(x)
        wq, ws = fp8.quantize_rows(w)
        expected = fp8.scaled_grouped_mm_reference(xq, xs, wq[None], ws[None],
                                                   torch.tensor([M], dtype=torch.int32), torch.float32)
        compare_tensors(got, expected, case, "out", atol=1e-6, rtol=1e-5,
                        hint="quantize BOTH x and w row by row, multiply the float8 values as float32 "
                             "(xq.float() @ wq.float().T), then multiply row i by x_scale[i] and column j by "
                             "w_scale[j]")


# --- model_forward (02_model.py, section 6: Block.forward, LLM.forward and LLM.hidden) --------------------

def forward_model(seed: int, n_layer: int, C: int = 32, V: int = 64):
    """A small 02 LLM with seeded weights, norms not all 1 (so that a missing norm weight shows)."""
    model_lib = importlib.import_module("02_model")
    torch.manual_seed(seed)
    config = model_lib.LLMConfig(depth=1, n_layer=n_layer, n_embd=C, head_dim=16, n_head=C // 16, n_kv_head=1,
                                 ffn_dim=32, n_experts=4, vocab_size=V, block_size=16)
    model = model_lib.LLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight", "ln_f.weight")):
                p.copy_(1 + 0.3 * torch.randn(p.shape))
            elif "c_proj" in name:
                p.mul_(20)                   # blocks that move x: a missing residual or norm shows
    return model


def block_parts(model) -> list[dict]:
    """What the student gets for each block: the two norm weights and the two branches as functions."""
    def moe(block):
        def run(x):
            y, router = block.moe(x)
            return y, router["balance"]
        return run
    def attn(block):
        return lambda x: block.attn(x)
    return [{"ln1": b.ln1.weight.detach().clone(), "ln2": b.ln2.weight.detach().clone(),
             "attn": attn(b), "moe": moe(b)} for b in model.transformer.h]


def check_model_forward(ex) -> None:
    gen = torch.Generator().manual_seed(0)
    fresh = np.random.default_rng(fresh_seed("model_forward"))
    cases = [(0, 1, False, False, "1 block, no targets (eval mode)",
              "x = wte[idx]; each block pre-norm with residuals: x = x + attn(rmsnorm(x, ln1)); x = x + "
              "moe(rmsnorm(x, ln2))[0]; then rmsnorm(x, ln_f_weight) (eps 1e-6); logits = x @ wte.T"),
             (1, 2, False, False, "2 blocks, no targets (eval mode)",
              "each block is pre-norm with residuals: x = x + attn(rmsnorm(x, ln1)); x = x + moe(rmsnorm(x, ln2))[0]"),
             (2, 2, True, False, "2 blocks, targets with two −1 (ignored), eval mode: cross-entropy alone",
              "loss = cross-entropy over the targets that are not −1 (ignore_index=-1); no balance term in eval "
              "mode"),
             (3, 3, True, True, "3 blocks, targets, TRAINING mode: cross-entropy + balance_coef × mean balance",
              "in training mode add balance_coef × the MEAN over the layers of the balance losses"),
             (int(fresh.integers(10**6)), int(fresh.integers(1, 4)), True, True, f"fresh seed {run_seed()}, training",
              "see the hints above")]
    for seed, n_layer, with_targets, training, why, hint in cases:
        model = forward_model(seed % 1000, n_layer)
        model.train(training)
        B, T = 2, int(5 + seed % 4)
        idx = torch.randint(0, 64, (B, T), generator=gen)
        targets = torch.randint(0, 64, (B, T), generator=gen) if with_targets else None
        if targets is not None and not training:
            targets[0, 1] = targets[1, 3] = -1
        seen = []                                # the final norm's input, to recognise a missing or weightless norm
        hook = model.transformer.ln_f.register_forward_hook(lambda m, args, out: seen.append(args[0]))
        with torch.no_grad():
            logits, loss = model(idx, targets)
        hook.remove()
        with torch.no_grad():
            ce = None if targets is None else F.cross_entropy(logits.reshape(-1, 64), targets.reshape(-1),
                                                              ignore_index=-1)
        wte, ln_f = model.transformer.wte.weight.detach().clone(), model.transformer.ln_f.weight.detach().clone()
        case = (f"llm_forward(idx {tuple(idx.shape)}, wte {tuple(wte.shape)}, {n_layer} blocks, ln_f_weight, "
                f"targets {None if targets is None else targets.tolist()}, training={training}, balance_coef "
                f"{model.config.balance_coef}) — {why}")
        with torch.no_grad():
            got = call(ex.llm_forward, case, idx.clone(), wte, block_parts(model), ln_f, targets, training,
                       model.config.balance_coef)
        check_returns(got, [("logits", "a float tensor (B, T, V)", is_float_tensor),
                            ("loss", "None without targets, else a 0-dim float tensor",
                             lambda t: t is None if targets is None else is_float_tensor(t) and t.numel() == 1)],
                      case, "llm_forward")
        got_logits, got_loss = got
        check_shape(got_logits, logits, case, "logits", hint="logits = x @ wte.T: one score per vocabulary entry")
        x = seen[0]                                                  # (B, T, C) before the final norm
        close = lambda a: torch.allclose(got_logits.double(), a.double(), atol=1e-4, rtol=1e-4)  # noqa: E731
        if not close(logits):
            if close(x @ wte.T):
                hint = "apply the final RMSNorm (with ln_f_weight) to x before the head"
            elif close(F.rms_norm(x, (x.shape[-1],), None, 1e-6) @ wte.T):
                hint = "the final RMSNorm multiplies by ln_f_weight"
        compare_tensors(got_logits, logits, case, "logits", atol=1e-4, rtol=1e-4, hint=hint)
        if targets is None:
            continue
        got_loss = got_loss.reshape(())
        mean_balance = None
        if training:
            mean_balance = (loss - ce).item() / model.config.balance_coef
            g = got_loss.item()
            if math.isclose(g, ce.item(), rel_tol=1e-5):
                hint = "in training mode add balance_coef × the mean of the layers' balance losses"
            summed = ce.item() + model.config.balance_coef * mean_balance * n_layer
            if n_layer > 1 and not math.isclose(g, ce.item(), rel_tol=1e-5) and math.isclose(g, summed, rel_tol=1e-5):
                hint = "the MEAN of the layers' balance losses, not their sum"
        compare_tensors(got_loss, loss.reshape(()), case, "loss", atol=1e-5, rtol=1e-5, hint=hint)


# --- sampling (02_model.py, section 6: LLM.generate and LLM._sample) --------------------------------------

class LogitsModel:
    """Stands in for 02's LLM inside LLM._sample: whatever it is fed, the last position's logits are `logits`.
    So 02's own sampling code picks a token from logits the check chooses."""

    def __init__(self, logits: torch.Tensor, block_size: int = 8):
        self.logits = logits
        self.config = types.SimpleNamespace(block_size=block_size)
        self.transformer = types.SimpleNamespace(h=[])

    def __call__(self, idx, caches=None):
        return self.logits.expand(1, idx.shape[1], -1), None


def sampling_model(seed: int, block_size: int = 8):
    """A small 02 LLM (1 layer, vocab 64) with seeded weights, in eval mode, for generate."""
    model_lib = importlib.import_module("02_model")
    torch.manual_seed(seed)
    config = model_lib.LLMConfig(depth=1, n_embd=32, head_dim=16, n_head=2, n_kv_head=1, ffn_dim=32, n_experts=4,
                                 vocab_size=64, block_size=block_size)
    model = model_lib.LLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(5)          # logits of a few units: every draw depends on the generator
    return model


def check_sample_next(ex, model_lib, gen, fresh) -> None:
    V = 50
    ties = (torch.randint(0, 4, (V,), generator=gen) / 2).float()           # many logits share the k-th value
    cases = [("random logits ×3", 3 * torch.randn(V, generator=gen), 1.0, None),
             ("random logits ×3, temperature 0.7, top_k 5", 3 * torch.randn(V, generator=gen), 0.7, 5),
             ("temperature 0: greedy", torch.randn(V, generator=gen), 0.0, 5),
             ("temperature 2.5, top_k 10", 3 * torch.randn(V, generator=gen), 2.5, 10),
             ("top_k 1: always the largest logit", torch.randn(V, generator=gen), 1.0, 1),
             ("top_k 100 > V = 50: k = min(top_k, V)", torch.randn(V, generator=gen), 1.0, 100),
             ("logits in {0, 0.5, 1, 1.5}, top_k 8: several logits EQUAL the 8th largest", ties, 1.0, 8),
             (f"fresh seed {run_seed()}, temperature 0.9, top_k 12", 4 * torch.randn(V, generator=fresh), 0.9, 12)]
    for why, logits, temperature, top_k in cases:
        for draw in range(12):
            seed = 1000 * draw + 17
            case = (f"sample_next(logits (V = {V},) — {why}, temperature {temperature}, top_k {top_k}, "
                    f"gen = torch.Generator().manual_seed({seed}))")
            expected = model_lib.LLM._sample(LogitsModel(logits), [0], 1, temperature, top_k, False,
                                             torch.Generator().manual_seed(seed), None, "cpu")[-1]
            got = call(ex.sample_next, case, logits.clone(), temperature, top_k, torch.Generator().manual_seed(seed))
            if not isinstance(got, (int, np.integer)) and not (isinstance(got, torch.Tensor) and got.numel() == 1
                                                               and not got.is_floating_point()):
                raise Wrong(case, f"sample_next should return one token id (an int), got {describe(got)}")
            if int(got) == expected:
                continue
            scaled = logits / (temperature or 1.0)
            kept = scaled >= torch.topk(scaled, min(top_k or V, V)).values[-1]
            if temperature == 0:
                hint = "temperature 0 is greedy: return int(logits.argmax()), no draw"
            elif top_k is not None and not kept[int(got)]:
                hint = (f"token {int(got)} is not among the top {top_k}: keep the logits >= the k-th largest, set "
                        "the others to −inf BEFORE the softmax")
            elif int(kept.sum()) > min(top_k or V, V):
                hint = ("several logits equal the k-th largest: keep them ALL (logits < kth → −inf), as 02 does, "
                        "not exactly k by index")
            else:
                hint = ("divide the logits by the temperature, softmax, then ONE draw with torch.multinomial(probs, "
                        "1, generator=gen): the seeded generator you are given, not the global one")
            raise Wrong(case, f"token: expected {expected} (02's _sample with the same generator), got {int(got)}",
                        hint)


def check_generate(ex, model_lib, fresh) -> None:
    cases = [(3, [5, 6, 7], 8, 0.8, 10, "prompt of 3 tokens, 8 new ones: the cache fills at 4 and restarts", 4),
             (7, list(range(10, 20)), 6, 0.0, None, "greedy, a prompt of 10 > block_size 8: feed its last 8", 8),
             (11, [1], 12, 1.3, 20, "a one-token prompt, 12 new tokens, block_size 8", 8),
             (int(fresh.integers(10**6)), [int(t) for t in fresh.integers(0, 64, size=int(fresh.integers(1, 9)))],
              int(fresh.integers(4, 14)), round(float(fresh.uniform(0.5, 1.5)), 2), int(fresh.integers(2, 30)),
              f"fresh seed {run_seed()}", 8)]
    for seed, prompt, n_new, temperature, top_k, why, block in cases:
        model = sampling_model(seed % 1000, block)
        feeds = []
        hook = model.register_forward_pre_hook(
            lambda m, args, kwargs: feeds.append((kwargs["caches"][0].length, args[0].shape[1])), with_kwargs=True)
        try:
            expected = model.generate(prompt, max_new_tokens=n_new, temperature=temperature, top_k=top_k,
                                      use_cache=True, seed=seed)
        finally:
            hook.remove()
        case = (f"generate(forward, prompt {prompt}, max_new_tokens {n_new}, temperature {temperature}, top_k "
                f"{top_k}, seed {seed}, block_size {block}) — {why}")
        state = {"caches": None, "step": 0}

        def forward(new_ids, past):
            step = state["step"]
            state["step"] += 1
            if step >= len(feeds):
                raise Wrong(case, f"forward call {step}: 02 calls forward only {len(feeds)} times here (once per "
                            "new token)", "one forward call per new token: max_new_tokens calls in all")
            ints = isinstance(new_ids, (list, tuple)) and all(isinstance(t, (int, np.integer)) for t in new_ids)
            if not (ints and new_ids):
                raise Wrong(case, f"forward call {step}: new_ids should be a non-empty list of ints, got "
                            f"{new_ids!r:.60}")
            if past != 0 and (state["caches"] is None or state["caches"][0].length != past):
                held = 0 if state["caches"] is None else state["caches"][0].length
                raise Wrong(case, f"forward call {step}: forward({list(new_ids)}, past={past}) but the cache holds "
                            f"{held} tokens", "past = how many tokens the cache already holds (everything fed "
                            "since the last restart): the new tokens sit at positions past, past + 1, ...")
            if past + len(new_ids) > block:
                raise Wrong(case, f"forward call {step}: forward(<{len(new_ids)} ids>, past={past}) would put tokens "
                            f"at positions up to {past + len(new_ids) - 1}, beyond block_size − 1 = {block - 1}",
                            "when the cache holds block_size tokens, restart: forward(ids[-block_size:], 0)")
            if step < len(feeds) and (past, len(new_ids)) != feeds[step]:
                want_past, want_n = feeds[step]
                raise Wrong(case, f"forward call {step}: you fed {len(new_ids)} token(s) at past={past}; 02 feeds "
                            f"{want_n} at past={want_past}",
                            "feed only the token sampled last, at past = the cache's length; feed a whole window "
                            "(with past 0) only at the start and when the cache is full" if want_n == 1 else
                            "at the start and when the cache holds block_size tokens: the last block_size ids, "
                            "past 0")
            if past == 0:
                state["caches"] = [model_lib.LayerCache() for _ in model.transformer.h]
            with torch.no_grad():
                logits, _ = model(torch.tensor([list(map(int, new_ids))]), caches=state["caches"])
            return logits[0, -1].float()                                      # (V,)

        got = call(ex.generate, case, forward, list(prompt), n_new, temperature, top_k, seed, block)
        if not (isinstance(got, list) and all(isinstance(t, (int, np.integer)) for t in got)):
            raise Wrong(case, f"generate should return a list of ints (prompt + new ids), got {describe(got)}")
        if list(got) != expected:
            i = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
            raise Wrong(case, f"ids: expected {expected}, got {list(got)} (first difference at index {i})",
                        "return prompt + the new ids" if i < len(prompt) or len(got) != len(expected) else
                        "one torch.Generator().manual_seed(seed) made once, used for every draw in order; each "
                        "token from sample_next on the logits forward returned")
        if state["step"] != len(feeds):
            raise Wrong(case, f"you called forward {state['step']} times, 02 calls it {len(feeds)} times",
                        "one forward call per new token")


def check_sampling(ex) -> None:
    model_lib = importlib.import_module("02_model")
    gen = torch.Generator().manual_seed(0)
    fresh_gen = torch.Generator().manual_seed(fresh_seed("sampling"))
    check_sample_next(ex, model_lib, gen, fresh_gen)
    check_generate(ex, model_lib, np.random.default_rng(fresh_seed("generate")))


CHECKS = {"rope": check_rope, "rms_cross_entropy": check_rms_cross_entropy, "router_top2": check_router_top2,
          "balance_loss": check_balance_loss, "gqa_attention": check_gqa_attention,
          "moe_forward": check_moe_forward, "fp8_quantize": check_fp8_quantize,
          "model_forward": check_model_forward, "sampling": check_sampling}
