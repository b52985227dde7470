"""Faults a user can cause on the command line, one per test: nonsense numbers, an --out that cannot be
written, a checkpoint without config.json whose shapes don't fit, a NaN checkpoint, and 02's --export.

Every fault must end with exit status != 0, exactly one line on stderr starting with "error:", no
"Traceback", and nothing half-written. The tests run as root, where chmod does not stop a write: the
unwritable --out is a path under a regular FILE (`.../file.txt/sub`), which no user can create."""

import json
import pytest
import torch

from helpers import from_a_terminal, lesson, one_error_line, run_script

house = lesson("house")
model_lib = lesson("02_model")
tokenizer_lib = lesson("01_tokenizer")




# --- 1. Nonsense numbers: argparse's `type=` refuses them before anything runs ----------------------

BAD_NUMBERS = [                                            # one per script, run as a user runs it
    ("01_tokenizer.py", "--vocab-size", "-5", "a positive integer"),
    ("02_model.py", "--max-new-tokens", "0", "an integer from 1 to 10,000"),
    ("03_muon.py", "--steps", "0", "a positive integer"),
    ("04_data.py", "--shard-tokens", "0", "a positive integer"),
    ("06_eval.py", "--limit", "-1", "a positive integer"),
]
MORE_BAD_NUMBERS = [                                       # the same parsers, called in-process (faster)
    ("01_tokenizer", "--measure-mb", "nan", "a number >= 0"),
    ("02_model", "--seed", "1.5", "an integer from 0 to 4294967295"),
    ("02_model", "--seed", "4294967296", "an integer from 0 to 4294967295"),
    ("04_data", "--val-tokens", "1e6", "a positive integer"),
    ("06_eval", "--batch-size", "0", "a positive integer"),
    ("06_eval", "--temperature", "-0.5", "a number >= 0"),
    ("06_eval", "--top-k", "many", "a positive integer"),
]


@pytest.mark.slow
@pytest.mark.parametrize("script,flag,value,what", BAD_NUMBERS, ids=[f"{s}{f}={v}" for s, f, v, _ in BAD_NUMBERS])
def test_nonsense_number_is_one_line(tmp_path, script, flag, value, what):
    proc = run_script(script, flag, value, "--out", str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 2
    one_error_line(proc, f"argument {flag}: must be {what}, got '{value}'", f"{script} --help")
    assert not (tmp_path / "out").exists()                 # refused before anything was written


@pytest.mark.parametrize("name,flag,value,what", MORE_BAD_NUMBERS, ids=[f"{n}{f}={v}" for n, f, v, _ in MORE_BAD_NUMBERS])
def test_nonsense_number_stops_main_in_one_line(tmp_path, capsys, name, flag, value, what):
    with pytest.raises(SystemExit) as e:
        lesson(name).main([flag, value, "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: argument {flag}: must be {what}, got '{value}'"), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fn,good,bad", [
    (house.positive_int, {"1": 1, "32768": 32768}, ["0", "-3", "2.0", "x", ""]),
    (house.non_negative_int, {"0": 0, "7": 7}, ["-1", "1.5"]),
    (house.positive_float, {"3e-4": 3e-4, "2": 2.0}, ["0", "-1", "nan", "inf"]),
    (house.non_negative_float, {"0": 0.0, "0.8": 0.8}, ["-0.1", "nan", "-inf"]),
    (house.probability, {"0": 0.0, "1": 1.0, "0.25": 0.25}, ["1.01", "-0.01", "nan"]),
])
def test_number_types_accept_sense_and_refuse_nonsense(fn, good, bad):
    import argparse

    for text, value in good.items():
        assert fn(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="must be"):
            fn(text)


# --- 2. An --out that cannot be written: one line at the start, not a raw OSError at the end -----------

@pytest.fixture
def unwritable(tmp_path):
    """A path nobody can create, root included: a folder under a regular file."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file, not a folder\n")
    return blocker / "sub"


@pytest.mark.slow
@pytest.mark.parametrize("script,args", [
    ("01_tokenizer.py", ["--preset", "tiny"]),
    ("02_model.py", ["--preset", "tiny"]),
    ("04_data.py", ["--preset", "tiny"]),
    ("06_eval.py", ["--preset", "tiny", "--no-hellaswag"]),
])
def test_unwritable_out_is_one_line_before_the_work(unwritable, script, args):
    proc = run_script(script, *args, "--out", str(unwritable), timeout=120)
    one_error_line(proc, f"cannot write to {unwritable}", "pass --out DIR somewhere writable")
    assert "Not a directory" in proc.stderr
    assert proc.stdout.strip() == ""                       # it stopped before doing any of the work


def test_check_writable_creates_the_folder_and_leaves_no_probe(tmp_path):
    out = house.check_writable(tmp_path / "a" / "b")
    assert out.is_dir() and list(out.iterdir()) == []


# --- 3-5. Checkpoints: 05-style ones, their export, and faulty ones -----------------------------------

TEXTS = ["the quick brown fox jumps over the lazy dog. " * 20, "def f(x):\n    return x + 1\n" * 20]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tokenizer.json and a 05-style latest.pt (05's save_checkpoint dict layout) of head_dim 32."""
    root = tmp_path_factory.mktemp("tiny_run")
    tok_path = tokenizer_lib.save_tokenizer(tokenizer_lib.train_tokenizer(TEXTS, 300, show_progress=False),
                                            root / "tokenizer.json")
    torch.manual_seed(0)
    config = model_lib.LLMConfig(block_size=64, vocab_size=320, **model_lib.TINY_TRAINING_SHAPE)
    model = model_lib.LLM(config).eval()
    checkpoint = {"model": model_lib.export_linnet_state_dict(model), "config": config.to_dict(),
                  "train_config": {}, "optimizers": [], "loader": {}, "rng": {}, "step": 2,
                  "git_commit": None, "tokenizer_sha256": tokenizer_lib.tokenizer_sha256(tok_path)}
    torch.save(checkpoint, root / "latest.pt")
    return dict(root=root, tokenizer=tok_path, checkpoint=root / "latest.pt", model=model)


@pytest.mark.slow
def test_export_writes_linnet_folder_that_loads_with_identical_logits(tiny_run, tmp_path):
    from tokenizers import Tokenizer

    out = tmp_path / "export"
    proc = run_script("02_model.py", "--export", str(tiny_run["checkpoint"]), "--tokenizer", str(tiny_run["tokenizer"]),
                      "--out", str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "pytorch_model.bin", "tokenizer.json",
                                                     "tokenizer_config.json"]            # what linnet's repo holds
    published = json.loads((out / "config.json").read_text())
    assert list(published)[:3] == ["model_type", "architectures", "depth"] and published["block_size"] == 64
    sd = torch.load(out / "pytorch_model.bin", weights_only=True)                    # a plain state_dict, as linnet's
    assert list(sd) == list(model_lib.export_linnet_state_dict(tiny_run["model"]))    # linnet's keys, in its order
    assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()  # the tied pair: one tensor
    assert "linnet's own code cannot build this shape" in proc.stdout                  # head_dim 32: not linnet's config
    enc = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tokenizer_lib.tokenizer_sha256(out / "tokenizer.json") == tokenizer_lib.tokenizer_sha256(tiny_run["tokenizer"])
    loaded = model_lib.LLM.from_pretrained(out).eval()
    assert loaded.config.head_dim == 32
    assert loaded.lm_head.weight is loaded.transformer.wte.weight                    # re-tied on load
    idx = torch.tensor([enc.encode("the quick brown fox").ids])
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], tiny_run["model"](idx)[0])


@pytest.mark.slow
def test_export_to_unwritable_out_is_one_line(tiny_run, unwritable):
    proc = run_script("02_model.py", "--export", str(tiny_run["checkpoint"]), "--tokenizer", str(tiny_run["tokenizer"]),
                      "--out", str(unwritable), timeout=120)
    one_error_line(proc, "cannot write to")


@pytest.mark.slow
def test_export_with_another_tokenizer_is_one_line(tiny_run, tmp_path):
    other = tokenizer_lib.save_tokenizer(tokenizer_lib.train_tokenizer(TEXTS[:1], 280, show_progress=False),
                                         tmp_path / "other.json")
    proc = run_script("02_model.py", "--export", str(tiny_run["checkpoint"]), "--tokenizer", str(other),
                      "--out", str(tmp_path / "export"), timeout=120)
    one_error_line(proc, "another tokenizer")
    assert not (tmp_path / "export").exists()


def save_without_config(tiny_run, folder, drop_inv_freq: bool):
    from safetensors.torch import save_file

    sd = dict(torch.load(tiny_run["checkpoint"], weights_only=True)["model"])
    if drop_inv_freq:
        sd = {k: v for k, v in sd.items() if not k.endswith("inv_freq")}
    sd.pop("lm_head.weight")                                                          # tied: stored once
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    return folder / "model.safetensors"


@pytest.mark.slow
def test_no_config_json_and_shapes_off_head_dim_64_is_one_line(tiny_run, tmp_path):
    path = save_without_config(tiny_run, tmp_path / "bare", drop_inv_freq=True)
    with pytest.raises(house.UserError) as e:                                  # was: ZeroDivisionError
        model_lib.LLM.from_pretrained(path)
    assert str(e.value) == (f"{path} has no config.json and its shapes don't fit head_dim 64 (width 64, "
                            f"q|k|v rows 128): put linnet's config.json beside it")
    proc = run_script("06_eval.py", "--checkpoint", str(path), "--tokenizer", str(tiny_run["tokenizer"]),
                      "--no-hellaswag", "--out", str(tmp_path / "eval"), timeout=120)
    one_error_line(proc, "don't fit head_dim 64")
    assert not (tmp_path / "eval" / "results.json").exists()


@pytest.mark.slow
def test_eval_of_nan_checkpoint_is_one_line(tiny_run, tmp_path):
    checkpoint = torch.load(tiny_run["checkpoint"], weights_only=True)
    checkpoint["model"]["transformer.h.1.attn.c_proj.weight"][0, 0] = float("nan")
    torch.save(checkpoint, tmp_path / "diverged.pt")
    proc = run_script("06_eval.py", "--checkpoint", str(tmp_path / "diverged.pt"), "--tokenizer", str(tiny_run["tokenizer"]),
                      "--no-hellaswag", "--out", str(tmp_path / "eval"), timeout=120)
    one_error_line(proc, f"{tmp_path / 'diverged.pt'} holds non-finite weights (NaN/inf)", "earlier checkpoint")
    assert not (tmp_path / "eval" / "results.json").exists()


@pytest.mark.slow
def test_eval_of_truncated_checkpoint_is_one_line(tiny_run, tmp_path):
    data = tiny_run["checkpoint"].read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    proc = run_script("06_eval.py", "--checkpoint", str(tmp_path / "cut.pt"), "--tokenizer", str(tiny_run["tokenizer"]),
                      "--no-hellaswag", "--out", str(tmp_path / "eval"), timeout=120)
    one_error_line(proc, "cannot read", "damaged or not a checkpoint")
    assert not (tmp_path / "eval" / "results.json").exists()


# --- --device and the bench scripts' numbers: one line too --------------------------------------------

@pytest.mark.slow
def test_06_unknown_device_is_one_line(tmp_path):
    proc = run_script("06_eval.py", "--device", "foo", "--out", str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 2
    one_error_line(proc, "argument --device: invalid choice: 'foo'")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_06_device_cuda_without_a_gpu_is_one_line(tmp_path):
    proc = run_script("06_eval.py", "--preset", "tiny", "--device", "cuda", "--out", str(tmp_path / "out"), timeout=60)
    one_error_line(proc, "--device cuda but this machine has no CUDA device")


@pytest.mark.slow
@pytest.mark.parametrize("script,args,what", [
    ("bench/throughput.py", ["--steps", "0"], "argument --steps: must be a positive integer"),
    ("bench/hellaswag_speed.py", ["--warmup", "0"], "argument --warmup: must be a positive integer"),
    ("bench/loss_equivalence.py", ["--paths", "nope"], "argument --paths: unknown path 'nope'"),
])
def test_bench_bad_arguments_are_one_line(script, args, what):
    proc = run_script(script, *args, timeout=60)
    assert proc.returncode == 2
    one_error_line(proc, what)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_loss_equivalence_with_only_compiled_paths_on_a_cpu_is_one_line(tmp_path):
    proc = run_script("bench/loss_equivalence.py", "--depth", "2", "--seq-len", "64", "--micro-batch", "4",
                      "--steps", "2", "--paths", "fp8-compiled", "--out", str(tmp_path), timeout=120)
    one_error_line(proc, "nothing to train here")


# --- SIGTERM and SIGHUP (a terminal that went away) stop every script as Ctrl-C does (issue 32, item 4) -------

def test_stopping_at_once_raises_stopped_keeps_ignored_signals_and_puts_the_handlers_back():
    import os
    import signal
    import sys
    import time

    started_ignored = signal.getsignal(signal.SIGHUP)         # pytest itself run under nohup ignores hangups
    if started_ignored == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        stops_and_restores(os, signal, sys, time)
    finally:
        signal.signal(signal.SIGHUP, started_ignored)


def stops_and_restores(os, signal, sys, time):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        saved = sys.stdout, sys.stderr                        # SIGHUP makes them drop what a dead terminal refuses
        try:
            with pytest.raises(house.cli.Stopped) as stopped, house.cli.stopping_at_once():
                os.kill(os.getpid(), sig)
                time.sleep(5)                                 # the handler raises before this ends
        finally:
            sys.stdout, sys.stderr = saved
        assert stopped.value.signum == sig and isinstance(stopped.value, KeyboardInterrupt)
        assert house.cli.exit_status(stopped.value) == 128 + sig
    assert {sig: signal.getsignal(sig) for sig in before} == before
    signal.signal(signal.SIGHUP, signal.SIG_IGN)              # nohup: a hangup stays ignored
    try:
        with house.cli.stopping_at_once():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.1)
    finally:
        signal.signal(signal.SIGHUP, before[signal.SIGHUP])
    assert house.cli.exit_status(KeyboardInterrupt()) == 130


def signalled_script(args, started, sig, timeout=120):
    """Run `python <args>` in its own session, send `sig` to its group once `started()` is true; (rc, stderr)."""
    import os
    import subprocess
    import sys
    import time

    from helpers import REPO_DIR
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO_DIR, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=from_a_terminal)
    deadline = time.monotonic() + timeout
    while not started() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    _, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_04_stopped_by_a_signal_keeps_its_shards_and_the_rerun_it_advises_resumes(tmp_path, tiny_inputs, sig):
    """04 killed by SIGTERM or a hangup once its first shards are written: exit 128 + signal, the line Ctrl-C gives
    (what is kept, "rerun the same command"); the rerun, followed, resumes after the kept shards."""
    import signal

    from helpers import REPO_DIR
    out = tmp_path / "out"
    args = [str(REPO_DIR / "04_data.py"), "--preset", "tiny", "--tokenizer", str(tiny_inputs["tokenizer"]),
            "--shard-tokens", "100000", "--val-tokens", "100000", "--out", str(out)]   # ~40 shards
    rc, stderr = signalled_script(args, (out / "progress.json").exists, getattr(signal, sig))
    kept = json.loads((out / "progress.json").read_text())["shards"]
    assert rc == 128 + getattr(signal, sig) and "Traceback" not in stderr, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == (f"interrupted: {len(kept)} finished shard{'s' * (len(kept) != 1)} kept "
                                               f"in {out} (listed in progress.json); rerun the same command to resume "
                                               "after them")
    rerun = run_script(*args, timeout=300)
    assert rerun.returncode == 0 and f"resuming: {len(kept)} finished shards verified" in rerun.stdout, rerun.stderr[-2000:]


@pytest.mark.slow
def test_06_stopped_by_a_hangup_is_one_line_and_writes_no_results(tmp_path, tiny_inputs):
    import signal
    import time

    from helpers import REPO_DIR
    out, began = tmp_path / "eval", time.monotonic()
    args = [str(REPO_DIR / "06_eval.py"), "--preset", "tiny", "--tokenizer", str(tiny_inputs["tokenizer"]),
            "--data-dir", str(tiny_inputs["data_dir"]), "--out", str(out), "--limit", "10042", "--batch-tokens", "512"]
    rc, stderr = signalled_script(args, lambda: time.monotonic() - began > 8, signal.SIGHUP)
    assert rc == 129 and "Traceback" not in stderr, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("interrupted: stopped")
    assert not (out / "results.json").exists()


def test_a_script_stopped_by_a_signal_ignores_another_on_its_way_out():
    """A second Ctrl-C while Python exits (its atexit callbacks) printed a traceback: once a script's main has
    stopped on a signal, the stop signals are ignored; a main() called with arguments (a test) leaves them alone."""
    import signal

    def stopped(argv=None):
        raise SystemExit(130)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        with pytest.raises(SystemExit):
            house.speaks(stopped)(["--flag"])
        assert {sig: signal.getsignal(sig) for sig in before} == before
        with pytest.raises(SystemExit):
            house.speaks(stopped)()
        assert all(signal.getsignal(sig) == signal.SIG_IGN for sig in before)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
