"""FP8 experts: the expert GEMMs of 02's `moe_grouped` in 8-bit floats (`LLMConfig.moe_impl = "grouped_fp8"`,
05's --fp8). Its plain twin is `moe_grouped` in bf16; tests/test_fp8.py checks FP8 stays near it (anywhere) and
that the Hopper kernel equals the plain dequantise-and-multiply `scaled_grouped_mm_reference` (on a GPU).

The expert GEMMs are two thirds of linnet's FLOPs. Hopper's tensor cores multiply float8 numbers at twice the bf16
peak rate, so the experts can run in FP8 while everything else (master weights, optimizer, router, attention,
norms, loss) stays as it is. What changes is rounding: float8_e4m3fn keeps 3 mantissa bits (bf16 keeps 7), so each
input of the expert GEMMs is rounded to 4 significant bits — an error of up to 1/16, about one decimal digit —
before the multiply; the products are summed at higher precision and the result comes back in bf16. The forward
GEMMs and the gradients flowing back to the tokens use FP8; the weight gradients stay bf16. A float8 number only
reaches ±448, so every row gets its own scale first (`quantize_rows`). The scale runs along the dimension the GEMM
sums over (K in x @ wᵀ), so it can be applied to the result afterwards: out = (xq @ wqᵀ) · x_scale · w_scale.
Where no FP8 grouped GEMM exists (a CPU, a GPU before Hopper) the same rounding runs through the plain reference:
a CPU run shows the rounding, not the speed. Measured (BENCHMARKS.md, "FP8 experts"): FP8's loss stays within the
bf16-vs-bf16 noise and its GEMMs run ≈ 1.45× faster, but rounding the big activations costs about as much, so on
linnet's shapes the whole step is no faster yet.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

FP8_MAX = 448.0   # the largest float8_e4m3fn value (4 exponent bits, 3 mantissa bits)


def quantize_rows(x):  # (..., K) → q (..., K) float8_e4m3fn, scale (...,) fp32, with x ≈ q · scale
    """Row-wise FP8: scale = amax(|row|) / 448, rounded UP to a power of two (so multiplying by it is exact
    and no value can overflow), then q = row / scale rounded to the nearest float8.

    >>> q, scale = quantize_rows(torch.tensor([[1.0, -0.3, 0.01], [100.0, 3.0, 0.5]]))
    >>> scale.tolist()                                   # 1/448 → 2^-8;  100/448 → 2^-2
    [0.00390625, 0.25]
    >>> (q.float() * scale[:, None]).tolist()            # -0.3 → -0.3125 and 100 → 96: 3 mantissa bits
    [[1.0, -0.3125, 0.009765625], [96.0, 3.0, 0.5]]

    A zero row gets a tiny scale and stays zero."""
    x = x.contiguous()
    amax = x.abs().amax(dim=-1).float()                                  # (...,)
    scale = power_of_two_scale(amax)                                     # (...,)
    q = (x.float() / scale.unsqueeze(-1)).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q, scale


def power_of_two_scale(amax):
    """The smallest power of two s with amax / s <= 448 (amax 0 → 2^-108: harmless, the row stays 0)."""
    return torch.exp2(torch.ceil(torch.log2(amax.clamp_min(1e-30) / FP8_MAX)))


def moe_grouped_fp8(x, w_v, c_proj, top_e, top_w):
    """02's moe_grouped with both expert GEMMs in FP8: their forward and their input gradient (the weight
    gradient stays bf16, see fp8_grouped_linear for why).

    Same steps as moe_grouped, with two differences:
    1. each expert's rows are padded with zero rows to a multiple of 16 (`expert_rows_padded`), so every
       group starts on a 16-row boundary, as FP8 grouped kernels want;
    2. the GEMMs are `fp8_grouped_linear`: quantize_rows on the tokens and the weights, an FP8
       grouped GEMM on Hopper (torch._scaled_grouped_mm), the plain `scaled_grouped_mm_reference`
       (dequantise, multiply in fp32) anywhere else — so a CPU run shows the same rounding, not the speed.
    x (N, C); w_v (E, 2F, C) and c_proj (E, C, F), tensors or FP8Weights; top_e, top_w (N, k) → (N, C)."""
    N, C = x.shape
    w_v, c_proj = as_fp8_weight(w_v, x.dtype), as_fp8_weight(c_proj, x.dtype)   # or made once per step
    E, k = w_v.w.shape[0], top_e.shape[1]
    row_slot, offsets, slot_row = expert_rows_padded(top_e.reshape(-1), E)   # (M,), (E,), (N·k,)
    token = torch.where(row_slot < N * k, row_slot // k, N)             # (M,) token of each row; N = padding
    x_rows = torch.cat([x, x.new_zeros(1, C)])[token]                    # (M, C), padding rows are zeros
    gate, value = fp8_grouped_linear(x_rows, offsets, w_v).chunk(2, dim=-1)   # (M, F) each: 02's swiglu
    y_rows = fp8_grouped_linear(F.silu(gate) * value, offsets, c_proj)   # (M, C)
    y_slots = y_rows[slot_row].view(N, k, C)                             # (N, k, C)
    return (y_slots * top_w.unsqueeze(-1).to(y_slots.dtype)).sum(dim=1).to(x.dtype)   # (N, C)


def expert_rows_padded(flat_e, E: int, align: int = 16):
    """Where each token-slot goes when the rows are sorted by expert and each expert's group is padded to a
    multiple of `align` rows. No host sync: the number of rows M = S + E·(align-1), rounded up to `align`,
    is fixed in advance (S = N·k slots); the last expert's group takes the rows left over.

    Returns row_slot (M,): the slot in each row (S for padding); offsets (E,) int32: where each group ends;
    slot_row (S,): the row of each slot.

    >>> row_slot, offsets, slot_row = expert_rows_padded(torch.tensor([1, 0, 1]), E=2, align=4)
    >>> row_slot.tolist(), offsets.tolist(), slot_row.tolist()   # expert 0: slot 1; expert 1: slots 0, 2
    ([1, 3, 3, 3, 0, 2, 3, 3, 3, 3, 3, 3], [4, 12], [4, 0, 5])"""
    S = flat_e.numel()
    M = (S + E * (align - 1) + align - 1) // align * align
    order = torch.argsort(flat_e, stable=True)                          # (S,) slots grouped by expert
    counts = torch.zeros(E, dtype=torch.int64, device=flat_e.device).scatter_add_(0, flat_e, torch.ones_like(flat_e))
    padded = (counts + align - 1) // align * align                      # (E,) rows per group
    group_start = torch.cumsum(padded, 0) - padded                      # (E,) first row of each group
    sorted_start = torch.cumsum(counts, 0) - counts                     # (E,) first slot of each expert in `order`
    e_sorted = flat_e[order]
    rank = torch.arange(S, device=flat_e.device) - sorted_start[e_sorted]   # place of a slot within its expert
    slot_row = torch.empty_like(order)
    slot_row[order] = group_start[e_sorted] + rank                      # (S,)
    row_slot = torch.full((M,), S, dtype=torch.int64, device=flat_e.device)
    row_slot[slot_row] = torch.arange(S, device=flat_e.device)
    offsets = torch.cumsum(padded, 0)
    offsets[-1] = M                                                     # the last group takes the rest
    return row_slot, offsets.to(torch.int32), slot_row


class FP8Weight(NamedTuple):
    """An expert weight w (E, N, K) with its two FP8 copies: rows over K (forward) and columns over N
    (input gradient). Gradients flow to w; the copies are made without autograd."""
    w: torch.Tensor
    q: torch.Tensor            # (E, N, K) float8
    scale: torch.Tensor        # (E, N)
    q_t: torch.Tensor          # (E, K, N) float8: wᵀ, rows over N
    scale_t: torch.Tensor      # (E, K)


def fp8_weight(w) -> FP8Weight:
    with torch.no_grad():
        return FP8Weight(w, *quantize_rows(w), *quantize_rows(w.transpose(-2, -1)))


def as_fp8_weight(w, dtype) -> FP8Weight:
    """w as given by cast_expert_weights (already an FP8Weight), or a plain tensor to quantise now."""
    return w if isinstance(w, FP8Weight) else fp8_weight(w.to(dtype))


def fp8_grouped_linear(x, offsets, weight: FP8Weight):
    """y = x_g @ w_eᵀ for the rows x_g of each expert's group e. x (M, K); offsets (E,) int32 ends of the
    groups, each a multiple of 16 rows; weight: w (E, N, K) with its FP8 copies → (M, N).

    forward   y      = x @ wᵀ    FP8: x rows scaled over K, w rows over K
    backward  grad_x = g @ w     FP8: g rows over N, w columns over N       (`fp8_grouped_linear_backward`)
              grad_w = gᵀ @ x    bf16, as in moe_grouped. In FP8 it needs both operands transposed and
                                 scaled per expert and column: in a first version those transposing kernels
                                 took ~21 ms per micro-step on an H200, where an FP8 grad_w GEMM could save
                                 ~3 ms (BENCHMARKS.md, "FP8 experts").
    x is quantised here, outside the op, so that torch.compile fuses it into the kernel that makes x."""
    xq, x_scale = quantize_rows(x)                                        # (M, K) float8, (M,)
    return fp8_grouped_linear_op(x, xq, x_scale, offsets, *weight)


# A custom operator with its own backward, not a torch.autograd.Function: with torch 2.11, torch.compile
# gave a Function whose output is computed from float8 tensors zero gradients (tests/test_fp8.py checks).
@torch.library.custom_op("linnet::fp8_grouped_linear", mutates_args=())
def fp8_grouped_linear_op(x: torch.Tensor, xq: torch.Tensor, x_scale: torch.Tensor, offsets: torch.Tensor,
                          w: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor, wtq: torch.Tensor,
                          wt_scale: torch.Tensor) -> torch.Tensor:
    return scaled_grouped_mm(xq, x_scale, wq, w_scale, offsets, x.dtype)


@fp8_grouped_linear_op.register_fake
def _(x, xq, x_scale, offsets, w, wq, w_scale, wtq, wt_scale):
    return x.new_empty(x.shape[0], w.shape[1])


def fp8_grouped_linear_setup(ctx, inputs, output):
    x, _, _, offsets, w, _, _, wtq, wt_scale = inputs
    ctx.save_for_backward(x, offsets, w, wtq, wt_scale)


def fp8_grouped_linear_backward(ctx, grad):                              # grad (M, N)
    x, offsets, w, wtq, wt_scale = ctx.saved_tensors
    gq, g_scale = quantize_rows(grad)                                     # (M, N), (M,)
    grad_x = scaled_grouped_mm(gq, g_scale, wtq, wt_scale, offsets, x.dtype)              # (M, K)
    dtype = torch.bfloat16 if x.is_cuda else x.dtype                     # grouped_mm on CUDA: bf16 only
    grad_w = F.grouped_mm(grad.to(dtype).t(), x.to(dtype), offs=offsets)                  # (E, N, K)
    return grad_x, None, None, None, grad_w.to(w.dtype), None, None, None, None


fp8_grouped_linear_op.register_autograd(fp8_grouped_linear_backward, setup_context=fp8_grouped_linear_setup)


def fp8_kernel_available(t) -> bool:
    """torch._scaled_grouped_mm (row-wise FP8) runs on Hopper (compute capability 9.0) only."""
    return (t.is_cuda and hasattr(torch, "_scaled_grouped_mm")
            and torch.cuda.get_device_capability(t.device) == (9, 0))


def scaled_grouped_mm(a, a_scale, b, b_scale, offsets, out_dtype):
    """FP8 grouped GEMM: row i of a, in group e, times b[e]ᵀ, multiplied as float8 and then scaled by
    a_scale[i] · b_scale[e]. The Hopper kernel sums with fast accumulation (partial sums promoted to fp32
    less often: faster, slightly less exact than the reference's fp32 sums).
    a (M, K) float8, a_scale (M,); b (E, N, K) float8, b_scale (E, N); offsets (E,) → (M, N) out_dtype.
    The Hopper kernel wants a's rows contiguous (row-major) and the second operand's columns contiguous
    (column-major): it gets b.transpose(-2, -1), a view of b as stored, (E, N, K) with K contiguous."""
    if not fp8_kernel_available(a):
        return scaled_grouped_mm_reference(a, a_scale, b, b_scale, offsets, out_dtype)
    out = torch._scaled_grouped_mm(a, b.transpose(-2, -1), a_scale, b_scale, offs=offsets,
                                   out_dtype=torch.bfloat16, use_fast_accum=True)
    return out.to(out_dtype)


def scaled_grouped_mm_reference(a, a_scale, b, b_scale, offsets, out_dtype):
    """The plain version of scaled_grouped_mm: dequantise to fp32, one matmul per group (a host sync per
    group: for CPUs and tests)."""
    ends = offsets.tolist()
    a32 = a.float() * a_scale[:, None]                                   # (M, K)
    b32 = b.float() * b_scale[..., None]                                 # (E, N, K)
    out = torch.cat([a32[s:e] @ b32[g].T for g, (s, e) in enumerate(zip([0] + ends[:-1], ends))])
    return out.to(out_dtype)
