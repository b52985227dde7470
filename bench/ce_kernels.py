"""The loss head of a training micro-step, three ways: which one should 05 use? (Throughput IV, item 2)

02 computes the loss as `F.cross_entropy(lm_head(x), targets)`: under bf16 autocast the (N, V) logits are written
in bf16 (linnet: N = 32 × 1024 tokens, V = 32,768: 2.1 GB), cross-entropy reads them back in fp32, and the backward
reads them a third time for softmax − one-hot (the H100 profile: 59 ms of a 1,462 ms step in its two passes, plus
the GEMMs). Timed here, forward + backward (the gradients of x and of the tied weight), CUDA events:

    plain     02's way: F.linear, then F.cross_entropy on the float logits (compiled on a GPU, as 05 runs it)
    chunked   fast/loss.py (02's loss_impl "fused") on torch ops: the same maths over --chunk rows at a time with the
              gradients made in the forward (the design of Liger's and quack's fused linear cross-entropy): the
              (N, V) logits never exist whole
    chunked-quack  the same on quack's one-pass cross-entropy (what "fused" runs where quack does; GPU + quack)
    quack-ce  02's F.linear, then quack-kernels' cross_entropy: one pass over the logits, its backward written in
              place of them (GPU + quack)
    quack     quack-kernels' chunked_linear_cross_entropy (softmax pieces in the GEMM's epilogue; GPU + quack)

--norm times the other element-wise lever of the step instead: the residual add and the next RMSNorm
(h = x + d in fp32, then rms_norm(h)·w in bf16, forward + backward), compiled torch against quack's rmsnorm with
its residual input; at linnet's shapes both are bound by memory, so the floor is the bytes they move.

Each row gives ms (median of --reps after --warmup), peak memory, |loss − plain's| and each gradient's relative
error against plain's. The chunked rows are fast/loss.py's; the quack rows are quack's own functions, for comparison.

    python bench/ce_kernels.py --json out/bench/ce_kernels.jsonl     # a GPU, linnet's shapes
    python bench/ce_kernels.py --norm --json out/bench/ce_kernels.jsonl
    python bench/ce_kernels.py --tokens 256 --C 64 --V 512           # a CPU smoke run (fp32, eager, no quack)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import house  # noqa: E402
from fast import loss as fused_loss  # noqa: E402


def plain_loss(x, w, targets):
    return F.cross_entropy(F.linear(x, w).float(), targets)


def chunked_loss(x, w, targets, chunk, kernels="plain"):
    """fast/loss.py's linear_cross_entropy (02's loss_impl "fused"): on torch ops ("plain") or on quack's kernels."""
    return fused_loss.linear_cross_entropy(x, w, targets, chunk=chunk, kernels=kernels)


def quack_loss(x, w, targets, chunk):
    from quack.linear_cross_entropy import chunked_linear_cross_entropy
    return chunked_linear_cross_entropy(x, w, targets, chunk_size=chunk)


def quack_ce_loss(x, w, targets):
    from quack.cross_entropy import cross_entropy
    return cross_entropy(F.linear(x, w), targets, inplace_backward=True)


def plain_norm(x, w, d):
    """(x + d, rms_norm(x + d)·w): 02's residual add and the next block's RMSNorm, x fp32, d and the output bf16."""
    h = x + d.float()
    return h, F.rms_norm(h, (h.shape[-1],), w, 1e-6).to(d.dtype)


def quack_norm(x, w, d):
    from quack.rmsnorm import rmsnorm
    n, h = rmsnorm(d, w, residual=x, out_dtype=d.dtype, residual_dtype=torch.float32, eps=1e-6, prenorm=True)
    return h, n


def norm_rows(args, device, compile_):
    """--norm: (x fp32 (N, C), d bf16) → h, n; backward of h·gh + n·gn with fixed random gh, gn."""
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(args.tokens, args.C, generator=gen).to(device)
    d0 = torch.randn(args.tokens, args.C, generator=gen).to(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    w0 = (1 + 0.1 * torch.randn(args.C, generator=gen)).to(device)
    gh, gn = torch.randn_like(x0), torch.randn_like(d0)
    d0.requires_grad_()                                     # d is a block's output: its gradient is made too
    rows, ref = [], None
    for name, fn in (("plain-norm", compile_(plain_norm)), ("quack-norm", quack_norm)):
        def loss(x, w, d, fn=fn):
            d.grad = None                               # as measure() does for x and w
            h, n = fn(x, w, d)
            return (h * gh).sum() + (n.float() * gn.float()).sum()
        row, got = measure(name, lambda x, w, d: loss(x, w, d), x0, w0, d0, ref, args, device)
        ref = ref if ref is not None else got
        rows.append(row)
    return rows


def measure(name, fn, x0, w0, targets, ref, args, device):
    """fn's loss and gradients against `ref` (plain's), then its time: a row, or the row with the error it raised."""
    row = {"path": name}
    try:
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        loss = fn(x, w, targets)
        loss.backward()
        if ref is not None:
            row["loss_diff"] = abs(loss.item() - ref[0])
            row["dx_rel"] = ((x.grad.float() - ref[1]).norm() / ref[1].norm()).item()
            row["dw_rel"] = ((w.grad.float() - ref[2]).norm() / ref[2].norm()).item()
        times = []
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for i in range(args.warmup + args.reps):
            x.grad = w.grad = None
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn(x, w, targets).backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(1000 * (time.perf_counter() - t0))
        row["ms"] = round(statistics.median(times), 3)
        if device.type == "cuda":
            row["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
        return row, (loss.item(), x.grad.float(), w.grad.float())
    except Exception as e:  # noqa: BLE001 -- a path that cannot run here is a row that says why
        row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
        return row, None


@house.speaks
def main(argv=None):
    p = house.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=house.positive_int, default=32 * 1024, help="rows N (linnet: 32 × 1024)")
    p.add_argument("--C", type=house.positive_int, default=768)
    p.add_argument("--V", type=house.positive_int, default=32768)
    p.add_argument("--chunk", type=house.positive_int, default=4096, help="rows per chunk (chunked, quack)")
    p.add_argument("--warmup", type=house.non_negative_int, default=3)
    p.add_argument("--reps", type=house.positive_int, default=10)
    p.add_argument("--norm", action="store_true", help="time the residual add + RMSNorm instead of the loss head")
    p.add_argument("--json", type=Path, default=None, help="append the rows as JSON lines to this file")
    args = p.parse_args(argv)
    if args.json is not None:
        house.check_writable(args.json.parent, "--json PATH")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(args.tokens, args.C, generator=gen).to(device, dtype)
    w0 = (torch.randn(args.V, args.C, generator=gen) * args.C ** -0.5).to(device, dtype)
    targets = torch.randint(0, args.V, (args.tokens,), generator=gen).to(device)
    compile_ = torch.compile if device.type == "cuda" else (lambda f: f)
    paths = [("plain", compile_(plain_loss)),
             ("chunked", compile_(lambda x, w, t: chunked_loss(x, w, t, args.chunk))),
             ("chunked-quack", compile_(lambda x, w, t: chunked_loss(x, w, t, args.chunk, "quack"))),
             ("quack-ce", quack_ce_loss),
             ("quack", lambda x, w, t: quack_loss(x, w, t, args.chunk))]
    rows, ref = (norm_rows(args, device, compile_) if args.norm else []), None
    for name, fn in ([] if args.norm else paths):
        row, got = measure(name, fn, x0, w0, targets, ref, args, device)
        ref = ref if ref is not None else got
        rows.append(row)
    for row in rows:
        row.update(tokens=args.tokens, C=args.C, V=args.V, chunk=args.chunk, dtype=str(dtype).replace("torch.", ""))
    return report(rows, ("ms", "loss_diff", "dx_rel", "dw_rel"), args.json)


def report(rows, keys, json_path):
    """Each row as one line (its `keys` that it has, or the error it raised), with the device and torch added;
    appended to json_path as JSON lines when given. Shared with bench/fp8_quack.py."""
    for row in rows:
        row.update(device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", torch=torch.__version__)
        shown = row.get("error") or "  ".join(f"{k} {row[k]:.3g}" for k in keys if k in row)
        print(f"{row['path']:10s} {shown}")
    if json_path is not None:
        with open(json_path, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


if __name__ == "__main__":
    main()
