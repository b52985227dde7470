"""05 — the training loop: linnet's recipe on one H100, and the same code on a laptop.

What you will learn
- the WSD learning-rate schedule linnet used: 10 % warm-up, constant to 80 %, cosine down to the minimum;
- how a real pre-training step is put together: gradient accumulation over micro-batches, bf16 autocast,
  global-norm clipping, and two optimizers (Muon for matrices, AdamW for the rest, 03);
- the loop around it, nanoGPT-style: schedule → step → log → evaluate → checkpoint, with `torch.compile`
  and DDP wrapped around the model once, before the loop;
- how to make a run you can trust: checkpoints written atomically, `--resume` that continues on the exact
  next batch (bit-exact on CPU) and refuses flags that would change the run, Ctrl-C that saves and exits,
  a divergence guard that stops instead of training on (and never saves a diverged state), stale temp files
  of a killed save cleaned up at start, bad numbers and an unwritable --out refused before any work;
- what to watch in an MoE run: per-layer expert load and router entropy, next to loss, bits per byte,
  tokens/s and MFU (model FLOPs utilisation).

How to run
    python 05_train.py                       # a CUDA GPU: the linnet job; no GPU: says so, runs the tiny preset
    python 05_train.py --preset tiny         # seconds on a laptop CPU: runs 01 and 04 for you if needed
    python 05_train.py --max-steps 5281      # linnet stopped early, at 5,281 of 18,965 planned steps
    python 05_train.py --resume              # continue from out/05_train/latest.pt
    python 05_train.py --preset tiny --balance-coef 0   # a knob that breaks the recipe: --balance-coef,
                                             # --optimizer adamw, --n-experts 1 (dense, equal active parameters),
                                             # --top-k, --warmup-frac (README: "Knobs to break the recipe")
    torchrun --nproc_per_node 8 05_train.py  # data-parallel on 8 GPUs (same global batch, fewer accumulation steps)

What it writes (in out/05_train/ unless --out): `latest.pt` (the checkpoint: model in linnet's published
layout, both optimizers, data-loader position, RNG states, step, config, git commit), `log.jsonl` (one line
per step and per evaluation) and the plots listed at the end of every run.

Reference numbers from linnet (docs/ARCHITECTURE.md, docs/PERFORMANCE.md): 524,288 tokens per step; peak
lr 1e-3 (AdamW) and 1e-2 (Muon); 5,281 steps ≈ 2.77B tokens; ≈ 1.21 validation bits per byte at the end;
the original loop ran at 81.8k tokens/s (8.7 % MFU) on one H100.

What it does not handle: tensor/pipeline parallelism or FSDP (the 497M model fits on one GPU; DDP only),
changing the world size when resuming (the data order depends on it), and mixed-precision other than bf16.
The one forward reference in the book: evaluation during training uses 06_eval (06 does not import 05):
its bits_per_byte for validation, its HellaSwag scorer and binomial_sd for the guessing band in the
plot. Read 06 when you get there.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import math
import os
import random
import re
import shlex
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
from fast import fp8
from fast import moe as moe_fast
from house import checkpoints

tokenizer_lib = importlib.import_module("01_tokenizer")  # load_tokenizer, tokenizer_sha256
model_lib = importlib.import_module("02_model")   # LLMConfig, LLM, cast_expert_weights, export/load_linnet_state_dict
muon_lib = importlib.import_module("03_muon")     # build_optimizers: the Muon/AdamW split
data_lib = importlib.import_module("04_data")     # read_manifest, ShardLoader
eval_lib = importlib.import_module("06_eval")     # bits_per_byte, HellaSwag (06 never imports 05)


# --- 1. What a run reads: the training config (saved in the checkpoint) and the run's paths and switches ---

@dataclass
class TrainConfig:
    """What is learned and how: model, batch, schedule, cadences; saved inside every checkpoint.

    Two presets below; any flagged field can be changed from the command line (`--micro-batch 16`)."""
    preset: str = "linnet"
    # model (02): the rest is derived from depth; vocab comes from the tokenizer
    depth: int = 12
    n_experts: int = 8
    n_active_experts: int = 2        # top-k; n_experts 1 = dense at equal active parameters (`dense_equal_active`)
    balance_coef: float = 0.01       # the load-balancing term's weight in the loss (02); 0 = off
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
    decay_shape: str = "cosine"      # linnet: cosine; linnet+ candidates: linear, 1-sqrt (DECAY_SHAPES)
    lr: float = 1e-3                 # AdamW peak; Muon gets muon_lr_multiplier × this
    min_lr: float = 6e-5             # AdamW end of the cosine; Muon's is 10 × this
    muon_lr_multiplier: float = 10.0
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    optimizer: str = "muon"          # "muon": Muon for matrices + AdamW for the rest (03); "adamw": AdamW for all
    # evaluation and checkpoints
    eval_every: int = 250
    eval_batches: int | None = 20    # validation batches of micro_batch × seq_len (20 × 32 × 1024 = 655,360 tokens);
                                     # None = the whole validation shard
    hellaswag_every: int = 1000
    hellaswag_subset: int = 200      # the fixed subset during training (first N examples)
    hellaswag_final: int | None = None  # None = the full 10,042 at the end
    checkpoint_every: int = 500
    # machinery
    compile: bool | None = None      # None = on for CUDA, off for CPU
    cast_experts_once: bool = True   # GPU: bf16 expert weights made once per step, not per micro-step (02)
    seed: int = 1337
    # linnet+ switches (all off = linnet; BENCHMARKS.md "linnet+" has what each buys)
    zero_init_out: bool = False      # 02: output projections start at 0
    x0_mix: bool = False             # 02: each block reads a·x + b·x0, learned per layer
    logit_softcap: float = 0.0       # 02: logits = c·tanh(logits / c); 0 = off
    muon_momentum_warmup: bool = False   # Muon momentum 0.85 → 0.95 over the first 300 steps
    router_on_adamw: bool = False    # 03: the router's weights on AdamW instead of Muon

    @property
    def size(self) -> str:
        """"tiny" or "linnet": the preset this config starts from (the -plus presets add linnet+ switches)."""
        return "tiny" if self.preset.startswith("tiny") else "linnet"

    @property
    def steps_to_run(self) -> int:
        """max_steps if set (never past the plan), else planned_steps."""
        return min(self.max_steps or self.planned_steps, self.planned_steps)


_TINY = model_lib.TINY_TRAINING_SHAPE
PRESETS = {
    # linnet-497M on one 80 GB GPU: micro-batch 32 × 1024 peaks at 35 GB (BENCHMARKS.md), 16 accumulation steps.
    "linnet": TrainConfig(),
    # A laptop CPU: 02's TINY_TRAINING_SHAPE (~0.3M parameters), 64-token windows, 300 steps in under a
    # minute. Same code path. Validation scores the whole validation shard (≈ 201k tokens of both sources,
    # ≈ 2 s): a few thousand tokens from one document would measure that document, not the model.
    "tiny": TrainConfig(
        preset="tiny", depth=_TINY["depth"], n_experts=_TINY["n_experts"], n_active_experts=_TINY["n_active_experts"],
        model_overrides={k: v for k, v in _TINY.items() if k not in ("depth", "n_experts", "n_active_experts")},
        seq_len=64, micro_batch=8, total_batch_tokens=1024, planned_steps=300,
        lr=3e-3, min_lr=3e-4, eval_every=100, eval_batches=None, hellaswag_every=100,
        hellaswag_subset=50, hellaswag_final=100, checkpoint_every=100),
}
# linnet+: the recipe changes that paid, measured on linnet's depth-12 model (BENCHMARKS.md, "linnet+"), on
# top of either preset: `--preset linnet-plus`, `--preset tiny-plus`. Each is also a flag of its own.
PLUS_RECIPE = dict(zero_init_out=True, x0_mix=True, logit_softcap=15.0, muon_momentum_warmup=True,
                   decay_shape="linear", decay_start_frac=0.5)
PRESETS.update({f"{name}-plus": dataclasses.replace(PRESETS[name], preset=f"{name}-plus", **PLUS_RECIPE)
                for name in ("linnet", "tiny")})


@dataclass
class RunConfig:
    """Where a run reads and writes, and the switches that do not change what it learns (not checkpointed)."""
    out: Path                        # latest.pt, log.jsonl and the plots
    tokenizer: Path                  # 01's tokenizer.json
    data_dir: Path                   # 04's shards + manifest.json
    data: Path | None = None         # tiny preset: the text to build the two above from, when they are missing
    resume: bool = False             # continue from out/latest.pt on the exact next batch
    hellaswag: bool = True           # HellaSwag during and after training (06)
    wandb: bool = False              # also log to Weights & Biases

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "latest.pt"

    @property
    def log_path(self) -> Path:
        return self.out / "log.jsonl"


def grad_accum_steps(cfg: TrainConfig, world_size: int) -> int:
    """Micro-steps per optimizer step. linnet: 524,288 / (32 × 1024 × 1 GPU) = 16."""
    per_pass = cfg.micro_batch * cfg.seq_len * world_size
    if cfg.total_batch_tokens % per_pass:
        raise SystemExit(f"error: --total-batch-tokens {cfg.total_batch_tokens} is not divisible by micro-batch "
                         f"{cfg.micro_batch} × seq {cfg.seq_len} × {world_size} GPU(s) = {per_pass}: change one of them")
    return cfg.total_batch_tokens // per_pass


def dense_equal_active(cfg: TrainConfig) -> TrainConfig:
    """The dense baseline at EQUAL ACTIVE PARAMETERS (`--n-experts 1`): a token of the MoE runs top_k experts
    of width F, so the dense model gets one FFN of width top_k × F (linnet: top-2 of 8 × 2,048 → one FFN of
    4,096; tiny: top-2 of 4 × 128 → one of 256). Only the router shrinks (1 × C instead of E × C per layer):
    tiny, 189,248 active parameters dense vs 189,632 MoE. Total parameters drop (tiny 287,936 → 189,248)."""
    base_ffn = model_lib.LLMConfig(depth=cfg.depth, **cfg.model_overrides).ffn_dim
    overrides = {**cfg.model_overrides, "ffn_dim": cfg.n_active_experts * base_ffn}
    return dataclasses.replace(cfg, n_experts=1, n_active_experts=1, model_overrides=overrides)


# --- 2. The WSD schedule: warm-up, stable, decay ---------------------------------------------------------

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
    return min_ratio + (1 - min_ratio) * DECAY_SHAPES[cfg.decay_shape](progress)


DECAY_SHAPES = {   # progress 0 → 1 through the decay ↦ fraction of the way from min_lr to the peak
    "cosine": lambda p: 0.5 * (1 + math.cos(math.pi * p)),   # linnet
    "linear": lambda p: 1 - p,                                # linnet+ candidates (BENCHMARKS.md, "linnet+")
    "1-sqrt": lambda p: 1 - math.sqrt(p),
}


def set_learning_rates(optimizers, multiplier: float) -> None:
    """Every param group keeps its peak lr in `initial_lr` (03; Muon groups: 10×); the schedule scales all alike."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * multiplier


def apply_schedule(optimizers, step: int, cfg: TrainConfig) -> None:
    """The learning rates of `step`; with linnet+'s momentum warm-up also Muon's momentum, 0.85 → 0.95 over the
    first 300 steps (modded-nanogpt's recipe; linnet keeps 0.95 throughout)."""
    set_learning_rates(optimizers, lr_multiplier(step, cfg))
    if cfg.muon_momentum_warmup:
        for group in (g for opt in optimizers if isinstance(opt, muon_lib.Muon) for g in opt.param_groups):
            group["momentum"] = 0.85 + 0.10 * min(1.0, step / 300)


# --- 3. One training step: accumulate, clip, step both optimizers ------------------------------------------

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
    # On a GPU (bf16), cast the expert weights once for all micro-steps (same maths, 02.cast_expert_weights).
    # Not under DDP: its gradient hooks are only tested with weights used directly in the forward.
    cast_once = cfg.cast_experts_once and device.type == "cuda" and not is_ddp
    expert_weights = moe_fast.cast_expert_weights(model) if cast_once else None   # one (w_v, c_proj) per layer
    for i, (x, y) in enumerate(batches):                                             # x, y: (B, T)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        last = i == len(batches) - 1
        # DDP: all-reduce the gradients only once, on the last micro-step
        sync_ctx = runner.no_sync() if (is_ddp and not last) else contextlib.nullcontext()
        with sync_ctx, torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            _, loss = runner(x, y, expert_weights=expert_weights)
            (loss / len(batches)).backward()
        loss_sum += loss.detach()
        stats = {k: v.detach().float() for k, v in model.router_stats.items()}
        stats_sum = stats if stats_sum is None else {k: stats_sum[k] + v for k, v in stats.items()}
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)   # global norm, before clipping
    for opt in optimizers:          # Muon (matrices) and AdamW (the rest), both from 03
        opt.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    return loss_sum / len(batches), grad_norm, {k: v / len(batches) for k, v in stats_sum.items()}


# --- 4. The run: set up once, then one optimizer step per loop iteration -----------------------------------

def train(cfg: TrainConfig, run: RunConfig) -> Path:
    """Set up (processes, inputs, model, optimizers, data, resume, compile/DDP), then the loop: one optimizer
    step per iteration. Reads and writes where `run` says; returns the checkpoint path."""
    procs = setup_processes(cfg)                                        # rank, world size, device (appendix)
    tokenizer = prepare_inputs(cfg, run, procs.is_main)                 # 01's tokenizer, 04's shards
    model, model_config, optimizers = build_model_and_optimizers(cfg, tokenizer.get_vocab_size(), procs.device)
    loader = data_lib.ShardLoader(run.data_dir, "train", cfg.micro_batch, cfg.seq_len, rank=procs.rank,
                                  world_size=procs.world_size, seed=cfg.seed)
    start_step = start_or_resume(cfg, run, model, optimizers, loader, procs.is_main)
    runner = compile_and_wrap(model, cfg, procs)                        # torch.compile, then DDP
    accum, max_steps = grad_accum_steps(cfg, procs.world_size), cfg.steps_to_run
    peak_tokens_per_s = tokens_per_s_at_full_mfu(model_config, cfg, procs.device)
    log = RunLog(cfg, run, start_step, max_steps, enabled=procs.is_main)
    log.say(run_summary(cfg, model_config, accum, max_steps, procs, run))
    last_good = run.checkpoint_path if run.resume else None
    batches, stop = iter(loader), StopRequest().install()   # Ctrl-C or SIGTERM: finish the step, save, exit
    try:
        for step in range(start_step, max_steps):
            t0 = time.perf_counter()
            apply_schedule(optimizers, step, cfg)                                         # 1. the schedule
            micro_batches = [next(batches) for _ in range(accum)]                         # accum × (B, T) pairs
            loss, grad_norm, stats = train_step(model, runner, optimizers, micro_batches, cfg, procs.device)  # 2.
            loss_value = mean_over_processes(loss, procs.world_size)   # first host sync: waits for the GPU
            stop_if_unhealthy(loss_value, grad_norm, step, last_good, cfg, model_config)   # the divergence guard
            finished, is_last, seconds = step + 1, step + 1 == max_steps, time.perf_counter() - t0
            log.step(step_record(step, loss_value, grad_norm, stats, optimizers, seconds, cfg, peak_tokens_per_s))
            if procs.is_main and evaluation_due(finished, is_last, cfg, run):             # 3. evaluate
                limit = hellaswag_limit(finished, is_last, cfg, run)
                log.eval(evaluate(model, finished, cfg, procs.device, run.data_dir, tokenizer, limit))
                if not is_last:  # refresh the plots quietly; the captions are printed once, at the end
                    save_plots(run.log_path, run.out, quiet=True)
            if finished % cfg.checkpoint_every == 0 or is_last:
                check_replicas_agree(model, procs.world_size)   # every process takes part in this all-gather
            if procs.is_main and (finished % cfg.checkpoint_every == 0 or is_last or stop.requested):  # 4. save
                with stop.saving():   # a second signal now waits until the checkpoint is whole
                    last_good = save_healthy_checkpoint(model, optimizers, loader, finished, cfg, model_config,
                                                        run, last_good)
            if stop.requested:
                exit_interrupted(stop, finished, log, cfg, run)
    except torch.cuda.OutOfMemoryError:
        raise SystemExit(f"error: CUDA out of memory with micro-batch {cfg.micro_batch} × {cfg.seq_len}: try "
                         f"--micro-batch {max(1, cfg.micro_batch // 2)} (the step stays {cfg.total_batch_tokens:,} tokens)")
    finally:
        stop.restore()
        log.close()                        # end the progress bar's line before any message (idempotent)
        destroy_processes()
    finish_run(log, cfg, run, model, tokenizer, procs)
    return run.checkpoint_path


def build_model_and_optimizers(cfg: TrainConfig, vocab_size: int, device: torch.device):
    """Seed, then the model (02) and its two optimizers (03: Muon for matrices, AdamW for the rest)."""
    seed_everything(cfg.seed)
    model, model_config = build_model(cfg, vocab_size, device)
    if cfg.optimizer == "adamw":   # the ablation: one AdamW for every parameter, at the AdamW lr (03's baseline)
        optimizers = muon_lib.adamw_only(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        for group in optimizers[0].param_groups:
            group["initial_lr"] = group["lr"]          # what set_learning_rates scales
    else:
        optimizers, _ = muon_lib.build_optimizers(model, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                                  muon_lr_multiplier=cfg.muon_lr_multiplier,
                                                  router_on_adamw=cfg.router_on_adamw)
    return model, model_config, optimizers


def build_model(cfg: TrainConfig, vocab_size: int, device: torch.device):
    """02's LLM at `cfg.depth` (everything else follows from it), on `device`; returns (model, LLMConfig)."""
    config = model_lib.LLMConfig(depth=cfg.depth, block_size=cfg.seq_len, vocab_size=vocab_size,
                                 n_experts=cfg.n_experts, n_active_experts=cfg.n_active_experts,
                                 balance_coef=cfg.balance_coef, moe_impl=cfg.moe_impl, zero_init_out=cfg.zero_init_out,
                                 x0_mix=cfg.x0_mix, logit_softcap=cfg.logit_softcap, **cfg.model_overrides)
    return model_lib.LLM(config).to(device), config


def uses_compile(cfg: TrainConfig, device: torch.device) -> bool:
    """--compile if given, else on with CUDA; never for emulated FP8 (its plain GEMM syncs with the host,
    which breaks the graph at every expert: noisy and slower)."""
    wanted = cfg.compile if cfg.compile is not None else device.type == "cuda"
    return wanted and not fp8_emulated(cfg, device)


def compile_and_wrap(model, cfg: TrainConfig, procs: Processes):
    """What runs the forward pass: the model, `torch.compile(model)` (CUDA by default), and with several
    processes its DDP wrapper (gradients are averaged across processes inside backward())."""
    runner = torch.compile(model) if uses_compile(cfg, procs.device) else model
    if procs.world_size > 1:
        device_ids = [procs.local_rank] if procs.device.type == "cuda" else None
        runner = torch.nn.parallel.DistributedDataParallel(runner, device_ids=device_ids)
    return runner


def start_or_resume(cfg: TrainConfig, run: RunConfig, model, optimizers, loader, is_main: bool) -> int:
    """Fresh run: an empty log, step 0. `run.resume`: model, optimizers, data position and RNG states back
    exactly as they were after the last saved step; returns the number of finished steps."""
    if is_main:
        remove_stale_temp_files(run.out)                 # left by a save that was killed (kill -9, power cut)
    if not run.resume:
        if is_main:
            run.out.mkdir(parents=True, exist_ok=True)
            run.log_path.unlink(missing_ok=True)
        return 0
    checkpoint = load_checkpoint(run.checkpoint_path)
    refuse_changes_on_resume(saved_train_config(checkpoint), cfg)
    refuse_other_inputs_on_resume(checkpoint, run)
    if checkpoint["step"] >= cfg.steps_to_run:
        raise SystemExit(f"error: {run.checkpoint_path} has already finished {checkpoint['step']} steps and this run "
                         f"stops at {cfg.steps_to_run}: nothing to train; pass a larger --max-steps "
                         f"(the schedule plans {cfg.planned_steps})")
    model_lib.load_linnet_state_dict(model, checkpoint["model"])
    if not math.isfinite(weights_checksum(model).item()):
        raise SystemExit(f"error: {house.shown(run.checkpoint_path)} holds inf/nan weights: it cannot continue; "
                         "start a new run (another --out, or --overwrite) with a lower --lr")
    for opt, state in zip(optimizers, checkpoint["optimizers"]):
        opt.load_state_dict(state)
    loader.load_state_dict(checkpoint["loader"])
    set_rng_state(checkpoint["rng"])
    if is_main:
        trim_log(run.log_path, checkpoint["step"])
        print(f"resumed from {run.checkpoint_path} at step {checkpoint['step']}")
    return checkpoint["step"]


def mean_over_processes(loss: torch.Tensor, world_size: int) -> float:
    """The loss of the whole global batch: DDP averages it over processes. `.item()` waits for the GPU."""
    if world_size > 1:
        dist.all_reduce(loss, op=dist.ReduceOp.SUM)
        loss /= world_size
    return loss.item()


def stop_if_unhealthy(loss_value: float, grad_norm, step: int, last_good: Path | None, cfg: TrainConfig,
                      model_config) -> None:
    """The divergence guard, checked after every step, before anything of it is logged or saved. A step is
    healthy when
      - its loss is finite and at most 2 × ln(vocab) + balance_coef × E: ln(vocab) is the loss of a uniform
        guess, where a fresh model starts (tiny: ln 1,024 = 6.93, the first step measures 6.95), and the balance
        term adds at most balance_coef × E (E experts); a run above that is exploding;
      - its gradient norm (before clipping) is finite and not exactly 0: a zero gradient means the network
        saturated and nothing learns any more (--lr 50 on the tiny preset, without this guard: loss 54 at
        step 1, 178 at step 7, then grad norm 0.0 from step 8 while the weights grew to 2.6e18, NaN at step 17).
    Otherwise the run stops with one line naming the last checkpoint written from a healthy state."""
    limit = loss_limit(cfg, model_config)
    norm = float(grad_norm)
    if not math.isfinite(loss_value):
        reason = f"loss became {loss_value}"
    elif loss_value > limit:
        reason = f"loss {loss_value:.4g} is above 2·ln(vocab) + balance_coef·E = {limit:.2f} (exploding)"
    elif not math.isfinite(norm) or norm == 0:
        reason = f"gradient norm became {norm} (the network saturated)"
    else:
        return
    stop_diverged(f"{reason} at step {step}", last_good, cfg)


def loss_limit(cfg: TrainConfig, model_config) -> float:
    """The highest loss a healthy run shows: 2 × ln(vocab), plus the balance term's most (balance_coef × E)."""
    return 2 * math.log(model_config.vocab_size) + cfg.balance_coef * cfg.n_experts


def stop_diverged(what: str, last_good: Path | None, cfg: TrainConfig) -> None:
    where = (f"the last good checkpoint is {last_good} (its weights gave a healthy loss when saved)" if last_good
             else "no checkpoint was written by this run")
    raise SystemExit(f"error: {what}: stopped instead of training on; {where}; try a lower --lr (now {cfg.lr:g})")


def tokens_per_s_at_full_mfu(model_config, cfg: TrainConfig, device: torch.device) -> float | None:
    """Peak FLOP/s ÷ FLOPs per token: linnet on an H100 ≈ 935k tokens/s (None on CPU: MFU means nothing there)."""
    peak = peak_flops(device)
    return peak / model_lib.flops_per_token(model_config, cfg.seq_len) if peak else None


def step_record(step, loss_value, grad_norm, stats, optimizers, seconds, cfg, peak_tokens_per_s) -> dict:
    """One line of log.jsonl: loss, lr, grad norm, speed, MFU, and per-layer expert load and router entropy."""
    tokens_per_s = cfg.total_batch_tokens / seconds
    load = stats["tokens_per_expert"] / stats["tokens_per_expert"].sum(-1, keepdim=True)   # (L, E), rows sum to 1
    return {"step": step, "loss": loss_value, "lr": optimizers[-1].param_groups[0]["lr"],
            "grad_norm": float(grad_norm), "tokens_per_s": tokens_per_s, "dt": seconds,
            "mfu": tokens_per_s / peak_tokens_per_s if peak_tokens_per_s else None,
            "expert_load": load.tolist(), "router_entropy": stats["entropy"].tolist()}


def hellaswag_limit(finished: int, is_last: bool, cfg: TrainConfig, run: RunConfig) -> int | None:
    """HellaSwag examples to score after `finished` steps: 0 = not now; the fixed subset every
    `hellaswag_every` steps; `hellaswag_final` at the end (None = all 10,042)."""
    if not run.hellaswag or not (is_last or finished % cfg.hellaswag_every == 0):
        return 0
    return cfg.hellaswag_final if is_last else cfg.hellaswag_subset


def evaluation_due(finished: int, is_last: bool, cfg: TrainConfig, run: RunConfig) -> bool:
    """Validation every `eval_every` steps, with every HellaSwag evaluation, and at the end."""
    return is_last or finished % cfg.eval_every == 0 or hellaswag_limit(finished, is_last, cfg, run) != 0


def evaluate(model, step, cfg, device, data_dir, tokenizer, hellaswag_limit) -> dict:
    """Validation loss and bits per byte on the first `eval_batches` validation batches (None: all of them),
    with the number of tokens and bytes they hold; HellaSwag (acc and acc_norm, lm-eval's way) on the first
    `hellaswag_limit` examples (None: all 10,042)."""
    bpb = eval_lib.bits_per_byte(model, data_dir, tokenizer, batch_size=cfg.micro_batch, seq_len=cfg.seq_len,
                                 max_batches=cfg.eval_batches, device=device)
    record = {"kind": "eval", "step": step, "val_loss": bpb["loss"], "val_bpb": bpb["bpb"],
              "val_tokens": bpb["tokens"], "val_bytes": bpb["bytes"]}
    if hellaswag_limit != 0:
        examples = eval_lib.load_hellaswag(limit=hellaswag_limit)
        result = eval_lib.evaluate_hellaswag(model, tokenizer, examples, device=device, nanogpt=False)  # 06's token budget
        record.update(hellaswag_acc=result["acc"], hellaswag_acc_norm=result["acc_norm"],
                      hellaswag_n=result["n"], hellaswag_seconds=result["seconds"])
    return record


def finish_run(log: RunLog, cfg: TrainConfig, run: RunConfig, model, tokenizer, procs: Processes) -> None:
    """After the last step: close the log, save every plot with its caption, print a sample."""
    log.close()
    if procs.is_main:
        save_plots(run.log_path, run.out)
        print_sample(model, tokenizer, procs.device)
        print(f"checkpoint: {house.shown(run.checkpoint_path)} — evaluate it with {eval_command(cfg, run)}")


def run_summary(cfg: TrainConfig, model_config, accum: int, max_steps: int, procs: Processes, run: RunConfig) -> str:
    """Four lines printed before the first step: model size, how the batch is made, what validation scores,
    device and log."""
    counts = model_lib.count_parameters(model_config)
    return (f"model: depth {cfg.depth}, {counts['total']:,} parameters ({counts['active']:,} active per token)\n"
            f"batch: {cfg.total_batch_tokens:,} tokens/step = micro-batch {cfg.micro_batch} × {cfg.seq_len} "
            f"× {accum} accumulation × {procs.world_size} process(es); {max_steps} steps of {cfg.planned_steps} planned\n"
            f"{validation_summary(cfg, run)}\n"
            f"device: {procs.device}{' (compiled)' if uses_compile(cfg, procs.device) else ''}; log: {run.log_path}"
            + fp8_note(cfg, procs.device))


def validation_summary(cfg: TrainConfig, run: RunConfig) -> str:
    """How many validation tokens every evaluation averages over (the same tokens each time)."""
    val = data_lib.ShardLoader(run.data_dir, "val", cfg.micro_batch, cfg.seq_len)
    batches = len(val) if cfg.eval_batches is None else min(cfg.eval_batches, len(val))
    whole = "the whole validation shard" if batches == len(val) else f"{batches} of its {len(val):,} batches"
    return (f"validation: {batches * cfg.micro_batch * cfg.seq_len:,} tokens ({whole}) every {cfg.eval_every} steps "
            f"and at the end")


def fp8_emulated(cfg: TrainConfig, device: torch.device) -> bool:
    return cfg.moe_impl == "grouped_fp8" and not fp8.fp8_kernel_available(torch.empty(0, device=device))


def fp8_note(cfg: TrainConfig, device: torch.device) -> str:
    """--fp8 where no FP8 grouped GEMM exists (a CPU, a pre-Hopper GPU) is emulated: say so, once."""
    if not fp8_emulated(cfg, device):
        return ""
    return (f"\nnote: --fp8 is emulated on {device} (FP8 grouped GEMMs need an H100/H200): the same rounding, "
            "no speed-up, not compiled; evaluations during the run use it too")


# --- 5. Checkpoints: atomic, complete, resumable ---------------------------------------------------------

def save_checkpoint(path: Path, model, optimizers, loader, step: int, cfg: TrainConfig, model_config,
                    run: RunConfig) -> None:
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
        "tokenizer_sha256": tokenizer_lib.tokenizer_sha256(run.tokenizer),
        "data_sha256": data_sha256(run.data_dir),              # which shards (04's manifest)
    }
    with house.atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def save_healthy_checkpoint(model, optimizers, loader, step: int, cfg: TrainConfig, model_config,
                            run: RunConfig, last_good: Path | None) -> Path:
    """Save only weights that are healthy THEMSELVES; else stop, naming the last good checkpoint (the atomic
    rename left it untouched). Returns the checkpoint path.

    The step's own loss was measured BEFORE its update, so a healthy step can still leave broken weights
    (--lr 1000: a fine loss, then weights that score 16,613 bits per byte). So the weights about to be saved
    must be finite and give a healthy loss on one validation batch (`probe_loss`, one forward)."""
    if not math.isfinite(weights_checksum(model).item()):        # NaN/inf in any weight makes the sum so
        stop_diverged(f"weights became inf/nan after step {step}, so they were not saved", last_good, cfg)
    probe = probe_loss(model, run.data_dir, cfg)
    if not (math.isfinite(probe) and probe <= loss_limit(cfg, model_config)):
        stop_diverged(f"the weights after step {step} give loss {probe:.4g} on a validation batch, so they were "
                      "not saved", last_good, cfg)
    save_checkpoint(run.checkpoint_path, model, optimizers, loader, step, cfg, model_config, run)
    return run.checkpoint_path


@torch.no_grad()
def probe_loss(model, data_dir: Path, cfg: TrainConfig) -> float:
    """The loss of the current weights on the first validation batch (cross-entropy, no balance term)."""
    device = next(model.parameters()).device
    x, y = next(data_lib.val_batches(data_dir, cfg.micro_batch, cfg.seq_len, 1))     # (B, T), (B, T)
    was_training = model.training
    model.eval()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        _, loss = model(x.to(device), y.to(device))          # in eval mode: cross-entropy alone
    model.train(was_training)
    return loss.item()


def load_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise SystemExit(f"error: --resume found no checkpoint at {path}: start without --resume, or pass --out")
    checkpoint = checkpoints.read_checkpoint_file(path, weights_only=False)   # ours: optimizer and RNG states too
    missing = [k for k in ("model", "train_config", "optimizers", "loader", "rng", "step")
               if not (isinstance(checkpoint, dict) and k in checkpoint)]
    if missing:
        raise SystemExit(f"error: {house.shown(path)} is not a checkpoint 05 wrote (no {', '.join(missing[:3])}; a bare "
                         "state dict?): --resume needs 05's own latest.pt; start a new run with another --out")
    return checkpoint


def saved_train_config(checkpoint: dict) -> TrainConfig:
    """The TrainConfig a checkpoint was trained with (fields this version does not know are left out)."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in checkpoint["train_config"].items() if k in known})


# --- 6. Plots: what to watch in a run --------------------------------------------------------------------

def plot_losses(steps, evals):
    """Train and validation loss (left), validation bits per byte next to linnet's ≈ 1.21 (right)."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    ax1.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8, label="train (with balance term)")
    val = [r for r in evals if "val_loss" in r]
    scored = f" ({val[-1]['val_tokens']:,} tokens)" if val and "val_tokens" in val[-1] else ""
    ax1.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation" + scored)
    ax1.set(xlabel="step", ylabel="loss (nats/token)", title="Loss: validation should follow train down")
    ax1.legend()
    ax2.plot([r["step"] for r in val], [r["val_bpb"] for r in val], "o-", color="C2")
    ax2.axhline(1.21, ls="--", color="gray", label="linnet-497M at the end (≈1.21, dclm text)")
    ax2.set(xlabel="step", ylabel="bits per byte", title="Validation bits per byte (tokenizer-independent)")
    ax2.legend()
    return fig


def plot_optimisation(steps):
    """The learning rate the schedule gave (left) and the gradient norm before clipping (right)."""
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
    return fig


def plot_speed(steps):
    """Tokens per second for every step, and MFU on a GPU."""
    import matplotlib.pyplot as plt

    fig, ax1 = plt.subplots(figsize=(7, 4))
    x = [r["step"] for r in steps]
    ax1.plot(x, [r["tokens_per_s"] for r in steps], lw=0.8)
    ax1.set(xlabel="step", ylabel="tokens / s", title="Throughput (first steps include compilation)")
    if any(r.get("mfu") for r in steps):
        ax2 = ax1.twinx()
        ax2.plot(x, [100 * (r.get("mfu") or 0) for r in steps], lw=0.8, color="C1")
        ax2.set_ylabel("MFU %", color="C1")
    return fig


def plot_hellaswag(evals):
    """HellaSwag acc and acc_norm over training, against the band of guessing (25 % ± 2 sd)."""
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
    return fig


def plot_experts(steps):
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
                       extent=[x[0], max(x[-1], x[0] + 1), n_expert - 0.5, -0.5], interpolation="nearest")
        ax.set_ylabel(f"L{layer}\nexpert", fontsize=7)
        ax.set_xticks([])
    axes[0, 0].set_title(f"Share of token-slots per expert (uniform = {1 / n_expert:.3f}); one band per layer")
    fig.colorbar(im, ax=axes[:n_layer, 0].tolist(), fraction=0.02)
    ax = axes[n_layer, 0]
    for layer in range(n_layer):
        ax.plot(x, entropy[:, layer], lw=0.8, label=f"layer {layer}", color=plt.cm.viridis(layer / max(1, n_layer - 1)))
    ax.axhline(math.log(n_expert), ls="--", color="gray", label="uniform (ln E)")
    ax.set(xlabel="step", ylabel="router entropy (nats)",
           title="Router entropy: just below ln E = routers prefer some experts; far below = a few take all")
    ax.legend(fontsize=6, ncol=min(n_layer + 1, 7))
    return fig


def save_plots(log_path: Path, out_dir: Path, quiet: bool = False) -> None:
    """Every plot of the run from its log.jsonl, saved with its caption (`quiet`: without printing it)."""
    steps, evals = read_log(log_path)
    if not steps:
        return
    figures = [
        (plot_losses(steps, evals), "loss", "train and validation loss, and bits per byte: both should fall; "
         "a widening gap between train and validation means over-fitting"),
        (plot_optimisation(steps), "lr_gradnorm", "the learning rate follows warm-up/stable/decay; "
         "the gradient norm should settle, spikes above the clip line are worth a look"),
        (plot_speed(steps), "throughput", "tokens/s (and MFU on a GPU): flat after the first "
         "steps; dips mean evaluation, checkpointing or a data stall"),
        (plot_experts(steps), "experts", "expert load per layer over time: a bright row is an "
         "overloaded expert, a dark one is starving; router entropy a little below ln E is healthy "
         "specialisation, a fall far below it means a few experts take every token (collapse)")]
    if any("hellaswag_acc" in r for r in evals):
        figures.append((plot_hellaswag(evals), "hellaswag", "HellaSwag accuracy: inside the grey band it is "
                        "indistinguishable from guessing; linnet-497M ends near 38 % acc"))
    for fig, name, caption in figures:
        house.save_plot(fig, out_dir, name, caption, quiet=quiet)


# --- 7. Command line: a preset, the flags that change it, and what --resume may change ---------------------

PLUS_FLAGS = ("zero_init_out", "x0_mix", "logit_softcap", "muon_momentum_warmup", "router_on_adamw")
FLAG_FIELDS = ("micro_batch", "seq_len", "total_batch_tokens", "planned_steps", "max_steps", "lr", "eval_every",
               "checkpoint_every", "hellaswag_every", "seed", "moe_impl", "depth", "compile",
               "balance_coef", "optimizer", "n_experts", "n_active_experts", "warmup_frac",   # knobs
               "decay_start_frac", "decay_shape", "min_lr", *PLUS_FLAGS)
RESUME_MAY_CHANGE = ("max_steps", "eval_every", "hellaswag_every", "checkpoint_every", "compile")
WHAT_IT_CHANGES = {"preset": "the model", "depth": "the model", "moe_impl": "the MoE code path of the model",
                   "micro_batch": "the data order", "seq_len": "the model's context and the data order",
                   "total_batch_tokens": "the data order and the step", "seed": "the data order",
                   "planned_steps": "the learning-rate schedule", "lr": "the learning-rate schedule",
                   "balance_coef": "the loss", "optimizer": "the optimizer (its saved state would not fit)",
                   "n_experts": "the model", "n_active_experts": "the model", "model_overrides": "the model",
                   "warmup_frac": "the learning-rate schedule", "decay_start_frac": "the learning-rate schedule",
                   "decay_shape": "the learning-rate schedule", "min_lr": "the learning-rate schedule",
                   "zero_init_out": "the model's init", "x0_mix": "the model", "logit_softcap": "the model",
                   "muon_momentum_warmup": "the optimizer's schedule", "router_on_adamw": "the optimizer"}
FLAG_NAMES = {"n_active_experts": "--top-k"}   # fields whose flag is not --field-name


def refuse_changes_on_resume(saved: TrainConfig, cfg: TrainConfig) -> None:
    """--resume continues the saved run: cadences and max steps may change, anything that changes the model,
    the data order or the schedule may not (one line naming the flag, never a silent drop)."""
    for field in dataclasses.fields(TrainConfig):
        old, new = getattr(saved, field.name), getattr(cfg, field.name)
        if old != new and field.name not in RESUME_MAY_CHANGE:
            flag = FLAG_NAMES.get(field.name, "--" + field.name.replace("_", "-"))
            raise SystemExit(f"error: {flag} {new} cannot change on --resume (the checkpoint has {old}): it changes "
                             f"{WHAT_IT_CHANGES.get(field.name, 'the run')}; drop {flag}, or start a new run with another --out")


def refuse_other_inputs_on_resume(checkpoint: dict, run: RunConfig) -> None:
    """The tokenizer and the shards must be the ones the checkpoint was trained on."""
    if checkpoint["tokenizer_sha256"] != tokenizer_lib.tokenizer_sha256(run.tokenizer):
        raise SystemExit(f"error: --tokenizer {house.shown(run.tokenizer)} is not the tokenizer this checkpoint was "
                         "trained with: it changes the model's vocabulary; pass the --tokenizer of the first run")
    if checkpoint.get("data_sha256", data_sha256(run.data_dir)) != data_sha256(run.data_dir):
        raise SystemExit(f"error: --data-dir {house.shown(run.data_dir)} holds other shards than this checkpoint was "
                         "trained on: it changes the data order; pass the --data-dir of the first run")


def resume_command(cfg: TrainConfig, run: RunConfig) -> str:
    """The command that continues this run: --resume plus the flags the checkpoint does not hold."""
    parts = ["python", "05_train.py", "--resume", "--preset", cfg.preset, "--out", house.shown(run.out)]
    if run.tokenizer != DEFAULT_TOKENIZER:
        parts += ["--tokenizer", house.shown(run.tokenizer)]
    if run.data_dir != DEFAULT_DATA_DIR:
        parts += ["--data-dir", house.shown(run.data_dir)]
    if cfg.max_steps is not None:
        parts += ["--max-steps", str(cfg.max_steps)]
    parts += (["--no-hellaswag"] if not run.hellaswag else []) + (["--wandb"] if run.wandb else [])
    return shlex.join(parts)   # quoted: a path with spaces can be pasted as it is


def configs_from_args(args) -> tuple[TrainConfig, RunConfig]:
    """A preset with the flags applied; with --resume, the checkpoint's config with the flags it may take."""
    run = RunConfig(out=args.out, tokenizer=args.tokenizer, data_dir=args.data_dir, data=args.data,
                    resume=args.resume, hellaswag=not args.no_hellaswag, wandb=args.wandb)
    if args.wandb and importlib.util.find_spec("wandb") is None:   # before anything of the run is touched
        raise SystemExit("error: --wandb needs the wandb package: pip install wandb (or drop --wandb)")
    flags = {f: getattr(args, f) for f in FLAG_FIELDS if getattr(args, f) is not None}
    if args.fp8:
        flags["moe_impl"] = fp8_flag(args)
    if not args.resume:
        cfg = dataclasses.replace(PRESETS[args.preset], **{k: v for k, v in flags.items() if k != "n_experts"})
        if flags.get("n_experts") == 1:
            cfg = dense_equal_active(check_dense_flags(cfg, flags))
        else:
            cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if k == "n_experts"})
        check_numbers(cfg)
        return cfg, run
    saved = saved_train_config(read_train_config(run.checkpoint_path))
    if args.fp8 and saved.moe_impl != "grouped_fp8":
        raise SystemExit(f"error: --fp8 cannot change on --resume (the checkpoint has moe_impl {saved.moe_impl}): it "
                         "changes the MoE code path of the model; drop --fp8, or start a new run with another --out")
    if args.preset_given:
        flags["preset"] = args.preset
    cfg = dataclasses.replace(saved, **flags)
    refuse_changes_on_resume(saved, cfg)
    check_max_steps(cfg, resume=True)
    return cfg, run


def fp8_flag(args) -> str:
    """--fp8 is --moe-impl grouped_fp8; with another --moe-impl it is a contradiction, said in one line."""
    if args.moe_impl not in (None, "grouped_fp8"):
        raise SystemExit(f"error: --fp8 and --moe-impl {args.moe_impl} contradict each other: --fp8 is --moe-impl "
                         "grouped_fp8; pass one of them")
    return "grouped_fp8"


DEFAULT_TOKENIZER = (house.OUT_DIR / "01_tokenizer" / "tokenizer.json").resolve()
DEFAULT_DATA_DIR = (house.OUT_DIR / "04_data").resolve()


def check_dense_flags(cfg: TrainConfig, flags: dict) -> TrainConfig:
    """`--n-experts 1` is the dense model: its one FFN is widened to the preset's top_k × ffn (`--top-k 1`
    may be said, any other top-k may not)."""
    if flags.get("n_active_experts", 1) != 1:
        raise SystemExit(f"error: --top-k {flags['n_active_experts']} with --n-experts 1: a dense model runs its one "
                         f"FFN (widened to match the MoE's active parameters); drop --top-k")
    return dataclasses.replace(cfg, n_active_experts=PRESETS[cfg.preset].n_active_experts)


def check_numbers(cfg: TrainConfig) -> None:
    """What the flags' types cannot see alone, checked before any work: top-k within the experts, a batch that
    divides (with torchrun: WORLD_SIZE processes)."""
    if cfg.n_active_experts > cfg.n_experts:
        raise SystemExit(f"error: --top-k {cfg.n_active_experts} is more than --n-experts {cfg.n_experts}: "
                         f"a token can use at most every expert; lower --top-k")
    grad_accum_steps(cfg, int(os.environ.get("WORLD_SIZE", 1)))
    check_max_steps(cfg, resume=False)


def parse_args(argv=None):
    """The flags; paths made absolute (01 and 04 may run as subprocesses from the repo root)."""
    parser = house.ArgumentParser(
        description="Train linnet-497M (or the tiny preset) with linnet's recipe. Without a CUDA GPU the default "
                    "runs the tiny preset end to end (running 01_tokenizer.py and 04_data.py first if needed).",
        epilog="examples: python 05_train.py --preset tiny | python 05_train.py --max-steps 5281 | "
               "python 05_train.py --resume | torchrun --nproc_per_node 8 05_train.py",
        formatter_class=house.HelpFormatter)
    house.add_common_args(parser, "05_train", presets=tuple(PRESETS))
    add_flags(parser)
    args = parser.parse_args(argv)
    args.preset_given = any(a == "--preset" or a.startswith("--preset=") for a in (argv if argv is not None else sys.argv[1:]))
    if not torch.cuda.is_available() and args.preset == "linnet" and not args.preset_given:
        print("No CUDA GPU found: running the tiny preset end to end instead "
              "(the linnet preset needs an 80 GB GPU; pass --preset tiny to skip this message).")
        args.preset = "tiny"
    args.tokenizer = (args.tokenizer or DEFAULT_TOKENIZER).resolve()
    if args.tokenizer.is_dir():                       # the folder 01 wrote (or an exported model's)
        args.tokenizer = args.tokenizer / "tokenizer.json"
    args.data_dir = (args.data_dir or DEFAULT_DATA_DIR).resolve()
    args.out = args.out.resolve()
    args.data = args.data.resolve() if args.data else None
    return args


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Paths, --resume, and one flag per TrainConfig field worth changing (FLAG_FIELDS)."""
    add = parser.add_argument
    add("--tokenizer", type=Path, default=None, help="tokenizer.json from 01 (default: out/01_tokenizer/tokenizer.json)")
    add("--data-dir", type=Path, default=None, help="shards + manifest.json from 04 (default: out/04_data)")
    add("--data", type=Path, default=None,
        help="tiny preset only: text to build the tokenizer and shards from if they are missing (default: the "
             "corpus in embedded/; `hub` = a few MB of fineweb-edu from the Hugging Face Hub)")
    add("--resume", action="store_true", help="continue from <out>/latest.pt on the exact next batch; may change "
        "--max-steps, the eval/HellaSwag/checkpoint cadences, --compile, --no-hellaswag, --wandb, nothing else")
    add("--overwrite", action="store_true", help="start a new run in an --out that holds one, replacing its "
        "latest.pt and log.jsonl (without it, 05 refuses: a finished run is never replaced unasked)")
    pos, count, amount = house.positive_int, house.non_negative_int, house.positive_float
    add("--max-steps", type=pos, help="stop after this many steps (linnet: 5281); the schedule still follows --planned-steps")
    add("--planned-steps", type=pos, help="length of the lr schedule (linnet: 18965)")
    add("--micro-batch", type=pos, help="sequences per forward pass (linnet on 80 GB: 32)")
    add("--seq-len", type=pos, help="tokens per sequence, also the model's block size (linnet: 1024)")
    add("--total-batch-tokens", type=pos, help="tokens per optimizer step (linnet: 524288)")
    add("--lr", type=amount, help="AdamW peak learning rate; Muon uses 10× (linnet: 1e-3)")
    add("--depth", type=pos, help="model depth; everything else follows (linnet: 12)")
    add("--moe-impl", choices=list(model_lib.MOE_IMPLS), help="MoE code path (02; the presets use auto; "
        "grouped_fp8 = --fp8)")
    add("--fp8", action="store_true",
        help="run the expert GEMMs in FP8 (02 section 5b): inputs rounded to 4 significant bits; the kernel "
             "exists on an H100/H200 only, elsewhere it is emulated (same rounding, no speed). Evaluations during "
             "the run use it too; 06 scores the checkpoint in bf16. BENCHMARKS.md: its speed and loss")
    add("--eval-every", type=pos, help="steps between validation evaluations")
    add("--hellaswag-every", type=pos, help="steps between HellaSwag evaluations (fixed subset)")
    add("--no-hellaswag", action="store_true", help="skip HellaSwag during and after training")
    add("--checkpoint-every", type=pos, help="steps between checkpoints")
    add("--seed", type=house.seed, help="seed for init and data order")
    add("--wandb", action="store_true", help="also log to Weights & Biases (pip install wandb)")
    add_knob_flags(parser)
    add("--compile", action=argparse.BooleanOptionalAction, default=None,
        help="torch.compile the model (default: on with CUDA, off on CPU)")


@house.speaks
def main(argv=None) -> None:
    try:
        args = parse_args(argv)
        cfg, run = configs_from_args(args)   # bad numbers and refused flags stop here, in one line
        house.check_writable(run.out)   # so does a read-only or impossible --out: before any work, nothing written
        with house.folder_lock(run.out) if house.is_first_process() else contextlib.nullcontext():
            refuse_to_replace_a_run(run, args.overwrite)   # a finished run is never replaced without being asked
            train(cfg, run)
    except SystemExit as stop:   # under torchrun every process hits the same user error: rank 0 says it
        if isinstance(stop.code, str) and not house.is_first_process():
            raise SystemExit(1) from None
        raise
    except (KeyboardInterrupt, Interrupted) as stop:   # Ctrl-C before the loop, or twice in it
        signum = getattr(stop, "signum", signal.SIGINT)
        print(f"\ninterrupted: stopped without saving (checkpoints written before are untouched)", file=sys.stderr)
        raise SystemExit(128 + signum) from None


# --- Appendix: machinery ---------------------------------------------------------------------------------
# Command-line guards and the knob flags, processes and devices, seeds and RNG states, Ctrl-C and SIGTERM, the
# log (and W&B), checks across DDP replicas, the inputs from 01 and 04. Nothing here changes what is learned;
# skip it on a first reading.

def refuse_to_replace_a_run(run: RunConfig, overwrite: bool) -> None:
    """A new run (no --resume) in an --out that holds a checkpoint or a log stops in one line, before anything
    is deleted or written, unless --overwrite says to replace it."""
    held = [p.name for p in (run.checkpoint_path, run.log_path) if p.exists()]
    if run.resume or overwrite or not held:
        return
    raise SystemExit(f"error: {house.shown(run.out)} already holds a run ({' and '.join(held)}): continue it with "
                     f"--resume, start a new one with another --out, or replace it with --overwrite")


def check_max_steps(cfg: TrainConfig, resume: bool) -> None:
    """--max-steps may stop a run early, never run it past its schedule (silently capped before)."""
    if cfg.max_steps is None or cfg.max_steps <= cfg.planned_steps:
        return
    fix = ("a run's schedule cannot grow on --resume: start a new run with --planned-steps "
           f"{cfg.max_steps}" if resume else f"pass --planned-steps {cfg.max_steps} too, or a smaller --max-steps")
    raise SystemExit(f"error: --max-steps {cfg.max_steps} is past the {cfg.planned_steps} steps the {cfg.preset} "
                     f"schedule plans (the lr reaches its minimum there): {fix}")


def eval_command(cfg: TrainConfig, run: RunConfig) -> str:
    """The 06 command that scores this run's checkpoint with its own tokenizer and shards."""
    parts = ["python", "06_eval.py", "--preset", cfg.size, "--checkpoint", house.shown(run.checkpoint_path)]
    if run.tokenizer != DEFAULT_TOKENIZER:
        parts += ["--tokenizer", house.shown(run.tokenizer)]
    if run.data_dir != DEFAULT_DATA_DIR:
        parts += ["--data-dir", house.shown(run.data_dir)]
    return shlex.join(parts)


def add_knob_flags(parser: argparse.ArgumentParser) -> None:
    """The knobs that break linnet's recipe (ablations), and the linnet+ switches that improve on it."""
    pos = house.positive_int
    knobs = parser.add_argument_group("knobs to break the recipe (ablations; README: Knobs to break the recipe)")
    knobs.add_argument("--balance-coef", type=house.non_negative_float,
                       help="weight of the load-balancing term in the loss (linnet: 0.01; 0 = off)")
    knobs.add_argument("--optimizer", choices=["muon", "adamw"], help="muon: Muon for matrices + AdamW for the rest "
                       "(linnet); adamw: one AdamW for every parameter at the AdamW --lr")
    knobs.add_argument("--n-experts", type=pos, help="experts per layer (linnet: 8). 1 = the dense model at EQUAL "
                       "ACTIVE PARAMETERS: a token of the MoE runs top-k experts of width F, so the dense model gets "
                       "one FFN of width top-k × F (linnet: 2 × 2048 = 4096); only the router shrinks")
    knobs.add_argument("--top-k", dest="n_active_experts", type=pos, help="experts each token uses (linnet: 2)")
    knobs.add_argument("--warmup-frac", type=house.probability, help="fraction of the planned steps spent warming "
                       "the lr up (linnet: 0.1; 0 = start at the peak lr)")
    knobs.add_argument("--decay-start-frac", type=house.probability, help="fraction of the planned steps after "
                       "which the lr decays (linnet: 0.8)")
    knobs.add_argument("--decay-shape", choices=list(DECAY_SHAPES), help="how the lr falls to --min-lr (linnet: cosine)")
    knobs.add_argument("--min-lr", type=house.non_negative_float, help="AdamW lr at the end; Muon's is 10× "
                       "(linnet: 6e-5; tiny: 3e-4)")
    plus = parser.add_argument_group("linnet+ switches (off = linnet; --preset linnet-plus / tiny-plus turn on "
                                     "the ones that paid; BENCHMARKS.md \"linnet+\" has each one's measured effect)")
    plus.add_argument("--zero-init-out", action="store_true", default=None,
                      help="output projections (attention and experts) start at 0: each block starts as the identity")
    plus.add_argument("--x0-mix", action="store_true", default=None,
                      help="each block reads a·x + b·x0 (x0: the token embedding), a and b learned per layer")
    plus.add_argument("--logit-softcap", type=house.non_negative_float,
                      help="logits = c·tanh(logits / c), e.g. 15 (0 = off)")
    plus.add_argument("--muon-momentum-warmup", action="store_true", default=None,
                      help="Muon momentum from 0.85 to 0.95 over the first 300 steps (linnet: 0.95 throughout)")
    plus.add_argument("--router-on-adamw", action="store_true", default=None,
                      help="the routers' weights on AdamW instead of Muon (03)")


H100_BF16_PEAK_FLOPS = 989e12   # dense bf16, H100 SXM (docs/ARCHITECTURE.md): 100 % MFU ≈ 935k tokens/s for linnet


@dataclass
class Processes:
    """This process's place in the run: 1 process without torchrun, world_size with it."""
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_processes(cfg: TrainConfig) -> Processes:
    """Start the process group when launched by torchrun (NCCL on GPUs, gloo on CPUs); pick the device."""
    rank, local_rank, world_size = 0, 0, 1
    if "RANK" in os.environ:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        rank, local_rank, world_size = dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size()
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and cfg.size == "tiny":
        # 64-wide matrices gain nothing from more threads, and on a busy machine spinning OpenMP threads
        # made the tiny run 10× slower (1.6 vs 19.5 steps/s measured on 2 shared cores): use one.
        torch.set_num_threads(1)
    return Processes(rank, local_rank, world_size, device)


def destroy_processes() -> None:
    """DDP: leave the process group (nothing to do in a single process)."""
    if dist.is_initialized():
        dist.destroy_process_group()


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


STALE_TEMP = re.compile(r"\.(latest\.pt|log\.jsonl|[a-z_]+\.png)\.tmp(\d+)")   # house.atomic_path's names


def remove_stale_temp_files(out: Path) -> None:
    """Remove the temp files of 05's own outputs (`.latest.pt.tmp<pid>`, ...) that a killed process left in
    `out` (atomic_path removes them itself on any exit it sees; not on kill -9). A live pid's file is kept."""
    for path in sorted(out.glob(".*.tmp*")) if out.is_dir() else []:
        match = STALE_TEMP.fullmatch(path.name)
        if match and not house.pid_is_alive(int(match.group(2))):
            path.unlink(missing_ok=True)
            print(f"removed {path.name} from {house.shown(out)}: a temp file left by a killed save (the complete "
                  f"files beside it are untouched)")


def data_sha256(data_dir: Path) -> str:
    """Which shards: the SHA-256 of 04's manifest.json (it lists every shard with its own hash)."""
    return hashlib.sha256((Path(data_dir) / "manifest.json").read_bytes()).hexdigest()


def read_train_config(path: Path) -> dict:
    """A checkpoint memory-mapped (its tensors are not read): enough to see its train_config."""
    if not path.exists():
        return load_checkpoint(path)   # says in one line that there is none
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:
        return load_checkpoint(path)   # says in one line why it cannot be read
    return checkpoint if isinstance(checkpoint, dict) and "train_config" in checkpoint else load_checkpoint(path)


class Interrupted(Exception):
    """A second Ctrl-C / SIGTERM outside a save: stop at once, without saving (`main` says so in one line)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM (what a scheduler sends before it preempts a job) during training: the
    first signal sets `requested` to its number (the loop finishes its step, saves and exits with status
    128 + signal: 130 for Ctrl-C, 143 for SIGTERM, and a line that says "interrupted"); a second one stops at
    once without saving — except while a checkpoint is being written (`saving()`), which it never cuts short."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested: int | None = None
        self.in_save = False
        self.previous = {}

    def install(self) -> StopRequest:
        for sig in self.SIGNALS:
            self.previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self.on_signal)
        return self

    def on_signal(self, signum, frame) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self.requested is None:
            self.requested = signum
            print(f"\n{name}: finishing this step, then saving a checkpoint (again: stop at once without saving)")
        elif self.in_save:
            print(f"\n{name} again: the checkpoint is being written; stopping as soon as it is whole")
        else:
            raise Interrupted(signum)

    @contextlib.contextmanager
    def saving(self):
        self.in_save = True
        try:
            yield
        finally:
            self.in_save = False

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def exit_interrupted(stop: StopRequest, finished: int, log: RunLog, cfg: TrainConfig, run: RunConfig) -> None:
    """After the checkpoint of an interrupted run: say where it is and how to continue, exit 128 + signal."""
    log.close()
    log.say(f"interrupted after step {finished}: checkpoint saved to {house.shown(run.checkpoint_path)}; "
            f"continue with {resume_command(cfg, run)}")
    raise SystemExit(128 + stop.requested)


class RunLog:
    """log.jsonl (one JSON line per step and per evaluation), the progress bar, and W&B with --wandb.
    Only the main process writes (`enabled`); on the others every method does nothing."""

    def __init__(self, cfg: TrainConfig, run: RunConfig, start_step: int, max_steps: int, enabled: bool):
        self.path, self.enabled, self.start_step, self.max_steps = run.log_path, enabled, start_step, max_steps
        self.wandb_run = start_wandb(cfg, run.out) if (run.wandb and enabled) else None
        self.progress = None   # the bar starts with the first step, below the lines printed before it

    def step(self, record: dict) -> None:
        if self.enabled:
            append_log(self.path, record, self.wandb_run)
            if self.progress is None:
                from tqdm import tqdm

                self.progress = tqdm(initial=self.start_step, total=self.max_steps, unit="step",
                                     dynamic_ncols=True, file=sys.stdout, mininterval=1.0)
            self.progress.update(1)
            self.progress.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}")

    def eval(self, record: dict) -> None:
        if self.enabled:
            append_log(self.path, record, self.wandb_run)
            self.say(eval_line(record))

    def say(self, text: str) -> None:
        if self.enabled:
            print(text) if self.progress is None else self.progress.write(text)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


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
    """On resume, forget the steps a killed run logged after its last checkpoint (they are redone), and a
    line it was killed in the middle of (`log_records`)."""
    if not path.exists():
        return
    records = log_records(path)
    kept = [r for r in records if r["step"] < finished_steps
            or (r.get("kind") == "eval" and r["step"] == finished_steps)]   # the eval after the last saved step
    with house.atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))


def read_log(path: Path) -> tuple[list[dict], list[dict]]:
    """log.jsonl split into (step records, evaluation records)."""
    steps, evals = [], []
    for r in log_records(path) if path.exists() else []:
        (evals if r.get("kind") == "eval" else steps).append(r)
    return steps, evals


def log_records(path: Path) -> list[dict]:
    """The records of log.jsonl. A kill -9 in the middle of `append_log` can leave its LAST line torn: that
    line is dropped with a note. A damaged line before it was not torn by us: one line names it."""
    lines = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if line.strip()]
    records = []
    for n, line in lines:
        try:
            record = json.loads(line)
            if not (isinstance(record, dict) and isinstance(record.get("step"), int)):
                raise ValueError("not a record with a step")
        except ValueError:
            if n == lines[-1][0]:
                print(f"note: dropped line {n} of {house.shown(path)}: torn (the run was killed while writing it)")
                break
            raise SystemExit(f"error: {house.shown(path)} line {n} is damaged (not a JSON record with a step): "
                             f"delete that line (or the whole log: training does not need it, only the plots) and run again")
        records.append(record)
    return records


def eval_line(record: dict) -> str:
    line = f"step {record['step']}: val loss {record['val_loss']:.4f}, {record['val_bpb']:.4f} bits/byte"
    if "hellaswag_acc" in record:
        line += (f", HellaSwag acc {100 * record['hellaswag_acc']:.1f} % / acc_norm "
                 f"{100 * record['hellaswag_acc_norm']:.1f} % on {record['hellaswag_n']} examples")
    return line


def print_sample(model, tokenizer, device) -> None:
    model.eval()
    torch.manual_seed(0)
    text = model.generate("The", enc=tokenizer, max_new_tokens=40, temperature=0.8, top_k=50)
    print(f"sample: {text!r}")


def weights_checksum(model) -> torch.Tensor:
    """The sum of every weight in float64, shape (1,), on the weights' device: equal on processes that hold
    equal weights, and NaN or inf as soon as one weight is."""
    return torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)


def check_replicas_agree(model, world_size: int) -> None:
    """DDP: every process must hold the same weights (same all-reduced gradients, deterministic Muon and
    AdamW: 03). Compare a checksum of all parameters across processes before rank 0 saves them."""
    if world_size == 1:
        return
    checksum = weights_checksum(model)
    gathered = [torch.zeros_like(checksum) for _ in range(world_size)]
    dist.all_gather(gathered, checksum)
    values = [g.item() for g in gathered]
    if not all(math.isfinite(v) for v in values):
        return   # NaN never equals NaN: non-finite weights are the divergence guard's to report (save_healthy_checkpoint)
    if len(set(values)) != 1:
        raise SystemExit(f"error: the {world_size} DDP processes hold different weights "
                         f"(checksums {[g.item() for g in gathered]}): the run is no longer data-parallel")
    if dist.get_rank() == 0:
        print(f"replicas agree: all {world_size} processes hold identical weights (checksum {checksum.item():.6f})")


def run_lesson(script: str, *args: str) -> None:
    """Run an earlier lesson as a subprocess (the tiny preset makes its own tokenizer and shards)."""
    command = shlex.join(["python", script, *args])       # quoted: a path with spaces can be copied as is
    print(f"running: {command}")
    result = subprocess.run([sys.executable, str(house.REPO_DIR / script), *args], cwd=house.REPO_DIR)
    if result.returncode != 0:
        raise SystemExit(f"error: {command} failed (see above): fix that first")


def prepare_inputs(cfg: TrainConfig, run: RunConfig, is_main: bool):
    """The tokenizer (checked against the shards' manifest); for the tiny preset, make both if missing."""
    data_args = ["--data", str(run.data)] if run.data else []
    check_data_flag(cfg, run)
    if cfg.size == "tiny" and is_main:
        if not run.tokenizer.exists() and run.tokenizer.name != "tokenizer.json":   # 01 could not make this name
            raise SystemExit(f"error: no tokenizer at {run.tokenizer}: pass an existing one, or a path ending in "
                             f"tokenizer.json for python 01_tokenizer.py to make it there")
        if not run.tokenizer.exists():
            run_lesson("01_tokenizer.py", "--preset", "tiny", "--out", str(run.tokenizer.parent), *data_args)
        if not (run.data_dir / "manifest.json").exists():
            run_lesson("04_data.py", "--preset", "tiny", "--tokenizer", str(run.tokenizer), "--out",
                       str(run.data_dir), *data_args)
    if dist.is_initialized():
        dist.barrier()
    if not run.tokenizer.exists():
        raise SystemExit(f"error: no tokenizer at {run.tokenizer}: run python 01_tokenizer.py first (or pass --tokenizer)")
    manifest = data_lib.read_manifest(run.data_dir, needs=("tokenizer_sha256", "vocab_size"))
    if is_main:   # a shard changed in place at the same size would train unnoticed: sha256 once per run (linnet: ≈ 5 s)
        house.shards.check_shards(run.data_dir, manifest["shards"], sha256=True)
    tokenizer = tokenizer_lib.load_tokenizer(run.tokenizer)
    if manifest["tokenizer_sha256"] != tokenizer_lib.tokenizer_sha256(run.tokenizer):
        fix = ("pass the --tokenizer the run was started with (its shards need it)" if run.resume else
               f"pass the matching --tokenizer, or make shards for this one in a new folder: python 04_data.py "
               f"--tokenizer {house.shown(run.tokenizer)} --out NEW_DIR, then --data-dir NEW_DIR")
        raise SystemExit(f"error: the shards in {house.shown(run.data_dir)} were made with another tokenizer than "
                         f"{house.shown(run.tokenizer)}: {fix}")
    if manifest["vocab_size"] != tokenizer.get_vocab_size():
        raise SystemExit(f"error: manifest vocab {manifest['vocab_size']} != tokenizer vocab "
                         f"{tokenizer.get_vocab_size()}: rerun python 04_data.py with this tokenizer")
    check_preset_fits(cfg, tokenizer, run.tokenizer, is_main)
    if run.hellaswag and is_main:   # found (or fetched) now, not at the first evaluation after hundreds of steps
        hellaswag_file_or_stop()
    return tokenizer


def check_data_flag(cfg: TrainConfig, run: RunConfig) -> None:
    """--data builds the tiny preset's tokenizer and shards when they are missing. Given while shards exist, it
    must name what they were made from: a --data that would be ignored is refused, never dropped in silence."""
    if run.data is None:
        return
    if cfg.size != "tiny":
        raise SystemExit("error: --data is for the tiny preset (it builds the tokenizer and shards from it); for "
                         "linnet run python 01_tokenizer.py and python 04_data.py on your text, then pass --tokenizer "
                         "and --data-dir")
    files = {str(f.resolve()) for f in house.list_text_files([run.data])}   # a missing path: one line here
    if not (run.data_dir / "manifest.json").exists():
        return
    made_from = set()
    for source in data_lib.read_manifest(run.data_dir).get("sources", []):
        location = source.get("location", [])
        made_from |= {str(Path(p).resolve()) for p in (location if isinstance(location, list) else [location])}
    if made_from != files:
        raise SystemExit(f"error: --data {house.shown(run.data)} is not the text the shards in "
                         f"{house.shown(run.data_dir)} were made from: drop --data to train on those shards, or pass "
                         f"a new --data-dir and --tokenizer to build new ones from it")


def hellaswag_file_or_stop() -> Path:
    """06's HellaSwag file (cached, the course copy, or downloaded); without one, one line that says what to do."""
    try:
        return house.sources.find_hellaswag_file()
    except house.NotFound:
        raise SystemExit(f"error: no HellaSwag file and no internet: download {house.sources.HELLASWAG_URL} to "
                         f"{house.shown(house.sources.HELLASWAG_CACHE)}, or train without it: --no-hellaswag")


def check_preset_fits(cfg: TrainConfig, tokenizer, tokenizer_path: Path, is_main: bool) -> None:
    """The linnet preset needs a GPU, and is meant for the 32,768-token tokenizer (not the tiny one)."""
    if cfg.size == "linnet" and not torch.cuda.is_available():
        raise SystemExit("error: the linnet preset (497M parameters) needs a CUDA GPU: use --preset tiny on this machine")
    vocab = tokenizer.get_vocab_size()
    if cfg.size == "linnet" and vocab != tokenizer_lib.LINNET_VOCAB_SIZE and is_main:
        print(f"warning: {tokenizer_path} has {vocab:,} tokens, not linnet's {tokenizer_lib.LINNET_VOCAB_SIZE:,} "
              f"(left over from a tiny run?): for the real job run python 01_tokenizer.py, then python 04_data.py")


if __name__ == "__main__":
    main()
