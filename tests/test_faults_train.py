"""Faults around 05_train.py, one per test: nonsense numbers, an --out that cannot be written, a run that
diverges (its named checkpoint must evaluate to finite numbers), a kill -9 in the middle of a save; every signal
a closing terminal sends (SIGHUP too) saves, and each command printed after a stop is followed and must finish
the run; a schedule that contradicts itself, CPU out of memory, a config field from another version.

Every fault must end with exit status != 0, exactly one line on stderr starting with "error:", no
"Traceback", and nothing half-written. The tests run as root, where chmod does not stop a write: the
unwritable --out is a path under a regular FILE, which no user can create."""
import contextlib
import dataclasses
import io
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import REPO_DIR, from_a_terminal, lesson, one_error_line, run_script

import house

train_lib = lesson("05_train")
runs = lesson("house.runs")
model_lib = lesson("02_model")
eval_lib = lesson("06_eval")




@pytest.fixture(scope="module")
def inputs(tiny_inputs):
    """01's tiny tokenizer and 04's tiny shards (conftest's `tiny_inputs`, made once per session)."""
    return tiny_inputs


def tiny_args(inputs, out, *args):
    return ["--preset", "tiny", "--tokenizer", str(inputs["tokenizer"]), "--data-dir", str(inputs["data_dir"]),
            "--out", str(out), "--no-hellaswag", "--eval-every", "1000", *args]


# --- 1. Bad numbers end in one line before any work (nothing is created) ------------------------------

BAD = [("--micro-batch", "0", "must be a positive integer"), ("--max-steps", "-3", "must be a positive integer"),
       ("--lr", "0", "must be a number > 0"), ("--lr", "-1e-3", "must be a number > 0"),
       ("--seq-len", "0", "must be a positive integer"), ("--warmup-frac", "1.5", "must be a number between 0 and 1"),
       ("--total-batch-tokens", "1000", "not divisible"),
       ("--top-k", "3", "more than --n-experts 2")]


@pytest.mark.slow
@pytest.mark.parametrize("flag,value,what", BAD, ids=[f"{f}={v}" for f, v, _ in BAD])
def test_bad_number_is_one_line_before_any_work(tmp_path, flag, value, what):
    extra = ["--n-experts", "2"] if flag == "--top-k" else []
    proc = run_script("05_train.py", "--preset", "tiny", f"{flag}={value}", *extra, "--out", str(tmp_path / "out"),
                      timeout=120)
    one_error_line(proc, what)
    assert not (tmp_path / "out").exists()          # refused before anything was written


@pytest.mark.slow
def test_unwritable_out_is_one_line_before_training(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    proc = run_script("05_train.py", "--preset", "tiny", "--out", str(blocker / "sub"), timeout=120)
    one_error_line(proc, "cannot write to", "--out")
    assert "running: python 01_tokenizer.py" not in proc.stdout and "model:" not in proc.stdout   # no work began
    assert blocker.read_text() == "a file, not a folder"


# --- 2. Divergence: stop, and name a checkpoint that evaluates to finite numbers ----------------------

@pytest.mark.slow
def test_divergence_names_a_checkpoint_that_evaluates_finite(inputs, tmp_path):
    """The lr climbs to 50 over the whole run (--warmup-frac 1, no decay), so the first steps are healthy and a
    later one breaks the weights. A step's own loss is measured BEFORE its update, so the weights it leaves can be
    broken while its loss looks fine (--lr 1000 once named a checkpoint scoring 16,613 bits per byte): the
    checkpoint named as good must hold weights whose own validation loss is healthy."""
    out = tmp_path / "lr50"
    proc = run_script("05_train.py", *tiny_args(inputs, out, "--lr", "50", "--warmup-frac", "1", "--decay-start-frac",
                                                 "1", "--checkpoint-every", "1", "--max-steps", "100"), timeout=300)
    line = one_error_line(proc, "stopped instead of training on", str(out / "latest.pt"), "lower --lr")
    assert "its weights gave a healthy loss" in line
    ckpt = torch.load(out / "latest.pt", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())
    model = model_lib.LLM(model_lib.LLMConfig.from_dict(ckpt["config"]))
    model_lib.load_linnet_state_dict(model, ckpt["model"])
    tokenizer = lesson("01_tokenizer").load_tokenizer(inputs["tokenizer"])
    bpb = eval_lib.bits_per_byte(model, inputs["data_dir"], tokenizer, batch_size=8, seq_len=64, max_batches=2, device="cpu")
    assert math.isfinite(bpb["loss"]) and bpb["loss"] <= 2 * math.log(tokenizer.get_vocab_size()), bpb
    model.eval()
    logits, loss = model(torch.randint(0, 1024, (1, 64)), torch.randint(0, 1024, (1, 64)))
    assert math.isfinite(loss.item()) and torch.isfinite(logits).all()
    assert not list(out.glob(".*.tmp*"))             # nothing half-written beside it


@pytest.mark.slow
def test_divergence_before_the_first_checkpoint_says_none_was_written(inputs, tmp_path):
    out = tmp_path / "lr50_no_ckpt"
    proc = run_script("05_train.py", *tiny_args(inputs, out, "--lr", "50", "--max-steps", "20"), timeout=300)
    one_error_line(proc, "no checkpoint was written by this run", "lower --lr")
    assert not (out / "latest.pt").exists() and not list(out.glob(".*.tmp*"))


# --- 3. kill -9 in the middle of a save: the next start removes the temp file and resumes --------------

def kill_during_a_save(cmd, out, env, seconds=60):
    """Start `cmd`, poll `out` for a checkpoint temp file (after a first complete checkpoint) and kill -9 the
    process the moment one appears. Returns the temp files left behind (empty if the save won the race)."""
    proc = subprocess.Popen(cmd, cwd=REPO_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + seconds
    try:
        while time.time() < deadline and proc.poll() is None:
            names = os.listdir(out) if out.is_dir() else []
            if "latest.pt" in names and any(n.startswith(".latest.pt.tmp") for n in names):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return sorted(out.glob(".latest.pt.tmp*"))


@pytest.mark.slow
def test_kill_9_during_a_save_then_restart_removes_the_temp_file_and_resumes(inputs, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, str(REPO_DIR / "05_train.py"), *tiny_args(inputs, out, "--checkpoint-every", "1")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
    for _ in range(5):                                 # the save is a few ms: retry if the kill came too late
        left = kill_during_a_save(cmd, out, env)
        if left:
            break
    assert left, "never caught a save in progress in 5 tries"
    step = torch.load(out / "latest.pt", map_location="cpu", weights_only=True)["step"]   # the previous save, whole
    resumed = run_script("05_train.py", *tiny_args(inputs, out, "--resume", "--max-steps", str(step + 2)),
                         timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"removed {left[0].name}" in resumed.stdout and f"resumed from" in resumed.stdout
    assert not list(out.glob(".*.tmp*"))
    assert torch.load(out / "latest.pt", map_location="cpu", weights_only=True)["step"] == step + 2


def test_the_divergence_limit_leaves_room_for_the_balance_term():
    """--balance-coef 8 on 4 experts adds up to 32 to a healthy loss: that is not an explosion."""
    tiny = train_lib.PRESETS["tiny"]
    cfg = dataclasses.replace(tiny, model=dataclasses.replace(tiny.model, balance_coef=8.0, vocab_size=1024))
    train_lib.stop_if_unhealthy(6.9 + 8.0 * 1.2, torch.tensor(0.5), 0, None, cfg)   # no error
    with pytest.raises(house.UserError, match="exploding"):
        train_lib.stop_if_unhealthy(2 * 6.93 + 8.0 * 4 + 1, torch.tensor(0.5), 0, None, cfg)


def test_a_missing_hellaswag_file_stops_before_training_and_says_no_hellaswag(monkeypatch):
    def missing(path=None):
        raise house.NotFound("no HellaSwag file and no internet: download URL and pass --hellaswag-file PATH")

    monkeypatch.setattr(house.sources, "find_hellaswag_file", missing)
    with pytest.raises(house.NotFound, match=r"download .* to .*hellaswag_val.jsonl, or train without it: --no-hellaswag$"):
        runs.hellaswag_file_or_stop(house.sources.find_hellaswag_file, house.sources.HELLASWAG_URL,
                                    house.sources.HELLASWAG_CACHE)


def test_nan_weights_make_the_checksum_nan():
    model = model_lib.LLM(model_lib.LLMConfig(**{**model_lib.TINY_TRAINING_SHAPE, "vocab_size": 64}))
    assert math.isfinite(runs.weights_checksum(model).item())
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    assert math.isnan(runs.weights_checksum(model).item())


# --- 5. --fp8 (02 section 5b): contradictions and resume name the flag the user typed --------------------

@pytest.mark.slow
def test_fp8_with_another_moe_impl_is_one_line(tmp_path):
    proc = run_script("05_train.py", "--preset", "tiny", "--fp8", "--moe-impl", "reference",
                      "--out", str(tmp_path / "out"), timeout=120)
    one_error_line(proc, "--fp8 and --moe-impl reference contradict each other")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_resume_with_fp8_names_fp8(inputs, tmp_path):
    out = tmp_path / "run"
    first = run_script("05_train.py", *tiny_args(inputs, out, "--max-steps", "2"), timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    proc = run_script("05_train.py", *tiny_args(inputs, out, "--max-steps", "4", "--resume", "--fp8"), timeout=120)
    one_error_line(proc, "--fp8 cannot change on --resume", "drop --fp8")


@pytest.mark.slow
def test_under_torchrun_a_user_error_is_said_once(tmp_path):
    """Every process parses the same flags; only rank 0 prints the line (torchrun then adds its own report)."""
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           str(REPO_DIR / "05_train.py"), "--preset", "tiny", "--micro-batch", "0",
                           "--out", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    said = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert said == ["error: argument --micro-batch: must be a positive integer, got '0' (see 05_train.py --help)"], \
        proc.stderr[-2000:]


# --- 6. Every way a terminal goes away saves, and what a stop prints works when followed (issue 32, item 4) ------

def start_run(inputs, out, *args, **popen):
    """05's tiny run of 60 planned steps in its own session (a signal goes to its process group, as a terminal's)."""
    cmd = [sys.executable, str(REPO_DIR / "05_train.py"), *tiny_args(inputs, out, "--planned-steps", "60", *args)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
    popen = popen or dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    popen.setdefault("preexec_fn", from_a_terminal)
    return subprocess.Popen(cmd, cwd=REPO_DIR, env=env, start_new_session=True, **popen)


def wait_for_steps(proc, out, n=3, seconds=120):
    log, deadline = out / "log.jsonl", time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"the run logged fewer than {n} steps (exit {proc.poll()})")


def signalled(inputs, out, *signals, args=()):
    """Start the run, send `signals` to its group once 3 steps are logged; (exit status, stdout, stderr)."""
    proc = start_run(inputs, out, *args)
    wait_for_steps(proc, out)
    for sig in signals:
        os.killpg(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr


def follow(said: str, after: str):
    """Run the command printed after `after` in `said` (a "python 05_train.py ..." line), from the repo root."""
    assert after in said, said[-2000:]
    argv = shlex.split(said.split(after, 1)[1].splitlines()[0])
    assert argv[:2] == ["python", "05_train.py"], argv
    return run_script("05_train.py", *argv[2:], timeout=300)


def saved_step(out):
    return runs.read_train_config(out / "latest.pt", train_lib.load_checkpoint)["step"]


def finished_exactly(out, steps=60):
    """The run holds every step once: the checkpoint at `steps`, the log's step records 0 … steps - 1."""
    logged = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()
              if json.loads(line).get("kind") != "eval"]
    return saved_step(out) == steps and logged == list(range(steps))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["ctrl-c", "sigterm", "sighup"])
def test_a_signal_saves_and_the_printed_command_resumes_and_finishes(inputs, tmp_path, sig):
    """SIGHUP (a closed terminal, a dropped ssh) saves as SIGTERM does; the printed command, pasted, finishes the run."""
    out = tmp_path / "run"
    rc, stdout, stderr = signalled(inputs, out, sig)
    assert rc == 128 + sig and "Traceback" not in stderr, stderr[-2000:]
    assert f"interrupted after step {saved_step(out)}: checkpoint saved" in stdout and saved_step(out) >= 3
    resumed = follow(stdout, "continue with ")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {out / 'latest.pt'}" in resumed.stdout and finished_exactly(out)


@pytest.mark.slow
def test_sighup_from_a_terminal_that_went_away_saves(inputs, tmp_path):
    """The terminal is gone (its pty closed: every write fails with EIO) and SIGHUP comes: the step finishes, the
    checkpoint is saved, exit status 129 — printing to the dead terminal stops nothing."""
    import pty
    import threading

    out = tmp_path / "run"
    master, slave = pty.openpty()
    proc = start_run(inputs, out, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)

    def drain():                      # what a terminal shows; ends when the terminal goes away
        with contextlib.suppress(OSError):
            while os.read(master, 4096):
                pass
    threading.Thread(target=drain, daemon=True).start()
    wait_for_steps(proc, out)
    os.close(master)
    os.killpg(proc.pid, signal.SIGHUP)
    assert proc.wait(timeout=120) == 128 + signal.SIGHUP
    assert saved_step(out) == len((out / "log.jsonl").read_text().splitlines()) >= 3
    assert not list(out.glob(".*.tmp*"))


@pytest.mark.slow
@pytest.mark.parametrize("saved_before", [False, True], ids=["before-the-first-save", "after-a-save"])
def test_a_second_signal_stops_at_once_and_its_advice_works(inputs, tmp_path, saved_before):
    """Ctrl-C, then SIGTERM before the step ends: no save now. Before any checkpoint the line says how to start the
    run again (with --overwrite: its log is there); after one, how to continue it. Followed, either finishes it."""
    out = tmp_path / "run"
    rc, stdout, stderr = signalled(inputs, out, signal.SIGINT, signal.SIGTERM,
                                   args=("--checkpoint-every", "2") if saved_before else ())
    assert rc == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr[-2000:]
    assert stderr.strip().startswith("interrupted: stopped without saving"), stderr[-2000:]
    assert (out / "latest.pt").exists() == saved_before
    done = follow(stderr, "continue with " if saved_before else "start it again with ")
    assert done.returncode == 0, done.stderr[-2000:]
    assert finished_exactly(out)


@pytest.mark.slow
def test_killed_before_the_first_save_every_refusal_names_a_fix_that_works(inputs, tmp_path):
    """kill -9 before any checkpoint leaves a log alone. Run again as before: refused, "--overwrite"; with --resume:
    refused, "without --resume and with --overwrite" (not "start without --resume", which refused in turn)."""
    out = tmp_path / "run"
    proc = start_run(inputs, out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_steps(proc, out)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert (out / "log.jsonl").exists() and not (out / "latest.pt").exists()
    args = tiny_args(inputs, out, "--planned-steps", "60")
    again = run_script("05_train.py", *args, timeout=300)
    one_error_line(again, "stopped before its first checkpoint", "start it again with --overwrite")
    resumed = run_script("05_train.py", *args, "--resume", timeout=300)
    one_error_line(resumed, "no checkpoint", "stopped before its first save", "without --resume and with --overwrite")
    followed = run_script("05_train.py", *args, "--overwrite", timeout=300)
    assert followed.returncode == 0, followed.stderr[-2000:]
    assert finished_exactly(out)


@pytest.mark.slow
def test_nohup_keeps_a_run_going_when_its_terminal_closes(inputs, tmp_path):
    """`nohup python 05_train.py …` starts with SIGHUP ignored: a hangup then changes nothing (the run finishes)."""
    out = tmp_path / "run"
    proc = start_run(inputs, out, "--max-steps", "8", preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_steps(proc, out)
    os.killpg(proc.pid, signal.SIGHUP)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "interrupted" not in stdout + stderr, stderr[-2000:]
    assert saved_step(out) == 8


class DeadTerminal(io.StringIO):
    def write(self, text):
        raise OSError(5, "Input/output error")

    def flush(self):
        raise OSError(5, "Input/output error")


def test_after_sighup_printing_to_a_dead_terminal_raises_nothing(monkeypatch):
    monkeypatch.setattr(sys, "stdout", DeadTerminal())
    monkeypatch.setattr(sys, "stderr", DeadTerminal())
    stop = runs.StopRequest()                         # not installed: its handler is called by hand
    stop.on_signal(signal.SIGHUP, None)               # prints that it will save: to the dead terminal
    assert stop.requested == signal.SIGHUP
    print("interrupted after step 4: checkpoint saved", flush=True)
    print("and to stderr", file=sys.stderr, flush=True)
    with pytest.raises(runs.Interrupted):
        stop.on_signal(signal.SIGHUP, None)           # a second one still stops at once


def test_what_to_run_next_follows_what_the_folder_holds(tmp_path):
    checkpoint, log = tmp_path / "latest.pt", tmp_path / "log.jsonl"
    again = ["python", "05_train.py", "--preset", "tiny", "--out", "my run"]
    read = lambda path: {"step": int(path.read_text())}   # noqa: E731
    nxt = lambda since=0.0, steps=60: runs.what_to_run_next(checkpoint, log, since, steps, read, "RESUME", again)  # noqa: E731
    assert nxt() == "; start it again with python 05_train.py --preset tiny --out 'my run'"
    log.write_text("{}\n")
    assert nxt() == "; nothing of this run was saved: start it again with python 05_train.py --preset tiny --out " \
                    "'my run' --overwrite"
    checkpoint.write_text("20")
    assert nxt() == "; continue with RESUME"
    assert nxt(steps=20).startswith("; the run is complete: ") and nxt(steps=20).endswith("holds all 20 steps")
    assert nxt(since=time.time() + 60).endswith("--out 'my run' --overwrite")   # an older run's: --overwrite replaces it
    assert runs.what_to_run_next(checkpoint, log, 0, 60, read, "R", ["python", "05_train.py", "--resume"]) == \
        "; continue with R"


# --- 7. A schedule that contradicts itself, CPU out of memory, a config field from elsewhere: one line each ----

SCHEDULES = [(["--min-lr", "0.01"], "--min-lr 0.01 is above --lr 0.003: the decay would climb to 3.33× the peak"),
             (["--lr", "1e-4"], "--min-lr 0.0003 is above --lr 0.0001"),       # the tiny preset's --min-lr
             (["--warmup-frac", "0.9", "--decay-start-frac", "0.5"],
              "--warmup-frac 0.9 ends the warm-up after --decay-start-frac 0.5 starts the decay: at step 270 the lr "
              "would fall from the peak to 0.18 of it in one step"),
             (["--preset", "tiny-plus", "--warmup-frac", "0.6"], "after --decay-start-frac 0.5 starts the decay")]


@pytest.mark.slow
@pytest.mark.parametrize("flags,what", SCHEDULES, ids=[" ".join(f) for f, _ in SCHEDULES])
def test_a_schedule_that_contradicts_itself_is_one_line_before_any_work(tmp_path, flags, what):
    proc = run_script("05_train.py", "--preset", "tiny", *flags, "--out", str(tmp_path / "out"), timeout=120)
    one_error_line(proc, what)
    assert not (tmp_path / "out").exists()


def test_the_schedule_check_keeps_what_makes_sense():
    tiny = dataclasses.asdict(train_lib.PRESETS["tiny"])
    check = lambda resume=False, **fields: runs.check_schedule({**tiny, **fields}, resume, lambda step: 0.5)  # noqa: E731
    check(min_lr=tiny["lr"])                                    # a flat end: the lr stays at the peak
    check(warmup_frac=0.5, decay_start_frac=0.5)                # warm up, then decay at once
    check(warmup_frac=0.0, decay_start_frac=0.0)
    check(warmup_frac=1.0, decay_start_frac=1.0)                # warm up the whole way, no decay
    check(True, min_lr=1.0)                                     # a saved run's schedule is not judged again
    with pytest.raises(house.UserError, match="cannot grow on --resume"):
        check(True, max_steps=301)
    with pytest.raises(house.UserError, match=r"--min-lr 0.1 is above --lr 0.003.*at most 0.003"):
        check(min_lr=0.1)


CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
           "to allocate 1073741824 bytes. Error code 12 (Cannot allocate memory)")   # torch 2.x on Linux


def test_cpu_out_of_memory_is_told_apart_and_said_in_one_line():
    assert house.is_out_of_memory(RuntimeError(CPU_OOM)) and house.is_out_of_memory(MemoryError())
    said = runs.out_of_memory(RuntimeError(CPU_OOM), 2048, 64, 131072)
    assert isinstance(said, house.UserError)
    assert str(said) == "CPU (RAM) out of memory with micro-batch 2048 × 64: try --micro-batch 1024 (the step stays " \
                        "131,072 tokens)"
    bug = RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    assert runs.out_of_memory(bug, 8, 64, 1024) is bug                  # anything else keeps its traceback
    assert "smallest" in str(runs.out_of_memory(MemoryError(), 1, 64, 64))


@pytest.mark.slow
def test_cpu_out_of_memory_in_05_is_one_line(inputs, tmp_path):
    """A step too big for the memory the process may use (RLIMIT_AS 1.8 GB: the 2048 × 64 × 1,024 logits alone
    take 0.5 GB, and backward more): one line naming a smaller micro-batch, not a traceback."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1800 << 20, 1800 << 20))

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(REPO_DIR / "05_train.py"), *tiny_args(
        inputs, out, "--max-steps", "3", "--micro-batch", "2048", "--total-batch-tokens", "131072")], cwd=REPO_DIR,
        env={**os.environ, "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
        preexec_fn=limit)
    one_error_line(proc, "CPU (RAM) out of memory with micro-batch 2048 × 64: try --micro-batch 1024")


@pytest.fixture(scope="module")
def two_steps(inputs, tmp_path_factory):
    """A finished 2-step run, copied by the tests that change its checkpoint."""
    out = tmp_path_factory.mktemp("two_steps") / "run"
    made = run_script("05_train.py", *tiny_args(inputs, out, "--max-steps", "2", "--planned-steps", "60"), timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    return out


def with_a_field(run, tmp_path, where: str):
    """A copy of the run whose checkpoint holds `future_field` in its `where` ("config", "train_config", or the model
    nested in train_config), as a newer version of linnet would write it."""
    import shutil

    out = shutil.copytree(run, tmp_path / where)
    checkpoint = train_lib.load_checkpoint(out / "latest.pt")
    fields = checkpoint["train_config"]["model"] if where == "train_config.model" else checkpoint[where]
    fields["future_field"] = 1
    torch.save(checkpoint, out / "latest.pt")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("where", ["config", "train_config", "train_config.model"])
def test_an_unknown_config_field_is_one_line_naming_it_and_the_commit(inputs, two_steps, tmp_path, where):
    """Refused, not dropped: a field this code does not know may change what the weights compute (a switch like
    logit_softcap) or how the run goes on; the line names the field and the commit the checkpoint records."""
    out = with_a_field(two_steps, tmp_path, where)
    commit = runs.read_train_config(out / "latest.pt", train_lib.load_checkpoint)["git_commit"][:12]
    what = "training" if where == "train_config" else "model"
    resumed = run_script("05_train.py", *tiny_args(inputs, out, "--planned-steps", "60", "--max-steps", "4",
                                                   "--resume"), timeout=300)
    one_error_line(resumed, f"holds a {what} config field this code does not know (future_field = 1)",
                   f"git checkout {commit}")
    if where == "config":        # 02 and 06 read the model's config ("config"); the training config is not theirs
        for proc in (run_script("02_model.py", "--checkpoint", str(out / "latest.pt"), "--tokenizer",
                                str(inputs["tokenizer"]), "--prompt", "To be", "--max-new-tokens", "2", timeout=300),
                     run_script("06_eval.py", "--preset", "tiny", "--checkpoint", str(out / "latest.pt"), "--tokenizer",
                                str(inputs["tokenizer"]), "--data-dir", str(inputs["data_dir"]), "--no-hellaswag",
                                "--bpb-batches", "1", "--out", str(tmp_path / "eval"), timeout=300)):
            one_error_line(proc, "holds a model config field this code does not know (future_field = 1)")


def test_a_write_to_a_terminal_gone_before_its_sighup_arrives_saves_and_stops_as_sighup(monkeypatch):
    """The terminal closed and the run printed before the kernel's SIGHUP reached it: the write fails (EIO); the
    run treats it as the hangup (save, stop, 129) instead of dying on the error, and nothing it prints raises."""
    monkeypatch.setattr(sys, "stdout", DeadTerminal())
    monkeypatch.setattr(sys, "stderr", DeadTerminal())
    stop = runs.StopRequest().install()
    try:
        print("step 4 | loss 5.1", flush=True)
        assert stop.requested == signal.SIGHUP
    finally:
        stop.restore()
    print("interrupted after step 4: checkpoint saved", flush=True)      # still harmless after the loop
    ok = io.StringIO()
    monkeypatch.setattr(sys, "stdout", ok)
    stop = runs.StopRequest().install()
    print("step 1", flush=True)
    stop.restore()
    assert stop.requested is None and sys.stdout is ok and ok.getvalue() == "step 1\n"
