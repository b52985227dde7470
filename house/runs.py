"""A training run's plumbing (05 uses it): processes and DDP, seeds and RNG states, Ctrl-C, SIGTERM and SIGHUP (and
what to run after one), the run log (and W&B), checks across DDP replicas, peak FLOPs, the inputs a checkpoint
names, the schedule's and the resume's refusals, running out of memory.

Nothing here changes what is learned. It takes tensors, dicts, paths and callables, never a lesson: the
fields of a config arrive as a dict, a checkpoint reader as a function."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from house.cli import NotFound, UserError, is_out_of_memory, keep_printing, nohup, progress
from house.files import atomic_path, pid_is_alive
from house.paths import REPO_DIR, shown
from house.text import list_text_files


# --- Processes: one without torchrun, WORLD_SIZE with it -----------------------------------------------------

@dataclasses.dataclass
class Processes:
    """This process's place in the run: 1 process without torchrun, world_size with it."""
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_processes(one_cpu_thread: bool = False) -> Processes:
    """Start the process group when launched by torchrun (NCCL on GPUs, gloo on CPUs); pick the device.

    `one_cpu_thread` (05's tiny preset): 64-wide matrices gain nothing from more threads, and on a busy
    machine spinning OpenMP threads made the tiny run 10× slower (1.6 vs 19.5 steps/s on 2 shared cores)."""
    rank, local_rank, world_size = 0, 0, 1
    if "RANK" in os.environ:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        rank, local_rank, world_size = dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size()
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and one_cpu_thread:
        torch.set_num_threads(1)
    return Processes(rank, local_rank, world_size, device)


def destroy_processes() -> None:
    """DDP: leave the process group (nothing to do in a single process)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(loss: torch.Tensor, world_size: int) -> float:
    """The loss of the whole global batch: DDP averages it over processes. `.item()` waits for the GPU."""
    if world_size > 1:
        dist.all_reduce(loss, op=dist.ReduceOp.SUM)
        loss /= world_size
    return loss.item()


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
        return   # NaN never equals NaN: non-finite weights are the divergence guard's to report
    if len(set(values)) != 1:
        raise UserError(f"the {world_size} DDP processes hold different weights "
                        f"(checksums {[g.item() for g in gathered]}): the run is no longer data-parallel")
    if dist.get_rank() == 0:
        print(f"replicas agree: all {world_size} processes hold identical weights (checksum {checksum.item():.6f})")


H100_BF16_PEAK_FLOPS = 989e12   # dense bf16, H100 SXM (docs/ARCHITECTURE.md): 100 % MFU ≈ 935k tokens/s for linnet


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


# --- Seeds and random-number states (a checkpoint holds them: resume continues the same streams) ----------

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every stream's state as plain data (tuples, lists, ints, tensors), so torch.load(weights_only=True) reads
    it back: numpy's (name, keys, pos, has_gauss, gauss) keeps its 624 keys as a list, not a pickled ndarray."""
    name, keys, *rest = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.tolist(), *rest], "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- What a checkpoint names besides its tensors: the code, the shards ------------------------------------

def git_commit(repo: Path = REPO_DIR) -> str:
    """HEAD's hash; with a dirty tree, the files that differ from it too, so a checkpoint never names a clean
    commit its code was not: "34f7400d… (uncommitted changes: 05_train.py)"."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal"], cwd=repo,
                                capture_output=True, text=True, timeout=10).stdout if head else ""
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = [line[3:].strip('"') for line in status.splitlines() if len(line) > 3]
    if not changed:
        return head or "unknown"
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    return f"{head} (uncommitted changes: {', '.join(changed[:5])}{more})"


def data_sha256(data_dir: Path) -> str:
    """Which shards: the SHA-256 of 04's manifest.json (it lists every shard with its own hash)."""
    return hashlib.sha256((Path(data_dir) / "manifest.json").read_bytes()).hexdigest()


def input_hashes(tokenizer: Path, data_dir: Path) -> dict:
    """What a run is made from, taken ONCE when it starts: the SHA-256 of its tokenizer file and of the shards'
    manifest. Every checkpoint of the run carries these, never those of a file that replaced one later."""
    return {"tokenizer_sha256": hashlib.sha256(Path(tokenizer).read_bytes()).hexdigest(),
            "data_sha256": data_sha256(data_dir)}


def check_inputs_unchanged(inputs: dict, tokenizer: Path, data_dir: Path, step: int, last_good: Path | None) -> None:
    """Before each save: the tokenizer and the manifest are still the files the run started with (`inputs`).
    `01 --overwrite` or 04 under a running run would make its checkpoint claim inputs it was not trained on: one
    line instead, before anything is written (the last checkpoint, `last_good`, stays as it was)."""
    for key, what, path in (("tokenizer_sha256", "tokenizer", Path(tokenizer)),
                            ("data_sha256", "shards' manifest", Path(data_dir) / "manifest.json")):
        try:
            now = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            now = None
        if now == inputs[key]:
            continue
        change = "was removed" if now is None else f"changed (sha256 {inputs[key][:12]}… when the run started, {now[:12]}… now)"
        kept = f"{shown(last_good)} is the last checkpoint, made with the run's own" if last_good else \
            "this run wrote no checkpoint"
        raise UserError(f"the {what} {shown(path)} {change} while this run trained on it: step {step} was not saved "
                        f"and the run stopped; {kept}; put back the {what} the run started with and continue with "
                        f"--resume, or start a new run on the new one")


STALE_TEMP = re.compile(r"\.(latest\.pt|log\.jsonl|[a-z_]+\.png)\.tmp(\d+)")   # house.atomic_path's names


def remove_stale_temp_files(out: Path) -> None:
    """Remove the temp files of 05's own outputs (`.latest.pt.tmp<pid>`, ...) that a killed process left in
    `out` (atomic_path removes them itself on any exit it sees; not on kill -9). A live pid's file is kept."""
    for path in sorted(out.glob(".*.tmp*")) if out.is_dir() else []:
        match = STALE_TEMP.fullmatch(path.name)
        if match and not pid_is_alive(int(match.group(2))):
            path.unlink(missing_ok=True)
            print(f"removed {path.name} from {shown(out)}: a temp file left by a killed save (the complete "
                  f"files beside it are untouched)")


def read_train_config(path: Path, load) -> dict:
    """A checkpoint memory-mapped (its tensors are not read): enough to see its train_config. Anything else
    goes to `load(path)` (05's load_checkpoint), which says in one line what is wrong with the file."""
    if not path.exists():
        return load(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)   # data, never code
    except Exception:
        return load(path)
    return checkpoint if isinstance(checkpoint, dict) and "train_config" in checkpoint else load(path)


FLAT_MODEL_FIELDS = ("depth", "n_experts", "n_active_experts", "balance_coef", "moe_impl", "zero_init_out", "x0_mix",
                     "logit_softcap")   # beside the training fields in a train_config written before 05 nested them


def nested_train_config(checkpoint: dict) -> dict:
    """A checkpoint's train_config with the model's fields under "model", as 05 writes it; one written before
    (model fields flat, `seq_len`, `model_overrides`, the vocabulary in the checkpoint's "config") is converted."""
    saved = dict(checkpoint["train_config"])
    if "model" not in saved:
        model = {k: saved.pop(k) for k in FLAT_MODEL_FIELDS if k in saved}
        model.update(saved.pop("model_overrides", {}), block_size=saved.pop("seq_len", 1024),
                     vocab_size=checkpoint.get("config", {}).get("vocab_size", 32768))
        saved["model"] = model
    return saved


def refuse_changes_on_resume(saved: dict, new: dict, may_change, what_it_changes: dict, flag_names: dict) -> None:
    """--resume continues the saved run: the fields in `may_change` may differ, any other may not. One line
    names the flag (`flag_names`, else --field-name) and what it changes (`what_it_changes`, else "the run")."""
    for name, old in saved.items():
        if name in new and new[name] != old and name not in may_change:
            flag = flag_names.get(name, "--" + name.replace("_", "-"))
            raise UserError(f"{flag} {new[name]} cannot change on --resume (the checkpoint has {old}): it changes "
                            f"{what_it_changes.get(name, 'the run')}; drop {flag}, or start a new run with another --out")


def refuse_other_inputs_on_resume(checkpoint: dict, inputs: dict, tokenizer: Path, data_dir: Path) -> None:
    """The tokenizer and the shards must be the ones the checkpoint was trained on (it names their SHA-256s;
    `inputs`: this run's, input_hashes)."""
    if checkpoint["tokenizer_sha256"] != inputs["tokenizer_sha256"]:
        raise UserError(f"--tokenizer {shown(tokenizer)} is not the tokenizer this checkpoint was trained with: it "
                        "changes the model's vocabulary; pass the --tokenizer of the first run")
    if checkpoint.get("data_sha256", inputs["data_sha256"]) != inputs["data_sha256"]:
        raise UserError(f"--data-dir {shown(data_dir)} holds other shards than this checkpoint was trained on: it "
                        "changes the data order; pass the --data-dir of the first run")


def refuse_to_replace_a_run(out: Path, files: list[Path], asked: bool) -> None:
    """A new run in an `out` that holds one of `files` (the checkpoint first, then the log) stops in one line,
    before anything is deleted or written, unless `asked` (--resume continues it, --overwrite replaces it). A log
    without a checkpoint (a run stopped before its first save) has nothing to continue: the line says so."""
    held = [p.name for p in files if p.exists()]
    if asked or not held:
        return
    if not files[0].exists():
        raise UserError(f"{shown(out)} holds the log of a run that stopped before its first checkpoint "
                        f"({' and '.join(held)}): nothing to continue; start it again with --overwrite (it replaces "
                        f"that log), or pass another --out")
    raise UserError(f"{shown(out)} already holds a run ({' and '.join(held)}): continue it with --resume, start a "
                    f"new one with another --out, or replace it with --overwrite")


def refuse_resume_without_checkpoint(checkpoint: Path, log: Path) -> None:
    """--resume where a run left its log but no checkpoint (it stopped before its first save): one line whose
    advice works, instead of "start without --resume", which refuses that folder in turn (it holds a log)."""
    if log.exists() and not checkpoint.exists():
        raise NotFound(f"--resume found no checkpoint at {shown(checkpoint)}: the run there stopped before its first "
                       f"save (its {log.name} is all it left), so there is nothing to continue; start it again "
                       f"without --resume and with --overwrite (it replaces that log), or pass another --out")


def check_schedule(cfg: dict, resume: bool, lr_at) -> None:
    """The learning-rate schedule of `cfg` (05's TrainConfig as a dict) must make sense, said in one line before any
    work: --max-steps never past --planned-steps (capped in silence before); on a new run the lr's end never above
    its peak (--min-lr above --lr: the decay would climb) and the warm-up over before the decay starts (else the lr
    falls from the peak in one step). `lr_at(step)`: the schedule's fraction of the peak (05's lr_multiplier)."""
    max_steps, planned, lr, min_lr = cfg["max_steps"], cfg["planned_steps"], cfg["lr"], cfg["min_lr"]
    if max_steps is not None and max_steps > planned:
        fix = (f"a run's schedule cannot grow on --resume: start a new run with --planned-steps {max_steps}" if resume
               else f"pass --planned-steps {max_steps} too, or a smaller --max-steps")
        raise UserError(f"--max-steps {max_steps} is past the {planned} steps the {cfg['preset']} schedule plans (the "
                        f"lr reaches its minimum there): {fix}")
    if resume:
        return   # a saved run's schedule cannot change on --resume (refuse_changes_on_resume)
    if min_lr > lr:
        raise UserError(f"--min-lr {min_lr:g} is above --lr {lr:g}: the decay would climb to {min_lr / lr:.3g}× the "
                        f"peak instead of falling; pass a --min-lr of at most {lr:g} (e.g. --min-lr {lr / 10:g})")
    warmup_frac, decay_frac = cfg["warmup_frac"], cfg["decay_start_frac"]
    if warmup_frac > decay_frac:
        end = max(1, int(warmup_frac * planned))   # the first step after the warm-up
        raise UserError(f"--warmup-frac {warmup_frac:g} ends the warm-up after --decay-start-frac {decay_frac:g} "
                        f"starts the decay: at step {end} the lr would fall from the peak to {lr_at(end):.2g} of it "
                        f"in one step; pass a --warmup-frac of at most {decay_frac:g}, or a --decay-start-frac of at "
                        f"least {warmup_frac:g}")


# --- The inputs a run reads: 01's tokenizer, 04's shards ---------------------------------------------------

def make_tiny_inputs(tokenizer: Path, data_dir: Path, data: Path | None) -> None:
    """The tiny preset makes its own tokenizer and shards where they are missing: python 01_tokenizer.py and
    python 04_data.py --preset tiny, as subprocesses (from `data`, the text given with --data, if any)."""
    data_args = ["--data", str(data)] if data else []
    if not tokenizer.exists() and tokenizer.name != "tokenizer.json":   # 01 could not make this name
        raise NotFound(f"no tokenizer at {tokenizer}: pass an existing one, or a path ending in tokenizer.json for "
                       f"python 01_tokenizer.py to make it there")
    if not tokenizer.exists():
        run_lesson("01_tokenizer.py", "--preset", "tiny", "--out", str(tokenizer.parent), *data_args)
    if not (data_dir / "manifest.json").exists():
        run_lesson("04_data.py", "--preset", "tiny", "--tokenizer", str(tokenizer), "--out", str(data_dir), *data_args)


def hellaswag_file_or_stop(find, url: str, cache: Path) -> Path:
    """06's HellaSwag file (`find()`: cached, the course copy, or downloaded from `url` into `cache`); without
    one, one line that says what to do."""
    try:
        return find()
    except UserError:
        raise NotFound(f"no HellaSwag file and no internet: download {url} to {shown(cache)}, or train without it: "
                       f"--no-hellaswag") from None


def command(first: list, paths: list, last: list = ()) -> str:
    """`first`, then each (flag, path, default) of `paths` whose path is not its default, then `last`: quoted,
    so that a path with spaces can be pasted as it is."""
    given = [part for flag, path, default in paths if path != default for part in (flag, shown(path))]
    return shlex.join([*first, *given, *last])


def run_lesson(script: str, *args: str) -> None:
    """Run an earlier lesson as a subprocess (the tiny preset makes its own tokenizer and shards). Where
    sys.stdout or sys.stderr is not this process's own (a notebook cell, contextlib.redirect_stdout, pytest's
    capsys), what it prints passes through them line by line, so the cell shows it in its place (a child writing
    to the inherited file descriptors would bypass Jupyter); otherwise (a terminal, a log file) it writes to
    them itself, and a terminal keeps its live progress bars."""
    command = shlex.join(["python", script, *args])       # quoted: a path with spaces can be copied as is
    print(f"running: {command}", flush=True)
    argv = [sys.executable, str(REPO_DIR / script), *args]
    if sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__:
        returncode = subprocess.run(argv, cwd=REPO_DIR).returncode
    else:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}   # each line as it comes
        with subprocess.Popen(argv, cwd=REPO_DIR, env=env, text=True, encoding="utf-8", errors="replace",
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
            errors = threading.Thread(target=echo_lines, args=(child.stderr, "stderr"), daemon=True)
            errors.start()
            echo_lines(child.stdout, "stdout")
            errors.join()
        returncode = child.returncode
    if returncode != 0:
        raise UserError(f"{command} failed (see above): fix that first")


def echo_lines(pipe, stream: str) -> None:
    """Print every line read from `pipe` to sys.stdout or sys.stderr (looked up per line: a notebook or
    contextlib.redirect_stdout may swap them)."""
    for line in pipe:
        print(line, end="", file=getattr(sys, stream), flush=True)


def check_data_flag(data: Path | None, data_dir: Path, tiny: bool, read_manifest) -> None:
    """--data builds the tiny preset's tokenizer and shards when they are missing. Given while shards exist, it
    must name what they were made from (`read_manifest(data_dir)`, 04's, lists it): a --data that would be
    ignored is refused, never dropped in silence."""
    if data is None:
        return
    if not tiny:
        raise UserError("--data is for the tiny preset (it builds the tokenizer and shards from it); for linnet run "
                        "python 01_tokenizer.py and python 04_data.py on your text, then pass --tokenizer and --data-dir")
    files = {str(f.resolve()) for f in list_text_files([data])}   # a missing path: one line here
    if not (data_dir / "manifest.json").exists():
        return
    made_from = set()
    for source in read_manifest(data_dir).get("sources", []):
        location = source.get("location", [])
        made_from |= {str(Path(p).resolve()) for p in (location if isinstance(location, list) else [location])}
    if made_from != files:
        raise UserError(f"--data {shown(data)} is not the text the shards in {shown(data_dir)} were made from: drop "
                        f"--data to train on those shards, or pass a new --data-dir and --tokenizer to build new ones from it")


def check_shards_fit(manifest: dict, tokenizer: Path, tokenizer_sha256: str, vocab_size: int, data_dir: Path,
                     resume: bool) -> None:
    """The shards' manifest (04) must name this tokenizer, by its SHA-256 and its vocabulary size."""
    if manifest["tokenizer_sha256"] != tokenizer_sha256:
        fix = ("pass the --tokenizer the run was started with (its shards need it)" if resume else
               f"pass the matching --tokenizer, or make shards for this one in a new folder: python 04_data.py "
               f"--tokenizer {shown(tokenizer)} --out NEW_DIR, then --data-dir NEW_DIR")
        raise UserError(f"the shards in {shown(data_dir)} were made with another tokenizer than {shown(tokenizer)}: {fix}")
    if manifest["vocab_size"] != vocab_size:
        raise UserError(f"manifest vocab {manifest['vocab_size']} != tokenizer vocab {vocab_size}: rerun python "
                        f"04_data.py with this tokenizer")


# --- Ctrl-C, SIGTERM and SIGHUP, and what to run after one ----------------------------------------------

class Interrupted(Exception):
    """The run stopped on a signal: after saving (`saved`, a first signal during training) or at once (a second one
    outside a save, or one outside the loop). A script's main exits with status 128 + signum (130 for Ctrl-C, 143
    for SIGTERM, 129 for SIGHUP)."""

    def __init__(self, signum: int, saved: bool = False):
        super().__init__(signum)
        self.signum, self.saved = signum, saved


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class StopRequest:
    """Ctrl-C (SIGINT), SIGTERM (what a scheduler sends before it preempts a job) or SIGHUP (the terminal went away:
    a closed window, a dropped ssh) during training: the first signal sets `requested` to its number (the loop
    finishes its step, saves and exits with status 128 + signal: 130, 143, 129, and a line that says
    "interrupted"); a second one stops at once without saving — except while a checkpoint is being written
    (`saving()`), which it never cuts short. After SIGHUP nothing printed can stop the run (`keep_printing`)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.requested: int | None = None
        self.in_save = False
        self.previous, self.streams = {}, (sys.stdout, sys.stderr)

    def install(self) -> StopRequest:
        self.streams = sys.stdout, sys.stderr
        keep_printing(on_lost=self.terminal_lost)   # a write that fails (the terminal is gone) stops as SIGHUP does
        for sig in self.SIGNALS:
            if not nohup(sig):   # `nohup`: an ignored SIGHUP stays ignored, the run outlives its terminal
                self.previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self.on_signal)
        return self

    def terminal_lost(self) -> None:
        """A write to the terminal failed: it went away, its SIGHUP maybe not yet here. Save and stop as on it."""
        if self.requested is None:
            self.requested = signal.SIGHUP

    def on_signal(self, signum, frame) -> None:
        if signum == signal.SIGHUP:
            keep_printing()
        name = signal_name(signum)
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
        if self.requested != signal.SIGHUP:   # after a hangup, printing stays harmless to the end
            sys.stdout, sys.stderr = self.streams


def what_to_run_next(checkpoint: Path, log: Path, since: float, steps_to_run: int, read, resume: str,
                     again: list[str]) -> str:
    """After a stop that saved nothing now (a second signal, or one outside the loop): what to run, from what the
    folder holds. A checkpoint written since `since` (0: any; a --resume run continues the one it read) → `resume`,
    the command that continues it (or, holding every step, that the run is complete); a log without one → `again`
    (the command as given) with --overwrite; else `again` itself. `read(path)`: the checkpoint as a dict."""
    if checkpoint.exists() and checkpoint.stat().st_mtime >= since:
        with contextlib.suppress(Exception):   # unreadable: --resume says so in one line
            step = read_train_config(checkpoint, read)["step"]
            if step >= steps_to_run:
                return f"; the run is complete: {shown(checkpoint)} holds all {step} steps"
        return f"; continue with {resume}"
    again = [a for a in again if a != "--resume"]
    if log.exists() or checkpoint.exists():   # a log with no checkpoint, or the checkpoint --overwrite replaces
        again += [] if "--overwrite" in again else ["--overwrite"]
        return f"; nothing of this run was saved: start it again with {shlex.join(again)}"
    return f"; start it again with {shlex.join(again)}"


def out_of_memory(error: BaseException, micro_batch: int, block_size: int, total_batch_tokens: int) -> BaseException:
    """Running out of memory during training (CUDA's, or the CPU's: house.is_out_of_memory) as one line that names
    a micro-batch needing less (the step's tokens stay: more accumulation); any other error is returned as it is."""
    if not is_out_of_memory(error):
        return error
    where = "CUDA" if isinstance(error, torch.cuda.OutOfMemoryError) or "CUDA" in str(error) else "CPU (RAM)"
    fix = (f"try --micro-batch {max(1, micro_batch // 2)} (the step stays {total_batch_tokens:,} tokens)"
           if micro_batch > 1 else "micro-batch 1 is the smallest: try a smaller --depth or --seq-len")
    return UserError(f"{where} out of memory with micro-batch {micro_batch} × {block_size}: {fix}")


# --- The run log: log.jsonl, the progress bar, W&B --------------------------------------------------------

class RunLog:
    """log.jsonl (one JSON line per step and per evaluation), the progress bar, and W&B when given its config
    (`wandb_config`, the run's config as a dict). Only the main process writes (`enabled`); on the others every
    method does nothing."""

    def __init__(self, path: Path, start_step: int, max_steps: int, enabled: bool, wandb_config: dict | None = None):
        self.path, self.enabled, self.start_step, self.max_steps = path, enabled, start_step, max_steps
        self.wandb_run = start_wandb(wandb_config, path.parent) if (wandb_config is not None and enabled) else None
        self.progress = None   # the bar starts with the first step, below the lines printed before it

    def step(self, record: dict) -> None:
        if self.enabled:
            append_log(self.path, record, self.wandb_run)
            if self.progress is None:   # house.progress: in a log (not a terminal) a plain line every 30 s
                self.progress = progress(initial=self.start_step, total=self.max_steps, unit="step",
                                         dynamic_ncols=True, file=sys.stdout, mininterval=1.0)
            self.progress.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}", refresh=False)
            self.progress.update(1)   # draws the bar (and the postfix above) when its interval has passed

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


def eval_line(record: dict) -> str:
    line = f"step {record['step']}: val loss {record['val_loss']:.4f}, {record['val_bpb']:.4f} bits/byte"
    if "hellaswag_acc" in record:
        line += (f", HellaSwag acc {100 * record['hellaswag_acc']:.1f} % / acc_norm "
                 f"{100 * record['hellaswag_acc_norm']:.1f} % on {record['hellaswag_n']} examples")
    return line


def append_log(path: Path, record: dict, wandb_run=None) -> None:
    """One JSON line per step or evaluation; also sent to Weights & Biases when --wandb is on."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    if wandb_run is not None:
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        wandb_run.log(scalars, step=record["step"])


def start_wandb(config: dict, out_dir: Path):
    """--wandb: log every step to Weights & Biases too (optional: `pip install wandb`, then `wandb login`)."""
    try:
        import wandb
    except ImportError:
        raise UserError("--wandb needs the wandb package: pip install wandb (or drop --wandb)") from None
    return wandb.init(project="linnet-from-scratch", name=out_dir.name, config=config, dir=str(out_dir))


def trim_log(path: Path, finished_steps: int) -> None:
    """On resume, forget the steps a killed run logged after its last checkpoint (they are redone), and a
    line it was killed in the middle of (`log_records`)."""
    if not path.exists():
        return
    records = log_records(path)
    kept = [r for r in records if r["step"] < finished_steps
            or (r.get("kind") == "eval" and r["step"] == finished_steps)]   # the eval after the last saved step
    with atomic_path(path) as tmp:
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
                print(f"note: dropped line {n} of {shown(path)}: torn (the run was killed while writing it)")
                break
            raise UserError(f"{shown(path)} line {n} is damaged (not a JSON record with a step): delete that line "
                            f"(or the whole log: training does not need it, only the plots) and run again") from None
        records.append(record)
    return records
