"""05 — the training loop: linnet's recipe on one H100, and the same code on a laptop.

In order: the training config (02's LLMConfig nested in it; the presets), the WSD learning-rate schedule, one
training step (gradient accumulation over micro-batches, bf16 autocast, global-norm clipping, Muon for matrices
and AdamW for the rest, 03) and the loop around it, nanoGPT's order: schedule → step → log → evaluate → the
guards (a divergence guard, replicas that agree, only healthy weights saved, Ctrl-C saves and exits). Then what
a checkpoint holds (--resume continues on the exact next batch), the plots, the command line. The plumbing
(processes, RNG states, signals, the log) is in house/runs.py; evaluation borrows 06_eval's scorers.

    python 05_train.py                       # a CUDA GPU: the linnet job; no GPU: says so, runs the tiny preset
    python 05_train.py --preset tiny         # a minute on a laptop CPU: runs 01 and 04 for you if needed
    python 05_train.py --max-steps 5281      # linnet stopped early, at 5,281 of 18,965 planned steps
    python 05_train.py --resume              # continue from out/05_train/latest.pt
    torchrun --nproc_per_node 8 05_train.py  # data-parallel on 8 GPUs (same global batch, fewer accumulation steps)

Writes to out/05_train/ (or --out): latest.pt (the checkpoint), log.jsonl (a line per step and per evaluation)
and the plots. linnet (docs/ARCHITECTURE.md): 524,288 tokens a step, peak lr 1e-3 (AdamW) and 1e-2 (Muon),
5,281 steps ≈ 2.77B tokens, ≈ 1.21 validation bits per byte at the end. Speeds: BENCHMARKS.md. Precision:
bf16 autocast, --fp8 for the expert GEMMs (fast/fp8.py). Not handled: tensor/pipeline parallelism or FSDP
(DDP only; the 497M model fits one GPU), a new world size on --resume (it changes the data order).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import house
from fast import fp8, moe as moe_fast
from house import checkpoints, runs

tokenizer_lib = importlib.import_module("01_tokenizer")  # load_tokenizer, tokenizer_sha256
model_lib = importlib.import_module("02_model")   # LLMConfig, LLM, cast_expert_weights, export/load_linnet_state_dict
muon_lib = importlib.import_module("03_muon")     # build_optimizers: the Muon/AdamW split
data_lib = importlib.import_module("04_data")     # read_manifest, ShardLoader
eval_lib = importlib.import_module("06_eval")     # bits_per_byte, HellaSwag (06 never imports 05)


# --- 1. What a run reads: the training config (saved in the checkpoint) and the run's paths and switches --

@dataclass
class TrainConfig:
    """What is learned and how: the model, batch, schedule, cadences; saved inside every checkpoint.

    Two presets below; any flagged field can be changed from the command line (`--micro-batch 16`)."""
    preset: str = "linnet"
    model: model_lib.LLMConfig = dataclasses.field(default_factory=model_lib.LLMConfig)   # 02; block_size =
    # the sequence length, vocab_size comes from the tokenizer. Default: linnet, depth 12 (the rest follows)
    # batch: total_batch_tokens = micro_batch × block_size × grad_accum × world_size
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
    eval_batches: int | None = 20    # validation batches of micro_batch × block_size (20 × 32 × 1024 = 655,360
                                     # tokens); None = the whole validation shard
    hellaswag_every: int = 1000
    hellaswag_subset: int = 200      # the fixed subset during training (first N examples)
    hellaswag_final: int | None = None  # None = the full 10,042 at the end
    checkpoint_every: int = 500
    # machinery
    compile: bool | None = None      # None = on for CUDA, off for CPU
    cast_experts_once: bool = True   # GPU: bf16 expert weights made once per step, not per micro-step (02)
    seed: int = 1337
    # linnet+ switches of the optimizer (the model's are in `model`; BENCHMARKS.md "linnet+" has what each buys)
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


# The model fields each preset gives; 02 derives the rest from depth, once, when an LLMConfig is made (so a
# changed --depth makes a new one from these: `--depth 4` on tiny keeps its 64 width).
# tiny: 02's TINY_TRAINING_SHAPE (~0.3M parameters) reading 64-token windows.
TINY_MODEL = dict(model_lib.TINY_TRAINING_SHAPE, block_size=64)
# linnet+: the recipe changes that paid, measured on linnet's depth-12 model (BENCHMARKS.md, "linnet+"), on
# top of either preset: `--preset linnet-plus`, `--preset tiny-plus`. Each is also a flag of its own.
PLUS_MODEL = dict(zero_init_out=True, x0_mix=True, logit_softcap=15.0)
PLUS_TRAINING = dict(muon_momentum_warmup=True, decay_shape="linear", decay_start_frac=0.5)
MODEL_FIELDS = {"linnet": {}, "tiny": TINY_MODEL, "linnet-plus": PLUS_MODEL, "tiny-plus": {**TINY_MODEL, **PLUS_MODEL}}
PRESETS = {
    "linnet": TrainConfig(),   # one 80 GB GPU: micro-batch 32 × 1024 peaks at 35 GB, 16 accumulation steps
    # A laptop CPU: 300 steps in under a minute. Validation scores the whole validation shard (≈ 201k tokens, 2 s).
    "tiny": TrainConfig(
        preset="tiny", model=model_lib.LLMConfig(**TINY_MODEL), micro_batch=8, total_batch_tokens=1024,
        planned_steps=300, lr=3e-3, min_lr=3e-4, eval_every=100, eval_batches=None, hellaswag_every=100,
        hellaswag_subset=50, hellaswag_final=100, checkpoint_every=100),
}
PRESETS.update({f"{name}-plus": dataclasses.replace(PRESETS[name], preset=f"{name}-plus", **PLUS_TRAINING,
                                                    model=model_lib.LLMConfig(**MODEL_FIELDS[f"{name}-plus"]))
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
    inputs: dict | None = None       # the tokenizer's and the manifest's sha256, taken once (prepare_inputs)

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "latest.pt"

    @property
    def log_path(self) -> Path:
        return self.out / "log.jsonl"


def grad_accum_steps(cfg: TrainConfig, world_size: int) -> int:
    """Micro-steps per optimizer step. linnet: 524,288 / (32 × 1024 × 1 GPU) = 16."""
    per_pass = cfg.micro_batch * cfg.model.block_size * world_size
    if cfg.total_batch_tokens % per_pass:
        raise house.UserError(f"--total-batch-tokens {cfg.total_batch_tokens} is not divisible by micro-batch "
                              f"{cfg.micro_batch} × seq {cfg.model.block_size} × {world_size} GPU(s) = {per_pass}: "
                              f"change one of them")
    return cfg.total_batch_tokens // per_pass


def dense_equal_active(cfg: TrainConfig) -> TrainConfig:
    """The dense baseline at EQUAL ACTIVE PARAMETERS (`--n-experts 1`): one FFN of width top_k × F (linnet: 4,096)
    where a token of the MoE runs top_k experts of width F; only the router shrinks (tiny: 189,248 vs 189,632)."""
    m = cfg.model
    dense = dataclasses.replace(m, n_experts=1, n_active_experts=1, ffn_dim=m.n_active_experts * m.ffn_dim)
    return dataclasses.replace(cfg, model=dense)


# --- 2. The WSD schedule: warm-up, stable, decay ----------------------------------------------------------

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


def apply_schedule(optimizers, step: int, cfg: TrainConfig) -> None:
    """The learning rates of `step`; with linnet+'s momentum warm-up also Muon's momentum, 0.85 → 0.95 over the
    first 300 steps (modded-nanogpt's recipe; linnet keeps 0.95 throughout). Every param group keeps its peak lr
    in `initial_lr` (03; Muon's groups: 10×): the schedule scales all alike."""
    multiplier = lr_multiplier(step, cfg)
    for group in (g for opt in optimizers for g in opt.param_groups):
        group["lr"] = group["initial_lr"] * multiplier
    if cfg.muon_momentum_warmup:
        for group in (g for opt in optimizers if isinstance(opt, muon_lib.Muon) for g in opt.param_groups):
            group["momentum"] = 0.85 + 0.10 * min(1.0, step / 300)


# --- 3. One training step: accumulate over micro-batches, clip, step both optimizers ----------------------

def train_step(model, runner, optimizers, batches, cfg: TrainConfig, device: torch.device):
    """One optimizer step over the micro-batches `batches` ((x, y) pairs): each loss divided by their number, so
    the gradients add up to the MEAN loss's (1 × 2B ≡ 2 × B, a test says). `runner`: `model`, compiled or DDP.
    Returns (mean loss, grad norm before clipping, mean router stats) as tensors: no host sync here."""
    batches = list(batches)
    accum, ddp = len(batches), isinstance(runner, torch.nn.parallel.DistributedDataParallel)
    # On a GPU cast the expert weights to bf16 once for all micro-steps (same maths, fast/moe.py);
    # not under DDP, whose gradient hooks are tested only with weights used directly in the forward.
    cast_once = cfg.cast_experts_once and device.type == "cuda" and not ddp
    expert_weights = moe_fast.cast_expert_weights(model) if cast_once else None   # one (w_v, c_proj) per layer
    loss_accum, stats = torch.zeros((), device=device), {}
    for micro_step, (x, y) in enumerate(batches):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)        # (B, T) each
        # DDP all-reduces the gradients once, in the last micro-step's backward
        sync = runner.no_sync() if ddp and micro_step < accum - 1 else contextlib.nullcontext()
        with sync, torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            _, loss = runner(x, y, expert_weights=expert_weights)
            (loss / accum).backward()
        loss_accum += loss.detach()
        for name, value in model.router_stats.items():   # expert load (L, E) and router entropy (L,)
            stats[name] = stats[name] + value.detach().float() if name in stats else value.detach().float()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)   # global norm, before clipping
    for opt in optimizers:          # Muon (matrices) and AdamW (the rest), both from 03
        opt.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    return loss_accum / accum, grad_norm, {name: value / accum for name, value in stats.items()}


# --- 4. The run: the loop (one optimizer step per iteration), its guards, and the set-up before it --------

def loop(cfg: TrainConfig, run: RunConfig, procs: runs.Processes, model, runner, optimizers, loader, tokenizer,
         start_step: int) -> None:
    """One optimizer step per iteration, in nanoGPT's order: schedule → step → log → evaluate → the guards."""
    accum, max_steps, device = grad_accum_steps(cfg, procs.world_size), cfg.steps_to_run, procs.device
    log = runs.RunLog(run.log_path, start_step, max_steps, procs.is_main, dataclasses.asdict(cfg) if run.wandb else None)
    log.say(run_summary(cfg, accum, max_steps, procs, run))
    guards = Guards(cfg, run, procs, log, model, optimizers, loader)
    batches, peak_flops = iter(loader), runs.peak_flops(device)      # the GPU's FLOP/s, for MFU (None on a CPU)
    try:
        for step in range(start_step, max_steps):
            t0 = time.perf_counter()
            apply_schedule(optimizers, step, cfg)                                  # 1. this step's learning rates
            micro_batches = [next(batches) for _ in range(accum)]                  # accum × (x, y), each (B, T)
            loss, grad_norm, stats = train_step(model, runner, optimizers, micro_batches, cfg, device)  # 2. the step
            loss_value = runs.mean_over_processes(loss, procs.world_size)   # first host sync: waits for the GPU
            finished, is_last, seconds = step + 1, step + 1 == max_steps, time.perf_counter() - t0
            log.step(step_record(step, loss_value, grad_norm, stats, optimizers, seconds, cfg, peak_flops))
            limit = hellaswag_limit(finished, is_last, cfg, run)   # HellaSwag examples to score now (0: none)
            if procs.is_main and (is_last or finished % cfg.eval_every == 0 or limit != 0):   # 3. evaluate
                log.eval(evaluate(model, finished, cfg, device, run.data_dir, tokenizer, limit))
                if not is_last:  # refresh the plots quietly; the captions are printed once, at the end
                    save_plots(run.log_path, run.out, quiet=True)
            guards.after_step(step, loss_value, grad_norm, is_last)                  # 4. the guards, in one call
    except (MemoryError, RuntimeError) as e:   # out of memory (CUDA's or the CPU's): one line; anything else as it is
        raise runs.out_of_memory(e, cfg.micro_batch, cfg.model.block_size, cfg.total_batch_tokens) from None
    finally:
        guards.stop.restore()
        log.close()                        # end the progress bar's line before any message (idempotent)


class Guards:
    """What keeps a run trustworthy, in one call after every step (`after_step`):
      - the divergence guard (`stop_if_unhealthy`): a broken loss or gradient norm stops the run;
      - at a checkpoint (every `checkpoint_every` steps and the last), DDP's processes must hold identical weights;
      - a checkpoint is written only from healthy weights (`save_healthy_checkpoint`); `last_good` names the last;
      - Ctrl-C, SIGTERM or SIGHUP (house.runs.StopRequest): the step finishes, is saved, the run stops (130/143/129)."""

    def __init__(self, cfg: TrainConfig, run: RunConfig, procs: runs.Processes, log: runs.RunLog, model, optimizers,
                 loader):
        self.cfg, self.run, self.procs, self.log = cfg, run, procs, log
        self.model, self.optimizers, self.loader = model, optimizers, loader
        self.last_good = run.checkpoint_path if run.resume else None
        self.stop = runs.StopRequest().install()

    def after_step(self, step: int, loss_value: float, grad_norm, is_last: bool) -> None:
        stop_if_unhealthy(loss_value, grad_norm, step, self.last_good, self.cfg)
        finished, cfg, run = step + 1, self.cfg, self.run
        due = finished % cfg.checkpoint_every == 0 or is_last
        if due:
            runs.check_replicas_agree(self.model, self.procs.world_size)   # every process takes part: an all-gather
        if self.procs.is_main and (due or self.stop.requested):
            with self.stop.saving():   # a second signal now waits until the checkpoint is whole
                self.last_good = save_healthy_checkpoint(self.model, self.optimizers, self.loader, finished, cfg, run,
                                                         self.last_good)
        if self.stop.requested:
            self.log.close()
            then = "the run is complete" if is_last else f"continue with {resume_command(cfg, run)}"
            self.log.say(f"interrupted after step {finished}: checkpoint saved to {house.shown(run.checkpoint_path)}; {then}")
            raise runs.Interrupted(self.stop.requested, saved=True)


def stop_if_unhealthy(loss_value: float, grad_norm, step: int, last_good: Path | None, cfg: TrainConfig) -> None:
    """The divergence guard, after every step, before anything of it is saved. A healthy step has a finite loss of
    at most 2 × ln(vocab) + balance_coef × E (a fresh model starts at ln(vocab), a uniform guess) and a finite,
    non-zero gradient norm (0 = saturated: --lr 50 on tiny without this guard read 0.0 from step 8 while the weights
    grew to 2.6e18). Otherwise one line names the last checkpoint written from a healthy state."""
    limit, norm = loss_limit(cfg), float(grad_norm)
    if not math.isfinite(loss_value):
        reason = f"loss became {loss_value}"
    elif loss_value > limit:
        reason = f"loss {loss_value:.4g} is above 2·ln(vocab) + balance_coef·E = {limit:.2f} (exploding)"
    elif not math.isfinite(norm) or norm == 0:
        reason = f"gradient norm became {norm} (the network saturated)"
    else:
        return
    stop_diverged(f"{reason} at step {step}", last_good, cfg)


def loss_limit(cfg: TrainConfig) -> float:
    """The highest loss a healthy run shows: 2 × ln(vocab), plus the balance term's most (balance_coef × E)."""
    return 2 * math.log(cfg.model.vocab_size) + cfg.model.balance_coef * cfg.model.n_experts


def stop_diverged(what: str, last_good: Path | None, cfg: TrainConfig) -> None:
    where = (f"the last good checkpoint is {last_good} (its weights gave a healthy loss when saved)" if last_good
             else "no checkpoint was written by this run")
    raise house.UserError(f"{what}: stopped instead of training on; {where}; try a lower --lr (now {cfg.lr:g})")


def train(cfg: TrainConfig, run: RunConfig) -> Path:
    """Set up once (processes, inputs, model and optimizers, data, resume, compile/DDP), then `loop`; at the
    end every plot and a sample. Reads and writes where `run` says; returns the checkpoint path."""
    procs = runs.setup_processes(one_cpu_thread=cfg.size == "tiny")      # rank, world size, device
    try:
        tokenizer = prepare_inputs(cfg, run, procs.is_main)              # 01's tokenizer, 04's shards
        model, model_config, optimizers = build_model_and_optimizers(cfg, tokenizer.get_vocab_size(), procs.device)
        cfg = dataclasses.replace(cfg, model=model_config)                # the tokenizer's vocab_size
        loader = data_lib.ShardLoader(run.data_dir, "train", cfg.micro_batch, cfg.model.block_size, rank=procs.rank,
                                      world_size=procs.world_size, seed=cfg.seed)
        start_step = start_or_resume(cfg, run, model, optimizers, loader, procs.is_main)
        loop(cfg, run, procs, model, compile_and_wrap(model, cfg, procs), optimizers, loader, tokenizer, start_step)
    finally:
        runs.destroy_processes()
    if procs.is_main:
        save_plots(run.log_path, run.out)
        model.eval()
        torch.manual_seed(0)
        print(f"sample: {model.generate('The', enc=tokenizer, max_new_tokens=40, temperature=0.8, top_k=50)!r}")
        print(f"checkpoint: {house.shown(run.checkpoint_path)} — evaluate it with {eval_command(cfg, run)}")
    return run.checkpoint_path


def build_model_and_optimizers(cfg: TrainConfig, vocab_size: int, device: torch.device):
    """Seed; the model (02) and its optimizers (03: Muon for matrices, AdamW for the rest): (model, config, optimizers)."""
    runs.seed_everything(cfg.seed)
    model, model_config = build_model(cfg, vocab_size, device)                 # 02
    if cfg.optimizer == "adamw":   # the ablation: one AdamW for every parameter, at the AdamW lr (03's baseline)
        optimizers = muon_lib.adamw_only(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        for group in optimizers[0].param_groups:
            group["initial_lr"] = group["lr"]          # what apply_schedule scales
    else:
        optimizers, _ = muon_lib.build_optimizers(model, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                                  muon_lr_multiplier=cfg.muon_lr_multiplier,
                                                  router_on_adamw=cfg.router_on_adamw)
    return model, model_config, optimizers


def build_model(cfg: TrainConfig, vocab_size: int, device: torch.device):
    """02's LLM of `cfg.model` at the tokenizer's `vocab_size`, on `device`; returns (model, its LLMConfig)."""
    config = dataclasses.replace(cfg.model, vocab_size=vocab_size)
    return model_lib.LLM(config).to(device), config


def uses_compile(cfg: TrainConfig, device: torch.device) -> bool:
    """--compile if given, else on with CUDA; never for emulated FP8 (its GEMM syncs with the host: slower)."""
    wanted = cfg.compile if cfg.compile is not None else device.type == "cuda"
    return wanted and not fp8_emulated(cfg, device)


def fp8_emulated(cfg: TrainConfig, device: torch.device) -> bool:
    return cfg.model.moe_impl == "grouped_fp8" and not fp8.fp8_kernel_available(torch.empty(0, device=device))


def compile_and_wrap(model, cfg: TrainConfig, procs: runs.Processes):
    """What runs the forward pass: the model, `torch.compile(model)` (CUDA by default), and with several
    processes its DDP wrapper (gradients are averaged across processes inside backward())."""
    runner = torch.compile(model) if uses_compile(cfg, procs.device) else model
    if procs.world_size > 1:
        device_ids = [procs.local_rank] if procs.device.type == "cuda" else None
        runner = torch.nn.parallel.DistributedDataParallel(runner, device_ids=device_ids)
    return runner


def prepare_inputs(cfg: TrainConfig, run: RunConfig, is_main: bool):
    """The tokenizer (01), checked against the shards' manifest (04); the tiny preset makes both where missing."""
    runs.check_data_flag(run.data, run.data_dir, cfg.size == "tiny", data_lib.read_manifest)
    if cfg.size == "tiny" and is_main:
        runs.make_tiny_inputs(run.tokenizer, run.data_dir, run.data)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    if not run.tokenizer.exists():
        raise house.NotFound(f"no tokenizer at {run.tokenizer}: run python 01_tokenizer.py first (or pass --tokenizer)")
    manifest = data_lib.read_manifest(run.data_dir, needs=("tokenizer_sha256", "vocab_size"))
    run.inputs = runs.input_hashes(run.tokenizer, run.data_dir)   # before they are read: a later change stops a save
    if is_main:   # a shard changed in place at the same size would train unnoticed: sha256 once per run (linnet: ≈ 5 s)
        house.shards.check_shards(run.data_dir, manifest["shards"], sha256=True)
    tokenizer = tokenizer_lib.load_tokenizer(run.tokenizer)
    runs.check_shards_fit(manifest, run.tokenizer, run.inputs["tokenizer_sha256"],
                          tokenizer.get_vocab_size(), run.data_dir, run.resume)
    if cfg.size == "linnet" and not torch.cuda.is_available():
        raise house.UserError("the linnet preset (497M parameters) needs a CUDA GPU: use --preset tiny on this machine")
    if cfg.size == "linnet" and tokenizer.get_vocab_size() != tokenizer_lib.LINNET_VOCAB_SIZE and is_main:
        print(f"warning: {run.tokenizer} has {tokenizer.get_vocab_size():,} tokens, not linnet's "
              f"{tokenizer_lib.LINNET_VOCAB_SIZE:,} (left over from a tiny run?): for the real job run python "
              f"01_tokenizer.py, then python 04_data.py")
    if run.hellaswag and is_main:   # found (or fetched) now, not at the first evaluation after hundreds of steps
        runs.hellaswag_file_or_stop(house.sources.find_hellaswag_file, house.sources.HELLASWAG_URL,
                                    house.sources.HELLASWAG_CACHE)
    return tokenizer


# --- 5. Checkpoints: atomic, complete, resumable, healthy -------------------------------------------------

def save_checkpoint(path: Path, model, optimizers, loader, step: int, cfg: TrainConfig, run: RunConfig) -> None:
    """Everything needed to continue exactly: written to a temp file, then renamed (never half-written)."""
    checkpoint = {
        "model": model_lib.export_linnet_state_dict(model),   # the published linnet layout (02)
        "config": cfg.model.to_dict(),
        "train_config": dataclasses.asdict(cfg),               # with the model's config nested in it
        "optimizers": [opt.state_dict() for opt in optimizers],
        "loader": loader.state_dict(),
        "rng": runs.rng_state(),
        "step": step,                                          # the number of finished steps
        "git_commit": runs.git_commit(),
        **run.inputs,                      # tokenizer_sha256, data_sha256 (04's manifest): as the run started
    }
    with house.atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def save_healthy_checkpoint(model, optimizers, loader, step: int, cfg: TrainConfig, run: RunConfig,
                            last_good: Path | None) -> Path:
    """Save only weights healthy THEMSELVES (finite, a healthy loss on one validation batch: `probe_loss`), else
    stop naming the last good checkpoint. A step's loss is measured BEFORE its update, so a healthy step can leave
    broken weights (--lr 1000: a fine loss, then 16,613 bits per byte). Returns the path."""
    runs.check_inputs_unchanged(run.inputs, run.tokenizer, run.data_dir, step, last_good)   # 01/04 rewrote one?
    if not math.isfinite(runs.weights_checksum(model).item()):   # NaN/inf in any weight makes the sum so
        stop_diverged(f"weights became inf/nan after step {step}, so they were not saved", last_good, cfg)
    probe = probe_loss(model, run.data_dir, cfg)
    if not (math.isfinite(probe) and probe <= loss_limit(cfg)):
        stop_diverged(f"the weights after step {step} give loss {probe:.4g} on a validation batch, so they were "
                      "not saved", last_good, cfg)
    save_checkpoint(run.checkpoint_path, model, optimizers, loader, step, cfg, run)
    return run.checkpoint_path


@torch.no_grad()
def probe_loss(model, data_dir: Path, cfg: TrainConfig) -> float:
    """The loss of the current weights on the first validation batch (cross-entropy, no balance term)."""
    device = next(model.parameters()).device
    x, y = next(data_lib.val_batches(data_dir, cfg.micro_batch, cfg.model.block_size, 1))     # (B, T), (B, T)
    was_training = model.training
    model.eval()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        _, loss = model(x.to(device), y.to(device))          # in eval mode: cross-entropy alone
    model.train(was_training)
    return loss.item()


def start_or_resume(cfg: TrainConfig, run: RunConfig, model, optimizers, loader, is_main: bool) -> int:
    """Fresh run: an empty log, step 0. `run.resume`: model, optimizers, data position and RNG states back as
    they were after the last saved step. Returns the number of finished steps."""
    if is_main:
        runs.remove_stale_temp_files(run.out)          # left by a save that was killed (kill -9, power cut)
    if not run.resume:
        if is_main:
            run.out.mkdir(parents=True, exist_ok=True)
            run.log_path.unlink(missing_ok=True)
        return 0
    checkpoint = load_checkpoint(run.checkpoint_path)
    refuse_changes_on_resume(saved_train_config(checkpoint), flat_fields(cfg))
    runs.refuse_other_inputs_on_resume(checkpoint, run.inputs, run.tokenizer, run.data_dir)
    if checkpoint["step"] >= cfg.steps_to_run:
        raise house.UserError(f"{run.checkpoint_path} has already finished {checkpoint['step']} steps and this run "
                              f"stops at {cfg.steps_to_run}: nothing to train; pass a larger --max-steps "
                              f"(the schedule plans {cfg.planned_steps})")
    model_lib.load_linnet_state_dict(model, checkpoint["model"])
    if not math.isfinite(runs.weights_checksum(model).item()):
        raise house.UserError(f"{house.shown(run.checkpoint_path)} holds inf/nan weights: it cannot continue; "
                              "start a new run (another --out, or --overwrite) with a lower --lr")
    for opt, state in zip(optimizers, checkpoint["optimizers"]):
        opt.load_state_dict(state)
    loader.load_state_dict(checkpoint["loader"])
    runs.set_rng_state(checkpoint["rng"])
    if is_main:
        runs.trim_log(run.log_path, checkpoint["step"])
        print(f"resumed from {run.checkpoint_path} at step {checkpoint['step']}")
    return checkpoint["step"]


def load_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise house.NotFound(f"--resume found no checkpoint at {path}: start without --resume, or pass --out")
    checkpoint = checkpoints.read_checkpoint_file(path)   # plain data only (RNG states too): a file never runs code
    missing = [k for k in ("model", "train_config", "optimizers", "loader", "rng", "step")
               if not (isinstance(checkpoint, dict) and k in checkpoint)]
    if missing:
        raise house.UserError(f"{house.shown(path)} is not a checkpoint 05 wrote (no {', '.join(missing[:3])}; a "
                              "bare state dict?): --resume needs 05's own latest.pt; start a new run with another --out")
    return checkpoint


def saved_train_config(checkpoint: dict, path="the checkpoint") -> TrainConfig:
    """The TrainConfig a checkpoint was trained with (a flat, older one is read too; an unknown field refused)."""
    saved = runs.nested_train_config(checkpoint)
    checkpoints.refuse_unknown_fields(checkpoint, path, model_lib.LLMConfig, TrainConfig, saved)
    return TrainConfig(**{**saved, "model": model_lib.LLMConfig(**saved["model"])})


# --- 6. What to watch during a run: the step's record, evaluation, the summary ----------------------------

def step_record(step, loss_value, grad_norm, stats, optimizers, seconds, cfg, peak_flops) -> dict:
    """One line of log.jsonl: loss, lr, grad norm, speed, MFU (model FLOPs ÷ the GPU's peak: linnet on an H100
    at 100 % would be ≈ 935k tokens/s), and per-layer expert load and router entropy."""
    tokens_per_s = cfg.total_batch_tokens / seconds
    peak_tokens_per_s = peak_flops / model_lib.flops_per_token(cfg.model, cfg.model.block_size) if peak_flops else None
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


def evaluate(model, step, cfg, device, data_dir, tokenizer, hellaswag_limit) -> dict:
    """Validation loss and bits per byte on the first `eval_batches` validation batches (None: all), and 06's
    HellaSwag (acc, acc_norm) on the first `hellaswag_limit` examples (None: all 10,042)."""
    bpb = eval_lib.bits_per_byte(model, data_dir, tokenizer, batch_size=cfg.micro_batch, seq_len=cfg.model.block_size,
                                 max_batches=cfg.eval_batches, device=device)
    record = {"kind": "eval", "step": step, "val_loss": bpb["loss"], "val_bpb": bpb["bpb"],
              "val_tokens": bpb["tokens"], "val_bytes": bpb["bytes"]}
    if hellaswag_limit != 0:
        examples = eval_lib.load_hellaswag(limit=hellaswag_limit)
        result = eval_lib.evaluate_hellaswag(model, tokenizer, examples, device=device, nanogpt=False)  # 06's token budget
        record.update(hellaswag_acc=result["acc"], hellaswag_acc_norm=result["acc_norm"],
                      hellaswag_n=result["n"], hellaswag_seconds=result["seconds"])
    return record


def moe_path(cfg: TrainConfig, device) -> str:
    """Which MoE code this run's forward takes: 02's choice (moe_impl "auto": fused where quack runs) in its dtype."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        impl = model_lib.MoE.choose_impl(argparse.Namespace(impl=cfg.model.moe_impl), torch.empty(0, device=device))
    ran = "quack's kernels" if device.type == "cuda" and moe_fast.quack_ready() else "its plain twins: quack does not run here"
    return f"fused ({ran})" if impl == "fused" else impl


def run_summary(cfg: TrainConfig, accum: int, max_steps: int, procs: runs.Processes, run: RunConfig) -> str:
    """Printed before the first step: the model, the batch, what validation scores, device and log, emulated FP8."""
    counts, seq = model_lib.count_parameters(cfg.model), cfg.model.block_size
    val = data_lib.ShardLoader(run.data_dir, "val", cfg.micro_batch, seq)
    batches = len(val) if cfg.eval_batches is None else min(cfg.eval_batches, len(val))
    whole = "the whole validation shard" if batches == len(val) else f"{batches} of its {len(val):,} batches"
    return (f"model: depth {cfg.model.depth}, {counts['total']:,} parameters ({counts['active']:,} active per token)\n"
            f"batch: {cfg.total_batch_tokens:,} tokens/step = micro-batch {cfg.micro_batch} × {seq} "
            f"× {accum} accumulation × {procs.world_size} process(es); {max_steps} steps of {cfg.planned_steps} planned\n"
            f"validation: {batches * cfg.micro_batch * seq:,} tokens ({whole}) every {cfg.eval_every} steps and at the end\n"
            f"device: {procs.device}{' (compiled)' if uses_compile(cfg, procs.device) else ''}; MoE: "
            f"{moe_path(cfg, procs.device)}; log: {run.log_path}"
            + (f"\nnote: --fp8 is emulated on {procs.device} (FP8 grouped GEMMs need an H100/H200): the same rounding, "
               "no speed-up, not compiled; evaluations during the run use it too" if fp8_emulated(cfg, procs.device) else ""))


# --- 7. Plots: what to watch in a run ---------------------------------------------------------------------

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
    steps, evals = runs.read_log(log_path)
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


# --- 8. Command line: a preset, the flags that change it, and what --resume may change --------------------

MODEL_FLAGS = ("depth", "block_size", "n_experts", "n_active_experts", "balance_coef", "moe_impl", "rope_impl",
               "zero_init_out", "x0_mix", "logit_softcap")   # flags of TrainConfig.model (02's LLMConfig)
FLAG_FIELDS = ("micro_batch", "total_batch_tokens", "planned_steps", "max_steps", "lr", "eval_every",
               "checkpoint_every", "hellaswag_every", "seed", "compile", "optimizer", "warmup_frac",
               "decay_start_frac", "decay_shape", "min_lr", "muon_momentum_warmup", "router_on_adamw", *MODEL_FLAGS)
FLAG_NAMES = {"n_active_experts": "--top-k", "block_size": "--seq-len"}   # fields whose flag is not --field-name
RESUME_MAY_CHANGE = ("max_steps", "eval_every", "hellaswag_every", "checkpoint_every", "compile")
WHAT_IT_CHANGES = {   # what a field changes, for --resume's refusal; any other field: "the run"
    **{f.name: "the model" for f in dataclasses.fields(model_lib.LLMConfig)}, "preset": "the model",
    "moe_impl": "the MoE code path of the model", "rope_impl": "the RoPE code path of the model",
    "balance_coef": "the loss", "block_size": "the model's context and the data order", "zero_init_out": "the model's init",
    **dict.fromkeys(("micro_batch", "seed"), "the data order"), "total_batch_tokens": "the data order and the step",
    **dict.fromkeys(("planned_steps", "lr", "warmup_frac", "decay_start_frac", "decay_shape", "min_lr"),
                    "the learning-rate schedule"), "optimizer": "the optimizer (its saved state would not fit)",
    "muon_momentum_warmup": "the optimizer's schedule", "router_on_adamw": "the optimizer"}
DEFAULT_TOKENIZER = (house.OUT_DIR / "01_tokenizer" / "tokenizer.json").resolve()
DEFAULT_DATA_DIR = (house.OUT_DIR / "04_data").resolve()


def flat_fields(cfg: TrainConfig) -> dict:
    """The fields of a TrainConfig and of its model in one dict (no name is in both): what --resume compares."""
    fields = dataclasses.asdict(cfg)
    return {"preset": fields.pop("preset"), **fields.pop("model"), **fields}


def refuse_changes_on_resume(saved: TrainConfig, new: dict) -> None:
    """--resume continues the saved run: cadences and max steps may change (`new`: the flags given, or every field),
    what changes the model, the data order or the schedule may not: one line naming the flag, never a silent drop."""
    runs.refuse_changes_on_resume(flat_fields(saved), new, RESUME_MAY_CHANGE, WHAT_IT_CHANGES, FLAG_NAMES)


def resume_command(cfg: TrainConfig, run: RunConfig) -> str:
    """The command that continues this run: --resume plus the flags the checkpoint does not hold."""
    more = (["--max-steps", str(cfg.max_steps)] if cfg.max_steps is not None else []) + \
        (["--no-hellaswag"] if not run.hellaswag else []) + (["--wandb"] if run.wandb else [])
    return runs.command(["python", "05_train.py", "--resume", "--preset", cfg.preset, "--out", house.shown(run.out)],
                        default_paths(run), more)


def eval_command(cfg: TrainConfig, run: RunConfig) -> str:
    """The 06 command that scores this run's checkpoint with its own tokenizer and shards."""
    return runs.command(["python", "06_eval.py", "--preset", cfg.size, "--checkpoint", house.shown(run.checkpoint_path)],
                        default_paths(run))


def default_paths(run: RunConfig) -> list:
    """(flag, path, its default): a command repeats the flags whose path is not the default."""
    return [("--tokenizer", run.tokenizer, DEFAULT_TOKENIZER), ("--data-dir", run.data_dir, DEFAULT_DATA_DIR)]


def configs_from_args(args) -> tuple[TrainConfig, RunConfig]:
    """A preset with the flags applied; with --resume, the checkpoint's config with the flags it may take."""
    run = RunConfig(out=args.out, tokenizer=args.tokenizer, data_dir=args.data_dir, data=args.data,
                    resume=args.resume, hellaswag=not args.no_hellaswag, wandb=args.wandb)
    if args.wandb and importlib.util.find_spec("wandb") is None:   # before anything of the run is touched
        raise house.UserError("--wandb needs the wandb package: pip install wandb (or drop --wandb)")
    flags = {f: getattr(args, f) for f in FLAG_FIELDS if getattr(args, f) is not None}
    if args.fp8:   # --fp8 is --moe-impl grouped_fp8; beside another --moe-impl, a contradiction
        if args.moe_impl not in (None, "grouped_fp8"):
            raise house.UserError(f"--fp8 and --moe-impl {args.moe_impl} contradict each other: --fp8 is --moe-impl "
                                  "grouped_fp8; pass one of them")
        flags["moe_impl"] = "grouped_fp8"
    if not args.resume:
        return preset_with_flags(args.preset, flags), run
    runs.refuse_resume_without_checkpoint(run.checkpoint_path, run.log_path)   # a log but no checkpoint: one line
    saved = saved_train_config(runs.read_train_config(run.checkpoint_path, load_checkpoint), run.checkpoint_path)
    if args.fp8 and saved.model.moe_impl != "grouped_fp8":
        raise house.UserError(f"--fp8 cannot change on --resume (the checkpoint has moe_impl {saved.model.moe_impl}): "
                              "it changes the MoE code path of the model; drop --fp8, or start a new run with another --out")
    if args.preset_given:
        flags["preset"] = args.preset
    refuse_changes_on_resume(saved, flags)   # so every model flag left equals the checkpoint's
    cfg = dataclasses.replace(saved, **{k: v for k, v in flags.items() if k not in MODEL_FLAGS})
    runs.check_schedule(dataclasses.asdict(cfg), True, lambda step: lr_multiplier(step, cfg))
    return cfg, run


def preset_with_flags(preset: str, flags: dict) -> TrainConfig:
    """The preset with the flags applied, checked before any work. Its model is made anew from the fields the
    preset gives and the model flags; `--n-experts 1` is the dense model (`dense_equal_active`)."""
    model_flags = {k: v for k, v in flags.items() if k in MODEL_FLAGS}
    dense = model_flags.get("n_experts") == 1
    if dense:   # its one FFN is widened to the preset's top_k × ffn: --top-k 1 may be said, another may not
        if model_flags.pop("n_active_experts", 1) != 1:
            raise house.UserError(f"--top-k {flags['n_active_experts']} with --n-experts 1: a dense model runs its "
                                  f"one FFN (widened to match the MoE's active parameters); drop --top-k")
        del model_flags["n_experts"]
    base = PRESETS[preset].model
    top_k, n_experts = (model_flags.get(k, getattr(base, k)) for k in ("n_active_experts", "n_experts"))
    if top_k > n_experts:
        raise house.UserError(f"--top-k {top_k} is more than --n-experts {n_experts}: a token can use at most every "
                              f"expert; lower --top-k")
    try:
        model = model_lib.LLMConfig(**{**MODEL_FIELDS[preset], **model_flags})
    except ValueError as e:   # e.g. a --depth whose heads do not divide into key/value groups
        raise house.UserError(f"{e}: the model flags give no model; change --depth") from None
    cfg = dataclasses.replace(PRESETS[preset], model=model, **{k: v for k, v in flags.items() if k not in MODEL_FLAGS})
    cfg = dense_equal_active(cfg) if dense else cfg
    grad_accum_steps(cfg, int(os.environ.get("WORLD_SIZE", 1)))   # the batch divides (torchrun: WORLD_SIZE processes)
    runs.check_schedule(dataclasses.asdict(cfg), False, lambda step: lr_multiplier(step, cfg))   # lr never climbs
    return cfg


def parse_args(argv=None):
    """The flags; paths made absolute (01 and 04 may run as subprocesses from the repo root)."""
    parser = house.ArgumentParser(
        description="Train linnet-497M (or the tiny preset) with linnet's recipe. Without a CUDA GPU the default "
                    "runs the tiny preset end to end (running 01_tokenizer.py and 04_data.py first if needed).",
        formatter_class=house.HelpFormatter)
    house.add_common_args(parser, "05_train", presets=tuple(PRESETS))
    add_flags(parser)
    add_knob_flags(parser)
    args = parser.parse_args(argv)
    args.preset_given = house.tiny_without_gpu(args, argv, "the linnet preset needs an 80 GB GPU")
    args.tokenizer = (args.tokenizer or DEFAULT_TOKENIZER).resolve()
    if args.tokenizer.is_dir():                       # the folder 01 wrote (or an exported model's)
        args.tokenizer = args.tokenizer / "tokenizer.json"
    args.data_dir = (args.data_dir or DEFAULT_DATA_DIR).resolve()
    args.out = args.out.resolve()
    args.data = args.data.resolve() if args.data else None
    return args


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Paths, --resume, and one flag per TrainConfig field worth changing (FLAG_FIELDS)."""
    add, pos = parser.add_argument, house.positive_int
    add("--tokenizer", type=Path, help="tokenizer.json from 01 (default: out/01_tokenizer/tokenizer.json)")
    add("--data-dir", type=Path, help="shards + manifest.json from 04 (default: out/04_data)")
    add("--data", type=Path, help="tiny preset only: text to build the tokenizer and shards from if they are missing "
        "(default: the corpus in embedded/; `hub` = a few MB of fineweb-edu from the Hugging Face Hub)")
    add("--resume", action="store_true", help="continue from <out>/latest.pt on the exact next batch; may change "
        "--max-steps, the eval/HellaSwag/checkpoint cadences, --compile, --no-hellaswag, --wandb, nothing else")
    add("--overwrite", action="store_true", help="start a new run in an --out that holds one, replacing its "
        "latest.pt and log.jsonl (without it, 05 refuses: a finished run is never replaced unasked)")
    add("--max-steps", type=pos, help="stop after this many steps (linnet: 5281); the schedule still follows --planned-steps")
    add("--planned-steps", type=pos, help="length of the lr schedule (linnet: 18965)")
    add("--micro-batch", type=pos, help="sequences per forward pass (linnet on 80 GB: 32)")
    add("--seq-len", dest="block_size", metavar="SEQ_LEN", type=pos, help="tokens per sequence, also the model's block size (linnet: 1024)")
    add("--total-batch-tokens", type=pos, help="tokens per optimizer step (linnet: 524288)")
    add("--lr", type=house.positive_float, help="AdamW peak learning rate; Muon uses 10× (linnet: 1e-3)")
    add("--depth", type=pos, help="model depth; everything else follows (linnet: 12)")
    add("--moe-impl", choices=list(model_lib.MOE_IMPLS), help="MoE code path (02; the presets use auto; grouped_fp8 = --fp8)")
    add("--rope-impl", choices=list(model_lib.ROPE_IMPLS), help="RoPE + QK-norm code path (02; fused = fast/'s kernel)")
    add("--fp8", action="store_true", help="the expert GEMMs in FP8 (fast/fp8.py): an H100/H200 kernel, emulated "
        "elsewhere (same rounding, no speed); evaluations during the run too, 06 scores in bf16")
    add("--eval-every", type=pos, help="steps between validation evaluations")
    add("--hellaswag-every", type=pos, help="steps between HellaSwag evaluations (fixed subset)")
    add("--no-hellaswag", action="store_true", help="skip HellaSwag during and after training")
    add("--checkpoint-every", type=pos, help="steps between checkpoints")
    add("--seed", type=house.seed, help="seed for init and data order")
    add("--wandb", action="store_true", help="also log to Weights & Biases (pip install wandb)")
    add("--compile", action=argparse.BooleanOptionalAction, help="torch.compile the model (default: on with CUDA, off on CPU)")


def add_knob_flags(parser: argparse.ArgumentParser) -> None:
    """The knobs that break linnet's recipe (ablations), and the linnet+ switches that improve on it."""
    knob = parser.add_argument_group("knobs to break the recipe (ablations; README: Knobs to break the recipe)").add_argument
    knob("--balance-coef", type=house.non_negative_float, help="weight of the load-balancing term in the loss "
         "(linnet: 0.01; 0 = off)")
    knob("--optimizer", choices=["muon", "adamw"], help="muon: Muon for matrices + AdamW for the rest (linnet); "
         "adamw: one AdamW for every parameter at the AdamW --lr")
    knob("--n-experts", type=house.positive_int, help="experts per layer (linnet: 8). 1 = the dense model at equal "
         "active parameters: one FFN of width top-k × F (linnet: 4096)")
    knob("--top-k", dest="n_active_experts", type=house.positive_int, help="experts each token uses (linnet: 2)")
    knob("--warmup-frac", type=house.probability, help="fraction of the planned steps spent warming the lr up "
         "(linnet: 0.1; 0 = start at the peak lr)")
    knob("--decay-start-frac", type=house.probability, help="fraction of the planned steps after which the lr "
         "decays (linnet: 0.8)")
    knob("--decay-shape", choices=list(DECAY_SHAPES), help="how the lr falls to --min-lr (linnet: cosine)")
    knob("--min-lr", type=house.non_negative_float, help="AdamW lr at the end; Muon's is 10× (linnet: 6e-5; tiny: 3e-4)")
    plus = parser.add_argument_group("linnet+ switches (off = linnet; --preset linnet-plus / tiny-plus turn on the ones "
                                     "that paid; BENCHMARKS.md \"linnet+\" has each one's measured effect)").add_argument
    plus("--zero-init-out", action="store_true", default=None,
         help="output projections (attention and experts) start at 0: each block starts as the identity")
    plus("--x0-mix", action="store_true", default=None,
         help="each block reads a·x + b·x0 (x0: the token embedding), a and b learned per layer")
    plus("--logit-softcap", type=house.non_negative_float, help="logits = c·tanh(logits / c), e.g. 15 (0 = off)")
    plus("--muon-momentum-warmup", action="store_true", default=None,
         help="Muon momentum from 0.85 to 0.95 over the first 300 steps (linnet: 0.95 throughout)")
    plus("--router-on-adamw", action="store_true", default=None, help="the routers' weights on AdamW instead of Muon (03)")


@house.speaks
def main(argv=None) -> None:
    started, run = time.time(), None
    try:
        args = parse_args(argv)
        cfg, run = configs_from_args(args)   # bad numbers and refused flags stop here, in one line
        house.check_writable(run.out)   # so does a read-only or impossible --out: before any work, nothing written
        with house.folder_lock(run.out) if house.is_first_process() else contextlib.nullcontext():
            # a finished run is never replaced without being asked
            runs.refuse_to_replace_a_run(run.out, [run.checkpoint_path, run.log_path], run.resume or args.overwrite)
            train(cfg, run)
    except (KeyboardInterrupt, runs.Interrupted) as stop:   # a signal: saved (the loop said what next) or not
        if not getattr(stop, "saved", False):
            again = ["python", "05_train.py", *(sys.argv[1:] if argv is None else argv)]   # the command as given
            after = runs.what_to_run_next(run.checkpoint_path, run.log_path, 0 if run.resume else started,
                                          cfg.steps_to_run, load_checkpoint, resume_command(cfg, run), again) if run else ""
            print(f"\ninterrupted: stopped without saving (checkpoints written before are untouched){after}", file=sys.stderr)
        raise SystemExit(128 + getattr(stop, "signum", signal.SIGINT)) from None


if __name__ == "__main__":
    main()
