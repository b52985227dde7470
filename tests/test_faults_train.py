"""Faults around 05_train.py, one per test: nonsense numbers, an --out that cannot be written, a run that
diverges (its named checkpoint must evaluate to finite numbers), and a kill -9 in the middle of a save.

Every fault must end with exit status != 0, exactly one line on stderr starting with "error:", no
"Traceback", and nothing half-written. The tests run as root, where chmod does not stop a write: the
unwritable --out is a path under a regular FILE, which no user can create."""
import dataclasses
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import REPO_DIR, lesson, one_error_line, run_script

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
    """The lr climbs to 50 over the whole run (--warmup-frac 1), so the first steps are healthy and a later one
    breaks the weights. A step's own loss is measured BEFORE its update, so the weights it leaves can be broken
    while its loss looks fine (--lr 1000 once named a checkpoint scoring 16,613 bits per byte): the checkpoint
    named as good must hold weights whose own validation loss is healthy."""
    out = tmp_path / "lr50"
    proc = run_script("05_train.py", *tiny_args(inputs, out, "--lr", "50", "--warmup-frac", "1",
                                                 "--checkpoint-every", "1", "--max-steps", "100"), timeout=300)
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
