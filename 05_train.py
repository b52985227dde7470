"""05 — the training loop: linnet's recipe on one H100, and the same code on a laptop.

What you will learn
- how a real pre-training step is put together: gradient accumulation over micro-batches, bf16 autocast,
  `torch.compile`, global-norm clipping, and two optimizers (Muon for matrices, AdamW for the rest, 03);
- the WSD learning-rate schedule linnet used: 10 % warm-up, constant to 80 %, cosine down to the minimum;
- how to make a run you can trust: checkpoints written atomically, `--resume` that continues on the exact
  next batch (bit-exact on CPU), Ctrl-C that saves and exits, a NaN guard that stops instead of training on;
- what to watch in an MoE run: per-layer expert load and router entropy, next to loss, bits per byte,
  tokens/s and MFU (model FLOPs utilisation).

How to run
    python 05_train.py                       # a CUDA GPU: the linnet job; no GPU: says so, runs the tiny preset
    python 05_train.py --preset tiny         # seconds on a laptop CPU: runs 01 and 04 for you if needed
    python 05_train.py --max-steps 5281      # linnet stopped early, at 5,281 of 18,965 planned steps
    python 05_train.py --resume              # continue from out/05_train/latest.pt
    torchrun --nproc_per_node 8 05_train.py  # data-parallel on 8 GPUs (same global batch, fewer accumulation steps)

What it writes (in out/05_train/ unless --out): `latest.pt` (the checkpoint: model in linnet's published
layout, both optimizers, data-loader position, RNG states, step, config, git commit), `log.jsonl` (one line
per step and per evaluation) and the plots listed at the end of every run.

Reference numbers from linnet (ARCHITECTURE.md, PERFORMANCE.md): 524,288 tokens per step; peak lr 1e-3
(AdamW) and 1e-2 (Muon); 5,281 steps ≈ 2.77B tokens; ≈ 1.21 validation bits per byte at the end; the
original loop ran at 81.8k tokens/s (8.7 % MFU) on one H100.

What it does not handle: tensor/pipeline parallelism or FSDP (the 497M model fits on one GPU; DDP only),
changing the world size when resuming (the data order depends on it), and mixed-precision other than bf16.
The one forward reference in the book: HellaSwag during training uses 06_eval's scorer (06 does not
import 05), so read 06 when you get there.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import io
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

import house

tokenizer_lib = importlib.import_module("01_tokenizer")  # load_tokenizer, tokenizer_sha256
model_lib = importlib.import_module("02_model")   # LLMConfig, LLM, export/load_linnet_state_dict
muon_lib = importlib.import_module("03_muon")     # build_optimizers: the Muon/AdamW split
data_lib = importlib.import_module("04_data")     # read_manifest, ShardLoader
eval_lib = importlib.import_module("06_eval")     # bits_per_byte, HellaSwag (06 never imports 05)

H100_BF16_PEAK_FLOPS = 989e12   # dense bf16, H100 SXM (ARCHITECTURE.md): 100 % MFU ≈ 935k tokens/s for linnet


# --- 1. Presets: who each one is for ------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Everything a run needs, in one place; saved inside every checkpoint.

    Two presets below; any field can be changed from the command line (`--micro-batch 16`)."""
    preset: str = "linnet"
    # model (02): the rest is derived from depth; vocab comes from the tokenizer
    depth: int = 12
    n_experts: int = 8
    n_active_experts: int = 2
    model_overrides: dict = dataclasses.field(default_factory=dict)   # e.g. n_embd for tiny models
    moe_impl: str = "auto"
    # batch: total_batch_tokens = micro_batch × seq_len × grad_accum × world_size
    seq_len: int = 1024
    micro_batch: int = 32
    total_batch_tokens: int = 524_288
    # schedule (WSD): planned_steps sets the shape; max_steps may stop earlier (linnet: 5,281 of 18,965)
    planned_steps: int = 18_965
    max_steps: int | None = None
    warmup_frac: float = 0.10
    decay_start_frac: float = 0.80
    lr: float = 1e-3                 # AdamW peak; Muon gets muon_lr_multiplier × this
    min_lr: float = 6e-5             # AdamW end of the cosine; Muon's is 10 × this
    muon_lr_multiplier: float = 10.0
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # evaluation and checkpoints
    eval_every: int = 250
    eval_batches: int = 20
    hellaswag_every: int = 1000
    hellaswag_subset: int = 200      # the fixed subset during training (first N examples)
    hellaswag_final: int | None = None  # None = the full 10,042 at the end
    checkpoint_every: int = 500
    # machinery
    compile: bool | None = None      # None = on for CUDA, off for CPU
    cast_experts_once: bool = True   # GPU: bf16 expert weights made once per step, not per micro-step (02)
    seed: int = 1337

    @property
    def tokens_per_micro_batch(self) -> int:
        return self.micro_batch * self.seq_len


_TINY = model_lib.TINY_TRAINING_SHAPE
PRESETS = {
    # linnet-497M on one 80 GB GPU: micro-batch 32 × 1024 peaks at 35 GB (BENCHMARKS.md), 16 accumulation steps.
    "linnet": TrainConfig(),
    # A laptop CPU: 02's TINY_TRAINING_SHAPE (~0.3M parameters), 64-token windows, 300 steps in under a
    # minute. Same code path.
    "tiny": TrainConfig(
        preset="tiny", depth=_TINY["depth"], n_experts=_TINY["n_experts"], n_active_experts=_TINY["n_active_experts"],
        model_overrides={k: v for k, v in _TINY.items() if k not in ("depth", "n_experts", "n_active_experts")},
        seq_len=64, micro_batch=8, total_batch_tokens=1024, planned_steps=300,
        lr=3e-3, min_lr=3e-4, eval_every=100, eval_batches=8, hellaswag_every=100,
        hellaswag_subset=50, hellaswag_final=100, checkpoint_every=100),
}


def grad_accum_steps(cfg: TrainConfig, world_size: int) -> int:
    """Micro-steps per optimizer step. linnet: 524,288 / (32 × 1024 × 1 GPU) = 16."""
    per_pass = cfg.micro_batch * cfg.seq_len * world_size
    if cfg.total_batch_tokens % per_pass:
        raise SystemExit(f"error: --total-batch-tokens {cfg.total_batch_tokens} is not divisible by micro-batch "
                         f"{cfg.micro_batch} × seq {cfg.seq_len} × {world_size} GPU(s) = {per_pass}: change one of them")
    return cfg.total_batch_tokens // per_pass


# --- 2. The WSD schedule --------------------------------------------------------------------------------

def lr_multiplier(step: int, cfg: TrainConfig) -> float:
    """Fraction of the peak learning rate at `step` (0-based): warm-up, stable, decay.

    linnet (18,965 planned steps, min_lr/lr = 0.06):
    >>> [round(lr_multiplier(s, PRESETS["linnet"]), 3) for s in (0, 1896, 10000, 15172, 18964)]
    [0.001, 1.0, 1.0, 1.0, 0.06]"""
    warmup = max(1, int(cfg.warmup_frac * cfg.planned_steps))
    decay_start = int(cfg.decay_start_frac * cfg.planned_steps)
    min_ratio = cfg.min_lr / cfg.lr
    if step < warmup:
        return (step + 1) / warmup
    if step < decay_start:
        return 1.0
    progress = min(1.0, (step - decay_start) / max(1, cfg.planned_steps - 1 - decay_start))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def set_learning_rates(optimizers, multiplier: float) -> None:
    """Every param group keeps its peak lr in `initial_lr` (03; Muon groups: 10×); the schedule scales all alike."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * multiplier


# --- 3. Devices, DDP and seeds ------------------------------------------------------------------------

def setup_distributed() -> tuple[int, int, int]:
    """(rank, local_rank, world_size); starts the process group when launched by torchrun."""
    if "RANK" not in os.environ:
        return 0, 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return dist.get_rank(), local_rank, dist.get_world_size()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of the GPU, for MFU; None on CPU (MFU means nothing there)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    if "H100" in name or "H200" in name:
        return H100_BF16_PEAK_FLOPS
    if "A100" in name:
        return 312e12
    return None


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=house.REPO_DIR, capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --- 4. Inputs: tokenizer and shards (running 01 and 04 for the tiny preset when they are missing) ------

def run_lesson(script: str, *args: str) -> None:
    print(f"running: python {script} {' '.join(args)}")
    result = subprocess.run([sys.executable, str(house.REPO_DIR / script), *args], cwd=house.REPO_DIR)
    if result.returncode != 0:
        raise SystemExit(f"error: python {script} {' '.join(args)} failed (see above): fix that first")


def prepare_inputs(args, cfg: TrainConfig, is_main: bool):
    """Find the tokenizer and the shards; for the tiny preset, make them if they are missing."""
    tokenizer_path, data_dir = Path(args.tokenizer), Path(args.data_dir)
    if cfg.preset == "tiny" and is_main:
        if not tokenizer_path.exists():
            run_lesson("01_tokenizer.py", "--preset", "tiny", "--out", str(tokenizer_path.parent),
                       *(["--data", str(args.data)] if args.data else []))
        if not (data_dir / "manifest.json").exists():
            run_lesson("04_data.py", "--preset", "tiny", "--tokenizer", str(tokenizer_path), "--out", str(data_dir),
                       *(["--data", str(args.data)] if args.data else []))
    if dist.is_initialized():
        dist.barrier()
    if not tokenizer_path.exists():
        raise SystemExit(f"error: no tokenizer at {tokenizer_path}: run python 01_tokenizer.py first (or pass --tokenizer)")
    manifest = data_lib.read_manifest(data_dir)
    tokenizer = tokenizer_lib.load_tokenizer(tokenizer_path)
    if manifest["tokenizer_sha256"] != tokenizer_lib.tokenizer_sha256(tokenizer_path):
        raise SystemExit(f"error: the shards in {data_dir} were made with another tokenizer than {tokenizer_path}: "
                         f"rerun python 04_data.py --tokenizer {tokenizer_path}, or pass the matching --tokenizer")
    if manifest["vocab_size"] != tokenizer.get_vocab_size():
        raise SystemExit(f"error: manifest vocab {manifest['vocab_size']} != tokenizer vocab "
                         f"{tokenizer.get_vocab_size()}: rerun python 04_data.py with this tokenizer")
    return tokenizer, tokenizer_path, data_dir, manifest


def check_preset_fits(cfg: TrainConfig, device: torch.device, tokenizer, tokenizer_path: Path, is_main: bool):
    """The linnet preset needs a GPU, and is meant for the 32,768-token tokenizer (not the tiny one)."""
    if cfg.preset == "linnet" and device.type != "cuda":
        raise SystemExit("error: the linnet preset (497M parameters) needs a CUDA GPU: use --preset tiny on this machine")
    vocab = tokenizer.get_vocab_size()
    if cfg.preset == "linnet" and vocab != tokenizer_lib.LINNET_VOCAB_SIZE and is_main:
        print(f"warning: {tokenizer_path} has {vocab:,} tokens, not linnet's {tokenizer_lib.LINNET_VOCAB_SIZE:,} "
              f"(left over from a tiny run?): for the real job run python 01_tokenizer.py, then python 04_data.py")


def build_model(cfg: TrainConfig, vocab_size: int, device: torch.device):
    config = model_lib.LLMConfig(depth=cfg.depth, block_size=cfg.seq_len, vocab_size=vocab_size,
                                 n_experts=cfg.n_experts, n_active_experts=cfg.n_active_experts,
                                 moe_impl=cfg.moe_impl, **cfg.model_overrides)
    return model_lib.LLM(config).to(device), config


# --- 5. One training step -------------------------------------------------------------------------------

def train_step(model, runner, optimizers, batches, cfg: TrainConfig, device: torch.device):
    """Forward/backward over the micro-batches of one step, clip, step both optimizers.

    `batches` yields (x, y) micro-batches; the loss of each is divided by their number, so the gradient
    is the gradient of the mean loss over the whole step (1 × 2B ≡ 2 × B, see the test). `runner` is what
    runs the forward pass: `model` itself, `torch.compile(model)`, or its DDP wrapper. Returns (mean training
    loss, grad norm, router stats averaged over micro-steps) as tensors: no host sync here."""
    is_ddp = isinstance(runner, torch.nn.parallel.DistributedDataParallel)
    batches = list(batches)
    loss_sum = torch.zeros((), device=device)
    stats_sum = None
    # On a GPU (bf16), cast the expert weights once for all micro-steps (same maths, 02.cast_experts_once).
    # Not under DDP: its gradient hooks are only tested with weights used directly in the forward.
    cast_once = cfg.cast_experts_once and device.type == "cuda" and not is_ddp
    with model_lib.cast_experts_once(model) if cast_once else contextlib.nullcontext():
        for i, (x, y) in enumerate(batches):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            last = i == len(batches) - 1
            # DDP: all-reduce the gradients only once, on the last micro-step
            sync_ctx = runner.no_sync() if (is_ddp and not last) else contextlib.nullcontext()
            with sync_ctx, torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                _, loss = runner(x, y)
                (loss / len(batches)).backward()
            loss_sum += loss.detach()
            stats = {k: v.detach().float() for k, v in model.router_stats.items()}
            stats_sum = stats if stats_sum is None else {k: stats_sum[k] + v for k, v in stats.items()}
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    for opt in optimizers:
        opt.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    return loss_sum / len(batches), grad_norm, {k: v / len(batches) for k, v in stats_sum.items()}


# --- 6. Checkpoints: atomic, complete, resumable ---------------------------------------------------------

def check_replicas_agree(model, world_size: int) -> None:
    """DDP: every process must hold the same weights (same all-reduced gradients, deterministic Muon and
    AdamW: 03). Compare a checksum of all parameters across processes before rank 0 saves them."""
    if world_size == 1:
        return
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(checksum) for _ in range(world_size)]
    dist.all_gather(gathered, checksum)
    if len({g.item() for g in gathered}) != 1:
        raise SystemExit(f"error: the {world_size} DDP processes hold different weights "
                         f"(checksums {[g.item() for g in gathered]}): the run is no longer data-parallel")
    if dist.get_rank() == 0:
        print(f"replicas agree: all {world_size} processes hold identical weights (checksum {checksum.item():.6f})")


def save_checkpoint(path: Path, model, optimizers, loader, step: int, cfg: TrainConfig, model_config,
                    tokenizer_path: Path) -> None:
    """Everything needed to continue exactly: written to a temp file, then renamed (never half-written)."""
    checkpoint = {
        "model": model_lib.export_linnet_state_dict(model),   # the published linnet layout (02)
        "config": model_config.to_dict(),
        "train_config": dataclasses.asdict(cfg),
        "optimizers": [opt.state_dict() for opt in optimizers],
        "loader": loader.state_dict(),
        "rng": rng_state(),
        "step": step,                                          # the number of finished steps
        "git_commit": git_commit(),
        "tokenizer_sha256": tokenizer_lib.tokenizer_sha256(tokenizer_path),
    }
    with house.atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise SystemExit(f"error: --resume found no checkpoint at {path}: start without --resume, or pass --out")
    return model_lib.read_checkpoint_file(path, weights_only=False)   # ours: optimizer and RNG states too


# --- 7. Logging and plots -----------------------------------------------------------------------------

def append_log(path: Path, record: dict, wandb_run=None) -> None:
    """One JSON line per step or evaluation; also sent to Weights & Biases when --wandb is on."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    if wandb_run is not None:
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        wandb_run.log(scalars, step=record["step"])


def start_wandb(cfg: TrainConfig, out_dir: Path):
    """--wandb: log every step to Weights & Biases too (optional: `pip install wandb`, then `wandb login`)."""
    try:
        import wandb
    except ImportError:
        raise SystemExit("error: --wandb needs the wandb package: pip install wandb (or drop --wandb)")
    return wandb.init(project="linnet-from-scratch", name=out_dir.name, config=dataclasses.asdict(cfg), dir=str(out_dir))


def trim_log(path: Path, finished_steps: int) -> None:
    """On resume, forget the steps a killed run logged after its last checkpoint (they are redone)."""
    if not path.exists():
        return
    records = [json.loads(line) for line in path.read_text().splitlines()]
    kept = [r for r in records if r["step"] < finished_steps
            or (r.get("kind") == "eval" and r["step"] == finished_steps)]   # the eval after the last saved step
    with house.atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))


def read_log(path: Path) -> tuple[list[dict], list[dict]]:
    steps, evals = [], []
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            (evals if r.get("kind") == "eval" else steps).append(r)
    return steps, evals


def plot_losses(steps, evals, out_dir):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    ax1.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8, label="train (with balance term)")
    val = [r for r in evals if "val_loss" in r]
    ax1.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
    ax1.set(xlabel="step", ylabel="loss (nats/token)", title="Loss: validation should follow train down")
    ax1.legend()
    ax2.plot([r["step"] for r in val], [r["val_bpb"] for r in val], "o-", color="C2")
    ax2.axhline(1.21, ls="--", color="gray", label="linnet-497M at the end (≈1.21, dclm text)")
    ax2.set(xlabel="step", ylabel="bits per byte", title="Validation bits per byte (tokenizer-independent)")
    ax2.legend()
    return house.save_plot(fig, out_dir, "loss", "train and validation loss, and bits per byte: both should fall; "
                           "a widening gap between train and validation means over-fitting")


def plot_optimisation(steps, out_dir):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    x = [r["step"] for r in steps]
    ax1.plot(x, [r["lr"] for r in steps])
    ax1.set(xlabel="step", ylabel="AdamW lr (Muon: 10×)", title="WSD schedule: warm-up, stable, cosine decay")
    ax2.plot(x, [r["grad_norm"] for r in steps], lw=0.8)
    ax2.axhline(1.0, ls="--", color="gray", label="clip at 1.0")
    ax2.set(xlabel="step", ylabel="grad norm", yscale="log",
            title="Gradient norm: spikes are the first sign of trouble")
    ax2.legend()
    return house.save_plot(fig, out_dir, "lr_gradnorm", "the learning rate follows warm-up/stable/decay; "
                           "the gradient norm should settle, spikes above the clip line are worth a look")


def plot_speed(steps, out_dir):
    import matplotlib.pyplot as plt

    fig, ax1 = plt.subplots(figsize=(7, 4))
    x = [r["step"] for r in steps]
    ax1.plot(x, [r["tokens_per_s"] for r in steps], lw=0.8)
    ax1.set(xlabel="step", ylabel="tokens / s", title="Throughput (first steps include compilation)")
    if any(r.get("mfu") for r in steps):
        ax2 = ax1.twinx()
        ax2.plot(x, [100 * (r.get("mfu") or 0) for r in steps], lw=0.8, color="C1")
        ax2.set_ylabel("MFU %", color="C1")
    return house.save_plot(fig, out_dir, "throughput", "tokens/s (and MFU on a GPU): flat after the first "
                           "steps; dips mean evaluation, checkpointing or a data stall")


def plot_hellaswag(evals, out_dir):
    import matplotlib.pyplot as plt

    hs = [r for r in evals if "hellaswag_acc" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in hs]
    ax.plot(steps, [100 * r["hellaswag_acc"] for r in hs], "o-", label="acc")
    ax.plot(steps, [100 * r["hellaswag_acc_norm"] for r in hs], "s-", label="acc_norm")
    noise = [200 * eval_lib.binomial_sd(r["hellaswag_n"]) for r in hs]   # ±2 sd of guessing, in points
    ax.fill_between(steps, [25 - n for n in noise], [25 + n for n in noise], color="gray", alpha=0.2,
                    step="mid", label="guessing: 25 % ± 2 sd")
    ax.set(xlabel="step", ylabel="HellaSwag accuracy %",
           title=f"HellaSwag: first {hs[0]['hellaswag_n']} examples during training, {hs[-1]['hellaswag_n']} at the end")
    ax.legend()
    return house.save_plot(fig, out_dir, "hellaswag", "HellaSwag accuracy: inside the grey band it is "
                                   "indistinguishable from guessing; linnet-497M ends near 38 % acc")


def plot_experts(steps, out_dir):
    """Expert load (fraction of token-slots per expert) for every layer over time, and router entropy."""
    import matplotlib.pyplot as plt

    load = np.array([r["expert_load"] for r in steps])        # (steps, L, E)
    entropy = np.array([r["router_entropy"] for r in steps])  # (steps, L)
    n_layer, n_expert = load.shape[1], load.shape[2]
    fig, axes = plt.subplots(n_layer + 1, 1, figsize=(10, 1.2 * n_layer + 3), squeeze=False,
                             gridspec_kw={"height_ratios": [1] * n_layer + [2], "hspace": 0.45})
    x = [r["step"] for r in steps]
    for layer in range(n_layer):
        ax = axes[layer, 0]
        im = ax.imshow(load[:, layer, :].T, aspect="auto", cmap="viridis", vmin=0, vmax=2.5 / n_expert,
                       extent=[x[0], x[-1], n_expert - 0.5, -0.5], interpolation="nearest")
        ax.set_ylabel(f"L{layer}\nexpert", fontsize=7)
        ax.set_xticks([])
    axes[0, 0].set_title(f"Share of token-slots per expert (uniform = {1 / n_expert:.3f}); one band per layer")
    fig.colorbar(im, ax=axes[:n_layer, 0].tolist(), fraction=0.02)
    ax = axes[n_layer, 0]
    for layer in range(n_layer):
        ax.plot(x, entropy[:, layer], lw=0.8, label=f"layer {layer}", color=plt.cm.viridis(layer / max(1, n_layer - 1)))
    ax.axhline(math.log(n_expert), ls="--", color="gray", label="uniform (ln E)")
    ax.set(xlabel="step", ylabel="router entropy (nats)", title="Router entropy: falls as routers specialise")
    ax.legend(fontsize=6, ncol=min(n_layer + 1, 7))
    return house.save_plot(fig, out_dir, "experts", "expert load per layer over time: a bright row is an "
                           "overloaded expert, a dark one is starving; router entropy falls as routers specialise")


def plot_all(log_path: Path, out_dir: Path) -> None:
    steps, evals = read_log(log_path)
    if not steps:
        return
    plot_losses(steps, evals, out_dir)
    plot_optimisation(steps, out_dir)
    plot_speed(steps, out_dir)
    plot_experts(steps, out_dir)
    if any("hellaswag_acc" in r for r in evals):
        plot_hellaswag(evals, out_dir)


# --- 8. Evaluation during training (validation bpb from 04's manifest; HellaSwag from 06) ----------------

def evaluate(model, step, cfg, device, data_dir, tokenizer, hellaswag_limit) -> dict:
    """Validation loss and bits per byte on the first `eval_batches` validation batches; HellaSwag
    (acc and acc_norm, lm-eval's way) on the first `hellaswag_limit` examples (None: all 10,042)."""
    bpb = eval_lib.bits_per_byte(model, data_dir, batch_size=cfg.micro_batch, seq_len=cfg.seq_len,
                                 max_batches=cfg.eval_batches, device=device)
    record = {"kind": "eval", "step": step, "val_loss": bpb["loss"], "val_bpb": bpb["bpb"]}
    if hellaswag_limit != 0:
        examples = eval_lib.load_hellaswag(limit=hellaswag_limit)
        result = eval_lib.evaluate_hellaswag(model, tokenizer, examples, device=device, nanogpt=False,
                                             batch_size=256 if device.type == "cuda" else 32)
        record.update(hellaswag_acc=result["acc"], hellaswag_acc_norm=result["acc_norm"],
                      hellaswag_n=result["n"], hellaswag_seconds=result["seconds"])
    return record


# --- 9. The run ---------------------------------------------------------------------------------------

def resolve_config(args) -> TrainConfig:
    cfg = dataclasses.replace(PRESETS[args.preset])
    for field in ("micro_batch", "seq_len", "total_batch_tokens", "planned_steps", "max_steps", "lr",
                  "eval_every", "checkpoint_every", "hellaswag_every", "seed", "moe_impl", "depth", "compile"):
        value = getattr(args, field, None)
        if value is not None:
            setattr(cfg, field, value)
    return cfg


def train(args) -> Path:
    rank, local_rank, world_size = setup_distributed()
    is_main = rank == 0
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    cfg = resolve_config(args)
    if device.type == "cpu" and cfg.preset == "tiny":
        # 64-wide matrices gain nothing from more threads, and on a busy machine spinning OpenMP threads
        # made the tiny run 10× slower (1.6 vs 19.5 steps/s measured on 2 shared cores): use one.
        torch.set_num_threads(1)
    out_dir = Path(args.out)
    ckpt_path, log_path = out_dir / "latest.pt", out_dir / "log.jsonl"
    tokenizer, tokenizer_path, data_dir, manifest = prepare_inputs(args, cfg, is_main)

    resume = load_checkpoint(ckpt_path) if args.resume else None
    if resume is not None:
        cfg = TrainConfig(**{**resume["train_config"], "max_steps": cfg.max_steps or resume["train_config"]["max_steps"]})
    accum = grad_accum_steps(cfg, world_size)
    max_steps = min(cfg.max_steps or cfg.planned_steps, cfg.planned_steps)
    check_preset_fits(cfg, device, tokenizer, tokenizer_path, is_main)
    wandb_run = start_wandb(cfg, out_dir) if (args.wandb and is_main) else None

    seed_everything(cfg.seed)
    model, model_config = build_model(cfg, tokenizer.get_vocab_size(), device)
    optimizers, table = muon_lib.build_optimizers(model, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                                   muon_lr_multiplier=cfg.muon_lr_multiplier)
    loader = data_lib.ShardLoader(data_dir, "train", cfg.micro_batch, cfg.seq_len, rank=rank,
                                  world_size=world_size, seed=cfg.seed)
    start_step = 0
    if resume is not None:
        model_lib.load_linnet_state_dict(model, resume["model"])
        for opt, state in zip(optimizers, resume["optimizers"]):
            opt.load_state_dict(state)
        loader.load_state_dict(resume["loader"])
        set_rng_state(resume["rng"])
        start_step = resume["step"]
        if is_main:
            trim_log(log_path, start_step)
            print(f"resumed from {ckpt_path} at step {start_step}")
    elif is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        log_path.unlink(missing_ok=True)

    use_compile = cfg.compile if cfg.compile is not None else device.type == "cuda"
    runner = torch.compile(model) if use_compile else model
    if world_size > 1:  # gradients are averaged across processes inside backward()
        runner = torch.nn.parallel.DistributedDataParallel(runner, device_ids=[local_rank] if device.type == "cuda" else None)

    flops_per_token = model_lib.flops_per_token(model_config, cfg.seq_len)
    peak = peak_flops(device)
    if is_main:
        counts = model_lib.count_parameters(model_config)
        print(f"model: depth {cfg.depth}, {counts['total']:,} parameters ({counts['active']:,} active per token)")
        print(f"batch: {cfg.total_batch_tokens:,} tokens/step = micro-batch {cfg.micro_batch} × {cfg.seq_len} "
              f"× {accum} accumulation × {world_size} process(es); {max_steps} steps of {cfg.planned_steps} planned")
        print(f"device: {device}{' (compiled)' if use_compile else ''}; log: {log_path}")

    interrupted = {"flag": False}

    def on_sigint(signum, frame):
        interrupted["flag"] = True
        print("\nCtrl-C: finishing this step, then saving a checkpoint (press again to abort without saving)")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_sigint)
    last_good = ckpt_path if resume is not None else None
    batch_iter = iter(loader)
    progress = _progress_bar(start_step, max_steps, is_main)
    step = start_step
    try:
        for step in range(start_step, max_steps):
            t0 = time.perf_counter()
            set_learning_rates(optimizers, lr_multiplier(step, cfg))
            micro_batches = (next(batch_iter) for _ in range(accum))
            loss, grad_norm, stats = train_step(model, runner, optimizers, micro_batches, cfg, device)
            if world_size > 1:  # log the mean over all processes: the loss of the whole global batch
                dist.all_reduce(loss, op=dist.ReduceOp.SUM)
                loss /= world_size
            loss_value = loss.item()  # the one host sync per step
            if not math.isfinite(loss_value):
                where = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written yet"
                raise SystemExit(f"error: loss became {loss_value} at step {step}: stopped instead of training on; "
                                 f"{where} (try a lower --lr)")
            dt = time.perf_counter() - t0
            tokens_per_s = cfg.total_batch_tokens / dt
            record = {"step": step, "loss": loss_value, "lr": optimizers[-1].param_groups[0]["lr"],
                      "grad_norm": grad_norm.item(), "tokens_per_s": tokens_per_s, "dt": dt,
                      "mfu": tokens_per_s * flops_per_token / peak if peak else None,
                      "expert_load": (stats["tokens_per_expert"] / stats["tokens_per_expert"].sum(-1, keepdim=True)).tolist(),
                      "router_entropy": stats["entropy"].tolist()}
            finished = step + 1
            if is_main:
                append_log(log_path, record, wandb_run)
                progress.update(1)
                progress.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens_per_s:,.0f}")
            is_last = finished == max_steps
            do_hellaswag = (is_last or finished % cfg.hellaswag_every == 0) and not args.no_hellaswag
            if is_main and (finished % cfg.eval_every == 0 or do_hellaswag or is_last):
                hs_limit = (cfg.hellaswag_final if is_last else cfg.hellaswag_subset) if do_hellaswag else 0
                record = evaluate(model, finished, cfg, device, data_dir, tokenizer, hs_limit)
                append_log(log_path, record, wandb_run)
                progress.write(_eval_line(record))
                if not is_last:  # refresh the plots quietly; the captions are printed once, at the end
                    with contextlib.redirect_stdout(io.StringIO()):
                        plot_all(log_path, out_dir)
            if finished % cfg.checkpoint_every == 0 or is_last:
                check_replicas_agree(model, world_size)   # every rank takes part in this all-gather
            if is_main and (finished % cfg.checkpoint_every == 0 or is_last or interrupted["flag"]):
                save_checkpoint(ckpt_path, model, optimizers, loader, finished, cfg, model_config, tokenizer_path)
                last_good = ckpt_path
            if interrupted["flag"]:
                if is_main:
                    progress.close()
                    print(f"interrupted after step {finished}: checkpoint saved to {ckpt_path}; "
                          f"continue with python 05_train.py --resume --out {out_dir}")
                return ckpt_path
    except torch.cuda.OutOfMemoryError:
        raise SystemExit(f"error: CUDA out of memory with micro-batch {cfg.micro_batch} × {cfg.seq_len}: "
                         f"try --micro-batch {max(1, cfg.micro_batch // 2)} (the step stays {cfg.total_batch_tokens:,} tokens)")
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if dist.is_initialized():
            dist.destroy_process_group()
    if is_main:
        progress.close()
        if wandb_run is not None:
            wandb_run.finish()
        plot_all(log_path, out_dir)
        _print_sample(model, tokenizer, device)
    return ckpt_path


def _progress_bar(start, total, enabled):
    from tqdm import tqdm

    return tqdm(initial=start, total=total, disable=not enabled, unit="step", dynamic_ncols=True,
                file=sys.stdout, mininterval=1.0)


def _eval_line(record: dict) -> str:
    line = f"step {record['step']}: val loss {record['val_loss']:.4f}, {record['val_bpb']:.4f} bits/byte"
    if "hellaswag_acc" in record:
        line += (f", HellaSwag acc {100 * record['hellaswag_acc']:.1f} % / acc_norm "
                 f"{100 * record['hellaswag_acc_norm']:.1f} % on {record['hellaswag_n']} examples")
    return line


def _print_sample(model, tokenizer, device) -> None:
    model.eval()
    torch.manual_seed(0)
    text = model.generate("The", enc=tokenizer, max_new_tokens=40, temperature=0.8, top_k=50)
    print(f"sample: {text!r}")


# --- 10. Command line -----------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train linnet-497M (or the tiny preset) with linnet's recipe. Without a CUDA GPU the default "
                    "runs the tiny preset end to end (running 01_tokenizer.py and 04_data.py first if needed).",
        epilog="examples: python 05_train.py --preset tiny | python 05_train.py --max-steps 5281 | "
               "python 05_train.py --resume | torchrun --nproc_per_node 8 05_train.py",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    house.add_common_args(parser, "05_train")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="tokenizer.json from 01 (default: out/01_tokenizer/tokenizer.json)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="shards + manifest.json from 04 (default: out/04_data)")
    parser.add_argument("--data", type=Path, default=None,
                        help="tiny preset only: text to build the tokenizer and shards from if they are missing")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/latest.pt on the exact next batch")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (linnet: 5281); the schedule "
                                                      "still follows --planned-steps")
    parser.add_argument("--planned-steps", type=int, help="length of the lr schedule (linnet: 18965)")
    parser.add_argument("--micro-batch", type=int, help="sequences per forward pass (linnet on 80 GB: 32)")
    parser.add_argument("--seq-len", type=int, help="tokens per sequence (linnet: 1024)")
    parser.add_argument("--total-batch-tokens", type=int, help="tokens per optimizer step (linnet: 524288)")
    parser.add_argument("--lr", type=float, help="AdamW peak learning rate; Muon uses 10× (linnet: 1e-3)")
    parser.add_argument("--depth", type=int, help="model depth; everything else follows (linnet: 12)")
    parser.add_argument("--moe-impl", choices=["auto", "reference", "grouped"], help="MoE code path (02)")
    parser.add_argument("--eval-every", type=int, help="steps between validation evaluations")
    parser.add_argument("--hellaswag-every", type=int, help="steps between HellaSwag evaluations (fixed subset)")
    parser.add_argument("--no-hellaswag", action="store_true", help="skip HellaSwag during and after training")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    parser.add_argument("--seed", type=int, help="seed for init and data order")
    parser.add_argument("--wandb", action="store_true", help="also log to Weights & Biases (pip install wandb)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model (default: on with CUDA, off on CPU)")
    args = parser.parse_args(argv)
    explicit_preset = any(a == "--preset" or a.startswith("--preset=") for a in (argv if argv is not None else sys.argv[1:]))
    if not torch.cuda.is_available() and args.preset == "linnet" and not explicit_preset:
        print("No CUDA GPU found: running the tiny preset end to end instead "
              "(the linnet preset needs an 80 GB GPU; pass --preset tiny to skip this message).")
        args.preset = "tiny"
    default_out = house.REPO_DIR / "out" / "05_train"
    # absolute paths: 01 and 04 may run as subprocesses from the repo root (prepare_inputs)
    args.tokenizer = (args.tokenizer or house.REPO_DIR / "out" / "01_tokenizer" / "tokenizer.json").resolve()
    args.data_dir = (args.data_dir or house.REPO_DIR / "out" / "04_data").resolve()
    args.out = (args.out or default_out).resolve()
    args.data = args.data.resolve() if args.data else None
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    train(args)


if __name__ == "__main__":
    main()
