"""Nothing a user does loses a run (05_train.py): a finished run is never replaced unasked, one writer per
--out, optional packages checked before the run is touched, a second signal never cuts a save short, and a
checkpoint is called good only when its own weights are.

Each data-loss case proves the earlier artefact is byte-identical afterwards."""
import hashlib
import os
import signal
import subprocess
import sys

import pytest
import torch

from helpers import lesson, one_error_line, run_script

house = lesson("house")
runs = lesson("house.runs")


@pytest.fixture(scope="module")
def inputs(tiny_inputs):
    """01's tiny tokenizer and 04's tiny shards (conftest's `tiny_inputs`, made once per session)."""
    return tiny_inputs


def train(inputs, out, *args, timeout=300):
    return run_script("05_train.py", "--preset", "tiny", "--tokenizer", str(inputs["tokenizer"]), "--data-dir",
                      str(inputs["data_dir"]), "--out", str(out), "--no-hellaswag", "--eval-every", "1000",
                      *args, timeout=timeout)


def fingerprints(folder):
    """sha256 of every file in `folder` (names → digests)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished(inputs, tmp_path_factory):
    """A finished 6-step run; each test copies it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    made = train(inputs, out, "--max-steps", "6", "--planned-steps", "6")
    assert made.returncode == 0, made.stderr[-2000:]
    return out


@pytest.fixture
def held(finished, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


# --- a finished run is never replaced without being asked -------------------------------------------------

@pytest.mark.slow
def test_a_rerun_without_resume_leaves_the_run_byte_identical(inputs, held):
    before = fingerprints(held)
    proc = train(inputs, held, "--max-steps", "3")
    line = one_error_line(proc, "already holds a run", "--resume", "--overwrite", "another --out")
    assert "latest.pt" in line and fingerprints(held) == before


@pytest.mark.slow
def test_overwrite_replaces_the_run_when_asked(inputs, held):
    before = fingerprints(held)
    proc = train(inputs, held, "--max-steps", "2", "--planned-steps", "6", "--overwrite")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert fingerprints(held)["latest.pt"] != before["latest.pt"]
    assert torch.load(held / "latest.pt", map_location="cpu", weights_only=True)["step"] == 2


@pytest.mark.slow
def test_wandb_without_the_package_touches_nothing(inputs, held):
    if __import__("importlib").util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here: the refusal cannot be shown")
    before = fingerprints(held)
    proc = train(inputs, held, "--max-steps", "3", "--overwrite", "--wandb")
    one_error_line(proc, "--wandb needs the wandb package")
    assert fingerprints(held) == before


@pytest.mark.slow
def test_max_steps_past_the_schedule_is_one_line(tmp_path):
    proc = run_script("05_train.py", "--preset", "tiny", "--max-steps", "5281", "--out", str(tmp_path / "o"),
                      timeout=120)
    one_error_line(proc, "--max-steps 5281 is past the 300 steps", "--planned-steps")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_resume_past_the_schedule_says_the_schedule_cannot_grow(inputs, held):
    before = fingerprints(held)
    proc = train(inputs, held, "--max-steps", "20", "--resume")
    one_error_line(proc, "--max-steps 20 is past the 6 steps", "cannot grow on --resume", "--planned-steps 20")
    assert fingerprints(held) == before


# --- one writer per folder --------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_second_run_on_a_locked_folder_names_the_owner(inputs, held):
    """A live process holds the lock (this test's own pid, alive while 05 runs): 05 refuses and names it."""
    (held / house.LOCK_NAME).write_text(str(os.getpid()))
    before = fingerprints(held)
    proc = train(inputs, held, "--max-steps", "3", "--resume")
    one_error_line(proc, "is in use by another run", f"pid {os.getpid()}")
    assert fingerprints(held) == before


@pytest.mark.slow
def test_a_dead_owners_lock_is_taken_over_with_a_note(inputs, held):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (held / house.LOCK_NAME).write_text(str(gone.pid))
    proc = train(inputs, held, "--max-steps", "6", "--planned-steps", "6", "--overwrite")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"left by process {gone.pid}, which is no longer running" in proc.stdout
    assert not (held / house.LOCK_NAME).exists()              # released at the end


@pytest.mark.slow
def test_folder_lock_refuses_a_live_owner_and_releases(tmp_path):
    with house.folder_lock(tmp_path) as lock:
        assert lock.read_text() == str(os.getpid())
        child = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(house.REPO_DIR)!r}); "
                                f"import house\nhouse.speaks(lambda: house.folder_lock({str(tmp_path)!r}).__enter__())()"],
                               capture_output=True, text=True, timeout=60)
        assert child.returncode != 0 and f"pid {os.getpid()}" in child.stderr and "Traceback" not in child.stderr
    assert not lock.exists()


# --- signals: a second one never cuts a save short --------------------------------------------------------

def test_a_second_signal_waits_for_the_save_and_stops_otherwise():
    stop = runs.StopRequest()                 # not installed: its handler is called by hand
    stop.on_signal(signal.SIGTERM, None)
    assert stop.requested == signal.SIGTERM
    with stop.saving():
        stop.on_signal(signal.SIGINT, None)        # during the save: noted, nothing raised
    with pytest.raises(runs.Interrupted):
        stop.on_signal(signal.SIGINT, None)        # outside it: stop at once


# --- a flag that would be ignored is refused, never dropped ------------------------------------------------

@pytest.mark.slow
def test_data_that_does_not_exist_is_one_line(inputs, tmp_path):
    proc = train(inputs, tmp_path / "o", "--data", str(tmp_path / "nowhere.jsonl"), "--max-steps", "2")
    one_error_line(proc, "nowhere.jsonl does not exist")


@pytest.mark.slow
def test_data_other_than_the_shards_were_made_from_is_refused(inputs, tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text('{"text": "some other text"}\n')
    proc = train(inputs, tmp_path / "o", "--data", str(other), "--max-steps", "2")
    one_error_line(proc, "is not the text the shards", "drop --data", "--data-dir")
    assert not (tmp_path / "o" / "latest.pt").exists()


# --- a full disk is one line, and the earlier file stays whole -------------------------------------------

@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 3372815872 "
                                                "vs 3372815760"),
                                   OSError("500000 requested and 59328 written")], ids=["ENOSPC", "torch.save", "numpy"])
def test_a_full_disk_is_one_line_and_keeps_the_earlier_file(tmp_path, error):
    """The torch.save message is what a real full disk gave on the GPU machine (2026-12-04, a 3.4 GB checkpoint);
    numpy's is what 04 writing a shard onto a full 1.5 MB tmpfs gave (bench/hostile.py, case "full disk in 04")."""
    target = tmp_path / "latest.pt"
    target.write_bytes(b"the earlier, complete checkpoint")
    with pytest.raises(house.UserError, match=r"the disk is full: .*latest.pt could not be written.*untouched"):
        with house.atomic_path(target) as tmp:
            tmp.write_bytes(b"half a new one")
            raise error
    assert target.read_bytes() == b"the earlier, complete checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]          # no temp file left


def test_other_write_errors_are_not_called_a_full_disk(tmp_path):
    with pytest.raises(PermissionError):
        with house.atomic_path(tmp_path / "x.json"):
            raise PermissionError(13, "Permission denied")


@pytest.mark.slow
def test_03_on_a_cpu_says_it_runs_the_tiny_preset(tmp_path):
    proc = run_script("03_muon.py", "--out", str(tmp_path), "--steps", "2", "--quick", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "No CUDA GPU found: running the tiny preset" in proc.stdout


# --- more inputs checked before work -------------------------------------------------------------------------

@pytest.mark.slow
def test_a_seed_numpy_cannot_take_is_one_line(tmp_path):
    proc = run_script("05_train.py", "--preset", "tiny", "--seed", "4294967296", "--out", str(tmp_path / "o"), timeout=120)
    one_error_line(proc, "--seed", "from 0 to 4294967295")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_resume_from_a_bare_state_dict_is_one_line(inputs, held):
    torch.save({"transformer.wte.weight": torch.zeros(2, 2)}, held / "latest.pt")
    proc = train(inputs, held, "--max-steps", "6", "--resume")
    one_error_line(proc, "is not a checkpoint 05 wrote", "bare state dict")


@pytest.mark.slow
def test_tokenizer_given_as_its_folder_is_used(inputs, tmp_path):
    proc = run_script("05_train.py", "--preset", "tiny", "--tokenizer", str(inputs["tokenizer"].parent), "--data-dir",
                      str(inputs["data_dir"]), "--out", str(tmp_path / "o"), "--no-hellaswag", "--max-steps", "2",
                      "--planned-steps", "2", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_throughput_on_a_cpu_refuses_the_gpu_sized_step_and_an_unwritable_json(tmp_path):
    proc = run_script("bench/throughput.py", "--plain", "moe", timeout=120)
    one_error_line(proc, "no CUDA GPU", "--depth 2")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_script("bench/throughput.py", "--depth", "2", "--micro-batch", "1", "--seq-len", "64",
                      "--json", str(blocker / "r.jsonl"), timeout=120)
    one_error_line(proc, "cannot write to", "pass --json PATH somewhere writable")
