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
   - down: a grouped GEMM; each slot's row weighted by its routing weight and summed into its token by a gather
     (the inverse permutation, as in moe_grouped), which torch.compile fuses into one pass;
   - backward of down: ONE kernel gathers dy's rows, multiplies by c_proj, folds in the routing weight p and
     SwiGLU's derivative, and reduces the gradient of p on the way out (quack `gemm_dact`);
   - the weight gradients: ONE grouped GEMM each that gathers its rows along K itself (quack `gemm` with
     cu_seqlens_k and A_idx), so x[tok] and dy[tok] are never written; the input gradient: F.grouped_mm.
   The fused kernels replace three gathers, two elementwise passes over (slots × 2F) and a reduction. The expert
   path is an autograd.Function with its backward written out; each quack call is a `torch.library` custom op, so
   torch.compile traces the whole path and fuses what lies between the GEMMs.
   quack is an optional GPU library (requirements-gpu.txt); `KERNELS` names its kernels and `PLAIN` their plain
   twins (torch ops), which a CPU runs and tests/test_moe_fused.py compares: the plain twins against moe_grouped
   anywhere, quack's against the plain twins on a Hopper GPU. Where quack runs (`quack_ready`), 02's moe_impl
   "auto" trains on this path: +5.4 % and +5.7 % a training step on two H100 starts (BENCHMARKS.md, "Throughput IV").
   Evaluation keeps moe_grouped: quack compiles and autotunes for each new batch shape (≈ 195 s the first time 06
   scores HellaSwag on a machine), while a training step has one shape.
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


@torch.compiler.assume_constant_result
def quack_ready() -> bool:
    """Whether quack's kernels run here. torch.compile takes the answer as a constant instead of tracing the import
    (tracing it breaks the graph at every MoE layer)."""
    return import_quack()[0] is not None


# Each quack call is a torch.library custom op: torch.compile keeps it as one opaque node and traces everything
# around it (the gathers, the routing weights, the sums), which it fuses with its neighbours.
@torch.library.custom_op("linnet::quack_up", mutates_args=())
def up_quack(x: torch.Tensor, w_il: torch.Tensor, tok: torch.Tensor, cu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h, a = import_quack()[0].gemm_act(x, w_il.transpose(-2, -1), activation="swiglu", cu_seqlens_m=cu, A_idx=tok,
                                      store_preact=True)
    return h, a


@up_quack.register_fake
def _(x, w_il, tok, cu):
    return x.new_empty(tok.shape[0], w_il.shape[1]), x.new_empty(tok.shape[0], w_il.shape[1] // 2)


@torch.library.custom_op("linnet::quack_down_backward", mutates_args=())
def down_backward_quack(dy: torch.Tensor, c_proj: torch.Tensor, h: torch.Tensor, tok: torch.Tensor, cu: torch.Tensor,
                        p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dh, a_p, dp = import_quack()[0].gemm_dact(dy, c_proj, h, activation="swiglu", cu_seqlens_m=cu, A_idx=tok,
                                              colvec_scale=p, colvec_reduce=True)
    return dh, a_p, dp


@down_backward_quack.register_fake
def _(dy, c_proj, h, tok, cu, p):
    return torch.empty_like(h), h.new_empty(h.shape[0], h.shape[1] // 2), torch.empty_like(p)


@torch.library.custom_op("linnet::quack_weight_grad", mutates_args=())
def weight_grad_quack(rows_of: torch.Tensor, b: torch.Tensor, tok: torch.Tensor, cu: torch.Tensor) -> torch.Tensor:
    """weight_grad_plain without writing rows_of[tok]: quack's GEMM gathers the columns of rows_ofᵀ along K."""
    return import_quack()[0].gemm(rows_of.t(), b, cu_seqlens_k=cu, A_idx=tok)


@weight_grad_quack.register_fake
def _(rows_of, b, tok, cu):
    return b.new_empty(cu.shape[0] - 1, rows_of.shape[1], b.shape[1])


QUACK = dict(up=up_quack, down=down_plain, down_backward=down_backward_quack, weight_grad=weight_grad_quack)
KERNELS = {"plain": PLAIN, "quack": QUACK}


# --- The expert path with its backward ----------------------------------------------------------------------

def combine(rows, inverse):
    """(S, C) rows sorted by expert → (N, C): each token's k rows summed; inverse (N, k): where its slots sit."""
    return rows[inverse].sum(dim=1)


class Experts(torch.autograd.Function):
    """y (N, C) = Σ over each token's slots of p · swiglu(x[tok] @ w_ilᵀ) @ c_projᵀ, with a hand-written backward
    that hands dy straight to the fused down-backward kernel. torch.compile traces both directions."""

    @staticmethod
    def forward(ctx, x, w_il, c_proj, tok, cu, inverse, p, kernels):
        k = KERNELS[kernels]
        h, a = k["up"](x, w_il, tok, cu)
        y = combine(k["down"](a, c_proj, cu) * p[:, None].to(x.dtype), inverse)
        ctx.save_for_backward(x, w_il, c_proj, tok, cu, inverse, p, h)
        ctx.kernels = kernels
        return y

    @staticmethod
    def backward(ctx, dy):
        x, w_il, c_proj, tok, cu, inverse, p, h = ctx.saved_tensors
        k = KERNELS[ctx.kernels]
        dy = dy.to(h.dtype).contiguous()                                  # the grad may arrive in fp32
        dh, a_p, dp = k["down_backward"](dy, c_proj, h, tok, cu, p)       # (S, 2F), (S, F), (S,)
        dc_proj = k["weight_grad"](dy, a_p, tok, cu)                      # Σ dy[tok]ᵀ (p·a)   (E, C, F)
        dx = combine(F.grouped_mm(dh, w_il, offs=cu[1:]), inverse)        # (N, C)
        dw_il = k["weight_grad"](x, dh, tok, cu).transpose(-2, -1)        # (E, 2F, C) interleaved
        return dx, dw_il, dc_proj, None, None, None, dp, None


def moe_fused(x, w_v, c_proj, top_e, top_w, kernels: str | None = None):
    """02's moe_grouped on fused kernels: x (N, C); w_v (E, 2F, C); c_proj (E, C, F); top_e, top_w (N, k) → (N, C).
    `kernels`: "quack" or "plain" (default: quack where it imports, else the plain twins)."""
    N, k = top_e.shape
    E = w_v.shape[0]
    flat_e = top_e.reshape(-1)
    order = torch.argsort(flat_e, stable=True)                          # slots grouped by expert
    counts = torch.zeros(E, dtype=torch.int64, device=x.device).scatter_add_(0, flat_e, torch.ones_like(flat_e))
    cu = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]).to(torch.int32)
    tok = (order // k).to(torch.int32)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=x.device)      # slot i of the flat (N·k) sits at row inverse[i]
    p = top_w.reshape(-1)[order].float()
    kernels = kernels or ("quack" if x.is_cuda and quack_ready() else "plain")
    w_il = interleave_rows(w_v.to(x.dtype))
    return Experts.apply(x, w_il, c_proj.to(x.dtype), tok, cu, inverse.view(N, k), p, kernels)
