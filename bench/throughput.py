"""Throughput of linnet training steps: tokens/s, MFU, peak memory, and where the time goes.

Builds the linnet model (02) on random tokens, runs the real training step of 05 (forward + backward over
the micro-batches, clipping, Muon + AdamW from 03), warms up, then times full steps. Every number in
BENCHMARKS.md comes from a command of this script, so anyone can reproduce it.

    python bench/throughput.py                                # linnet: depth 12, 32×1024 micro-batch, compiled
    python bench/throughput.py --moe reference --no-compile   # the readable path, eager
    python bench/throughput.py --what fwdbwd --micro-batch 16  # forward+backward only (issue: 02 speed)
    python bench/throughput.py --what optimizer               # one optimizer step: ours vs torch.optim.Muon vs AdamW
    python bench/throughput.py --profile out/bench/profile.txt # top kernels by CUDA time, grouped by kind
    python bench/throughput.py --plain moe cast_experts       # the plain choice of the same arguments the
                                                              # lessons use: what does each fast one buy?
    python bench/throughput.py --what attention               # SDPA backends at linnet's shapes
    python bench/throughput.py --what rope --warmup 3 --steps 20   # RoPE + QK-norm: fused kernel vs plain ops
    python bench/throughput.py --moe grouped_fp8              # the expert GEMMs in FP8 (05 --fp8)
    python bench/throughput.py --moe fused                    # the experts on quack's fused GEMMs (fast/moe.py)
    python bench/throughput.py --loss fused                   # lm_head + cross-entropy in chunks (fast/loss.py)
    python bench/throughput.py --depth 2 --seq-len 64 --micro-batch 4 --accum 2 --steps 3   # a CPU smoke run

`--plain NAME` picks the plain side of a fast/plain pair through the argument the lessons use:
    moe            LLMConfig.moe_impl = "reference" (02: the loop over experts, not moe_grouped)
    moe_fused      LLMConfig.moe_impl = "grouped" (02's moe_grouped, not fast/moe.py's fused quack kernels)
    cast_experts   TrainConfig.cast_experts_once = False (05: cast the expert weights in every micro-step,
                   not once per step with fast/moe.py's cast_expert_weights)
    rope           LLMConfig.rope_impl = "reference": 02's plain RoPE + QK-norm ops, not the fused Triton kernel
                   of fast/rope_qk_norm.py (what "auto" runs on a GPU)
    loss           LLMConfig.loss_impl = "reference": 02's lm_head + cross-entropy, not fast/loss.py's chunks (what
                   "auto" trains with where quack runs; --loss chooses either side too)
RoPE reads cos/sin from tables on both sides; the table-vs-angles choice was measured in the second benchmark
session, 2026-11-25 (BENCHMARKS.md, rows 5 and 6: angles computed inside the compiled graph 304.4k tokens/s,
tables 309.4k).

MFU counts 6·N_active + 12·n_layer·T·n_embd FLOPs per token (docs/ARCHITECTURE.md) against 989 TFLOP/s.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import house  # noqa: E402
from fast import moe as moe_fast  # noqa: E402
import house.runs  # noqa: E402

model_lib = importlib.import_module("02_model")
muon_lib = importlib.import_module("03_muon")
train_lib = importlib.import_module("05_train")


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_batches(n, micro_batch, seq_len, vocab, device, generator):
    for _ in range(n):
        x = torch.randint(0, vocab, (micro_batch, seq_len), generator=generator).to(device)
        yield x, torch.roll(x, -1, dims=1)


def build(args, device):
    config = model_lib.LLMConfig(depth=args.depth, block_size=args.seq_len, vocab_size=args.vocab,
                                 moe_impl=args.moe, rope_impl="reference" if "rope" in getattr(args, "plain", ()) else "auto",
                                 loss_impl=getattr(args, "loss", "auto"))
    torch.manual_seed(0)
    model = model_lib.LLM(config).to(device)
    if getattr(args, "residual", "fp32") == "bf16":     # an experiment (issue 25), not a lesson's choice yet
        model.transformer.wte.register_forward_hook(                 # only where autocast runs (a GPU)
            lambda module, inputs, out: out.to(torch.bfloat16) if torch.is_autocast_enabled(out.device.type) else out)
    runner = torch.compile(model, mode=args.compile_mode) if args.compile else model
    return model, runner, config


PLAIN_CHOICES = {  # --plain NAME → what it sets: the same argument the lessons choose with
    "moe": "LLMConfig.moe_impl='reference' (the loop over experts)",
    "moe_fused": "LLMConfig.moe_impl='grouped' (02's moe_grouped, not fast/moe.py's fused quack kernels)",
    "cast_experts": "TrainConfig.cast_experts_once=False (cast the experts in every micro-step)",
    "muon_batched": "build_optimizers(batched=False) (03: one Newton-Schulz call per parameter, not per shape)",
    "rope": "LLMConfig.rope_impl='reference' (02's plain RoPE + QK-norm ops, not fast/rope_qk_norm.py's kernel)",
    "loss": "LLMConfig.loss_impl='reference' (02's lm_head + cross-entropy, not fast/loss.py's chunks)",
}


def apply_plain(args):
    """--plain: choose the plain side of each named pair through the lessons' own arguments."""
    if "moe" in args.plain:
        args.moe = "reference"
    elif "moe_fused" in args.plain:
        args.moe = "grouped"
    if "cast_experts" in args.plain:
        args.cast_experts_once = False
    if "loss" in args.plain:
        args.loss = "reference"
    args.muon_batched = "muon_batched" not in args.plain


def build_training(args, device):
    """The model, its runner, 05's TrainConfig for one step of args.accum micro-batches, 03's optimizers,
    and the random-token generator, after args.warmup full steps (compilation happens there)."""
    model, runner, config = build(args, device)
    cfg = train_lib.TrainConfig(model=config, micro_batch=args.micro_batch,
                                total_batch_tokens=args.micro_batch * args.seq_len * args.accum,
                                cast_experts_once=args.cast_experts_once)
    optimizers, _ = muon_lib.build_optimizers(model, lr=1e-3, weight_decay=0.1, batched=args.muon_batched)
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.warmup):
        train_lib.train_step(model, runner, optimizers,
                             random_batches(args.accum, args.micro_batch, args.seq_len, args.vocab, device, gen), cfg, device)
    return model, runner, config, cfg, optimizers, gen


def time_steps(args, device):
    """Full training steps (fwd+bwd+optimizer), the headline number."""
    model, runner, config, cfg, optimizers, gen = build_training(args, device)
    tokens = cfg.total_batch_tokens
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    batches = [list(random_batches(args.accum, args.micro_batch, args.seq_len, args.vocab, device, gen))
               for _ in range(args.steps)]
    synchronize(device)
    t0 = time.perf_counter()
    for step_batches in batches:
        loss, _, _ = train_lib.train_step(model, runner, optimizers, step_batches, cfg, device)
    synchronize(device)
    dt = (time.perf_counter() - t0) / args.steps
    result = report(args, device, config, tokens, dt, what="full step (fwd+bwd+optimizer)")
    result["loss"] = loss.item()
    result["phases_ms"] = phase_breakdown(model, runner, optimizers, cfg, args, device, gen)
    return result


def phase_breakdown(model, runner, optimizers, cfg, args, device, gen):
    """Forward, backward, optimizer and data time per step, each fenced by a synchronize (so they add up
    to a bit more than an unfenced step)."""
    phases = dict(data=0.0, forward=0.0, backward=0.0, optimizer=0.0)
    n = max(1, min(args.steps, 3))
    cast_once = cfg.cast_experts_once and device.type == "cuda"   # as in 05's train_step
    for _ in range(n):
        t = time.perf_counter()
        expert_weights = moe_fast.cast_expert_weights(model) if cast_once else None   # once per step
        synchronize(device); phases["forward"] += time.perf_counter() - t
        for _ in range(args.accum):
            t = time.perf_counter()
            x, y = next(random_batches(1, args.micro_batch, args.seq_len, args.vocab, device, gen))
            synchronize(device); phases["data"] += time.perf_counter() - t; t = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                _, loss = runner(x, y, expert_weights=expert_weights)
            synchronize(device); phases["forward"] += time.perf_counter() - t; t = time.perf_counter()
            (loss / args.accum).backward()
            synchronize(device); phases["backward"] += time.perf_counter() - t
        t = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for opt in optimizers:
            opt.step()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        synchronize(device); phases["optimizer"] += time.perf_counter() - t
    return {k: round(1000 * v / n, 2) for k, v in phases.items()}


def time_fwdbwd(args, device):
    """Forward + backward of one micro-batch only (no optimizer): the model's own speed."""
    model, runner, config = build(args, device)
    gen = torch.Generator().manual_seed(0)
    batches = list(random_batches(args.steps + args.warmup, args.micro_batch, args.seq_len, args.vocab, device, gen))
    for i, (x, y) in enumerate(batches):
        if i == args.warmup:
            synchronize(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            _, loss = runner(x, y)
        loss.backward()
    synchronize(device)
    dt = (time.perf_counter() - t0) / args.steps
    return report(args, device, config, args.micro_batch * args.seq_len, dt, what="forward+backward")


def time_optimizer(args, device):
    """One optimizer step for the whole model: ours (03) vs torch.optim.Muon vs AdamW on everything."""
    model, _, _ = build(args, device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    results = {}

    def bench(name, optimizers):
        for _ in range(args.warmup):
            for opt in optimizers:
                opt.step()
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            for opt in optimizers:
                opt.step()
        synchronize(device)
        results[name] = round(1000 * (time.perf_counter() - t0) / args.steps, 2)

    ours, _ = muon_lib.build_optimizers(model, lr=1e-3, weight_decay=0.1)
    bench("ours: Muon (03, one Newton-Schulz call per shape) + AdamW", ours)
    plain, _ = muon_lib.build_optimizers(model, lr=1e-3, weight_decay=0.1, batched=False)
    bench("ours, plain: Muon (03, one call per parameter) + AdamW", plain)
    if hasattr(torch.optim, "Muon"):
        # torch.optim.Muon takes 2-D matrices only: give it every expert matrix as its own view-free copy
        matrices = [p for p in model.parameters() if p.ndim == 2 and p.shape[0] != model.config.vocab_size]
        per_expert = [torch.nn.Parameter(m.detach().clone()) for p in model.parameters() if p.ndim == 3
                      and p.shape[-1] != 3 for m in p]
        for q in per_expert:
            q.grad = torch.randn_like(q) * 1e-3
        rest = [p for p in model.parameters() if p.ndim == 1 or p.shape[0] == model.config.vocab_size
                or p.shape[-1] == 3]
        bench("torch.optim.Muon (one call per matrix) + AdamW",
              [torch.optim.Muon(matrices + per_expert, lr=1e-2),
               torch.optim.AdamW(rest, lr=1e-3, fused=device.type == "cuda")])
    bench("AdamW on all parameters (fused on CUDA)",
          [torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type == "cuda")])
    return {"what": "optimizer step (ms)", **results, "device": device_name(device), "torch": torch.__version__}


def time_attention(args, device):
    """Causal GQA attention forward+backward at linnet's shapes, (B, 12 heads, T, 64) with 4 KV heads,
    for each SDPA backend that accepts it: which kernel should the model use?"""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    config = model_lib.LLMConfig(depth=args.depth, block_size=args.seq_len, vocab_size=args.vocab)
    B, T, hd = args.micro_batch, args.seq_len, config.head_dim
    gen = torch.Generator(device=device).manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q = torch.randn(B, config.n_head, T, hd, device=device, dtype=dtype, generator=gen).requires_grad_()
    k = torch.randn(B, config.n_kv_head, T, hd, device=device, dtype=dtype, generator=gen).requires_grad_()
    v = torch.randn(B, config.n_kv_head, T, hd, device=device, dtype=dtype, generator=gen).requires_grad_()
    grad = torch.randn(B, config.n_head, T, hd, device=device, dtype=dtype, generator=gen)
    flops = 4 * B * config.n_head * T * T * hd / 2 * 3.5       # causal: half the matrix; bwd ≈ 2.5 × fwd
    results = {}
    backends = {"default": None, "cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    for name, backend in backends.items():
        ctx = sdpa_kernel([backend]) if backend is not None else torch.enable_grad()
        try:
            with ctx:
                for i in range(args.warmup + args.steps):
                    if i == args.warmup:
                        synchronize(device)
                        t0 = time.perf_counter()
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                    out.backward(grad)
            synchronize(device)
            ms = 1000 * (time.perf_counter() - t0) / args.steps
            results[name] = {"ms_fwd_bwd_per_layer": round(ms, 3), "tflops": round(flops / ms / 1e9, 1)}
        except RuntimeError as e:
            results[name] = f"not available: {str(e).splitlines()[0][:80]}"
    return {"what": f"attention fwd+bwd, B={B} T={T} heads {config.n_head}/{config.n_kv_head}", **results,
            "device": device_name(device), "torch": torch.__version__}


def time_rope(args, device):
    """RoPE + QK-norm forward+backward of one layer at linnet's shapes: qkv (B, T, (12 + 2·4)·64) → q, k, v,
    three ways: 02's fused Triton kernel, the plain ops compiled by inductor, the plain ops eager. Bandwidth
    counts the least traffic a single pass can have: qkv read and written forward, dy and qkv read and dx
    written backward (5 × the bytes of qkv)."""
    config = model_lib.LLMConfig(depth=args.depth, block_size=args.seq_len, vocab_size=args.vocab)
    B, T = args.micro_batch, args.seq_len
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    gen = torch.Generator(device=device).manual_seed(0)
    width = (config.n_head + 2 * config.n_kv_head) * config.head_dim
    qkv = torch.randn(B, T, width, device=device, dtype=dtype, generator=gen).requires_grad_()
    moved = 5 * qkv.numel() * qkv.element_size()
    ways = {"fused kernel (fast/rope_qk_norm.py)": ("fused", False), "plain ops, compiled": ("reference", True),
            "plain ops, eager": ("reference", False)}
    results = {}
    for name, (impl, compiled) in ways.items():
        try:
            attn = model_lib.CausalSelfAttention(dataclasses.replace(config, rope_impl=impl)).to(device)
            fn = torch.compile(attn.qkv_heads) if compiled else attn.qkv_heads
            grads = None
            for i in range(args.warmup + args.steps):
                if i == args.warmup:
                    synchronize(device)
                    t0 = time.perf_counter()
                qkv.grad = None
                heads = fn(qkv)
                grads = grads or [torch.randn_like(h) for h in heads]
                torch.autograd.backward(heads, grads)
            synchronize(device)
            ms = 1000 * (time.perf_counter() - t0) / args.steps
            results[name] = {"ms_fwd_bwd_per_layer": round(ms, 3), "effective_GB_per_s": round(moved / ms / 1e6)}
        except (RuntimeError, ValueError) as e:
            results[name] = f"not available: {str(e).splitlines()[0][:80]}"
    return {"what": f"RoPE + QK-norm fwd+bwd, B={B} T={T} qkv width {width}", **results,
            "device": device_name(device), "torch": torch.__version__}


def device_name(device):
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def report(args, device, config, tokens, seconds, what):
    flops = model_lib.flops_per_token(config, args.seq_len)
    tokens_per_s = tokens / seconds
    peak = house.runs.peak_flops(device)
    return {"what": what, "moe": args.moe, "loss_impl": getattr(args, "loss", "auto"), "compile": args.compile, "compile_mode": args.compile_mode,
            "plain": args.plain, "cast_experts_once": args.cast_experts_once, "residual": getattr(args, "residual", "fp32"), "micro_batch": args.micro_batch,
            "accum": args.accum, "ms": round(1000 * seconds, 1), "tokens_per_s": round(tokens_per_s),
            "mfu_percent": round(100 * tokens_per_s * flops / peak, 1) if peak else None,
            "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 1e9, 1) if device.type == "cuda" else None,
            "device": device_name(device), "torch": torch.__version__}


def profile(args, device, path):
    model, runner, config, cfg, optimizers, gen = build_training(args, device)
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        train_lib.train_step(model, runner, optimizers,
                             random_batches(args.accum, args.micro_batch, args.seq_len, args.vocab, device, gen), cfg, device)
        synchronize(device)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = prof.key_averages().table(sort_by=sort, row_limit=40)
    if device.type == "cuda":
        try:
            text = kernel_summary(prof, args.accum) + "\n\n" + text
        except Exception as e:  # the plain table still gets written
            text = f"(kernel summary failed: {e!r})\n\n" + text
    path.write_text(text)
    print(f"profile: {path} — where the GPU time of one full step goes, by kind and by kernel")


KERNEL_KINDS = [  # (kind, substrings of the kernel name), first match wins
    ("expert GEMMs (quack, fast/moe.py)", ("quack",)),
    ("expert GEMMs (grouped_mm)", ("GroupProblemShape", "grouped_gemm", "ptr_array")),
    ("attention (SDPA)", ("flash", "fmha", "cudnn", "attention", "sdpa")),
    ("Newton-Schulz / optimizer", ("multi_tensor", "adam", "foreach")),
    ("dense GEMMs (cuBLAS)", ("gemm", "nvjet", "sm90_xmma", "cutlass", "Kernel2")),
    ("sort / scan (routing)", ("sort", "Sort", "scan", "Scan", "radix", "cub::")),
    ("fused element-wise (inductor)", ("triton_",)),
    ("copies", ("copy", "Copy", "memcpy", "Memcpy", "memset", "Memset", "fill")),
]


def kernel_summary(prof, accum):
    """GPU kernels of the profiled step grouped by kind, plus the 50 most expensive kernels by name."""
    kernels = {}
    for e in prof.key_averages():
        annotation = "#" in e.key or e.key.startswith("Optimizer.")   # a CPU-side label, not a kernel
        if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA and e.self_device_time_total > 0 \
                and not annotation:
            kernels[e.key] = (e.self_device_time_total / 1000, e.count)
    if not kernels:
        return "(no CUDA kernels recorded)"
    total = sum(t for t, _ in kernels.values())
    kinds = {}
    for name, (ms, count) in kernels.items():
        kind = next((k for k, subs in KERNEL_KINDS if any(s in name for s in subs)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + ms
    lines = [f"GPU time of one step ({accum} micro-steps + optimizer): {total:.1f} ms", "", "by kind:"]
    lines += [f"  {ms:8.2f} ms  {100 * ms / total:5.1f} %  {kind}" for kind, ms in sorted(kinds.items(), key=lambda kv: -kv[1])]
    lines += ["", "top kernels (ms total, calls, name):"]
    for name, (ms, count) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:50]:
        lines.append(f"  {ms:8.2f} ms {count:5d}  {name[:160]}")
    return "\n".join(lines)


@house.speaks
def main(argv=None):
    p = house.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", choices=["step", "fwdbwd", "optimizer", "attention", "rope"], default="step")
    p.add_argument("--depth", type=house.positive_int, default=12)
    p.add_argument("--vocab", type=house.positive_int, default=32768)
    p.add_argument("--seq-len", type=house.positive_int, default=1024)
    p.add_argument("--micro-batch", type=house.positive_int, default=32)
    p.add_argument("--accum", type=house.positive_int, default=2, help="micro-steps per timed step (linnet: 16 at micro-batch 32)")
    p.add_argument("--moe", choices=list(model_lib.MOE_IMPLS), default="auto",
                   help="02's MoE path; grouped_fp8 = the expert GEMMs in FP8 (05 --fp8)")
    p.add_argument("--loss", choices=list(model_lib.LOSS_IMPLS), default="auto",
                   help="02's loss head; fused = fast/loss.py's chunked linear + cross-entropy")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--compile-mode", default=None, choices=[None, "default", "max-autotune-no-cudagraphs"],
                   help="torch.compile mode (CUDA-graph modes fail here: the step keeps outputs across micro-steps)")
    p.add_argument("--cast-experts-once", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 expert weights made once per step, not per micro-step (05's default on a GPU)")
    p.add_argument("--plain", nargs="+", default=[], choices=list(PLAIN_CHOICES),
                   help="run the plain side of these fast/plain pairs: "
                        + "; ".join(f"{k}: {v}" for k, v in PLAIN_CHOICES.items()))
    p.add_argument("--residual", choices=["fp32", "bf16"], default="fp32",
                   help="dtype of the residual stream under autocast: fp32 (the embedding's, today's) or bf16 (the "
                        "embedding's output cast once, so every add and norm reads half the bytes): an experiment")
    p.add_argument("--warmup", type=house.non_negative_int, default=3)
    p.add_argument("--steps", type=house.positive_int, default=5)
    p.add_argument("--profile", type=Path, default=None, help="write the top kernels of one step to this file")
    p.add_argument("--json", type=Path, default=None, help="append the result as one JSON line to this file")
    args = p.parse_args(argv)
    for flag, path in (("--json", args.json), ("--profile", args.profile)):   # unwritable: fails now, not after the run
        if path is not None:
            house.check_writable(path.parent, f"{flag} PATH")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and (args.depth >= 8 or args.micro_batch * args.seq_len > 16_384):
        raise SystemExit(f"error: no CUDA GPU: a depth-{args.depth} step of {args.micro_batch} × {args.seq_len} tokens "
                         "is a GPU benchmark (linnet's needs ≈ 35 GB; a CPU runs out of memory); to try it here pass "
                         "e.g. --depth 2 --micro-batch 2 --seq-len 256")
    if args.compile is None:
        args.compile = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    apply_plain(args)
    if args.profile:
        profile(args, device, args.profile)
        return
    run = {"step": time_steps, "fwdbwd": time_fwdbwd, "optimizer": time_optimizer, "attention": time_attention,
           "rope": time_rope}
    result = run[args.what](args, device)
    print(json.dumps(result))
    if args.json:
        house.runs.append_log(args.json, {"argv": sys.argv[1:], **result})


if __name__ == "__main__":
    main()
