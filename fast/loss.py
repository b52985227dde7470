"""The loss head, fast: lm_head + cross-entropy without the (N, V) logits ever made whole.

02's plain twin: `F.cross_entropy(lm_head(x), targets)`. At linnet's shapes one micro-step's logits are 32,768 ×
32,768 (2.1 GB in bf16): the GEMM writes them, cross-entropy reads them, the backward reads them again and writes
their gradient the same size, and two more GEMMs read that. `linear_cross_entropy` (`LLMConfig.loss_impl = "fused"`)
takes the rows a chunk at a time instead: logits of the chunk → its loss and, in the same pass, the gradient of the
logits in their place → that chunk's share of dx and dw. So the gradients are made in the forward (as Liger's and
quack's fused linear cross-entropy do) and the backward only scales them by the incoming gradient.

Two sets of kernels: "quack" (a Hopper GPU with quack-kernels: its one-pass cross-entropy writes the gradient over the
logits) and "plain", the same chunks in torch ops, which a CPU runs and tests/test_loss_fused.py compares with 02's
head. Measured alone (BENCHMARKS.md, "Throughput IV, third round"): quack's chunked linear + cross-entropy 8.65 vs
9.65 ms and 1.1 vs 2.5 GB a micro-step on an H100; in linnet's training step on an H100 ("fourth round") +1.0 %
tokens/s and 5.6 GB less peak memory. So 02's "auto" trains with it where quack runs (a bf16 step on a Hopper GPU);
on the plain kernels it is slower than 02's head (12.2 vs 9.7 ms), so elsewhere "auto" keeps the head and
`loss_impl="fused"` asks for it. Not here: logit_softcap (02 refuses the pair), label smoothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fast.moe import quack_ready


def chunk_plain(x, w, targets, ignore_index: int):
    """One chunk in torch ops → (summed loss, dlogits (rows, V) in x's dtype: softmax − one-hot, 0 on ignored rows)."""
    logits = (x @ w.t()).float()
    lse = torch.logsumexp(logits, dim=-1)
    keep = targets != ignore_index
    safe = torch.where(keep, targets, 0)
    loss = ((lse - logits.gather(1, safe[:, None]).squeeze(1)) * keep).sum()
    grad = torch.softmax(logits, dim=-1)
    grad[torch.arange(len(safe), device=x.device), safe] -= 1
    return loss, (grad * keep[:, None]).to(x.dtype)


def chunk_quack(x, w, targets, ignore_index: int):
    """The same on quack: cuBLAS writes the logits, quack's cross-entropy kernel writes their gradient over them."""
    from quack.cross_entropy import cross_entropy_fwd_out
    logits = x @ w.t()
    loss = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    cross_entropy_fwd_out(logits, targets, None, loss=loss, lse=None, dx=logits, weight=None, ignore_index=ignore_index)
    return loss.sum(), logits


CHUNK = {"plain": chunk_plain, "quack": chunk_quack}


@torch.library.custom_op("linnet::chunked_linear_cross_entropy", mutates_args=())
def loss_and_grads(x: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, ignore_index: int, chunk: int,
                   kernels: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Σ cross-entropy of x @ wᵀ over the rows, d(Σ)/dx, d(Σ)/dw (fp32) — one chunk of rows at a time. A custom op,
    so torch.compile keeps it whole (quack's kernels cannot be traced) and traces the model around it."""
    total = torch.zeros((), dtype=torch.float32, device=x.device)
    dx, dw = torch.empty_like(x), torch.zeros(w.shape, dtype=torch.float32, device=w.device)
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk]
        loss, dlogits = CHUNK[kernels](xc, w, targets[start:start + chunk], ignore_index)
        total += loss
        torch.mm(dlogits, w, out=dx[start:start + chunk])
        dw += (dlogits.t() @ xc).float()
    return total, dx, dw


@loss_and_grads.register_fake
def _(x, w, targets, ignore_index, chunk, kernels):
    return x.new_empty((), dtype=torch.float32), torch.empty_like(x), w.new_empty(w.shape, dtype=torch.float32)


class LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, targets, ignore_index, chunk, kernels):
        total, dx, dw = loss_and_grads(x, w, targets, ignore_index, chunk, kernels)
        count = (targets != ignore_index).sum().clamp_min(1)
        ctx.save_for_backward(dx, dw, count)
        ctx.w_dtype = w.dtype
        return total / count

    @staticmethod
    def backward(ctx, g):
        dx, dw, count = ctx.saved_tensors
        scale = g.float() / count                                      # in fp32: a bf16 scale would be off by ≤ 0.4 %
        return (dx.float() * scale).to(dx.dtype), (dw * scale).to(ctx.w_dtype), None, None, None, None


def linear_cross_entropy(x, w, targets, ignore_index: int = -1, chunk: int = 4096, kernels: str | None = None):
    """mean over the rows whose target is not `ignore_index` of cross_entropy(x @ wᵀ, targets), as
    F.cross_entropy(F.linear(x, w), targets, ignore_index=...) computes it (except that with every target ignored it
    is 0, not NaN): x (N, C), w (V, C), targets (N,). Under autocast both are cast to its dtype first, as F.linear
    would. Without gradients (evaluation) it is simply that F.cross_entropy. `kernels`: "quack" or "plain" (default:
    quack where it imports, else plain)."""
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
        x, w = x.to(dtype), w.to(dtype)
    if not torch.is_grad_enabled() or not (x.requires_grad or w.requires_grad):
        return F.cross_entropy(F.linear(x, w).float(), targets, ignore_index=ignore_index)   # no gradients to make
    kernels = kernels or ("quack" if x.is_cuda and quack_ready() else "plain")
    with torch.autocast(x.device.type, enabled=False):
        return LinearCrossEntropy.apply(x, w, targets, ignore_index, chunk, kernels)
