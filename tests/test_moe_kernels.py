"""bench/moe_kernels.py: the gathered grouped GEMM with a SwiGLU epilogue agrees with its plain reference.

On a CPU: the reference against today's path (02's gather + F.grouped_mm + swiglu), always; when triton is
installed, the Triton kernel itself through Triton's interpreter (TRITON_INTERPRET=1), and every autotune config
compiled for Hopper (no GPU needed) without register spills — every variant (pointers, TMA weights, TMA stores).
On a CUDA GPU: the compiled kernel, every variant and schedule, at a medium shape. Triton is GPU-only and
optional (not in requirements.txt), so CI skips those.
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
