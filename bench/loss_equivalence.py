"""Same maths? Train the fast path and the readable path from the same weights on the same batches.

The fast training path (02's moe_grouped, experts cast once per step, under torch.compile) must compute the
same function as the readable one (a Python loop over experts, experts cast in every micro-step, eager).
This script trains the linnet model (02) several ways (by default the four below that this machine can run),
each from the same initial weights on the same
batches (04's ShardLoader over real shards, or random tokens when no --data-dir is given), with 05's real
training step and 03's Muon + AdamW on 05's learning-rate schedule:

    reference       moe_reference, expert weights cast in every micro-step, eager   (the readable path)
    fast, eager     moe_grouped, expert weights cast once per step (02, 05), RoPE + QK-norm as plain ops, eager
    fast, compiled  the same under torch.compile    (not on a CPU, where grouped_mm compiles in bf16 only)
    fused, eager / fused, compiled   the same, with RoPE + QK-norm in one Triton kernel (fast/rope_qk_norm.py): GPU only;
                    "fused, compiled" is what 05_train.py trains with on a GPU without quack
    quack, compiled the same, with the experts on quack's fused GEMMs (fast/moe.py): a Hopper GPU with quack
    quack+loss, compiled   the same, with the loss a chunk at a time (fast/loss.py): what 05_train.py trains with there

Each path is chosen with the arguments the lessons use (LLMConfig.moe_impl, rope_impl and loss_impl through 05's
TrainConfig.model, and TrainConfig.cast_experts_once), as bench/throughput.py's --plain does. RoPE reads its tables on every path
(02 has one RoPE; the table-vs-angles speed was measured once, BENCHMARKS.md rows 5 and 6).

In bf16 no two of them round alike, so their loss curves drift apart by "bf16 noise". How far the two fast
variants drift from each other (the same algorithm; only inductor's fusion differs) is the yardstick: the
reference is the same maths if it sits as close to the fast path as that. Plot: out/bench/loss_equivalence.png.

    python bench/loss_equivalence.py --data-dir out/short_run/data       # GPU, linnet model: ~3 minutes
    python bench/loss_equivalence.py --depth 2 --seq-len 64 --micro-batch 4 --steps 8   # CPU smoke run (fp32)
    python bench/loss_equivalence.py --data-dir DIR --steps 200 --paths fast-eager fast-compiled fp8-compiled
                                  # FP8 experts (05 --fp8) against bf16, next to the bf16-vs-bf16 noise
    python bench/loss_equivalence.py --data-dir DIR --steps 200 --paths fast-eager fast-compiled fused-compiled
                                  # the fused RoPE + QK-norm kernel against the plain ops, next to the noise
    python bench/loss_equivalence.py --data-dir DIR --steps 200 --paths fast-eager fast-compiled quack-compiled
                                  # the experts on quack's kernels (fast/moe.py) against grouped_mm, next to the noise
    python bench/loss_equivalence.py --data-dir DIR --steps 200 --paths fast-eager fast-compiled quack-compiled \
        quack+loss-compiled       # and the loss on fast/loss.py against 02's head
    python bench/loss_equivalence.py --replot RUN1 RUN2 --out DIR   # RUN: a saved loss_equivalence.json; one plot of both

FP8 rounds the experts' GEMM inputs to ~2 significant digits, so it is not the same maths: the question is
whether its loss stays within (or near) the bf16 noise band over a few hundred steps.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import house  # noqa: E402

model_lib = importlib.import_module("02_model")
muon_lib = importlib.import_module("03_muon")
data_lib = importlib.import_module("04_data")
train_lib = importlib.import_module("05_train")

PATHS = {  # name → (LLMConfig.moe_impl, compiled, TrainConfig.cast_experts_once, LLMConfig.rope_impl, .loss_impl)
    "reference": ("reference", False, False, "reference", "reference"),
    "fast, eager": ("grouped", False, True, "reference", "reference"),
    "fast, compiled": ("grouped", True, True, "reference", "reference"),
    "fused, eager": ("grouped", False, True, "fused", "reference"),     # + RoPE and QK-norm in one Triton kernel (fast/)
    "fused, compiled": ("grouped", True, True, "fused", "reference"),   # what 05 trains with on a GPU without quack
    "fp8, compiled": ("grouped_fp8", True, True, "reference", "reference"),   # 05 --fp8: not the same maths, how close?
    "quack, compiled": ("fused", True, True, "fused", "reference"),     # + the experts on quack's kernels (fast/moe.py)
    "quack+loss, compiled": ("fused", True, True, "fused", "fused"),    # + fast/loss.py's chunked loss: 05 where quack runs
}
DEFAULT_PATHS = ["reference", "fast, eager", "fast, compiled", "fused, compiled"]


def path_name(text: str) -> str:
    """--paths takes "fast-eager" (or "fast, eager"): the name PATHS uses."""
    name = text.replace("-", ", ")
    if name not in PATHS:
        raise argparse.ArgumentTypeError(f"unknown path {text!r}: choose from "
                                         + ", ".join(n.replace(", ", "-") for n in PATHS))
    return name


def batch_stream(args, vocab_size):
    """The same (x, y) micro-batches for every path: real shards if given, else seeded random tokens."""
    if args.data_dir:
        yield from data_lib.ShardLoader(args.data_dir, "train", args.micro_batch, args.seq_len, seed=0)
    gen = torch.Generator().manual_seed(0)
    while True:
        x = torch.randint(0, vocab_size, (args.micro_batch, args.seq_len + 1), generator=gen)
        yield x[:, :-1], x[:, 1:]


def train_path(name, args, vocab_size, device) -> dict:
    """Train one path for args.steps steps; returns its per-step losses and gradient norms."""
    moe_impl, compiled, cast_experts_once, rope_impl, loss_impl = PATHS[name]
    cfg = dataclasses.replace(train_lib.PRESETS["linnet"], micro_batch=args.micro_batch,
                              model=model_lib.LLMConfig(depth=args.depth, block_size=args.seq_len, moe_impl=moe_impl,
                                                        rope_impl=rope_impl, loss_impl=loss_impl),
                              total_batch_tokens=args.micro_batch * args.seq_len * args.accum,
                              planned_steps=args.steps, cast_experts_once=cast_experts_once)
    torch.manual_seed(args.seed)
    model, _ = train_lib.build_model(cfg, vocab_size, device)
    runner = torch.compile(model) if compiled else model
    optimizers, _ = muon_lib.build_optimizers(model, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                              muon_lr_multiplier=cfg.muon_lr_multiplier,
                                              batched=name != "reference")   # the plain path: NS per parameter
    stream = batch_stream(args, vocab_size)
    losses, grad_norms, t0 = [], [], time.perf_counter()
    for step in range(args.steps):
        train_lib.apply_schedule(optimizers, step, cfg)
        batches = [next(stream) for _ in range(args.accum)]
        loss, grad_norm, _ = train_lib.train_step(model, runner, optimizers, batches, cfg, device)
        losses.append(loss.item())
        grad_norms.append(grad_norm.item())
    seconds = time.perf_counter() - t0
    print(f"{name:15s} loss {losses[0]:.4f} → {losses[-1]:.4f}   ({seconds:.0f} s, compilation included)")
    return {"loss": losses, "grad_norm": grad_norms, "seconds": round(seconds, 1)}


def compare(runs: dict) -> dict:
    """Largest |loss difference| over the steps: reference vs fast (the claim) and fast vs fast (the noise)."""
    def max_diff(a, b):
        return max(abs(x - y) for x, y in zip(runs[a]["loss"], runs[b]["loss"]))
    def mean_diff(a, b):
        return sum(abs(x - y) for x, y in zip(runs[a]["loss"], runs[b]["loss"])) / len(runs[a]["loss"])
    pairs = [("reference", "fast, compiled"), ("reference", "fast, eager"), ("fast, eager", "fast, compiled"),
             ("fast, compiled", "fp8, compiled"), ("fast, compiled", "fused, compiled"),
             ("fast, eager", "fused, compiled"), ("fused, eager", "fused, compiled"), ("fused, compiled", "quack, compiled"),
             ("fast, eager", "quack, compiled"), ("fast, compiled", "quack, compiled"),
             ("quack, compiled", "quack+loss, compiled"), ("fast, eager", "quack+loss, compiled"),
             ("fast, compiled", "quack+loss, compiled"), ("quack, compiled", "quack, compiled #2"),   # #2: --replot
             ("quack, compiled #2", "quack+loss, compiled"), ("fast, eager", "quack, compiled #2"),
             ("fast, compiled", "quack, compiled #2")]
    result = {f"max |{a} - {b}|": max_diff(a, b) for a, b in pairs if a in runs and b in runs}
    result.update({f"mean |{a} - {b}|": mean_diff(a, b) for a, b in pairs if a in runs and b in runs})
    return result


def plot(runs: dict, out_dir: Path, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    styles = {"reference": dict(lw=3, alpha=0.4), "fast, eager": dict(lw=1.2, ls="--"), "fast, compiled": dict(lw=1.2),
              "fp8, compiled": dict(lw=1.2, color="tab:red"), "fused, eager": dict(lw=1.2, ls=":", color="tab:green"),
              "fused, compiled": dict(lw=1.2, color="tab:green"), "quack, compiled": dict(lw=1.2, color="tab:purple"),
              "quack+loss, compiled": dict(lw=1.2, color="tab:olive")}
    for name, run in runs.items():
        top.plot(run["loss"], label=name, **styles.get(name, dict(lw=1, ls="-.", color="tab:cyan")))
    top.set_ylabel("training loss")
    top.set_title(title)
    top.legend()
    base = next((n for n in ("reference", "fast, compiled") if n in runs), next(iter(runs)))
    for name in runs:
        if name != base and not (base == "fast, compiled" and name == "fast, eager"):
            style = styles.get(name, dict(ls="-.", color="tab:cyan"))
            bottom.plot([a - b for a, b in zip(runs[name]["loss"], runs[base]["loss"])], label=f"{name} − {base}",
                        color=style.get("color"), ls=style.get("ls", "-"))
    if "fast, compiled" in runs and "fast, eager" in runs:
        fe, fc = runs["fast, eager"]["loss"], runs["fast, compiled"]["loss"]
        bottom.plot([a - b for a, b in zip(fc, fe)], color="gray", lw=1, label="fast, compiled − fast, eager (noise)")
    bottom.axhline(0, color="black", lw=0.5)
    bottom.set_xlabel("step")
    bottom.set_ylabel("loss difference")
    bottom.legend(fontsize=8)
    if "quack+loss, compiled" in runs:
        caption = ("the loss a chunk at a time (fast/loss.py) with the experts on quack: below, does the olive "
                   "difference stay inside the bf16 noise (grey; purple: 02's head on quack) at every step?")
    elif "quack, compiled" in runs:
        caption = ("the experts on quack's fused kernels against grouped_mm: below, does the purple difference stay "
                   "inside the grey bf16-vs-bf16 noise (plain eager vs plain compiled) at every step?")
    elif "fused, compiled" in runs:
        caption = ("the fused RoPE + QK-norm kernel against the plain ops: below, does the green difference stay "
                   "inside the grey bf16-vs-bf16 noise (plain eager vs plain compiled) at every step?")
    elif "fp8, compiled" in runs:
        caption = ("FP8 experts against bf16: below, is the red FP8 − bf16 difference inside the grey "
                   "bf16-vs-bf16 noise, or does it drift away from 0 as training goes on?")
    elif "fast, compiled" in runs:
        caption = ("the loss curves lie on top of each other; below, the reference's distance from the fast "
                   "path is no larger than the two fast variants' distance from each other (bf16 noise)")
    elif len(runs) > 1:
        caption = "in fp32 the two paths give the same loss at every step: the difference below stays at ~0"
    else:
        caption = "one path only: its loss curve, nothing to compare it with"
    return house.save_plot(fig, out_dir, "loss_equivalence", caption)


@house.speaks
def main(argv=None):
    p = house.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None, help="04's shards (default: random tokens)")
    p.add_argument("--vocab", type=house.positive_int, default=32768, help="vocabulary for random tokens (shards bring their own)")
    p.add_argument("--depth", type=house.positive_int, default=12)
    p.add_argument("--seq-len", type=house.positive_int, default=1024)
    p.add_argument("--micro-batch", type=house.positive_int, default=16)
    p.add_argument("--accum", type=house.positive_int, default=2)
    p.add_argument("--steps", type=house.positive_int, default=50)
    p.add_argument("--seed", type=house.non_negative_int, default=1337)
    p.add_argument("--paths", nargs="+", type=path_name, default=DEFAULT_PATHS, metavar="PATH",
                   help="which paths to train: " + ", ".join(n.replace(", ", "-") for n in PATHS)
                        + " (default: reference, fast-eager, fast-compiled, fused-compiled; add fp8-compiled for FP8)")
    p.add_argument("--out", type=Path, default=Path("out/bench"))
    p.add_argument("--replot", type=Path, nargs="+", default=None, metavar="JSON",
                   help="train nothing: plot the runs of these loss_equivalence.json files together (the same data, "
                        "seed and steps; a path met again is named '… #2')")
    args = p.parse_args(argv)
    if args.replot:
        return replot(args.replot, args.out)
    device = torch.device(house.default_device())
    vocab = data_lib.read_manifest(args.data_dir)["vocab_size"] if args.data_dir else args.vocab
    # torch.compile of grouped_mm needs bf16 (CUDA autocast): on a CPU the smoke run compares the eager paths in fp32
    names = [n for n in args.paths if device.type == "cuda" or not (PATHS[n][1] or PATHS[n][3] == "fused")]
    skipped = [n for n in args.paths if n not in names]
    if skipped:
        print(f"note: skipping {', '.join(skipped)}: compiled and fused paths run on CUDA only "
              "(grouped_mm compiles in bf16 only; the fused kernel is Triton's)")
    if not names:
        raise SystemExit("error: nothing to train here: the compiled paths need a CUDA GPU; on a CPU pass "
                         "--paths reference fast-eager")
    runs = {name: train_path(name, args, vocab, device) for name in names}
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "argv": sys.argv[1:] if argv is None else argv, **compare(runs), "runs": runs}
    for key, value in compare(runs).items():
        print(f"{key}: {value:.2e}")
    args.out.mkdir(parents=True, exist_ok=True)
    with house.atomic_path(args.out / "loss_equivalence.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    tokens = args.micro_batch * args.seq_len * args.accum
    plot(runs, args.out, f"depth {args.depth}, {args.steps} steps × {tokens:,} tokens, "
                         f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}, {result['device']}")
    return result


def replot(paths: list[Path], out_dir: Path) -> dict:
    """One plot of the runs of several loss_equivalence.json files, e.g. a path measured on one start next to the
    yardstick measured on another."""
    runs, sources = {}, []
    for path in paths:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise house.UserError(f"--replot {path}: not a loss_equivalence.json ({e})") from e
        sources.append(Path(path).name)
        for name, run in record["runs"].items():
            runs[name if name not in runs else f"{name} #2"] = run
    lengths = {len(run["loss"]) for run in runs.values()}
    if len(lengths) != 1:
        raise house.UserError(f"--replot: the files' runs have different lengths {sorted(lengths)}: not the same steps")
    for key, value in compare(runs).items():
        print(f"{key}: {value:.2e}")
    plot(runs, out_dir, f"{lengths.pop()} steps; runs from " + " + ".join(sources))
    return {"runs": runs, **compare(runs)}


if __name__ == "__main__":
    main()
