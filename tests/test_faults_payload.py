"""Issue 32 item 1, a checkpoint is data, never code: every loader reads a .pt with torch.load(weights_only=True).

A `.pt` whose unpickling would create a marker file goes through every entry point that reads a checkpoint (02
--checkpoint and --export, 06 --checkpoint, 05 --resume, the speedrun, LLM.from_pretrained, the converter): each
refuses it in one line and the marker never exists. A 05 latest.pt of the older format (its numpy RNG state a
pickled array, as 510e243 and main before issue 32 wrote it) is refused in one line that names the conversion;
following it gives the checkpoint 05 writes now, and --resume continues from it."""
import os
import random
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import REPO_DIR, lesson, one_error_line, run_script

import house
from house import checkpoints, convert_checkpoint, runs

model_lib = lesson("02_model")
tokenizer_lib = lesson("01_tokenizer")

TEXTS = ["the quick brown fox jumps over the lazy dog. " * 20, "def f(x):\n    return x + 1\n" * 20]


class OpensAFile:
    """Unpickled, it calls open(marker, "w"): the file appears. torch.load without weights_only would run it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class RunsACommand:
    """Unpickled, it runs `touch marker` through os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A tokenizer, a 05-style latest.pt with a payload in its RNG states, a run folder holding it (and a log), and
    an export folder whose pytorch_model.bin carries the payload. `marker`: the file the payload would create."""
    root = tmp_path_factory.mktemp("payload")
    marker = root / "PAYLOAD_RAN"
    tok = tokenizer_lib.save_tokenizer(tokenizer_lib.train_tokenizer(TEXTS, 300, show_progress=False), root / "tokenizer.json")
    torch.manual_seed(0)
    config = model_lib.LLMConfig(block_size=64, vocab_size=320, **model_lib.TINY_TRAINING_SHAPE)
    model = model_lib.LLM(config).eval()
    sd = model_lib.export_linnet_state_dict(model)
    checkpoint = {"model": sd, "config": config.to_dict(), "train_config": {"preset": "tiny", "model": config.to_dict()},
                  "optimizers": [], "loader": {}, "rng": {"python": OpensAFile(marker)}, "step": 2, "git_commit": None,
                  "tokenizer_sha256": tokenizer_lib.tokenizer_sha256(tok), "data_sha256": "0" * 64}
    torch.save(checkpoint, root / "latest.pt")
    (root / "run").mkdir()
    torch.save(checkpoint, root / "run" / "latest.pt")
    (root / "run" / "log.jsonl").write_text('{"step": 0, "loss": 6.9}\n')
    (root / "export").mkdir()
    torch.save({**sd, "lm_head.bias": OpensAFile(marker)}, root / "export" / "pytorch_model.bin")
    (root / "export" / "tokenizer.json").write_bytes(tok.read_bytes())
    return dict(root=root, marker=marker, tok=tok, pt=root / "latest.pt", run=root / "run", export=root / "export")


def refused_without_running(proc, f, *needles):
    """One line `error: … holds Python objects beyond tensors …` (io.open: the payload named), and the marker absent."""
    one_error_line(proc, "holds Python objects beyond tensors and plain values", "io.open", *needles)
    assert not f["marker"].exists(), "the payload ran"


@pytest.mark.slow
@pytest.mark.parametrize("what", ["latest.pt", "export folder"])
def test_02_checkpoint_refuses_a_payload(hostile, what):
    path = hostile["pt"] if what == "latest.pt" else hostile["export"]
    proc = run_script("02_model.py", "--checkpoint", str(path), "--tokenizer", str(hostile["tok"]), timeout=120)
    refused_without_running(proc, hostile)


@pytest.mark.slow
def test_02_export_refuses_a_payload(hostile, tmp_path):
    proc = run_script("02_model.py", "--export", str(hostile["pt"]), "--tokenizer", str(hostile["tok"]),
                      "--out", str(tmp_path / "published"), timeout=120)
    refused_without_running(proc, hostile)
    assert not (tmp_path / "published").exists()


@pytest.mark.slow
def test_06_checkpoint_refuses_a_payload(hostile, tmp_path):
    proc = run_script("06_eval.py", "--preset", "tiny", "--checkpoint", str(hostile["pt"]), "--tokenizer",
                      str(hostile["tok"]), "--no-hellaswag", "--out", str(tmp_path / "eval"), timeout=120)
    refused_without_running(proc, hostile)
    assert not (tmp_path / "eval" / "results.json").exists()


@pytest.mark.slow
def test_05_resume_refuses_a_payload(hostile):
    before = (hostile["run"] / "latest.pt").read_bytes()
    proc = run_script("05_train.py", "--preset", "tiny", "--resume", "--out", str(hostile["run"]), "--tokenizer",
                      str(hostile["tok"]), "--data-dir", str(hostile["root"] / "data"), "--no-hellaswag", timeout=120)
    refused_without_running(proc, hostile)
    assert (hostile["run"] / "latest.pt").read_bytes() == before          # refused, never rewritten


@pytest.mark.slow
def test_speedrun_refuses_a_payload(hostile):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "exercises.speedrun", "--check-run", str(hostile["run"]), "--tokenizer",
                           str(hostile["tok"]), "--data-dir", str(hostile["root"] / "data")], cwd=REPO_DIR, env=env,
                          capture_output=True, text=True, timeout=300)
    refused_without_running(proc, hostile)


def test_a_damaged_file_is_called_damaged_not_a_payload(tmp_path):
    """Random bytes fail torch's weights-only reader too: named as damaged, with its reason, never with torch's
    advice to load with weights_only off."""
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(house.UserError, match=r"cannot read .*corrupt.pt as a checkpoint \(UnpicklingError: "
                                              r"[^)]+\): it is damaged") as refused:
        checkpoints.read_checkpoint_file(tmp_path / "corrupt.pt")
    assert "weights_only" not in str(refused.value)


def test_from_pretrained_and_the_readers_refuse_a_payload(hostile):
    for path in (hostile["export"], hostile["export"] / "pytorch_model.bin", hostile["pt"]):
        with pytest.raises(house.UserError, match="holds Python objects beyond tensors"):
            model_lib.LLM.from_pretrained(path)
    with pytest.raises(house.UserError, match="io.open"):
        checkpoints.read_training_checkpoint(hostile["pt"])
    with pytest.raises(house.UserError, match="io.open"):
        runs.read_train_config(hostile["pt"], lesson("05_train").load_checkpoint)
    assert not hostile["marker"].exists()


def test_a_command_payload_is_named_and_never_runs(tmp_path):
    marker = tmp_path / "COMMAND_RAN"
    torch.save({"model": {}, "config": {}, "x": RunsACommand(marker)}, tmp_path / "latest.pt")
    with pytest.raises(house.UserError, match=r"\(posix\.system\)|\(os\.system\)|\(nt\.system\)"):
        checkpoints.read_checkpoint_file(tmp_path / "latest.pt")
    with pytest.raises(house.UserError, match="beyond tensors"):   # the converter reads nothing but numpy's arrays
        convert_checkpoint.convert(tmp_path / "latest.pt", tmp_path / "converted.pt")
    assert not marker.exists() and not (tmp_path / "converted.pt").exists()


@pytest.mark.slow
def test_the_converter_refuses_a_payload_beside_an_old_rng_state(hostile, tmp_path):
    """A payload in a file that also holds the old numpy RNG state is not "the old format": refused, not converted."""
    marker = tmp_path / "RAN"
    torch.save({"model": {}, "train_config": {}, "step": 1,
                "rng": {"numpy": np.random.get_state(), "python": OpensAFile(marker)}}, tmp_path / "latest.pt")
    proc = subprocess.run([sys.executable, "-m", "house.convert_checkpoint", str(tmp_path / "latest.pt")],
                          cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
    one_error_line(proc, "holds Python objects beyond tensors", "io.open")
    assert not marker.exists()


# --- The older format (numpy's RNG state pickled): refused in one line that names the conversion -------------

def old_format(checkpoint: dict) -> dict:
    """`checkpoint` as 05 wrote it before issue 32: house.runs.rng_state() kept np.random.get_state() as it is
    (a tuple holding a uint32 ndarray, which torch.load(weights_only=True) refuses)."""
    name, keys, *rest = checkpoint["rng"]["numpy"]
    return {**checkpoint, "rng": {**checkpoint["rng"], "numpy": (name, np.asarray(keys, dtype=np.uint32), *rest)}}


@pytest.fixture(scope="module")
def old_run(tiny_inputs, tmp_path_factory):
    """A real 2-step tiny run (today's format, kept as `plain`), and a copy of its folder whose latest.pt is in the
    older format."""
    root = tmp_path_factory.mktemp("old_format")
    args = ["--preset", "tiny", "--tokenizer", str(tiny_inputs["tokenizer"]), "--data-dir", str(tiny_inputs["data_dir"]),
            "--no-hellaswag", "--eval-every", "1000"]
    done = run_script("05_train.py", *args, "--max-steps", "2", "--out", str(root / "run"), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    plain = torch.load(root / "run" / "latest.pt", weights_only=True)
    torch.save(old_format(plain), root / "run" / "latest.pt")
    assert set(checkpoints.unsafe_globals(root / "run" / "latest.pt")) <= checkpoints.OLD_FORMAT
    return dict(root=root, out=root / "run", plain=plain, args=args, tok=tiny_inputs["tokenizer"])


def same(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.mark.slow
def test_an_old_checkpoint_is_refused_with_the_conversion_and_following_it_resumes(old_run, tmp_path):
    path = old_run["out"] / "latest.pt"
    command = f"python -m house.convert_checkpoint {house.shown(path)}"
    evaluated = run_script("06_eval.py", "--preset", "tiny", "--checkpoint", str(path), "--tokenizer",
                           str(old_run["tok"]), "--no-hellaswag", "--out", str(tmp_path / "eval"), timeout=120)
    line = one_error_line(evaluated, "written by an older 05_train.py", "numpy RNG state", command)
    resumed = run_script("05_train.py", *old_run["args"], "--resume", "--max-steps", "4", "--out", str(old_run["out"]),
                         timeout=120)
    assert one_error_line(resumed, command) == line
    exported = run_script("02_model.py", "--export", str(path), "--tokenizer", str(old_run["tok"]), "--out",
                          str(tmp_path / "published"), timeout=120)
    one_error_line(exported, command)
    argv = shlex.split(line[line.index(command):])                      # the printed command, as pasted
    converted = subprocess.run([sys.executable, *argv[1:]], cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
    assert converted.returncode == 0 and "converted" in converted.stdout, converted.stderr[-2000:]
    assert checkpoints.unsafe_globals(path) == []
    assert same(torch.load(path, weights_only=True), old_run["plain"])   # what 05 writes now, bit for bit
    resumed = run_script("05_train.py", *old_run["args"], "--resume", "--max-steps", "4", "--out", str(old_run["out"]),
                         timeout=300)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-2000:]
    again = subprocess.run([sys.executable, *argv[1:]], cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
    one_error_line(again, "already in the current format")


def test_the_rng_state_is_plain_and_comes_back_exactly(tmp_path):
    runs.seed_everything(5)
    np.random.rand(3), random.random(), torch.rand(2)
    torch.save(runs.rng_state(), tmp_path / "rng.pt")
    expected = (np.random.rand(4), random.random(), torch.rand(3))
    runs.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))                # plain: weights_only reads it
    assert np.array_equal(np.random.rand(4), expected[0]) and random.random() == expected[1]
    assert torch.equal(torch.rand(3), expected[2])
