"""RoPE + QK-norm in one GPU kernel: the fast twin of 02's `rope_qk_norm_reference` (same arguments, same results).

What it speeds up: 02's attention rotates q and k (RoPE, in fp32) and normalises them (QK-norm). In eager PyTorch
that is about ten kernels per tensor (upcast, two multiplies, the half swap, add, downcast, LayerNorm's upcast, the
norm, its downcast), each a full pass over q or k in memory: tiny arithmetic, many passes. This kernel reads each
64-wide head row of the qkv projection's output once, rotates and normalises the q and k rows in fp32 registers,
and writes q | k | v once; its backward recomputes the rotation from qkv (nothing else is kept) and applies
LayerNorm's and the rotation's transposes in the same pass. It takes and gives dense tensors only (a kernel handed
strided views must be told their strides, and torch.compile may lay a view out anew after they were read).
Chosen by `LLMConfig.rope_impl` ("auto": this kernel on a CUDA tensor when triton is installed; "reference": 02's
plain ops). tests/test_rope_kernel.py checks the two agree (on a CPU through Triton's interpreter, on a GPU
compiled, forward and backward). Measured: BENCHMARKS.md, "Throughput III, second round". Triton ships with the
CUDA builds of PyTorch; on a CPU-only install this module defines no kernel and 02 runs the plain ops.
"""
from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:                 # the CPU wheel of torch has no triton: 02's plain ops run
    triton = None

ROPE_ROWS_PER_PROGRAM = 64          # head rows (of head_dim values) one program handles


def use_fused(impl: str, x, head_dim: int) -> bool:
    """Whether 02's attention runs this kernel for x under `LLMConfig.rope_impl`: "fused" always (or a ValueError
    saying why it cannot), "auto" on a CUDA tensor when triton is installed, "reference" never. The kernel holds
    the two halves of a head row in registers: head_dim must be a power of two, at least 16 (linnet: 64)."""
    shape_ok = head_dim >= 16 and head_dim & (head_dim - 1) == 0
    if impl == "fused":
        if triton is None:
            raise ValueError("rope impl 'fused' needs triton (the CUDA builds of PyTorch bring it)")
        if not shape_ok:
            raise ValueError(f"rope impl 'fused' needs head_dim a power of two >= 16, got {head_dim}")
        if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
            raise ValueError("rope impl 'fused' runs on CUDA tensors (or on a CPU under TRITON_INTERPRET=1)")
        return True
    return impl == "auto" and triton is not None and x.is_cuda and shape_ok


def rope_qk_norm(qkv, cos, sin, n_head: int, n_kv_head: int, positions=None, qk_norm: bool = True):
    """02's `rope_qk_norm_reference` in one Triton kernel: same arguments, same results (in fp32; in bf16 it rounds
    q and k once, after the norm). q, k, v come back as views of one dense (B, T, nh + 2·nkv, hd) tensor.
    Positions are not range-checked here (a kernel cannot raise IndexError): 06 builds them inside the window."""
    B, T, _ = qkv.shape
    hd = cos.shape[-1]
    pos = positions.contiguous() if positions is not None else None
    heads = torch.ops.linnet.rope_qk_norm(qkv.contiguous().view(B, T, n_head + 2 * n_kv_head, hd), cos.contiguous(),
                                          sin.contiguous(), pos, n_head + n_kv_head, qk_norm, 1e-5)
    return heads.split([n_head, n_kv_head, n_kv_head], dim=2)


def launch(kernel):
    """A Triton kernel as torch.compile can trace it (wrap_triton); as it is under Triton's CPU interpreter."""
    return kernel if os.environ.get("TRITON_INTERPRET") == "1" else torch.library.wrap_triton(kernel)


if triton is not None:
    @triton.jit
    def rope_norm_rows(X, COS, SIN, POS, row0, n_rows, T, HEADS, N_QK,
                       HAS_POS: tl.constexpr, HALF: tl.constexpr, ROWS: tl.constexpr):
        """For ROWS head rows of a dense (B, T, HEADS, 2·HALF) tensor: the offsets of their first halves
        (ROWS, HALF), the row mask, which rows get RoPE (+ norm), and in fp32 the two halves of x, of cos and
        of sin at each row's position. RoPE pairs column j with j + HALF (rotate_half), so halves are all it needs."""
        rows = row0 + tl.arange(0, ROWS)                                    # (ROWS,)
        live = rows < n_rows
        rotate = (rows % HEADS) < N_QK                                      # q and k heads; v heads are copied
        bt = rows // HEADS
        cols = tl.arange(0, HALF)                                           # (HALF,)
        m = live[:, None]
        first = rows.to(tl.int64)[:, None] * (2 * HALF) + cols[None, :]    # (ROWS, HALF)
        x1 = tl.load(X + first, mask=m, other=0.0).to(tl.float32)
        x2 = tl.load(X + first + HALF, mask=m, other=0.0).to(tl.float32)
        if HAS_POS:
            p = tl.load(POS + bt, mask=live, other=0).to(tl.int64)
        else:
            p = (bt % T).to(tl.int64)
        angle = p[:, None] * (2 * HALF) + cols[None, :]                     # (ROWS, HALF) into the tables
        c1 = tl.load(COS + angle, mask=m, other=0.0).to(tl.float32)
        c2 = tl.load(COS + angle + HALF, mask=m, other=0.0).to(tl.float32)
        s1 = tl.load(SIN + angle, mask=m, other=0.0).to(tl.float32)
        s2 = tl.load(SIN + angle + HALF, mask=m, other=0.0).to(tl.float32)
        return first, m, rotate[:, None], x1, x2, c1, c2, s1, s2

    @triton.jit
    def rope_norm_forward_kernel(X, COS, SIN, POS, Y, n_rows, T, HEADS, N_QK, eps,
                                 HAS_POS: tl.constexpr, NORM: tl.constexpr, HALF: tl.constexpr, ROWS: tl.constexpr):
        first, m, rotate, x1, x2, c1, c2, s1, s2 = rope_norm_rows(
            X, COS, SIN, POS, tl.program_id(0) * ROWS, n_rows, T, HEADS, N_QK, HAS_POS, HALF, ROWS)
        r1 = x1 * c1 - x2 * s1                                              # RoPE: x·cos + rotate_half(x)·sin
        r2 = x2 * c2 + x1 * s2
        if NORM:                                                            # LayerNorm over both halves, no weights
            mean = (tl.sum(r1, 1) + tl.sum(r2, 1)) / (2 * HALF)
            r1 = r1 - mean[:, None]
            r2 = r2 - mean[:, None]
            rstd = 1.0 / tl.sqrt((tl.sum(r1 * r1, 1) + tl.sum(r2 * r2, 1)) / (2 * HALF) + eps)
            r1 = r1 * rstd[:, None]
            r2 = r2 * rstd[:, None]
        tl.store(Y + first, tl.where(rotate, r1, x1).to(Y.dtype.element_ty), mask=m)
        tl.store(Y + first + HALF, tl.where(rotate, r2, x2).to(Y.dtype.element_ty), mask=m)

    @triton.jit
    def rope_norm_backward_kernel(DY, X, COS, SIN, POS, DX, n_rows, T, HEADS, N_QK, eps,
                                  HAS_POS: tl.constexpr, NORM: tl.constexpr, HALF: tl.constexpr, ROWS: tl.constexpr):
        """dx from dy: LayerNorm's backward (the rotation recomputed from x), then the rotation's transpose:
        r1 = x1·c1 − x2·s1, r2 = x2·c2 + x1·s2  ⇒  dx1 = dr1·c1 + dr2·s2, dx2 = dr2·c2 − dr1·s1."""
        first, m, rotate, x1, x2, c1, c2, s1, s2 = rope_norm_rows(
            X, COS, SIN, POS, tl.program_id(0) * ROWS, n_rows, T, HEADS, N_QK, HAS_POS, HALF, ROWS)
        dr1 = tl.load(DY + first, mask=m, other=0.0).to(tl.float32)       # (ROWS, HALF)
        dr2 = tl.load(DY + first + HALF, mask=m, other=0.0).to(tl.float32)
        dy1 = dr1
        dy2 = dr2
        if NORM:
            n1 = x1 * c1 - x2 * s1
            n2 = x2 * c2 + x1 * s2
            mean = (tl.sum(n1, 1) + tl.sum(n2, 1)) / (2 * HALF)
            n1 = n1 - mean[:, None]
            n2 = n2 - mean[:, None]
            rstd = 1.0 / tl.sqrt((tl.sum(n1 * n1, 1) + tl.sum(n2 * n2, 1)) / (2 * HALF) + eps)
            n1 = n1 * rstd[:, None]                                         # the normalised output
            n2 = n2 * rstd[:, None]
            mean_dy = (tl.sum(dy1, 1) + tl.sum(dy2, 1)) / (2 * HALF)
            mean_dyn = (tl.sum(dy1 * n1, 1) + tl.sum(dy2 * n2, 1)) / (2 * HALF)
            dr1 = (dy1 - mean_dy[:, None] - n1 * mean_dyn[:, None]) * rstd[:, None]
            dr2 = (dy2 - mean_dy[:, None] - n2 * mean_dyn[:, None]) * rstd[:, None]
        dx1 = dr1 * c1 + dr2 * s2
        dx2 = dr2 * c2 - dr1 * s1
        tl.store(DX + first, tl.where(rotate, dx1, dy1).to(DX.dtype.element_ty), mask=m)
        tl.store(DX + first + HALF, tl.where(rotate, dx2, dy2).to(DX.dtype.element_ty), mask=m)

    def rope_norm_launch(kernel, tensors, qkv, positions, n_qk_heads, norm, eps):
        """Run one of the two kernels over every head row of the dense (B, T, heads, hd) qkv."""
        B, T, heads, hd = qkv.shape
        n_rows = B * T * heads
        pos = positions if positions is not None else qkv        # a placeholder pointer, never read
        launch(kernel)[(triton.cdiv(n_rows, ROPE_ROWS_PER_PROGRAM),)](
            *tensors[:-1], pos, tensors[-1], n_rows, T, heads, n_qk_heads, eps,
            HAS_POS=positions is not None, NORM=norm, HALF=hd // 2, ROWS=ROPE_ROWS_PER_PROGRAM)

    @torch.library.triton_op("linnet::rope_qk_norm", mutates_args={})
    def rope_qk_norm_op(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor | None,
                        n_qk_heads: int, norm: bool, eps: float) -> torch.Tensor:
        out = torch.empty_like(qkv, memory_format=torch.contiguous_format)           # (B, T, heads, hd)
        rope_norm_launch(rope_norm_forward_kernel, (qkv, cos, sin, out), qkv, positions, n_qk_heads, norm, eps)
        return out

    @torch.library.triton_op("linnet::rope_qk_norm_backward", mutates_args={})
    def rope_qk_norm_backward_op(dy: torch.Tensor, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                                 positions: torch.Tensor | None, n_qk_heads: int, norm: bool, eps: float) -> torch.Tensor:
        dy = dy.contiguous()
        dx = torch.empty_like(qkv, memory_format=torch.contiguous_format)            # (B, T, heads, hd)
        rope_norm_launch(rope_norm_backward_kernel, (dy, qkv, cos, sin, dx), qkv, positions, n_qk_heads, norm, eps)
        return dx

    def rope_qk_norm_setup(ctx, inputs, output):
        qkv, cos, sin, positions, n_qk_heads, norm, eps = inputs
        ctx.save_for_backward(qkv, cos, sin, positions)
        ctx.n_qk_heads, ctx.norm, ctx.eps = n_qk_heads, norm, eps

    def rope_qk_norm_grad(ctx, dy):
        qkv, cos, sin, positions = ctx.saved_tensors
        dx = torch.ops.linnet.rope_qk_norm_backward(dy, qkv, cos, sin, positions, ctx.n_qk_heads, ctx.norm, ctx.eps)
        return dx, None, None, None, None, None, None

    rope_qk_norm_op.register_autograd(rope_qk_norm_grad, setup_context=rope_qk_norm_setup)
