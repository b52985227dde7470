"""The experts of a MoE layer, fast: expert weights cast once per step, and the experts on fused GEMMs.

1. `cast_expert_weights`. Under bf16 autocast each micro-step of 05's training step would cast the fp32 expert
   weights to bf16 again (16 times per linnet step: 453M weights each time). This makes the bf16 copies once per
   step and 05 hands them to every micro-step as `model(idx, targets, expert_weights=...)`; the plain twin is
   `expert_weights=None` (02's MoE uses its parameters). Same maths: the copies are ordinary autograd nodes, so each
   micro-step's backward flows through them into the fp32 .grad exactly as before (tests/test_02_model.py checks
   the gradients are bit-identical). With moe_impl "grouped_fp8" each weight also brings its FP8 copies.

2. `moe_fused` (`LLMConfig.moe_impl = "fused"`): the same maths as 02's `moe_grouped`, its plain twin, with the
   work between the GEMMs moved into their epilogues (quack-kernels' CuTe-DSL GEMMs, the design of SonicMoE):
   - up: ONE kernel gathers each slot's token row, multiplies by its expert's w_v and applies SwiGLU on the way
     out (quack `gemm_act`); it also writes the pre-activation h, which the backward needs;
   - down: a grouped GEMM, then each slot's row is weighted by its routing weight and added to its token;
   - backward of down: ONE kernel gathers dy's rows, multiplies by c_proj, folds in the routing weight p and
     SwiGLU's derivative, and reduces the gradient of p on the way out (quack `gemm_dact`);
   - the input and weight gradients: grouped GEMMs (F.grouped_mm), as in moe_grouped's backward.
   The two fused kernels replace a gather, two elementwise passes over (slots × 2F) and a reduction. The whole
   expert path is one `torch.library` custom op with its backward registered, so torch.compile keeps it whole.
   quack is an optional GPU library (requirements-gpu.txt); `KERNELS` names its five kernels and `PLAIN` their
   plain twins (torch ops), which a CPU runs and tests/test_moe_fused.py compares: the plain twins against
   moe_grouped anywhere, quack's against the plain twins on a Hopper GPU. Measured: BENCHMARKS.md, "Throughput IV".
"""
from __future__ import annotations

import functools
import importlib

import torch
import torch.nn.functional as F

from fast import fp8


def cast_expert_weights(model, dtype=torch.bfloat16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One (w_v, c_proj) pair per layer of 02's model, cast to `dtype` (with FP8 copies under "grouped_fp8")."""
    pairs = [(block.moe.w_v.to(dtype), block.moe.c_proj.to(dtype)) for block in model.transformer.h]
    if model.config.moe_impl == "grouped_fp8":
        return [(fp8.fp8_weight(w_v), fp8.fp8_weight(c_proj)) for w_v, c_proj in pairs]
    return pairs


# --- The five kernels, plain ------------------------------------------------------------------------------
# Shapes: N tokens, S = N·k slots sorted by expert, C model width, F expert width, E experts. `tok` (S,) int32:
# the token of each slot; `cu` (E + 1,) int32: where each expert's slots start and end; `p` (S,) fp32: each slot's
# routing weight. h and dh keep gate and value INTERLEAVED ([g0, v0, g1, v1, …]), quack's layout for gated
# activations, and so does w_il, the up weight as (E, 2F, C) with its rows interleaved.

def interleave_rows(w_v):
    """(E, 2F, C) [gate rows | value rows] → (E, 2F, C) [g0, v0, g1, v1, …] (a copy)."""
    E, F2, C = w_v.shape
    return w_v.view(E, 2, F2 // 2, C).transpose(1, 2).reshape(E, F2, C)


def deinterleave_rows(w_il):
    """The inverse of interleave_rows."""
    E, F2, C = w_il.shape
    return w_il.view(E, F2 // 2, 2, C).transpose(1, 2).reshape(E, F2, C)


def up_plain(x, w_il, tok, cu):
    """h = x[tok] @ w_ilᵀ per expert, a = silu(gate) · value → (h (S, 2F) interleaved, a (S, F))."""
    h = F.grouped_mm(x[tok], w_il.transpose(-2, -1), offs=cu[1:])
    return h, F.silu(h[:, 0::2]) * h[:, 1::2]


def down_plain(a, c_proj, cu):
    """a @ c_projᵀ per expert: (S, F) → (S, C)."""
    return F.grouped_mm(a, c_proj.transpose(-2, -1), offs=cu[1:])


def down_backward_plain(dy, c_proj, h, tok, cu, p):
    """The backward of y[tok] += p · (swiglu(h) @ c_projᵀ): da = dy[tok] @ c_proj per expert, then
    → (dh (S, 2F) interleaved: SwiGLU's derivative of p·da, a·p (S, F): what c_proj's gradient multiplies,
    dp (S,) fp32: Σ_j a_j · da_j, the gradient of each routing weight)."""
    da = F.grouped_mm(dy[tok], c_proj, offs=cu[1:]).float()             # (S, F)
    gate, value = h[:, 0::2].float(), h[:, 1::2].float()
    sig = torch.sigmoid(gate)
    a = gate * sig * value
    dp = (a * da).sum(-1)
    dout = da * p[:, None]
    dgate = dout * value * sig * (1 + gate * (1 - sig))                 # d silu(g)/dg = σ(g)(1 + g(1 − σ(g)))
    dh = torch.stack([dgate, dout * gate * sig], dim=-1).reshape(h.shape)
    return dh.to(h.dtype), (a * p[:, None]).to(h.dtype), dp


def weight_grad_plain(rows_of, b, tok, cu):
    """Σ over each expert's slots of rows_of[tok]ᵀ @ b: (N, M), (S, K) → (E, M, K), a GEMM grouped along the slots."""
    return F.grouped_mm(rows_of[tok].t(), b, offs=cu[1:])


PLAIN = dict(up=up_plain, down=down_plain, down_backward=down_backward_plain, weight_grad=weight_grad_plain)


# --- The same kernels on quack (a Hopper GPU with quack-kernels installed) -----------------------------------

@functools.cache
def import_quack():
    """quack's gemm_interface, or None when it cannot be imported here (no GPU, not installed, CUDA libraries
    missing) → (module or None, the reason)."""
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
        return None, "quack's fused GEMMs need a Hopper GPU (H100/H200)"
    try:
        return importlib.import_module("quack.gemm_interface"), ""
    except Exception as e:  # noqa: BLE001 -- ImportError, OSError (a missing .so), RuntimeError (CUDA)
        return None, f"quack-kernels is not importable ({type(e).__name__}: {str(e)[:160]}): pip install -r requirements-gpu.txt"


def up_quack(x, w_il, tok, cu):
    preact, a = import_quack()[0].gemm_act(x, w_il.transpose(-2, -1), activation="swiglu", cu_seqlens_m=cu,
                                           A_idx=tok, store_preact=True)
    return preact, a


def down_backward_quack(dy, c_proj, h, tok, cu, p):
    dh, a_p, dp = import_quack()[0].gemm_dact(dy, c_proj, h, activation="swiglu", cu_seqlens_m=cu, A_idx=tok,
                                              colvec_scale=p, colvec_reduce=True)
    return dh, a_p, dp


QUACK = dict(PLAIN, up=up_quack, down_backward=down_backward_quack)
KERNELS = {"plain": PLAIN, "quack": QUACK}


# --- The expert path as one custom op with its backward ------------------------------------------------------

@torch.library.custom_op("linnet::moe_experts", mutates_args=())
def moe_experts(x: torch.Tensor, w_v: torch.Tensor, c_proj: torch.Tensor, tok: torch.Tensor, cu: torch.Tensor,
                p: torch.Tensor, kernels: str) -> tuple[torch.Tensor, torch.Tensor]:
    """y (N, C) = Σ over each token's slots of p · swiglu(x[tok] @ w_vᵀ) @ c_projᵀ, and h (saved for backward)."""
    k = KERNELS[kernels]
    h, a = k["up"](x, interleave_rows(w_v), tok, cu)
    y_rows = k["down"](a, c_proj, cu) * p[:, None].to(x.dtype)           # (S, C)
    return torch.zeros_like(x).index_add_(0, tok, y_rows), h


@moe_experts.register_fake
def _(x, w_v, c_proj, tok, cu, p, kernels):
    return torch.empty_like(x), x.new_empty(tok.shape[0], w_v.shape[1])


@torch.library.custom_op("linnet::moe_experts_backward", mutates_args=())
def moe_experts_backward(dy: torch.Tensor, x: torch.Tensor, w_v: torch.Tensor, c_proj: torch.Tensor,
                         tok: torch.Tensor, cu: torch.Tensor, p: torch.Tensor, h: torch.Tensor,
                         kernels: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """→ dx (N, C), dw_v (E, 2F, C), dc_proj (E, C, F), dp (S,) fp32."""
    k = KERNELS[kernels]
    dh, a_p, dp = k["down_backward"](dy.contiguous(), c_proj, h, tok, cu, p)
    dc_proj = k["weight_grad"](dy, a_p, tok, cu)                        # Σ dy[tok]ᵀ (p·a)   (E, C, F)
    w_il = interleave_rows(w_v)
    dx_rows = F.grouped_mm(dh, w_il, offs=cu[1:])                       # (S, C)
    dx = torch.zeros_like(x).index_add_(0, tok, dx_rows)
    dw_v = deinterleave_rows(k["weight_grad"](x, dh, tok, cu).transpose(-2, -1))   # (E, 2F, C)
    return dx, dw_v, dc_proj, dp


@moe_experts_backward.register_fake
def _(dy, x, w_v, c_proj, tok, cu, p, h, kernels):
    return torch.empty_like(x), torch.empty_like(w_v), torch.empty_like(c_proj), torch.empty_like(p)


def _setup(ctx, inputs, output):
    x, w_v, c_proj, tok, cu, p, kernels = inputs
    ctx.save_for_backward(x, w_v, c_proj, tok, cu, p, output[1])
    ctx.kernels = kernels


def _backward(ctx, dy, _dh):
    x, w_v, c_proj, tok, cu, p, h = ctx.saved_tensors
    dx, dw_v, dc_proj, dp = moe_experts_backward(dy, x, w_v, c_proj, tok, cu, p, h, ctx.kernels)
    return dx, dw_v, dc_proj, None, None, dp, None


moe_experts.register_autograd(_backward, setup_context=_setup)


def moe_fused(x, w_v, c_proj, top_e, top_w, kernels: str | None = None):
    """02's moe_grouped on fused kernels: x (N, C); w_v (E, 2F, C); c_proj (E, C, F); top_e, top_w (N, k) → (N, C).
    `kernels`: "quack" or "plain" (default: quack where it imports, else the plain twins)."""
    k = top_e.shape[1]
    E = w_v.shape[0]
    flat_e = top_e.reshape(-1)
    order = torch.argsort(flat_e, stable=True)                          # slots grouped by expert
    counts = torch.zeros(E, dtype=torch.int64, device=x.device).scatter_add_(0, flat_e, torch.ones_like(flat_e))
    cu = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]).to(torch.int32)
    tok = (order // k).to(torch.int32)
    p = top_w.reshape(-1)[order].float()
    kernels = kernels or ("quack" if x.is_cuda and import_quack()[0] is not None else "plain")
    return moe_experts(x, w_v.to(x.dtype), c_proj.to(x.dtype), tok, cu, p, kernels)[0]
