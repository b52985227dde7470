"""bench/moe_kernels.py: the gathered grouped GEMM with a SwiGLU epilogue agrees with its plain reference.

On a CPU: the reference against today's path (02's gather + F.grouped_mm + swiglu), always; when triton is
installed, the Triton kernel itself through Triton's interpreter (TRITON_INTERPRET=1), and every autotune config
compiled for Hopper (no GPU needed) without register spills — every variant (pointers, TMA weights, TMA stores).
On a CUDA GPU: the compiled kernel, every variant and schedule, at a medium shape. Triton is GPU-only and
optional (not in requirements.txt), so CI skips those.
The backward lever (the down projection's dh = SwiGLU'(h) ⊙ (dy @ c_proj)): its plain reference against today's
ops, and the arguments passed to quack's gemm_act / gemm_dact checked on a CPU through a stand-in written from
quack 0.6.5's own reference functions (quack itself needs CUDA); a quack that cannot import is a row, not a crash.
"""
from __future__ import annotations

import doctest
import importlib
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from helpers import REPO_DIR

KERNELS = REPO_DIR / "bench" / "moe_kernels.py"
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton not installed (GPU-only optional)")
needs_cuda = pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()),
                                reason="needs a CUDA GPU and triton (GPU-only optional)")


def load_kernels(name: str, monkeypatch, interpret: bool):
    """bench/moe_kernels.py as a fresh module. Triton reads TRITON_INTERPRET when it decorates a kernel AND
    while the interpreter runs it, so the variable stays set (monkeypatch) for the rest of the test."""
    monkeypatch.setenv("TRITON_INTERPRET", "1" if interpret else "0")
    spec = importlib.util.spec_from_file_location(name, KERNELS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ragged_inputs(counts, n_tokens, C, F, device="cpu", dtype=torch.bfloat16, seed=0):
    """x (N, C), w_v (E, 2F, C), slots grouped by expert with the given counts (zeros allowed), the token of
    each slot drawn at random, and offsets = cumsum(counts) as int32."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_tokens, C, generator=g).to(device, dtype)                                # (N, C)
    w_v = (torch.randn(len(counts), 2 * F, C, generator=g) * C ** -0.5).to(device, dtype)     # (E, 2F, C)
    tok = torch.randint(0, n_tokens, (sum(counts),), generator=g).to(device, torch.int32)    # (S,)
    offsets = torch.cumsum(torch.tensor(counts), 0).to(device, torch.int32)                  # (E,)
    return x, tok, offsets, w_v


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def test_reference_matches_todays_grouped_path(monkeypatch):
    """The per-expert loop and 02's gather + F.grouped_mm + swiglu compute the same (S, F) activation."""
    mk = load_kernels("moe_kernels_plain", monkeypatch, interpret=False)
    x, tok, offsets, w_v = ragged_inputs([37, 0, 64, 27], n_tokens=64, C=64, F=32, dtype=torch.float32)
    plain = mk.gather_gemm_swiglu_reference(x, tok, offsets, w_v)                              # (128, 32)
    torch.testing.assert_close(mk.moe_up_grouped(x, tok, offsets, w_v), plain, rtol=1e-5, atol=1e-5)
    e2 = slice(37, 101)                                                     # expert 2's slots, by hand
    gate, value = (x[tok[e2].long()] @ w_v[2].T).chunk(2, dim=-1)
    torch.testing.assert_close(plain[e2], torch.nn.functional.silu(gate) * value)
    examples = doctest.DocTestFinder().find(mk.gather_gemm_swiglu_reference, globs={"torch": torch, **vars(mk)})
    assert doctest.DocTestRunner().run(examples[0]).failed == 0              # its docstring's worked example


def interpreted_checks():
    """The kernel itself, run by Triton's interpreter on the CPU: ragged groups (one empty, one shorter than a
    tile, tails that end mid-tile), every output element written, h stored as the [gate | value] pre-activation.
    Runs in a fresh process: Triton must see TRITON_INTERPRET=1 before its first import (its own library
    functions are decorated then)."""
    mk = importlib.import_module("moe_kernels")
    assert mk.INTERPRET
    x, tok, offsets, w_v = ragged_inputs([37, 0, 64, 27, 5], n_tokens=64, C=64, F=64, seed=1)
    truth = mk.gather_gemm_swiglu_reference(x.double(), tok, offsets, w_v.double())            # (133, 64)
    poisoned = torch.full_like(truth, float("nan"), dtype=torch.bfloat16)
    out, h = mk.gather_gemm_swiglu(x, tok, offsets, w_v, store_h=True, out=poisoned)
    assert not out.isnan().any()                                           # every element written
    assert rel_err(out, truth) < 1e-2                                      # bf16 output rounding only
    today = mk.moe_up_grouped(x, tok, offsets, w_v)                       # bf16 all the way
    assert rel_err(out, truth) <= 1.5 * rel_err(today, truth)
    h_truth = torch.cat([x[tok[a:b].long()].double() @ w_v[e].double().T
                         for e, (a, b) in enumerate(zip([0, *offsets[:-1].tolist()], offsets.tolist()))])
    assert rel_err(h, h_truth) < 1e-2
    wider = mk.gather_gemm_swiglu(x, tok, offsets, w_v, config=dict(BLOCK_M=32, BLOCK_N=64, BLOCK_K=32))
    torch.testing.assert_close(wider, out, rtol=2e-2, atol=2e-2)          # another tiling, same result
    walked = mk.gather_gemm_swiglu(x, tok, offsets, w_v, persistent=True, store_h=True,
                                   out=torch.full_like(poisoned, float("nan")))
    torch.testing.assert_close(walked[0], out, rtol=0, atol=0)             # 3 programs walking the tiles
    torch.testing.assert_close(walked[1], h, rtol=0, atol=0)
    torch.testing.assert_close(mk.gather_gemm_swiglu(x, tok.long(), offsets, w_v), out, rtol=0, atol=0)  # 02's int64
    for variant in ("tma", "tma_store", "wide", "wide_store"):   # weights (and whole output tiles) through TMA
        for persistent in (False, True):
            got = mk.gather_gemm_swiglu(x, tok, offsets, w_v, store_h=True, variant=variant, persistent=persistent,
                                        out=torch.full_like(poisoned, float("nan")))
            torch.testing.assert_close(got[0], out, rtol=0, atol=0)       # same sums in the same order
            torch.testing.assert_close(got[1], h, rtol=0, atol=0)
    for variant in ("tma", "wide"):    # another tile order (GROUP_M 3: 10 M-tiles, the last group short) and
        swizzled = mk.gather_gemm_swiglu(x, tok, offsets, w_v, variant=variant,   # the wide dot at another tiling
                                         config=dict(BLOCK_M=32, BLOCK_N=32, BLOCK_K=32, GROUP_M=3),
                                         out=torch.full_like(poisoned, float("nan")))
        torch.testing.assert_close(swizzled, wider, rtol=2e-2, atol=2e-2)
    x, tok, offsets, w_v = ragged_inputs([0, 9, 0, 0, 40, 0, 1, 0], n_tokens=32, C=32, F=48, seed=2)   # F % 32 ≠ 0
    ragged = mk.gather_gemm_swiglu(x, tok, offsets, w_v, config=dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=16))
    truth = mk.gather_gemm_swiglu_reference(x.double(), tok, offsets, w_v.double())
    assert rel_err(ragged, truth) < 1e-2
    for variant in ("tma", "tma_store", "wide", "wide_store"):   # weight boxes that run past the gate half / F
        got = mk.gather_gemm_swiglu(x, tok, offsets, w_v, store_h=True, variant=variant,
                                    config=dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=16))
        torch.testing.assert_close(got[0], ragged, rtol=0, atol=0)
    print("interpreted kernel agrees")


@pytest.mark.slow
@needs_triton
def test_triton_kernel_interpreted_matches_reference():
    code = ("import sys; sys.path[:0] = ['tests', 'bench']; "
            "import test_moe_kernels as t; t.interpreted_checks()")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_DIR, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TRITON_INTERPRET": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "interpreted kernel agrees" in proc.stdout


def test_kernel_refuses_a_width_its_loop_cannot_cover(monkeypatch):
    mk = load_kernels("moe_kernels_contract", monkeypatch, interpret=False)
    x, tok, offsets, w_v = ragged_inputs([3, 5], n_tokens=8, C=24, F=16)
    with pytest.raises(ValueError, match="multiple of 16"):
        mk.check_inputs(x, tok, offsets, w_v, block_k=16)


@needs_triton
def test_kernel_refuses_an_unknown_variant(monkeypatch):
    mk = load_kernels("moe_kernels_variant", monkeypatch, interpret=False)
    x, tok, offsets, w_v = ragged_inputs([3, 5], n_tokens=8, C=64, F=16)
    with pytest.raises(ValueError, match="variant must be one of"):
        mk.gather_gemm_swiglu(x, tok, offsets, w_v, variant="tma_ws")


@needs_triton
def test_every_autotune_config_compiles_for_hopper_without_spills(monkeypatch):
    """No GPU needed: Triton compiles each config of each variant for sm_90 (H100/H200) with its own ptxas. Each
    must keep its registers (no spill to local memory), pipeline its loads (asynchronous copies), fit in shared
    memory, store 16-byte vectors, and use the TMA unit where its variant says so, or it would be slow."""
    mk = load_kernels("moe_kernels_aot", monkeypatch, interpret=False)
    rows = mk.compile_report(C=768, F_=2048, E=8, arch=90)
    schedules = {v: len(s) for v, s in mk.TRITON_SCHEDULES.items()}     # one tile a program, + h, persistent, …
    assert len(rows) == sum(schedules[v] * len(c) for v, c in mk.VARIANT_CONFIGS.items())
    assert all(r["spill"] == 0 and r["async_copies"] > 0 and r["smem"] <= 227 * 1024 for r in rows), rows
    assert all(r["stores_v4"] > 0 and r["stores_narrow"] == 0 for r in rows), rows
    for r in rows:
        assert (r["tma_loads"] > 0) == (r["variant"] != "pointers"), r
        assert (r["tma_stores"] > 0) == r["variant"].endswith("_store"), r
        assert r["wgmma_n"] == (2 if r["variant"].startswith("wide") else 1) * int(r["tile"].split("/")[1]), r


@needs_cuda
def test_triton_kernel_on_gpu_matches_reference(monkeypatch):
    """The compiled kernel, every variant at its first config (no autotuning: ≈ 20 compiles), both schedules, with
    and without h, at a medium shape with linnet's widths and one empty expert."""
    mk = load_kernels("moe_kernels_gpu", monkeypatch, interpret=False)
    counts = [1000, 0, 3000, 517, 2048, 129, 1, 1497]
    x, tok, offsets, w_v = ragged_inputs(counts, n_tokens=4096, C=768, F=2048, device="cuda")
    truth = mk.gather_gemm_swiglu_reference(x.double(), tok, offsets, w_v.double())
    poisoned = torch.full_like(truth, float("nan"), dtype=torch.bfloat16)
    today = rel_err(mk.moe_up_grouped(x, tok, offsets, w_v), truth)
    h_truth = torch.cat([x[tok[a:b].long()].double() @ w_v[e].double().T
                         for e, (a, b) in enumerate(zip([0, *offsets[:-1].tolist()], offsets.tolist()))])
    for variant in mk.VARIANT_FLAGS:
        cfg = mk.VARIANT_CONFIGS[variant][0]
        config = dict(cfg.kwargs, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        for persistent in (False, True):
            out = mk.gather_gemm_swiglu(x, tok, offsets, w_v, out=poisoned.clone(), persistent=persistent,
                                        variant=variant, config=config)
            assert not out.isnan().any(), (variant, persistent)
            assert rel_err(out, truth) < 1e-2 and rel_err(out, truth) <= 1.5 * today, (variant, persistent)
            out, h = mk.gather_gemm_swiglu(x, tok, offsets, w_v, out=poisoned.clone(), persistent=persistent,
                                           variant=variant, config=config, store_h=True)
            assert not out.isnan().any() and rel_err(out, truth) < 1e-2, (variant, persistent)
            assert rel_err(h, h_truth) < 1e-2, (variant, persistent)
    out, h = mk.gather_gemm_swiglu(x, tok, offsets, w_v, out=poisoned.clone(), variant="wide_store", store_h=True)
    assert rel_err(out, truth) < 1e-2 and rel_err(h, h_truth) < 1e-2      # autotuned: the pre-hook sets each box


# --- The backward lever and quack's calls (CPU) --------------------------------------------------------------

def test_down_backward_reference_matches_todays_ops(monkeypatch):
    """dh = SwiGLU'(h) ⊙ (dy_rows @ c_proj[e]) per expert: the per-expert loop (autograd of 02's swiglu) and
    today's ops (grouped GEMM + the explicit derivative `swiglu_backward`) agree, also with the gather of dy's rows
    and the routing weights p (dh scaled by p, and p's gradient Σ_j a_j·(dy @ c_proj)_j)."""
    mk = load_kernels("moe_kernels_bwd", monkeypatch, interpret=False)
    x, tok, offsets, w_v = ragged_inputs([37, 0, 64, 27], n_tokens=64, C=64, F=32, dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    c_proj = torch.randn(4, 64, 32, generator=g) / 32 ** 0.5                   # (E, C, F)
    dy, p = torch.randn(64, 64, generator=g), torch.rand(128, generator=g)    # (N, C), (S,)
    h = torch.randn(128, 64, generator=g)                                     # (S, 2F) [gate | value]
    rows = dy[tok.long()]                                                     # (S, C)
    dh = mk.down_backward_reference(rows, c_proj, h, offsets)
    torch.testing.assert_close(mk.down_backward_grouped(rows, c_proj, h, offsets), dh, rtol=1e-4, atol=1e-5)
    e2 = slice(37, 101)                                                       # expert 2's slots, by hand
    gate, value = h[e2].chunk(2, dim=-1)
    da = rows[e2] @ c_proj[2]
    sig = torch.sigmoid(gate)
    torch.testing.assert_close(dh[e2], torch.cat([da * value * sig * (1 + gate * (1 - sig)), da * gate * sig], -1))
    dh_p, dp = mk.down_backward_reference(rows, c_proj, h, offsets, p=p)
    torch.testing.assert_close(dh_p, mk.down_backward_reference(rows * p[:, None], c_proj, h, offsets))
    torch.testing.assert_close(dp[e2], (torch.nn.functional.silu(gate) * value * da).sum(-1))
    got_dh, got_dp = mk.down_backward_grouped(dy, c_proj, h, offsets, tok, p)
    torch.testing.assert_close(got_dh, dh_p, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_dp, dp, rtol=1e-4, atol=1e-5)
    for fn in (mk.swiglu_backward, mk.down_backward_reference, mk.interleave_halves, mk.selected):
        examples = doctest.DocTestFinder().find(fn, globs={"torch": torch, **vars(mk)})
        assert doctest.DocTestRunner().run(examples[0]).failed == 0          # its docstring's worked example
    t = torch.arange(12.0).view(2, 6)
    assert mk.interleave_halves(t)[:, 0::2].equal(t[:, :3])                   # quack's gate: even columns
    assert mk.deinterleave_halves(mk.interleave_halves(t)).equal(t)


def _quack_gemm_ref(A, B, cu_seqlens_m, A_idx):
    """quack 0.6.5's gemm_ref for varlen_m with gather_A: rows cu[i]:cu[i+1] of the output are A[A_idx[those]] @ B[i]
    (or A's own rows without A_idx), checking the contract its kernels state (int32 bounds and index, B (E, K, N))."""
    assert cu_seqlens_m.dtype == torch.int32 and cu_seqlens_m[0] == 0 and B.ndim == 3
    assert B.shape[0] == cu_seqlens_m.numel() - 1 and A.ndim == 2 and A.stride(-1) == 1
    assert A_idx is None or (A_idx.dtype == torch.int32 and A_idx.is_contiguous())
    cu = cu_seqlens_m.tolist()
    out = A.new_empty(cu[-1], B.shape[-1])
    for i in range(len(cu) - 1):
        rows = A[A_idx[cu[i]:cu[i + 1]].long()] if A_idx is not None else A[cu[i]:cu[i + 1]]
        out[cu[i]:cu[i + 1]] = rows @ B[i]
    return out


class StandInQuack:
    """quack.gemm_interface's gemm_act / gemm_dact for activation "swiglu" and gemm gathering along K, with their
    0.6.5 signatures, written from its gemm_act_ref / gemm_dact_ref / gemm_ref and the dgated epilogue (quack/epilogue/library.py `dgated_mod`): gated columns
    interleaved (gate 2j, value 2j + 1); colvec_scale multiplies dout and the recomputed postact, colvec_reduce sums
    postact · dout before the scale. Checks the arguments bench/moe_kernels.py passes on a CPU."""

    @staticmethod
    def gemm_act(A, B, C=None, bias=None, activation=None, alpha=1.0, preact_out=None, postact_out=None,
                 out_dtype=None, postact_dtype=None, cu_seqlens_m=None, A_idx=None, store_preact=True,
                 dynamic_scheduler=False, tuned=True, config=None, concat_layout=None, split_k=1, split_k_mode=0):
        assert activation == "swiglu" and C is None and bias is None and concat_layout is None
        preact = _quack_gemm_ref(A, B, cu_seqlens_m, A_idx)                     # (S, 2F) interleaved
        postact = torch.nn.functional.silu(preact[..., ::2]) * preact[..., 1::2]
        return (preact if store_preact else None), postact

    @staticmethod
    def gemm_dact(A, B, PreAct, activation=None, dx_out=None, postact_out=None, out_dtype=None, postact_dtype=None,
                  colvec_scale=None, colvec_reduce=False, cu_seqlens_m=None, A_idx=None, dynamic_scheduler=True,
                  tuned=True, config=None, split_k=1, split_k_mode=0):
        assert activation == "swiglu" and PreAct.shape[-1] == 2 * B.shape[-1]
        dout = _quack_gemm_ref(A, B, cu_seqlens_m, A_idx)                       # (S, F)
        scale = 1 if colvec_scale is None else colvec_scale[:, None]
        gate, up = PreAct[..., ::2], PreAct[..., 1::2]
        sig = torch.sigmoid(gate)                       # quack's dswiglu, by hand: autograd is off inside a custom op
        postact = gate * sig * up
        dgate = dout * scale * up * sig * (1 + gate * (1 - sig))
        dx = torch.stack([dgate, dout * scale * gate * sig], dim=-1).reshape(PreAct.shape)
        out = (dx, postact * scale)
        return (*out, (postact * dout).sum(-1)) if colvec_reduce else out

    @staticmethod
    def gemm(A, B, out=None, bias=None, alpha=1.0, out_dtype=None, cu_seqlens_m=None, cu_seqlens_k=None, A_idx=None,
             **rest):
        """Only the varlen-K form with gather_A (quack's gemm_ref): out[i] = A[:, A_idx[cu[i]:cu[i+1]]] @ B[cu[i]:cu[i+1]]
        for A (M, whatever), B (total_K, N) → (L, M, N)."""
        assert cu_seqlens_m is None and cu_seqlens_k is not None and cu_seqlens_k.dtype == torch.int32
        assert A_idx is not None and A_idx.dtype == torch.int32 and A_idx.is_contiguous() and bias is None
        assert A.ndim == 2 and B.ndim == 2 and B.shape[0] == A_idx.shape[0] and alpha == 1.0
        cu = cu_seqlens_k.tolist()
        out = A.new_empty(len(cu) - 1, A.shape[0], B.shape[1])
        for i in range(len(cu) - 1):
            out[i] = A[:, A_idx[cu[i]:cu[i + 1]].long()] @ B[cu[i]:cu[i + 1]]
        return out


def test_quack_calls_match_its_reference_semantics(monkeypatch):
    """`quack_up` (with and without h) and `quack_down_backward` (plain, and gathering dy with routing weights)
    pass quack's layouts right: run through `StandInQuack`, they give the plain references' results."""
    mk = load_kernels("moe_kernels_quack", monkeypatch, interpret=False)
    monkeypatch.setattr(mk, "quack_interface", lambda: StandInQuack)
    x, tok, offsets, w_v = ragged_inputs([37, 0, 64, 27], n_tokens=64, C=64, F=32, dtype=torch.float64)
    inputs = dict(x=x, order_tokens=tok, offsets=offsets, w_v=w_v)
    truth = mk.gather_gemm_swiglu_reference(x, tok, offsets, w_v)                            # (128, 32)
    for store_preact in (False, True):
        torch.testing.assert_close(mk.quack_up(inputs, store_preact=store_preact)(), truth)
    bwd = {k: v.double() for k, v in mk.make_backward_inputs(inputs | dict(x=x.float(), w_v=w_v.float()),
                                                                32).items()}
    run, canon = mk.quack_down_backward(inputs, bwd)
    torch.testing.assert_close(canon(run()), mk.down_backward_reference(bwd["dy_rows"], bwd["c_proj"], bwd["h"],
                                                                        offsets))
    run, canon = mk.quack_down_backward(inputs, bwd, gathered=True)
    dh, dp = mk.down_backward_reference(bwd["dy_rows"], bwd["c_proj"], bwd["h"], offsets, p=bwd["p"])
    got_dh, got_dp = canon(run())
    torch.testing.assert_close(got_dh, dh)
    torch.testing.assert_close(got_dp, dp)


@pytest.mark.skipif(importlib.util.find_spec("quack") is not None, reason="quack is installed here")
def test_a_quack_that_cannot_import_is_a_row_not_a_crash(monkeypatch):
    mk = load_kernels("moe_kernels_noquack", monkeypatch, interpret=False)
    x, tok, offsets, w_v = ragged_inputs([3, 5], n_tokens=8, C=16, F=16)
    args = type("Args", (), dict(reps=1, warmup=1))
    row = mk.run_path("quack gemm_act", mk.quack_up(dict(x=x, order_tokens=tok, offsets=offsets, w_v=w_v)),
                      lambda out: {}, 1.0, 0.0, [3, 5], args, torch.device("cpu"))
    assert row["error"].startswith("RuntimeError: quack not importable") and "ms" not in row


@pytest.mark.slow
@needs_triton
def test_paths_filter_times_only_the_named_paths(tmp_path):
    """--paths today: only today's paths of both levers (interpreted, tiny shapes); the JSON line holds them."""
    out = tmp_path / "rows.jsonl"
    proc = subprocess.run([sys.executable, str(KERNELS), "--tokens", "32", "--C", "32", "--F", "32", "--E", "4",
                           "--skew", "0", "--paths", "today", "--json", str(out)], cwd=REPO_DIR, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TRITON_INTERPRET": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json
    rows = json.loads(out.read_text())["rows"]
    assert [(r["lever"], r["path"]) for r in rows] == [("up", "grouped_mm eager (today)"),
                                                       ("down-bwd", "down-bwd grouped_mm eager (today)")]
    assert all(r["rel"] < 1e-2 and "error" not in r for r in rows)
