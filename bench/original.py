"""Throughput of linnet's ORIGINAL training step, for the "N× the original" figure in README and BENCHMARKS.

The original code is not part of this repo. Clone it and give this script its model.py:

    git clone https://github.com/rudyon/pipeline ~/pipeline                   # linnet's code (model.py, train.py)
    python bench/original.py --model-py ~/pipeline/model.py                  # the original step on this GPU
    python bench/throughput.py --micro-batch 32 --accum 16 --warmup 1 --steps 3   # this repo's step, same start

The step is the original train.py's on random tokens: `torch.compile(LLM(LLMConfig(depth, vocab)))`, its own
`configure_optimizers` (torch.optim.Muon + fused AdamW), micro-batch 16 × 1024 under bf16 autocast, 32 micro-steps to
a 524,288-token step, loss / 32, clipping at 1.0, the learning rates set as train.py sets them (Muon 10× AdamW's), both
optimizers stepped. Nothing of the original is changed or patched. Left out, on both sides: the data loader (each
step's batches are on the GPU before the clock starts, as bench/throughput.py does), evaluation, logging and
checkpoints. The original's speed moves from start to start (its expert loop syncs with the host), so quote the pair
measured on several starts as a range: BENCHMARKS.md "Throughput IV" shows how.

    python bench/original.py --model-py ~/pipeline/model.py --depth 2 --vocab 512 --seq-len 64 --micro-batch 2 \\
        --accum 2 --steps 2 --warmup 1 --no-compile                          # a CPU smoke run
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import house  # noqa: E402
import house.runs  # noqa: E402

model_lib = importlib.import_module("02_model")   # only for the FLOPs per token (same architecture, same count)


def load_original(model_py: Path):
    """Import the original model.py from its path; raise a UserError that says what to do if it is not usable."""
    model_py = Path(model_py).expanduser()
    if model_py.is_dir():
        model_py = model_py / "model.py"
    if not model_py.is_file():
        raise house.UserError(f"no file {model_py}: clone the original code (git clone "
                              "https://github.com/rudyon/pipeline) and pass --model-py PIPELINE/model.py")
    spec = importlib.util.spec_from_file_location("linnet_original", model_py)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                                   # as a normal import would (dataclasses, pickling)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 -- any failure to import someone else's file is the user's to see, in one line
        raise house.UserError(f"{model_py} does not import: {type(e).__name__}: {e}") from e
    missing = [name for name in ("LLM", "LLMConfig") if not hasattr(module, name)]
    if missing or not hasattr(getattr(module, "LLM", None), "configure_optimizers"):
        raise house.UserError(f"{model_py} is not linnet's model.py: it lacks "
                              f"{', '.join(missing) or 'LLM.configure_optimizers'}")
    return module


def time_original(module, args, device):
    padded_vocab = (args.vocab + 63) // 64 * 64                       # as train.py rounds it
    torch.manual_seed(0)                                              # the same weights, so the same routing, every run
    model = module.LLM(module.LLMConfig(depth=args.depth, vocab_size=padded_vocab)).to(device)
    if args.compile:
        model = torch.compile(model)
    optimizers = model.configure_optimizers(weight_decay=0.1, learning_rate=6e-4, device=device.type)
    gen = torch.Generator().manual_seed(0)
    use_autocast = device.type == "cuda"

    def batches():
        """One step's micro-batches, already on the device: x and y as the original's DataLoaderLite cuts them."""
        out = []
        for _ in range(args.accum):
            buf = torch.randint(0, padded_vocab, (args.micro_batch * args.seq_len + 1,), generator=gen).to(device)
            out.append((buf[:-1].view(args.micro_batch, args.seq_len), buf[1:].view(args.micro_batch, args.seq_len)))
        return out

    def step(micro_batches, lr=1e-3):                                 # train.py's loop body; lr: its max_lr
        model.train()
        for opt in optimizers:
            opt.zero_grad()
        loss_accum = 0.0
        for x, y in micro_batches:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_autocast):
                _, loss = model(x, y)
            loss = loss / args.accum
            loss_accum += loss.detach()
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for group in optimizers[0].param_groups:
            group["lr"] = lr * 10
        for group in optimizers[1].param_groups:
            group["lr"] = lr
        for opt in optimizers:
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return loss_accum

    for _ in range(args.warmup):
        step(batches())
    steps = [batches() for _ in range(args.steps)]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for micro_batches in steps:
        loss = step(micro_batches)
    seconds = (time.perf_counter() - t0) / args.steps
    tokens = args.micro_batch * args.seq_len * args.accum
    ours = model_lib.LLMConfig(depth=args.depth, block_size=args.seq_len, vocab_size=padded_vocab)
    flops = model_lib.flops_per_token(ours, args.seq_len)
    peak = house.runs.peak_flops(device)
    tokens_per_s = tokens / seconds
    return {"what": "the original linnet code's full step (fwd+bwd+Muon+AdamW)", "model_py": str(args.model_py),
            "compile": args.compile, "micro_batch": args.micro_batch, "accum": args.accum, "ms": round(1000 * seconds, 1),
            "tokens_per_s": round(tokens_per_s), "loss": float(loss),
            "mfu_percent": round(100 * tokens_per_s * flops / peak, 1) if peak else None,
            "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 1e9, 1) if device.type == "cuda" else None,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


@house.speaks
def main(argv=None):
    p = house.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-py", type=Path, required=True, help="the original model.py (or the folder of a clone)")
    p.add_argument("--depth", type=house.positive_int, default=12)
    p.add_argument("--vocab", type=house.positive_int, default=32768)
    p.add_argument("--seq-len", type=house.positive_int, default=1024)
    p.add_argument("--micro-batch", type=house.positive_int, default=16, help="the original's default (-m 16)")
    p.add_argument("--accum", type=house.positive_int, default=None,
                   help="micro-steps per step (default: 524,288 tokens a step, as the original's -b)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model, as train.py does on a GPU (default: on a GPU)")
    p.add_argument("--warmup", type=house.non_negative_int, default=2)
    p.add_argument("--steps", type=house.positive_int, default=3)
    p.add_argument("--json", type=Path, default=None, help="append the result as one JSON line to this file")
    args = p.parse_args(argv)
    if args.json is not None:
        house.check_writable(args.json.parent, "--json PATH")
    if args.accum is None:
        args.accum = max(1, 524_288 // (args.micro_batch * args.seq_len))
    module = load_original(args.model_py)                             # before any expensive work
    args.model_py = Path(module.__file__)
    block_size = getattr(module.LLMConfig(depth=args.depth, vocab_size=args.vocab), "block_size", None)
    if isinstance(block_size, int) and args.seq_len > block_size:
        raise house.UserError(f"--seq-len {args.seq_len} is longer than the original's block_size {block_size}: "
                              f"pass --seq-len {block_size} or less")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and (args.depth >= 8 or args.micro_batch * args.seq_len > 16_384):
        raise house.UserError(f"no CUDA GPU: a depth-{args.depth} step of {args.micro_batch} × {args.seq_len} tokens is a "
                              "GPU benchmark; to try it here pass e.g. --depth 2 --vocab 512 --seq-len 64 "
                              "--micro-batch 2 --accum 2 --no-compile")
    if args.compile is None:
        args.compile = device.type == "cuda"
    torch.set_float32_matmul_precision("high")                         # as train.py
    result = time_original(module, args, device)
    print(json.dumps(result))
    if args.json:
        house.runs.append_log(args.json, {"argv": sys.argv[1:], **result})


if __name__ == "__main__":
    main()
