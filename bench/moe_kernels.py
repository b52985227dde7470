"""The experts' "up" GEMM as one Triton kernel: gather the rows, multiply, SwiGLU in the epilogue (issue 25).

Today (02 `moe_grouped`) the way up is three passes over memory per layer and micro-step (linnet: N = 32,768
tokens, k = 2 → S = 65,536 slots, C = 768, F = 2,048, bf16):
    x_sorted = x[order // k]                       writes S × C       ≈ 101 MB (a permuted copy of the tokens)
    h = F.grouped_mm(x_sorted, w_vᵀ, offs)         writes S × 2F      ≈ 537 MB
    a = swiglu(h)                                  reads 537 MB, writes S × F ≈ 268 MB
`gather_gemm_swiglu` does it in one kernel: each program loads its A rows through the gather index (no
x_sorted), keeps two fp32 accumulators — columns j of the gate half and j of the value half of w_v — and
writes only a = silu(gate) · value. What a backward needs is said at `gather_gemm_swiglu`.

    python bench/moe_kernels.py --json out/bench/moe_kernels.jsonl     # on a GPU: linnet's shapes, ≈ 3 min + quack
    python bench/moe_kernels.py --compile-only                          # CPU: what each config compiles to
    TRITON_INTERPRET=1 python bench/moe_kernels.py --tokens 64 --C 64 --F 64 --E 4   # CPU: agreement only

It times (CUDA events, median of --reps after warm-up) today's path eager and torch.compile'd, the grouped GEMM
alone (its ceiling), the Triton kernel in each variant (`VARIANT_CONFIGS`: every operand through pointers; the
weights through the TMA unit; as one wide dot; output tiles stored by the TMA unit) and schedule (one program
per tile; also storing h, what training needs; persistent: one program per multiprocessor walking the tiles),
and quack's `gemm_act` (gathered rows, SwiGLU epilogue; also storing h) from the quack-kernels package; prints ms
and TFLOP/s, each output's error against a float64 reference and the config autotuning chose, then one compact
table. `--compile-only` needs no GPU: it compiles every config for Hopper and prints registers, spills, shared
memory, TMA copies and wgmma width. Triton is a GPU-only optional dependency: it is not in requirements.txt.

The backward lever ("down-bwd" rows): the down projection's input gradient with SwiGLU's derivative in the
epilogue. Today `da = F.grouped_mm(dy_rows, c_proj, offs)` writes S × F ≈ 268 MB, then SwiGLU's backward reads it
and h (537 MB) and writes dh (537 MB); quack's `gemm_dact` (SonicMoE's dgated GEMM) applies the derivative to each
tile of da while it is still in registers, so da never reaches memory — and, with the routing weight p of each
slot (`colvec_scale`), it also gathers dy's rows itself and returns p's gradient Σ_j a_j·da_j (`colvec_reduce`).
Timed: today's path eager (autograd of 02's swiglu) and compiled (`down_backward_grouped`), the GEMM alone, and
quack's `gemm_dact` without and with the gather + p; errors against `down_backward_reference` in float64.

    python bench/moe_kernels.py --variants wide --paths today "GEMM alone" quack "triton wide" --json out/q.jsonl
times only today's paths, the GEMMs alone, quack's rows and the `wide` Triton variant. quack is an optional GPU-only
import: when it fails, its rows say why; its first call autotunes (≈ 9–18 tile configs compiled a row, `first_s`),
--quack-untuned takes its default tile instead. A run stopped by SIGTERM (a time limit) still saves what it measured.
"""
from __future__ import annotations

import functools
import importlib
import json
import os
import re
import signal
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import house  # noqa: E402

model_lib = importlib.import_module("02_model")

try:
    import triton
    import triton.language as tl
    from triton.tools.tensor_descriptor import TensorDescriptor     # a host-side TMA descriptor (Hopper and later)
except ImportError:          # CI and the CPU course: the references below still import and run
    triton = None

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


# --- 1. The plain references ------------------------------------------------------------------------

def gather_gemm_swiglu_reference(x, order_tokens, offsets, w_v):
    """The readable version: for each expert, gather its rows, multiply, SwiGLU (02's swiglu).

    x (N, C); order_tokens (S,) the token of each slot, slots grouped by expert; offsets (E,) the end of
    each expert's group (cumsum of the counts); w_v (E, 2F, C), gate rows first → (S, F).
    >>> x, w = torch.eye(2), torch.ones(1, 2, 2)               # one expert, gate = value = x0 + x1 = 1
    >>> gather_gemm_swiglu_reference(x, torch.tensor([1, 0]), torch.tensor([2]), w)
    tensor([[0.7311],
            [0.7311]])"""
    out = x.new_empty(order_tokens.numel(), w_v.shape[1] // 2)       # (S, F)
    start = 0
    for e, end in enumerate(offsets.tolist()):                       # one host sync: fine for a reference
        rows = x[order_tokens[start:end]]                            # (n_e, C)
        out[start:end] = model_lib.swiglu(rows @ w_v[e].T)           # (n_e, 2F) → (n_e, F)
        start = end
    return out


def moe_up_grouped(x, order_tokens, offsets, w_v):
    """Today's fast path, as in 02 `moe_grouped`: a gathered copy, one grouped GEMM, SwiGLU → (S, F)."""
    x_sorted = x[order_tokens]                                                   # (S, C)
    h = F.grouped_mm(x_sorted, w_v.transpose(-2, -1), offs=offsets.to(torch.int32))   # (S, 2F)
    return model_lib.swiglu(h)                                                   # (S, F)


def swiglu_backward(h, da):
    """SwiGLU's derivative: h (S, 2F) = [gate | value], da = ∂L/∂a (S, F) for a = silu(gate)·value → dh (S, 2F).
    ∂a/∂value = silu(gate); ∂a/∂gate = value · silu'(gate), silu'(g) = σ(g)·(1 + g·(1 − σ(g))). fp32 inside.
    >>> swiglu_backward(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0]]))   # silu'(0) = 1/2, silu(0) = 0
    tensor([[0.5000, 0.0000]])"""
    gate, value = h.float().chunk(2, dim=-1)                                     # (S, F) each
    sig = torch.sigmoid(gate)
    da = da.float()
    d_gate = da * value * sig * (1 + gate * (1 - sig))
    return torch.cat([d_gate, da * gate * sig], dim=-1).to(h.dtype)              # (S, 2F)


def down_backward_reference(dy, c_proj, h, offsets, p=None):
    """The readable down-projection backward up to h: per expert, da = dy_rows @ c_proj[e], then autograd of 02's
    swiglu at the stored pre-activation → dh (S, 2F) = SwiGLU'(h) ⊙ da.

    dy (S, C): the gradient reaching each slot's down-projection output, slots grouped by expert; c_proj (E, C, F);
    h (S, 2F) [gate | value]; offsets (E,) group ends. With p (S,), each slot's routing weight (the slot's output
    was p·y, so dy here is the token's gradient before that weight): da = p·(dy @ c_proj[e]) and also returns p's
    gradient dp = Σ_j a_j·(dy @ c_proj[e])_j → (dh, dp).
    >>> dy, c_proj, h = torch.ones(1, 1), torch.ones(1, 1, 1), torch.tensor([[0.0, 1.0]])   # da = 1
    >>> down_backward_reference(dy, c_proj, h, torch.tensor([1]))
    tensor([[0.5000, 0.0000]])"""
    dh, dp = torch.empty_like(h), h.new_empty(h.shape[0])
    start = 0
    for e, end in enumerate(offsets.tolist()):                   # one host sync: fine for a reference
        g = dy[start:end] @ c_proj[e]                            # (n_e, F) ∂L/∂a before the routing weight
        h_e = h[start:end].detach().requires_grad_()
        with torch.enable_grad():
            a = model_lib.swiglu(h_e)                            # (n_e, F)
        da = g if p is None else g * p[start:end, None]
        dh[start:end] = torch.autograd.grad(a, h_e, da)[0]
        dp[start:end] = (a.detach() * g).sum(-1)
        start = end
    return dh if p is None else (dh, dp)


def down_backward_grouped(dy, c_proj, h, offsets, order_tokens=None, p=None):
    """Today's ops (02 `moe_grouped`'s backward, what torch.compile fuses): one grouped GEMM for da, then SwiGLU's
    derivative → dh (S, 2F). With order_tokens and p: dy is per token (N, C), its rows are gathered first, and
    p's gradient is returned too → (dh, dp), as `down_backward_reference`."""
    rows = dy if order_tokens is None else dy[order_tokens]                      # (S, C)
    g = F.grouped_mm(rows, c_proj, offs=offsets.to(torch.int32))                 # (S, F)
    if p is None:
        return swiglu_backward(h, g)
    dp = (model_lib.swiglu(h.float()) * g.float()).sum(-1)                      # (S,)
    return swiglu_backward(h, g.float() * p[:, None]), dp


def interleave_halves(t):
    """[first | second] along the last dim → [f0, s0, f1, s1, …]: quack's layout for gated activations (its
    gate is column 2j, its value column 2j + 1).
    >>> interleave_halves(torch.arange(6))
    tensor([0, 3, 1, 4, 2, 5])"""
    return t.unflatten(-1, (2, t.shape[-1] // 2)).transpose(-1, -2).flatten(-2)


def deinterleave_halves(t):
    """The inverse of `interleave_halves`: [f0, s0, f1, s1, …] → [first | second]."""
    return torch.cat([t[..., 0::2], t[..., 1::2]], dim=-1)


# --- 2. The Triton kernel ---------------------------------------------------------------------------

if triton is not None:
    @triton.jit
    def _tile_of_expert(ends_ptr, tile_m, E: tl.constexpr, BLOCK_M: tl.constexpr):
        """Which expert's rows M-tile number `tile_m` covers: the ragged groups' tiles are numbered in order
        (expert 0's ceil(n_0 / BLOCK_M) tiles, then expert 1's, …). Returns (expert or -1, first row, end)."""
        start = 0
        first_tile = 0
        expert, row0, row_end = -1, 0, 0
        for e in tl.static_range(E):                     # E = 8 scalar steps: cheaper than a table
            end = tl.load(ends_ptr + e)
            n_tiles = tl.cdiv(end - start, BLOCK_M)      # 0 for an expert with no slots
            hit = (tile_m >= first_tile) & (tile_m < first_tile + n_tiles)
            expert = tl.where(hit, e, expert)
            row0 = tl.where(hit, start + (tile_m - first_tile) * BLOCK_M, row0)
            row_end = tl.where(hit, end, row_end)
            first_tile += n_tiles
            start = end
        return expert, row0, row_end

    @triton.jit
    def _count_m_tiles(ends_ptr, E: tl.constexpr, BLOCK_M: tl.constexpr):
        """Σ_e ceil(n_e / BLOCK_M): the M-tiles that hold real rows (the persistent loop's exact bound)."""
        start = 0
        total = 0
        for e in tl.static_range(E):
            end = tl.load(ends_ptr + e)
            total += tl.cdiv(end - start, BLOCK_M)
            start = end
        return total

    @triton.jit
    def _k_loop_pointers(a_ptrs, w_ptr, expert, cols, acc_g, acc_v, C: tl.constexpr, F: tl.constexpr,
                         BLOCK_K: tl.constexpr, INTERPRETED: tl.constexpr):
        """Σ over K of A·w_gateᵀ and A·w_valueᵀ, every operand loaded through pointers (cp.async on Hopper)."""
        ks = tl.arange(0, BLOCK_K)
        g_ptrs = (w_ptr + expert.to(tl.int64) * 2 * F * C                 # (BK, BN) w_gateᵀ, K contiguous
                  + tl.minimum(cols, F - 1)[None, :].to(tl.int64) * C + ks[:, None])
        for _ in range(0, C, BLOCK_K):                                    # C % BLOCK_K == 0 (checked)
            a, g, v = tl.load(a_ptrs), tl.load(g_ptrs), tl.load(g_ptrs + F * C)   # value rows: F below
            if INTERPRETED:     # Triton 3.6's interpreter multiplies bf16 tiles as raw uint16: upcast there only
                a, g, v = a.to(tl.float32), g.to(tl.float32), v.to(tl.float32)
            acc_g = tl.dot(a, g, acc_g)
            acc_v = tl.dot(a, v, acc_v)
            a_ptrs += BLOCK_K
            g_ptrs += BLOCK_K
        return acc_g, acc_v

    @triton.jit
    def _k_loop_tma(a_ptrs, w_desc, n0, acc_g, acc_v, C: tl.constexpr, F: tl.constexpr, BLOCK_K: tl.constexpr,
                    INTERPRETED: tl.constexpr):
        """The same sum with the weight tiles fetched by the TMA unit: w_desc views w_v as (E·2F, C) and hands
        (BLOCK_N, BLOCK_K) boxes — gate rows from n0, value rows from n0 + F. Rows past a tensor's end read as 0;
        rows past the gate half (F % BLOCK_N ≠ 0) land in columns that are never stored. A stays gathered."""
        for k in range(0, C, BLOCK_K):                                    # C % BLOCK_K == 0 (checked)
            a = tl.load(a_ptrs + k)                                       # (BM, BK) gathered rows
            g, v = w_desc.load([n0, k]), w_desc.load([n0 + F, k])         # (BN, BK) each, K contiguous
            if INTERPRETED:
                a, g, v = a.to(tl.float32), g.to(tl.float32), v.to(tl.float32)
            acc_g = tl.dot(a, g.T, acc_g)
            acc_v = tl.dot(a, v.T, acc_v)
        return acc_g, acc_v

    @triton.jit
    def _k_loop_wide(a_ptrs, w_desc, expert, j0, C: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_K: tl.constexpr, INTERPRETED: tl.constexpr):
        """The same sum as ONE dot of 2·BLOCK_N columns a K-step: w_desc views w_v as (E, 2, F, C), and its
        (1, 2, BN, BK) box brings gate rows j0… and value rows F + j0… side by side ((2BN, BK) in shared memory).
        Each warp group then issues one 64 × 256 wgmma where two 64 × 128 ones read its A tile twice, and the
        split of the accumulator into gate | value is free: column c and BN + c live in the same thread. Rows
        past F (F % BLOCK_N ≠ 0) read as 0."""
        acc = tl.zeros((BLOCK_M, 2 * BLOCK_N), dtype=tl.float32)          # (BM, 2BN) [gate | value]
        for k in range(0, C, BLOCK_K):                                    # C % BLOCK_K == 0 (checked)
            a = tl.load(a_ptrs + k)                                       # (BM, BK) gathered rows
            b = w_desc.load([expert, 0, j0, k]).reshape(2 * BLOCK_N, BLOCK_K)   # (2BN, BK), K contiguous
            if INTERPRETED:
                a, b = a.to(tl.float32), b.to(tl.float32)
            acc = tl.dot(a, b.T, acc)
        return tl.split(tl.permute(acc.reshape(BLOCK_M, 2, BLOCK_N), (0, 2, 1)))   # (BM, BN) gate, value

    @triton.jit
    def _swiglu_tile(x_ptr, tok_ptr, w_ptr, w_desc, out_ptr, out_desc, h_ptr, h_desc, expert, row0, row_end, tile_n,
                     C: tl.constexpr, F: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_K: tl.constexpr, STORE_H: tl.constexpr, INTERPRETED: tl.constexpr, TMA_B: tl.constexpr,
                     TMA_STORE: tl.constexpr, WIDE: tl.constexpr):
        """One tile (BLOCK_M slots of `expert` from row0, BLOCK_N columns j) of a = silu(x[tok]w_gᵀ)·(x[tok]w_vᵀ):
        gate column j is row j of w_v[e], value column j is row F + j; A rows are loaded through the gather.
        TMA_STORE: a tile whose rows all belong to `expert` is written by the TMA unit from shared memory (the
        store runs on while the program goes on); an expert's last, partial tile keeps the masked stores — a
        TMA box would spill its tail rows over the next expert's first rows."""
        rows = row0 + tl.arange(0, BLOCK_M)                               # (BM,) slots of this tile
        tok = tl.load(tok_ptr + tl.minimum(rows, row_end - 1)).to(tl.int64)   # tail rows re-read a valid row
        cols = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)                   # (BN,)  and are never stored
        a_ptrs = x_ptr + tok[:, None] * C + tl.arange(0, BLOCK_K)[None, :]   # (BM, BK) gathered rows of x
        acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc_v = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        if WIDE:                                         # (needs TMA_B: w_desc is then the 4-D view)
            acc_g, acc_v = _k_loop_wide(a_ptrs, w_desc, expert, tile_n * BLOCK_N, C, BLOCK_M, BLOCK_N, BLOCK_K,
                                        INTERPRETED)
        elif TMA_B:
            acc_g, acc_v = _k_loop_tma(a_ptrs, w_desc, expert * 2 * F + tile_n * BLOCK_N, acc_g, acc_v, C, F,
                                       BLOCK_K, INTERPRETED)
        else:
            acc_g, acc_v = _k_loop_pointers(a_ptrs, w_ptr, expert, cols, acc_g, acc_v, C, F, BLOCK_K, INTERPRETED)
        if F % BLOCK_N == 0:        # whole tiles: a row mask only, so the stores stay 16-byte vectors
            mask = (rows < row_end)[:, None]                              # (BM, 1)
        else:
            mask = (rows < row_end)[:, None] & (cols < F)[None, :]       # (BM, BN)
        out = (acc_g * tl.sigmoid(acc_g) * acc_v).to(out_ptr.dtype.element_ty)   # SwiGLU in fp32, one rounding
        g, v = acc_g.to(h_ptr.dtype.element_ty), acc_v.to(h_ptr.dtype.element_ty)   # the pre-activation h
        if TMA_STORE and F % BLOCK_N == 0:               # (whole tiles along N: a box never crosses gate | value)
            if row0 + BLOCK_M <= row_end:
                out_desc.store([row0, tile_n * BLOCK_N], out)             # (BM, BN) box at (row0, j0)
                if STORE_H:
                    h_desc.store([row0, tile_n * BLOCK_N], g)
                    h_desc.store([row0, F + tile_n * BLOCK_N], v)
            else:
                _store_masked(out_ptr, h_ptr, out, g, v, rows, cols, mask, F, STORE_H)
        else:
            _store_masked(out_ptr, h_ptr, out, g, v, rows, cols, mask, F, STORE_H)

    @triton.jit
    def _store_masked(out_ptr, h_ptr, out, g, v, rows, cols, mask, F: tl.constexpr, STORE_H: tl.constexpr):
        """Write a tile's a (row-major (S, F)) and, when STORE_H, its [gate | value] (row-major (S, 2F)): the
        gate tile at column j, the value tile at F + j. Rows past the expert's end are masked off."""
        rows64 = rows.to(tl.int64)[:, None]
        tl.store(out_ptr + rows64 * F + cols[None, :], out, mask=mask)
        if STORE_H:                                      # pre-activation [gate | value] for a backward
            h_row = h_ptr + rows64 * 2 * F + cols[None, :]
            tl.store(h_row, g, mask=mask)
            tl.store(h_row + F, v, mask=mask)

    @triton.jit
    def _gather_gemm_swiglu_kernel(x_ptr, tok_ptr, ends_ptr, w_ptr, w_desc, out_ptr, out_desc, h_ptr, h_desc,
                                   C: tl.constexpr, F: tl.constexpr, E: tl.constexpr,
                                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                                   STORE_H: tl.constexpr, INTERPRETED: tl.constexpr, NUM_PROGS: tl.constexpr,
                                   TMA_B: tl.constexpr = False, TMA_STORE: tl.constexpr = False,
                                   WIDE: tl.constexpr = False, GROUP_M: tl.constexpr = 1):
        """NUM_PROGS = 0: one program per tile (the grid bounds the tiles; spare programs return at once).
        NUM_PROGS > 0: persistent: that many programs walk the real tiles, tile = pid, pid + NUM_PROGS, …, in one
        flattened loop, so the next tile's loads start while this tile's epilogue runs. C and F are compile-time
        constants (the K loop's trip count is known; the interpreter needs that too). TMA_B: the weights come
        through the descriptor w_desc (`_k_loop_tma`), WIDE: as one dot of 2·BLOCK_N columns (`_k_loop_wide`);
        TMA_STORE: whole tiles leave through out_desc / h_desc (`_swiglu_tile`). GROUP_M > 1 (one program per
        tile): programs in a row take GROUP_M M-tiles × every N-tile, M fastest, so neighbours share weight
        columns as well as rows."""
        n_tiles_n = tl.cdiv(F, BLOCK_N)
        if NUM_PROGS == 0:
            tile_m, tile_n = tl.program_id(0) // n_tiles_n, tl.program_id(0) % n_tiles_n
            if GROUP_M > 1:                              # the grid is a whole number of M-tiles (see `grid`)
                per_group = GROUP_M * n_tiles_n
                first_m = (tl.program_id(0) // per_group) * GROUP_M
                in_group = tl.minimum(tl.num_programs(0) // n_tiles_n - first_m, GROUP_M)
                tile_m = first_m + (tl.program_id(0) % per_group) % in_group
                tile_n = (tl.program_id(0) % per_group) // in_group
            expert, row0, row_end = _tile_of_expert(ends_ptr, tile_m, E, BLOCK_M)
            if expert >= 0:
                _swiglu_tile(x_ptr, tok_ptr, w_ptr, w_desc, out_ptr, out_desc, h_ptr, h_desc, expert, row0, row_end,
                             tile_n, C, F, BLOCK_M, BLOCK_N, BLOCK_K, STORE_H, INTERPRETED, TMA_B, TMA_STORE, WIDE)
        elif INTERPRETED:   # the same walk; Triton 3.6's interpreter (numpy ≥ 2.4) cannot range() over run-time ints
            tile, n_tiles = tl.program_id(0), _count_m_tiles(ends_ptr, E, BLOCK_M) * n_tiles_n
            while tile < n_tiles:
                expert, row0, row_end = _tile_of_expert(ends_ptr, tile // n_tiles_n, E, BLOCK_M)
                _swiglu_tile(x_ptr, tok_ptr, w_ptr, w_desc, out_ptr, out_desc, h_ptr, h_desc, expert, row0, row_end,
                             tile % n_tiles_n, C, F, BLOCK_M, BLOCK_N, BLOCK_K, STORE_H, INTERPRETED, TMA_B,
                             TMA_STORE, WIDE)
                tile += NUM_PROGS
        else:
            n_tiles = _count_m_tiles(ends_ptr, E, BLOCK_M) * n_tiles_n
            # one flattened loop; not with TMA_STORE (Triton 3.6's loop fusion fails on its branchy epilogue,
            # and the TMA stores run on into the next tile's K loop anyway)
            for tile in tl.range(tl.program_id(0), n_tiles, NUM_PROGS, flatten=not TMA_STORE):
                expert, row0, row_end = _tile_of_expert(ends_ptr, tile // n_tiles_n, E, BLOCK_M)
                _swiglu_tile(x_ptr, tok_ptr, w_ptr, w_desc, out_ptr, out_desc, h_ptr, h_desc, expert, row0, row_end,
                             tile % n_tiles_n, C, F, BLOCK_M, BLOCK_N, BLOCK_K, STORE_H, INTERPRETED, TMA_B,
                             TMA_STORE, WIDE)

    def _set_boxes(nargs):
        """An autotune pre-hook: the descriptors' boxes follow the config's tile (`descriptor_boxes`)."""
        boxes = descriptor_boxes(nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"], nargs.get("WIDE", False))
        for name, box in boxes.items():
            if nargs.get(name) is not None:
                nargs[name].block_shape = box

    def _configs(shapes, **flags):
        return [triton.Config(dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, **flags, **extra), num_warps=w, num_stages=s,
                              pre_hook=_set_boxes if flags.get("TMA_B") else None)
                for bm, bn, bk, w, s, extra in shapes]

    # Two (BLOCK_M, BLOCK_N) fp32 accumulators share each A tile (128 registers a thread at 128/128 and 8 warps).
    # Each config compiles for sm_90 with pipelined (cp.async / TMA) loads, no register spills and 16-byte stores
    # (`--compile-only`); (128, 128) at 4 warps spills, so it is not here, nor BLOCK_N 256 (256 accumulator
    # registers a thread). 128/64/64 at 8 warps and 3 stages needs ≈ 100 registers and 96 KB of shared memory:
    # two programs share a multiprocessor, one's epilogue runs under the other's K loop (a 128/128 tile holds a
    # multiprocessor alone). The variants ("pointers" is the first kernel; the others add one idea each):
    #   pointers        every operand through pointers (cp.async)
    #   tma             the weight tiles through the TMA unit (+ GROUP_M 8 tile order)
    #   tma_store       + whole output tiles written by the TMA unit (its staging needs up to 96 KB more)
    #   wide            the weights through TMA as ONE dot of 2·BLOCK_N columns (64 × 256 wgmma, `_k_loop_wide`)
    #   wide_store      wide + TMA stores
    # Triton 3.6 does not warp-specialise on Hopper (tl.range(warp_specialize=True) compiles to the same kernel
    # for sm_90, even a plain TMA matmul's), so no variant asks for it.
    _FAST = [(128, 128, 64, 8, 3, {}), (128, 128, 64, 8, 4, {}), (128, 64, 64, 8, 3, {})]
    VARIANT_CONFIGS = {
        "pointers": _configs(_FAST + [(128, 64, 64, 4, 4, {}), (128, 64, 128, 8, 3, {})]),
        "tma": _configs(_FAST + [(128, 128, 64, 8, 4, dict(GROUP_M=8))], TMA_B=True),
        "tma_store": _configs([(128, 128, 64, 8, 2, {})] + _FAST, TMA_B=True, TMA_STORE=True),
        "wide": _configs(_FAST + [(128, 128, 128, 8, 2, {})], TMA_B=True, WIDE=True),
        "wide_store": _configs([(128, 128, 64, 8, 2, {})] + _FAST, TMA_B=True, TMA_STORE=True, WIDE=True),
    }
    _prune = dict(early_config_prune=lambda configs, nargs, **_: [   # only tiles whose BLOCK_K divides C (the K
        c for c in configs if nargs["C"] % c.kwargs["BLOCK_K"] == 0])   # loop has no mask)
    _TUNED = {name: triton.autotune(configs, key=["C", "F", "STORE_H", "NUM_PROGS"], prune_configs_by=_prune)(
        _gather_gemm_swiglu_kernel) for name, configs in VARIANT_CONFIGS.items()}

INTERPRET_CONFIG = dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16)   # small tiles: several per group on tiny shapes
VARIANT_FLAGS = {"pointers": dict(TMA_B=False, TMA_STORE=False, WIDE=False),    # what each variant moves with
                 "tma": dict(TMA_B=True, TMA_STORE=False, WIDE=False),          # the TMA unit, and how it
                 "tma_store": dict(TMA_B=True, TMA_STORE=True, WIDE=False),     # multiplies
                 "wide": dict(TMA_B=True, TMA_STORE=False, WIDE=True),
                 "wide_store": dict(TMA_B=True, TMA_STORE=True, WIDE=True)}


def descriptor_boxes(block_m, block_n, block_k, wide):
    """The TMA boxes of one tile: weights (BLOCK_N rows × BLOCK_K of the (E·2F, C) view, or (1, 2, BLOCK_N,
    BLOCK_K) of the (E, 2, F, C) view when wide), out and h (BLOCK_M × BLOCK_N) → name → box."""
    w = [1, 2, block_n, block_k] if wide else [block_n, block_k]
    return dict(w_desc=w, out_desc=[block_m, block_n], h_desc=[block_m, block_n])


def check_inputs(x, order_tokens, offsets, w_v, block_k):
    """The kernel's contract, in one-line errors: same dtype, contiguous, C a multiple of BLOCK_K."""
    E, F2, C = w_v.shape
    if x.dtype != w_v.dtype or x.shape[1] != C:
        raise ValueError(f"x {tuple(x.shape)} {x.dtype} and w_v {tuple(w_v.shape)} {w_v.dtype} must share C and dtype")
    if offsets.numel() != E or F2 % 2 or C % block_k:
        raise ValueError(f"need offsets of E={E} group ends, an even 2F={F2}, and C={C} a multiple of {block_k}")
    if not (x.is_contiguous() and w_v.is_contiguous() and order_tokens.is_contiguous()):
        raise ValueError("x, order_tokens and w_v must be contiguous")


def gather_gemm_swiglu(x, order_tokens, offsets, w_v, *, store_h=False, out=None, config=None, persistent=False,
                       variant="pointers"):
    """a = silu(x[tok] @ w_gateᵀ) · (x[tok] @ w_valueᵀ) per expert group, in one Triton kernel → (S, F),
    or (a, h) with h (S, 2F) the pre-activation [gate | value] when store_h.

    Arguments as `gather_gemm_swiglu_reference` (offsets int32, order_tokens int32 or int64). The tile schedule
    needs no host sync: the grid is an upper bound, cdiv(S, BLOCK_M) + E M-tiles × cdiv(F, BLOCK_N), and each
    program finds its expert by scanning the E group ends (`_tile_of_expert`). persistent=True launches one
    program per multiprocessor (3 under the interpreter) that loops over the tiles instead. `config` pins one
    tile shape (dict BLOCK_M/BLOCK_N/BLOCK_K, optional GROUP_M/num_warps/num_stages); otherwise it is autotuned on
    a GPU among `VARIANT_CONFIGS[variant]`: "pointers", "tma" (weights through a TMA descriptor) or "tma_store"
    (+ whole output tiles written through TMA descriptors; out must then be contiguous).

    What a backward needs (the design of SonicMoE, built on quack's gated GEMMs): its forward writes both the
    pre-activation h (its "z", S × 2F, saved for the backward) and a (S × F, consumed by the down GEMM and NOT
    saved). The down-projection's backward is one gathered GEMM dy[tok] @ w_down per group whose epilogue reads
    h and the routing weight p and writes dh = SwiGLU'(h)·(that · p), p·a recomputed (for dW_down) and the
    routing weight's gradient (a row sum of that · a). The up-projection's backward then needs only x, the
    gather index and dh: dW_v = x[tok]ᵀ dh per group (a grouped GEMM gathering along K) and dx = the sum over
    each token's k slots of dh @ w_v[e]."""
    if variant not in VARIANT_FLAGS:
        raise ValueError(f"variant must be one of {sorted(VARIANT_FLAGS)}, not {variant!r}")
    S, (E, F2, C) = order_tokens.numel(), w_v.shape
    block_k = (config or {}).get("BLOCK_K", INTERPRET_CONFIG["BLOCK_K"] if INTERPRET else 64)
    check_inputs(x, order_tokens, offsets, w_v, block_k)
    out = x.new_empty(S, F2 // 2) if out is None else out                   # (S, F)
    h = x.new_empty(S, F2) if store_h else out                             # (S, 2F); unused when not stored
    progs = (3 if INTERPRET else torch.cuda.get_device_properties(x.device).multi_processor_count) if persistent else 0

    def grid(meta):  # persistent: `progs` programs; else an upper bound on the tiles, known without a host sync
        return (progs or (triton.cdiv(S, meta["BLOCK_M"]) + E) * triton.cdiv(F2 // 2, meta["BLOCK_N"]),)

    flags = VARIANT_FLAGS[variant]
    tile = config or INTERPRET_CONFIG                   # the boxes; autotuned: each config's pre-hook resets them
    box = descriptor_boxes(tile["BLOCK_M"], tile["BLOCK_N"], tile["BLOCK_K"], flags["WIDE"])
    w_desc = out_desc = h_desc = None
    if flags["WIDE"]:                                                        # w_v as (E, 2, F, C)
        w_desc = TensorDescriptor(w_v, [E, 2, F2 // 2, C], [F2 * C, F2 // 2 * C, C, 1], box["w_desc"])
    elif flags["TMA_B"]:                                                     # w_v as (E·2F, C) rows
        w_desc = TensorDescriptor(w_v, [E * F2, C], [C, 1], box["w_desc"])
    if flags["TMA_STORE"]:
        if not out.is_contiguous() or (F2 // 2) % 8:
            raise ValueError(f"variant {variant} needs a contiguous out and F a multiple of 8 (16-byte rows)")
        out_desc = TensorDescriptor(out, [S, F2 // 2], [F2 // 2, 1], box["out_desc"])
        h_desc = TensorDescriptor(h, [S, F2], [F2, 1], box["h_desc"]) if store_h else None
    args = (x, order_tokens, offsets, w_v, w_desc, out, out_desc, h, h_desc, C, F2 // 2)
    if config is None and not INTERPRET:
        _TUNED[variant][grid](*args, E=E, STORE_H=store_h, INTERPRETED=False, NUM_PROGS=progs)
    else:
        config = {k: v for k, v in (config or INTERPRET_CONFIG).items() if k not in flags}   # flags: the variant's
        launch = {k: config.pop(k) for k in ("num_warps", "num_stages") if k in config}
        _gather_gemm_swiglu_kernel[grid](*args, E=E, STORE_H=store_h, INTERPRETED=INTERPRET, NUM_PROGS=progs,
                                         **flags, **config, **launch)
    return (out, h) if store_h else out


def compile_one(variant, cfg, store_h, progs, C=768, F_=2048, E=8, arch=90):
    """Compile one config of one variant for a GPU architecture WITHOUT a GPU (Triton's own ptxas) → kernel."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    kw = cfg.kwargs
    names = ["x_ptr", "tok_ptr", "ends_ptr", "w_ptr", "w_desc", "out_ptr", "out_desc", "h_ptr", "h_desc"]
    box = {n: f"tensordesc<bf16{b}>" for n, b in descriptor_boxes(kw["BLOCK_M"], kw["BLOCK_N"], kw["BLOCK_K"],
                                                                   kw.get("WIDE", False)).items()}
    descs = [box["w_desc"] if kw.get("TMA_B") else "constexpr", box["out_desc"] if kw.get("TMA_STORE") else "constexpr",
             box["h_desc"] if kw.get("TMA_STORE") and store_h else "constexpr"]   # "constexpr": passed as None
    signature = dict(zip(names, ["*bf16", "*i32", "*i32", "*bf16", descs[0], "*bf16", descs[1], "*bf16", descs[2]]))
    signature.update({n: "constexpr" for n in ("C", "F", "E", "BLOCK_M", "BLOCK_N", "BLOCK_K", "STORE_H", "INTERPRETED",
                                                "NUM_PROGS", "TMA_B", "TMA_STORE", "WIDE", "GROUP_M")})
    aligned = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if n.endswith("_ptr")}  # as torch's
    constants = {**dict(C=C, F=F_, E=E, STORE_H=store_h, INTERPRETED=False, NUM_PROGS=progs, TMA_B=False,
                        TMA_STORE=False, WIDE=False, GROUP_M=1), **kw}
    constants.update({n: None for n, d in zip(("w_desc", "out_desc", "h_desc"), descs) if d == "constexpr"})
    return triton.compile(ASTSource(_gather_gemm_swiglu_kernel, signature, constants, attrs=aligned),
                          target=GPUTarget("cuda", arch, 64),
                          options=dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages))


def resource_row(variant, cfg, store_h, progs, C=768, F_=2048, E=8, arch=90):
    """What decides one compiled config's speed: registers a thread, bytes spilled to local memory (0 wanted),
    shared memory, how many global→shared copies are asynchronous (cp.async: software-pipelined) or TMA, whether
    the K loop was warp-specialised, the widest wgmma (N of m64nNk16), and the global stores by width (16-byte v4
    wanted) → dict."""
    import subprocess
    import tempfile
    kernel = compile_one(variant, cfg, store_h, progs, C, F_, E, arch)
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(kernel.asm["cubin"])
        usage = subprocess.run([str(cuobjdump), "--dump-resource-usage", str(cubin)],
                               capture_output=True, text=True, check=True).stdout
    fields = dict(f.split(":") for f in usage.split("Resource usage:")[-1].split() if ":" in f)
    ttgir, ptx = kernel.asm["ttgir"], kernel.asm["ptx"]
    tile = "/".join(str(cfg.kwargs[n]) for n in ("BLOCK_M", "BLOCK_N", "BLOCK_K"))
    return dict(variant=variant, tile=tile, warps=cfg.num_warps, stages=cfg.num_stages,
                group_m=cfg.kwargs.get("GROUP_M", 1), store_h=store_h, persistent=progs > 0,
                regs=int(fields["REG"]), spill=int(fields["STACK"]), smem=kernel.metadata.shared,
                async_copies=ttgir.count("async_copy_global_to_local"),
                tma_loads=len(re.findall(r"cp\.async\.bulk\.tensor\.\dd\.shared", ptx)),
                tma_stores=len(re.findall(r"cp\.async\.bulk\.tensor\.\dd\.global", ptx)),
                warp_specialized="ttg.warp_specialize" in ttgir,
                wgmma_n=max(map(int, re.findall(r"wgmma\.mma_async\.sync\.aligned\.m64n(\d+)k", ptx)), default=0),
                stores_v4=ptx.count("st.global.v4"),
                stores_narrow=sum(ptx.count(f"st.global.{w}") for w in ("b16", "b32", "v2")))


def compile_report(C=768, F_=2048, E=8, arch=90, variants=None):
    """`resource_row` of every autotune config of every variant, at each of its `TRITON_SCHEDULES` (persistent:
    132 programs, an H200's multiprocessors) → list of dicts."""
    rows = []
    for variant in variants or VARIANT_CONFIGS:
        schedules = [(store_h, 132 if persistent else 0) for store_h, persistent in TRITON_SCHEDULES[variant]]
        rows += [resource_row(variant, cfg, store_h, progs, C, F_, E, arch)
                 for cfg in VARIANT_CONFIGS[variant] for store_h, progs in schedules]
    return rows


# --- 3. Inputs, errors, timing ------------------------------------------------------------------------

def make_inputs(n_tokens, k, C, F_, E, skew, device, seed=0):
    """Random x (N, C) and w_v (E, 2F, C) in bf16 (scaled like trained weights), and linnet's routing of
    random router logits (skew > 0 adds a per-expert bias: a router that prefers some experts) → dict."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_tokens, C, generator=g).to(device, torch.bfloat16)                    # (N, C)
    w_v = (torch.randn(E, 2 * F_, C, generator=g) * C ** -0.5).to(device, torch.bfloat16)  # (E, 2F, C)
    logits = torch.randn(n_tokens, E, generator=g) + skew * torch.linspace(1, -1, E)          # (N, E)
    _, _, top_e = model_lib.route(logits.to(device), k)                                     # (N, k)
    order, counts = model_lib.sort_slots(top_e.reshape(-1), E)                              # (S,), (E,)
    return dict(x=x, w_v=w_v, order_tokens=(order // k).to(torch.int32).contiguous(),
                offsets=torch.cumsum(counts, 0).to(torch.int32), counts=counts.tolist())


def errors(out, truth):
    """max |out − truth| and ‖out − truth‖ / ‖truth‖ against the float64 truth."""
    d = out.double() - truth
    return dict(max_abs=d.abs().max().item(), rel=(d.norm() / truth.norm()).item())


def cuda_median_ms(fn, reps, warmup):
    """Median (and 10th/90th percentile) ms of fn() by CUDA events, one event pair per call, after warm-up."""
    for _ in range(warmup):
        fn()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    torch.cuda.synchronize()
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    ms = sorted(s.elapsed_time(e) for s, e in events)
    return dict(ms=statistics.median(ms), p10=ms[len(ms) // 10], p90=ms[(9 * len(ms)) // 10])


@functools.lru_cache(maxsize=None)
def import_quack():
    """quack-kernels' gemm_interface and version, or None and the one-line reason it cannot be imported (not
    installed, or its CUDA DSL libraries broken) → (module or None, str). Imported once, on a GPU only."""
    try:
        interface = importlib.import_module("quack.gemm_interface")
        return interface, importlib.import_module("quack").__version__
    except Exception as e:  # noqa: BLE001 -- ImportError, OSError (a missing .so), RuntimeError (CUDA)...
        return None, f"quack not importable: {type(e).__name__}: {str(e)[:200]}"


def quack_interface():
    """quack.gemm_interface, or raise the reason it cannot be imported (each quack row reports it)."""
    interface, why = import_quack()
    if interface is None:
        raise RuntimeError(why)
    accept_context_vars()
    return interface


def accept_context_vars():
    """quack 0.6.5 keys its kernel cache on everything an epilogue's code reaches, and stops at objects it has no
    key for. nvidia-cutlass-dsl 4.8.1 (the newest, which pip pairs with it) reaches objects it has none for (a
    module-level ContextVar `_LOC_TRANSFORMS`, the method descriptor `code.co_positions`), so every quack GEMM
    raised TypeError on the H200 (2026-12-04). The cause (found 2026-12-06, BENCHMARKS.md "Throughput IV"): the wheels
    were installed with `pip --target` into a folder not named site-packages, so quack walked into cutlass's own code;
    installed normally no patch is needed. Kept for such installs: a leaf keyed by its type and name."""
    from quack.gemm_runtime import identity
    if getattr(identity.semantic_value_key, "accepts_leaves", False):
        return
    plain = identity.semantic_value_key

    def key(value, seen):
        try:
            return plain(value, seen)
        except TypeError:
            return ("leaf", type(value).__module__, type(value).__qualname__,
                    getattr(value, "__qualname__", getattr(value, "name", None)))
    key.accepts_leaves = True
    identity.semantic_value_key = key


def cu_seqlens(offsets):
    """quack's group bounds: (E + 1,) int32 starts and ends [0, end_0, end_1, …] from 02's (E,) group ends."""
    return torch.cat([offsets.new_zeros(1), offsets]).to(torch.int32)


def quack_up(inputs, store_preact=False, tuned=True):
    """quack-kernels' gathered grouped GEMM with a SwiGLU epilogue (`gemm_act`) → zero-argument callable returning
    a (S, F). quack's B is (E, K, N) = (E, C, 2F) with gate/value interleaved columns ([g0, v0, g1, v1, …]: its
    gate is column 2j); here K-contiguous, like quack's own MLP (weight.T). cu_seqlens_m: (E + 1,) group bounds;
    A_idx: the token of each slot (int32). store_preact=True also writes the pre-activation (S, 2F), interleaved
    (what a backward needs). It returns (preact or None, postact)."""
    w_v, offsets = inputs["w_v"], inputs["offsets"]
    E, F2, C = w_v.shape
    w_il = w_v.view(E, 2, F2 // 2, C).transpose(1, 2).reshape(E, F2, C).transpose(1, 2)   # (E, C, 2F)
    cu = cu_seqlens(offsets)                                                              # (E + 1,)

    def run():
        return quack_interface().gemm_act(inputs["x"], w_il, activation="swiglu", cu_seqlens_m=cu,
                                          A_idx=inputs["order_tokens"], store_preact=store_preact, tuned=tuned)[1]
    return run


def make_backward_inputs(inputs, F_, seed=1):
    """The down projection's backward at the routing of `inputs`: c_proj (E, C, F) bf16 (scaled like trained
    weights); dy (N, C), the gradient reaching each token's MoE output, and dy_rows (S, C) = dy[token of each
    slot]; p (S,) fp32, each slot's routing weight; h (S, 2F) [gate | value], today's forward pre-activation
    (F.grouped_mm of the gathered x and w_vᵀ) → dict."""
    g = torch.Generator().manual_seed(seed)
    x, tok, offsets, w_v = inputs["x"], inputs["order_tokens"], inputs["offsets"], inputs["w_v"]
    E, C, device = w_v.shape[0], w_v.shape[2], x.device
    c_proj = (torch.randn(E, C, F_, generator=g) * F_ ** -0.5).to(device, torch.bfloat16)    # (E, C, F)
    dy = torch.randn(x.shape[0], C, generator=g).to(device, torch.bfloat16)                   # (N, C)
    p = torch.rand(tok.numel(), generator=g).to(device)                                       # (S,)
    h = F.grouped_mm(x[tok], w_v.transpose(-2, -1), offs=offsets)                             # (S, 2F)
    return dict(c_proj=c_proj, dy=dy, dy_rows=dy[tok], p=p, h=h)


def quack_down_backward(inputs, bwd, gathered=False, tuned=True):
    """quack's `gemm_dact` with activation "swiglu" (dgated): dh = SwiGLU'(h) ⊙ (dy_rows @ c_proj[e]) per group,
    with c_proj as quack's B (E, K, N) = (E, C, F) and h interleaved (S, 2F) → (callable, canon): the callable
    returns quack's outputs (dh interleaved, a recomputed[, dp]); canon turns them into what
    `down_backward_reference` returns. gathered=True: A = dy (N, C) gathered through A_idx (the token of each
    slot), each row scaled by its routing weight (colvec_scale = p: da = p·(dy @ c_proj)) and p's gradient
    returned (colvec_reduce: Σ_j a_j·(dy @ c_proj)_j, unscaled)."""
    cu = cu_seqlens(inputs["offsets"])
    h_il = interleave_halves(bwd["h"])                                      # (S, 2F) [g0, v0, g1, v1, …]
    if not gathered:
        def run():
            return quack_interface().gemm_dact(bwd["dy_rows"], bwd["c_proj"], h_il, activation="swiglu",
                                               cu_seqlens_m=cu, tuned=tuned)
        return run, lambda out: deinterleave_halves(out[0])

    def run_gathered():
        return quack_interface().gemm_dact(bwd["dy"], bwd["c_proj"], h_il, activation="swiglu", cu_seqlens_m=cu,
                                           A_idx=inputs["order_tokens"], colvec_scale=bwd["p"],
                                           colvec_reduce=True, tuned=tuned)
    return run_gathered, lambda out: (deinterleave_halves(out[0]), out[2])


# (store_h, persistent) timed for each variant; fewer than all four keeps autotuning inside the ≈ 3-minute budget
TRITON_SCHEDULES = {"pointers": ((False, False), (True, False), (False, True)),
                    "tma": ((False, False), (True, False)),
                    "tma_store": ((False, False), (True, False), (True, True)),
                    "wide": ((False, False), (True, False), (False, True)),
                    "wide_store": ((False, False), (True, False), (False, True), (True, True))}


def triton_path_name(variant, store_h, persistent):
    return f"triton {variant}" + (" persistent" if persistent else "") + (" +h" if store_h else "")


def candidates(inputs, variants=tuple(TRITON_SCHEDULES), quack_tuned=True):
    """name → zero-argument callable returning the (S, F) activation, for every path this machine can run
    (the Triton ones: each of `variants` one tile a program, also storing h (what training needs), persistent;
    quack's on a GPU, without and with h: a row that says why when quack cannot be imported)."""
    x, tok, offs, w_v = inputs["x"], inputs["order_tokens"], inputs["offsets"], inputs["w_v"]
    x_sorted, w_t = x[tok], w_v.transpose(-2, -1)                      # for the GEMM alone: its ceiling
    paths = {"grouped_mm eager (today)": lambda: moe_up_grouped(x, tok, offs, w_v),
             "grouped_mm GEMM alone (h)": lambda: F.grouped_mm(x_sorted, w_t, offs=offs)}
    if x.is_cuda:
        compiled = torch.compile(moe_up_grouped)
        paths["grouped_mm compiled (today)"] = lambda: compiled(x, tok, offs, w_v)
    for variant in variants if triton is not None else ():
        for store_h, persistent in TRITON_SCHEDULES[variant]:
            paths[triton_path_name(variant, store_h, persistent)] = (
                lambda v=variant, h=store_h, p=persistent: gather_gemm_swiglu(x, tok, offs, w_v, store_h=h,
                                                                               persistent=p, variant=v)[0]
                if h else gather_gemm_swiglu(x, tok, offs, w_v, persistent=p, variant=v))
    if x.is_cuda:
        paths["quack gemm_act (gathered)"] = quack_up(inputs, tuned=quack_tuned)
        paths["quack gemm_act (gathered) +h"] = quack_up(inputs, store_preact=True, tuned=quack_tuned)
    return paths


def backward_candidates(inputs, bwd, quack_tuned=True):
    """name → (zero-argument callable, canon) for the down projection's backward: canon(output) is what
    `down_backward_reference` returns (dh, or (dh, dp) for the rows that gather dy and apply p), or None when
    there is nothing to compare (the GEMM alone)."""
    tok, offs = inputs["order_tokens"], inputs["offsets"]
    dy, rows, c_proj, h, p = bwd["dy"], bwd["dy_rows"], bwd["c_proj"], bwd["h"], bwd["p"]
    h_leaf = h.detach().requires_grad_()
    with torch.enable_grad():
        a = model_lib.swiglu(h_leaf)             # today's eager backward: autograd's kernels for 02's swiglu
    same = lambda out: out                                                              # noqa: E731
    paths = {"down-bwd grouped_mm eager (today)": (lambda: torch.autograd.grad(
                 a, h_leaf, F.grouped_mm(rows, c_proj, offs=offs), retain_graph=True)[0], same),
             "down-bwd grouped_mm GEMM alone (da)": (lambda: F.grouped_mm(rows, c_proj, offs=offs), None)}
    if h.is_cuda:
        compiled, compiled_p = torch.compile(down_backward_grouped), torch.compile(down_backward_grouped)
        paths["down-bwd grouped_mm compiled (today)"] = (lambda: compiled(rows, c_proj, h, offs), same)
        paths["down-bwd compiled gather +p (today)"] = (lambda: compiled_p(dy, c_proj, h, offs, tok, p), same)
        paths["down-bwd quack gemm_dact"] = quack_down_backward(inputs, bwd, tuned=quack_tuned)
        paths["down-bwd quack gemm_dact gather +p"] = quack_down_backward(inputs, bwd, gathered=True,
                                                                          tuned=quack_tuned)
    return paths


def selected(paths, substrings):
    """The paths whose name contains one of `substrings` (all when None), in their order.
    >>> list(selected({"a (today)": 1, "triton wide +h": 2, "quack x": 3}, ["today", "quack"]))
    ['a (today)', 'quack x']"""
    return {n: f for n, f in paths.items() if substrings is None or any(s in n for s in substrings)}


# --- 4. The command line ---------------------------------------------------------------------------

def run_path(name, fn, check, flop, skew, counts, args, device):
    """One path: call it once (autotuning and compiling: `first_s`), check(output) → its errors, then on a GPU the
    median ms and TFLOP/s; any failure becomes the row's `error` (traceback on stderr) → the printed row."""
    row = dict(path=name, skew=skew, counts=counts)
    try:
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        row["first_s"] = round(time.perf_counter() - start, 1)
        row.update(check(out))
        if device.type == "cuda":
            row.update(cuda_median_ms(fn, args.reps, args.warmup))
            row["tflops"] = flop / row["ms"] / 1e9
        variant = name.split()[1] if name.startswith("triton") else None
        if variant is not None and not INTERPRET and _TUNED[variant].best_config is not None:
            row["config"] = config_name(_TUNED[variant].best_config)     # the config this call ran
    except Exception as e:  # noqa: BLE001 -- a path that fails is reported (traceback on stderr), not fatal
        traceback.print_exc()
        row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
    print(f"skew {skew:3.1f}  {name:36s} " + (f"{row['ms']:7.3f} ms (p10 {row['p10']:.3f}, p90 {row['p90']:.3f})"
          f" {row['tflops']:6.1f} TFLOP/s  " if "ms" in row else "")
          + (f"max|err| {row['max_abs']:.2e}  rel {row['rel']:.2e}" if "rel" in row else row.get("error", ""))
          + (f"  dp rel {row['dp_rel']:.2e}" if "dp_rel" in row else "")
          + (f"  [{row['config']}]" if "config" in row else "")
          + (f"  (first call {row['first_s']} s)" if row.get("first_s", 0) >= 1 else ""), flush=True)
    return row


def measure(args, skew, device, rows):
    """Every selected path of the way up at one routing: error vs float64 truth and, on a GPU, median ms and
    TFLOP/s → appended to rows (as each finishes: a stopped run keeps them)."""
    inputs = make_inputs(args.tokens, args.k, args.C, args.F, args.E, skew, device, args.seed)
    truth = gather_gemm_swiglu_reference(inputs["x"].double(), inputs["order_tokens"], inputs["offsets"],
                                         inputs["w_v"].double())                                  # (S, F) fp64
    flop = 2 * args.tokens * args.k * args.C * 2 * args.F                # 2·S·C·2F: both halves of w_v
    counts = inputs["counts"]
    print(f"skew {skew}: slots per expert {counts} (busiest {max(counts) * len(counts) / sum(counts):.2f}× the mean)")
    check = lambda out: errors(out, truth) if out.shape == truth.shape else {}   # noqa: E731 -- GEMM alone: h
    for name, fn in selected(candidates(inputs, args.variants, not args.quack_untuned), args.paths).items():
        rows.append(dict(run_path(name, fn, check, flop, skew, counts, args, device), lever="up"))
    return rows


def measure_backward(args, skew, device, rows):
    """Every selected path of the down projection's backward (dy → dh) at one routing, as `measure`: dh's error
    against `down_backward_reference` in float64 (and dp's, `dp_rel`, for the rows with routing weights)."""
    inputs = make_inputs(args.tokens, args.k, args.C, args.F, args.E, skew, device, args.seed)
    bwd = make_backward_inputs(inputs, args.F, args.seed + 1)
    tok, offsets = inputs["order_tokens"], inputs["offsets"]
    c64, h64, rows64 = bwd["c_proj"].double(), bwd["h"].double(), bwd["dy_rows"].double()
    truth = down_backward_reference(rows64, c64, h64, offsets)                                # (S, 2F) fp64
    truth_p = down_backward_reference(bwd["dy"].double()[tok], c64, h64, offsets, p=bwd["p"].double())
    flop = 2 * args.tokens * args.k * args.C * args.F                    # 2·S·C·F: dy_rows @ c_proj
    counts = inputs["counts"]

    def check(out, canon):
        if canon is None:                                                # the GEMM alone: da, nothing to compare
            return {}
        out = canon(out)
        if not isinstance(out, tuple):
            return errors(out, truth)
        return {**errors(out[0], truth_p[0]), **{f"dp_{k}": v for k, v in errors(out[1], truth_p[1]).items()}}
    paths = selected(backward_candidates(inputs, bwd, not args.quack_untuned), args.paths)
    for name, (fn, canon) in paths.items():
        row = run_path(name, fn, functools.partial(check, canon=canon), flop, skew, counts, args, device)
        rows.append(dict(row, lever="down-bwd"))
    return rows


def config_name(cfg):
    """'128/128/64 w8 s3' (BLOCK_M/BLOCK_N/BLOCK_K, warps, stages; + g8 for GROUP_M 8)."""
    kw = cfg.kwargs
    return (f"{kw['BLOCK_M']}/{kw['BLOCK_N']}/{kw['BLOCK_K']} w{cfg.num_warps} s{cfg.num_stages}"
            + (f" g{kw['GROUP_M']}" if kw.get("GROUP_M", 1) > 1 else ""))


def print_table(rows, skews, today="grouped_mm compiled (today)"):
    """The compact summary: one line a path; at each skew its ms, TFLOP/s and speed-up over today's compiled
    path (× > 1: faster); its error against float64; the config autotuning chose (at the first skew)."""
    names = list(dict.fromkeys(r["path"] for r in rows))
    by = {(r["path"], r["skew"]): r for r in rows}
    print("\n" + f"{'path':37s}" + "".join(f"{f'skew {s}: ms  TFLOP/s  ×today':>32s}" for s in skews)
          + "    rel err   config")
    for name in names:
        cells = [(by.get((name, s), {}), by.get((today, s), {})) for s in skews]
        line = f"{name:37s}" + "".join(
            f"{c['ms']:15.3f} {c['tflops']:8.1f} " + (f"{t['ms'] / c['ms']:6.2f}×" if "ms" in t else " " * 7)
            if "ms" in c else f"{c.get('error', '-')[:30]:>32s}" for c, t in cells)
        rel = next((c["rel"] for c, _ in cells if "rel" in c), None)
        print(line + (f"  {rel:9.2e}" if rel is not None else " " * 11) + f"   {cells[0][0].get('config', '')}")


def parse_args(argv=None):
    p = house.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=house.HelpFormatter)
    p.add_argument("--tokens", type=house.positive_int, default=32_768, help="N tokens per micro-step")
    p.add_argument("--k", type=house.positive_int, default=2, help="experts per token")
    p.add_argument("--C", type=house.positive_int, default=768, help="model width (a multiple of 64; 16 interpreted)")
    p.add_argument("--F", type=house.positive_int, default=2048, help="expert hidden width")
    p.add_argument("--E", type=house.positive_int, default=8, help="experts")
    p.add_argument("--skew", type=house.non_negative_float, nargs="+", default=[0.0, 0.5],
                   help="router bias strengths to time: 0 = uniform random routing (busiest expert 1.02× the mean "
                        "load), 0.5 → 1.7×, 1.5 → 2.9×")
    p.add_argument("--variants", nargs="+", choices=list(TRITON_SCHEDULES), default=list(TRITON_SCHEDULES),
                   help="Triton variants to time, each at its TRITON_SCHEDULES (one tile a program, also storing h, "
                        "persistent): pointers = every operand through pointers, tma = weights through the TMA unit, "
                        "wide = that as one 2·BLOCK_N-wide dot, *_store = also whole output tiles through the TMA "
                        "unit. With --compile-only: the variants to compile")
    p.add_argument("--paths", nargs="+", default=None, metavar="SUBSTRING",
                   help="time only the paths whose name contains one of these (e.g. today quack 'GEMM alone' "
                        "'triton wide'); default: every path")
    p.add_argument("--quack-untuned", action="store_true",
                   help="quack's default tile config instead of its autotuning (which compiles ≈ 18 configs a row)")
    p.add_argument("--reps", type=house.positive_int, default=30)
    p.add_argument("--warmup", type=house.positive_int, default=5)
    p.add_argument("--seed", type=house.seed, default=0)
    p.add_argument("--json", type=Path, default=None, help="append one JSON line with every result to this file")
    p.add_argument("--compile-only", action="store_true",
                   help="no GPU needed: compile each autotune config for --arch and print registers, spills, shared "
                        "memory, pipelined / TMA copies and wgmma width")
    p.add_argument("--arch", type=house.positive_int, default=90, help="with --compile-only: 90 = Hopper (H100/H200)")
    return p.parse_args(argv)


def _stop(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@house.speaks
def main(argv=None):
    args = parse_args(argv)
    if args.json is not None and not os.access(house.check_writable(args.json.parent), os.W_OK):
        raise SystemExit(f"error: cannot write --json {args.json}")
    if triton is None:
        raise SystemExit("error: triton is not installed (it is GPU-only and optional): pip install triton")
    if args.compile_only:
        rows = compile_report(args.C, args.F, args.E, args.arch, args.variants)
        keys = list(rows[0])
        print(" ".join(f"{k:>{max(len(k), 10)}s}" for k in keys))
        for row in rows:
            print(" ".join(f"{str(row[k]):>{max(len(k), 10)}s}" for k in keys))
        return
    if not torch.cuda.is_available() and not INTERPRET:
        raise SystemExit("error: no CUDA GPU: run this on a GPU, or check agreement on a CPU with "
                         "TRITON_INTERPRET=1 and small shapes (--tokens 64 --C 64 --F 64 --E 4)")
    device = torch.device("cpu" if INTERPRET else "cuda")          # the interpreter runs on CPU tensors
    if INTERPRET and args.tokens * args.k * args.F * args.C > 2 ** 26:
        raise SystemExit("error: the Triton interpreter runs linnet's shapes for hours: pass small shapes, "
                         "e.g. --tokens 64 --C 64 --F 64 --E 4")
    info = dict(torch=torch.__version__, triton=triton.__version__, interpret=INTERPRET,
                device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                quack=import_quack()[1] if device.type == "cuda" else None,     # its version, or why not
                shape=dict(tokens=args.tokens, k=args.k, C=args.C, F=args.F, E=args.E))
    print(json.dumps(info), flush=True)
    start = time.perf_counter()
    rows = []                                    # filled as each path finishes, so a stopped run keeps them
    signal.signal(signal.SIGTERM, _stop)
    try:
        for skew in args.skew:
            measure(args, skew, device, rows)
        for skew in args.skew:
            measure_backward(args, skew, device, rows)
    except KeyboardInterrupt:                    # Ctrl-C, or SIGTERM (a time limit): report what was measured
        info["interrupted"] = True
        print("interrupted: the table and --json hold the paths measured so far", flush=True)
    if device.type == "cuda":
        info["triton_best_configs"] = {f"{v} {k[:4]}": config_name(c) for v in args.variants
                                       for k, c in _TUNED[v].cache.items()}
        print("triton autotune picked (variant (C, F, STORE_H, NUM_PROGS)):", info["triton_best_configs"])
    print_table([r for r in rows if r["lever"] == "up"], args.skew)
    print_table([r for r in rows if r["lever"] == "down-bwd"], args.skew,
                today="down-bwd grouped_mm compiled (today)")
    info["seconds"] = round(time.perf_counter() - start, 1)
    print(f"{info['seconds']} s in all, autotuning and compiling included")
    if args.json is not None:
        with open(args.json, "a") as f:
            f.write(json.dumps({"argv": sys.argv[1:], **info, "rows": rows}) + "\n")
    if info.get("interrupted"):
        raise SystemExit("error: interrupted before every path was measured (the rows above are saved)")


if __name__ == "__main__":
    main()
