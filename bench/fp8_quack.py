"""FP8 inside quack's fused expert GEMM: does it pay? (Throughput IV, item 3; a probe for the next GPU start)

05 --fp8 quantises the expert GEMMs on grouped_mm, which gives up quack's fused kernels: on an H100 it ran 4 % under
the fused bf16 step (BENCHMARKS.md, "Throughput IV, third round"). quack's SM90 GEMM also takes e4m3 operands, and
`gemm_act` scales its fp32 accumulator by `alpha` before SwiGLU: a per-tensor scale for x and one for the weights
fold into that one number. This times the way up of a MoE layer at linnet's shapes (65,536 token-slots gathered from
32,768 tokens, 768 → 2 × 2,048, 8 experts, SwiGLU in the epilogue), forward only:

    bf16        fast/moe.py's up_quack as the fused path runs it
    fp8         the same call on e4m3 x and w with per-tensor scales (alpha = 1 / (sx · sw)); the weights quantised
                once (a step's bf16 copies are made once too), x each call
    fp8+quant   fp8 plus quantising x (amax, scale, cast; compiled), which a real step pays unless the quantisation
                is fused into the RMSNorm before it with a scale carried from the previous step

Each row: ms (median of --reps after --warmup, CUDA events), the SwiGLU output's relative error against bf16's, or
the error the call raised. Nothing here is used by a lesson.

    python bench/fp8_quack.py --json out/bench/fp8_quack.jsonl        # a Hopper GPU with quack
    python bench/fp8_quack.py                                          # elsewhere: each row says why it cannot run
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import house  # noqa: E402
from bench.ce_kernels import report  # noqa: E402
from fast import moe  # noqa: E402

E4M3_MAX = 448.0


def to_e4m3(t):
    """t → (e4m3 tensor, its per-tensor scale s: t ≈ e4m3 / s)."""
    s = E4M3_MAX / t.abs().amax().float().clamp_min(1e-12)
    return (t.float() * s).to(torch.float8_e4m3fn), s


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


@house.speaks
def main(argv=None):
    p = house.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=house.positive_int, default=32 * 1024)
    p.add_argument("--C", type=house.positive_int, default=768)
    p.add_argument("--F", type=house.positive_int, default=2048)
    p.add_argument("--experts", type=house.positive_int, default=8)
    p.add_argument("--warmup", type=house.non_negative_int, default=5)
    p.add_argument("--reps", type=house.positive_int, default=20)
    p.add_argument("--json", type=Path, default=None, help="append the rows as JSON lines to this file")
    args = p.parse_args(argv)
    if args.json is not None:
        house.check_writable(args.json.parent, "--json PATH")
    quack, why_not = moe.import_quack()
    names = ("bf16", "fp8", "fp8+quant")
    rows = [{"path": name} for name in names]
    if quack is None:
        for row in rows:
            row["error"] = why_not
    else:
        g = torch.Generator().manual_seed(0)
        N, C, F_, E = args.tokens, args.C, args.F, args.experts
        x = torch.randn(N, C, generator=g).cuda().bfloat16()
        w_il = (torch.randn(E, 2 * F_, C, generator=g) * C ** -0.5).cuda().bfloat16()
        top_e = torch.randint(0, E, (N, 2), generator=g).cuda()
        flat = top_e.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=E)
        cu = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int32)
        tok = (order // 2).to(torch.int32)
        w8, sw = to_e4m3(w_il)
        quantise = torch.compile(to_e4m3)
        x8, sx = quantise(x)

        def up(xq, wq, alpha):
            return quack.gemm_act(xq, wq.transpose(-2, -1), activation="swiglu", cu_seqlens_m=cu, A_idx=tok,
                                  alpha=alpha, out_dtype=torch.bfloat16, postact_dtype=torch.bfloat16)[1]
        def fp8_and_quantise():
            xq, s = quantise(x)
            return up(xq, w8, (1 / (s * sw)).reshape(1))
        calls = {"bf16": lambda: up(x, w_il, 1.0), "fp8": lambda: up(x8, w8, (1 / (sx * sw)).reshape(1)),
                 "fp8+quant": fp8_and_quantise}
        want = None
        for row in rows:
            try:
                got = calls[row["path"]]().float()
                want = got if want is None else want
                row["rel_error"] = ((got - want).norm() / want.norm()).item()
                row["ms"] = round(timed(calls[row["path"]], args.warmup, args.reps), 4)
            except Exception as e:  # noqa: BLE001 -- a row that cannot run says why
                row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
    for row in rows:
        row.update(tokens=args.tokens, C=args.C, F=args.F, experts=args.experts)
    return report(rows, ("ms", "rel_error"), args.json)


if __name__ == "__main__":
    main()
