"""Faults a user meets with 04's shards: damaged or missing files, a rerun killed half-way, stale temp files.

Each test is one fault. Where a script runs: exit code ≠ 0, exactly one stderr line starting with "error:",
no traceback, nothing half-written."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from helpers import REPO_DIR, from_a_terminal, lesson, one_error_line, run_script, shakespeare_text

house = lesson("house")
tok = lesson("01_tokenizer")
data = lesson("04_data")

SIZES = dict(shard_tokens=1_500, val_tokens=1_000)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A small tokenizer and one source of ~100 Shakespeare pieces (≈ 12 shards)."""
    text = shakespeare_text(120_000)
    docs = [text[i:i + 1_000] for i in range(0, 100_000, 1_000)]
    d = tmp_path_factory.mktemp("inputs")
    (d / "bard.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs), encoding="utf-8")
    tok.save_tokenizer(tok.train_tokenizer(docs[:40], 512, show_progress=False), d / "tokenizer.json")
    return d


def build(out, inputs, seed=0, overwrite=False):
    tokenizer_path = inputs / "tokenizer.json"
    return data.build_shards([data.LocalSource("bard", [inputs / "bard.jsonl"])], {"bard": 100},
                             tok.load_tokenizer(tokenizer_path), out, tokenizer_sha256=tok.tokenizer_sha256(tokenizer_path),
                             seed=seed, show_progress=False, overwrite=overwrite, **SIZES)


@pytest.fixture
def shards(tmp_path, inputs):
    out = tmp_path / "shards"
    build(out, inputs)
    return out


def truncate(path, n_bytes=100):
    path.write_bytes(path.read_bytes()[:-n_bytes])


# --- damaged shards are found when the folder is opened, not when the shard is reached -------------------

def test_truncated_training_shard_not_yet_visited_stops_the_loader_at_once(shards):
    truncate(shards / "shard_00007.npy")
    with pytest.raises(house.UserError, match=r"shard_00007.npy is truncated .*python 04_data.py") as e:
        data.ShardLoader(shards, "train", B=2, T=32)
    assert "\n" not in str(e.value)


def test_truncated_validation_shard_stops_before_training(shards):
    truncate(shards / "shard_00000.npy")
    for open_it in (lambda: data.ShardLoader(shards, "train", B=2, T=32),   # what 05 opens first
                    lambda: data.val_batches(shards, 2, 32), lambda: data.read_manifest(shards)):
        with pytest.raises(house.UserError, match=r"shard_00000.npy is truncated"):
            open_it()


def test_missing_shard_is_named(shards):
    (shards / "shard_00003.npy").unlink()
    with pytest.raises(house.UserError, match=r"shard_00003.npy is missing: rerun the python 04_data.py command"):
        data.read_manifest(shards)


def test_shard_with_a_damaged_header_is_named(shards):
    path = shards / "shard_00002.npy"
    path.write_bytes(b"\x00" * path.stat().st_size)
    with pytest.raises(house.UserError, match=r"shard_00002.npy is damaged"):
        data.read_manifest(shards)


def test_shard_cut_after_the_loader_opened_is_one_line_not_a_mmap_error(shards):
    loader = data.ShardLoader(shards, "train", B=2, T=32)
    truncate(shards / "shard_00001.npy", 1_000)
    with pytest.raises(house.UserError, match="truncated"):
        for _ in loader.iter_once():
            pass


@pytest.mark.slow
def test_verify_finds_a_changed_byte_that_the_size_check_cannot(shards):
    path = shards / "shard_00004.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    data.read_manifest(shards)                                        # same size: the cheap check passes
    line = one_error_line(run_script("04_data.py", "--verify", "--out", str(shards), timeout=120))
    assert "shard_00004.npy is changed (its sha256 differs" in line and "python 04_data.py" in line


@pytest.mark.slow
def test_05_refuses_a_shard_changed_at_the_same_size_before_any_step(shards, inputs, tmp_path):
    path = shards / "shard_00004.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    proc = run_script("05_train.py", "--preset", "tiny", "--max-steps", "2", "--data-dir", str(shards),
                      "--tokenizer", str(inputs / "tokenizer.json"), "--out", str(tmp_path / "run"), timeout=120)
    line = one_error_line(proc, "shard_00004.npy is changed (its sha256 differs")
    assert "python 04_data.py" in line and not (tmp_path / "run" / "latest.pt").exists()


@pytest.mark.slow
def test_verify_passes_a_whole_folder(shards):
    result = run_script("04_data.py", "--verify", "--out", str(shards), timeout=120)
    assert result.returncode == 0 and "match their sha256" in result.stdout, result.stderr[-2000:]


@pytest.mark.slow
def test_verify_of_a_folder_without_shards_is_one_line(tmp_path):
    line = one_error_line(run_script("04_data.py", "--verify", "--out", str(tmp_path), timeout=120))
    assert "no shards in" in line


# --- a rerun with other settings: the manifest goes before any shard it lists -------------------------------

def manifest_is_trustworthy(out):
    """Either no manifest, or one whose every shard is there, byte-exact."""
    if not (out / "manifest.json").exists():
        return True
    manifest = json.loads((out / "manifest.json").read_text())
    return all((out / r["file"]).exists() and house.shards.sha256_file(out / r["file"]) == r["sha256"] for r in manifest["shards"])


def test_rerun_with_other_settings_is_refused_and_keeps_every_shard(shards, inputs):
    """Shards of other settings are another data set (a checkpoint may need them): one line, nothing deleted."""
    before = {p.name: p.read_bytes() for p in sorted(shards.iterdir()) if p.is_file()}
    with pytest.raises(house.UserError, match=r"other settings \(seed differ\).*--overwrite"):
        build(shards, inputs, seed=1)
    assert {p.name: p.read_bytes() for p in sorted(shards.iterdir()) if p.is_file()} == before


def test_rerun_crashing_while_it_deletes_shards_leaves_no_manifest_beside_missing_shards(shards, inputs, monkeypatch):
    real_unlink = type(shards).unlink

    def unlink_then_crash(path, *a, **k):
        real_unlink(path, *a, **k)
        if path.name.startswith("shard_"):
            raise KeyboardInterrupt          # killed right after the first shard is gone

    monkeypatch.setattr(type(shards), "unlink", unlink_then_crash)
    with pytest.raises(KeyboardInterrupt):
        build(shards, inputs, seed=1, overwrite=True)   # other settings, --overwrite: everything is rebuilt
    monkeypatch.undo()
    assert not (shards / "manifest.json").exists() and manifest_is_trustworthy(shards)
    with pytest.raises(house.UserError, match="no shards"):
        data.ShardLoader(shards, "train", B=2, T=32)


@pytest.mark.slow
def test_rerun_killed_at_a_random_moment_leaves_old_manifest_whole_or_none(tmp_path, inputs):
    """A real `kill -9` of `python 04_data.py` rerun with another seed, at a random moment (3 tries)."""
    rng = random.Random(os.getpid())
    args = ["--source", f"bard={inputs / 'bard.jsonl'}", "--tokenizer", str(inputs / "tokenizer.json"),
            "--shard-tokens", str(SIZES["shard_tokens"]), "--val-tokens", str(SIZES["val_tokens"])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    for attempt in range(3):
        out = tmp_path / f"run{attempt}"
        build(out, inputs, seed=0)
        proc = subprocess.Popen([sys.executable, str(REPO_DIR / "04_data.py"), *args, "--seed", "1", "--overwrite", "--out", str(out)],
                                cwd=REPO_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert manifest_is_trustworthy(out), f"attempt {attempt}: a manifest lists missing or changed shards"
        if (out / "manifest.json").exists():
            assert data.read_manifest(out)["seed"] in (0, 1)


@pytest.mark.slow
def test_ctrl_c_while_tokenizing_is_one_line_keeps_the_finished_shards_and_a_rerun_resumes(tmp_path, inputs):
    """SIGINT to a real `python 04_data.py` once its first shards are written: exit 130, one line that says what
    is kept (the finished shards, listed in progress.json) and that a rerun resumes; the rerun does."""
    out = tmp_path / "out"
    args = [sys.executable, str(REPO_DIR / "04_data.py"), "--preset", "tiny", "--tokenizer", str(inputs / "tokenizer.json"),
            "--shard-tokens", "100000", "--val-tokens", "100000", "--out", str(out)]   # the embedded corpus: ~40 shards
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.Popen(args, cwd=REPO_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=from_a_terminal)
    deadline = time.monotonic() + 120
    while not (out / "progress.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    kept = json.loads((out / "progress.json").read_text())["shards"]
    assert proc.returncode == 130 and "Traceback" not in stderr and not (out / "manifest.json").exists(), stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == (f"interrupted: {len(kept)} finished shard{'s' * (len(kept) != 1)} kept in "
                                               f"{out} (listed in progress.json); rerun the same command to resume after them")
    rerun = subprocess.run(args, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming: {len(kept)} finished shards verified" in rerun.stdout
    assert [r["sha256"] for r in data.read_manifest(out)["shards"][:len(kept)]] == [r["sha256"] for r in kept]


def test_ctrl_c_before_any_shard_says_nothing_is_kept(tmp_path):
    assert house.shards.kept_after_interrupt(tmp_path) == f"no shard was finished in {tmp_path}; rerun the same command to start again"


# --- stale temp files of a kill -9 ------------------------------------------------------------------------------

def test_stale_temp_files_are_cleaned_when_04_starts(shards, inputs):
    stale = [shards / ".shard_00003.npy.tmp4242", shards / ".manifest.json.tmp4242", shards / ".progress.json.tmp1"]
    for path in stale:
        path.write_bytes(b"half")
    build(shards, inputs)                    # finished folder, same settings: nothing rebuilt, temp files gone
    assert not any(p.exists() for p in stale) and manifest_is_trustworthy(shards)


def test_stale_download_temp_file_is_cleaned(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / ".dclm.jsonl.tmp4242").write_text("half a download")
    hub = tmp_path / "hub"
    (hub / "global-shard_01_of_10").mkdir(parents=True)
    (hub / "global-shard_01_of_10" / "a.jsonl.zst").write_bytes(
        __import__("zstandard").ZstdCompressor().compress(b'{"text": "d0"}\n'))
    source = house.sources.HFSource("dclm", local_dir=hub, **house.sources.HF_DATASETS["dclm"])
    house.sources.download_raw(source, 1, raw_dir=raw)
    assert sorted(p.name for p in raw.iterdir()) == ["dclm.jsonl", "dclm.meta.json"]


# --- the network, as a script sees it -----------------------------------------------------------------------------

@pytest.mark.slow
def test_linnet_preset_offline_is_one_line(tmp_path):
    """HF_HUB_OFFLINE=1 (run_script sets it): the Hub is never asked, one line says what to pass instead."""
    result = run_script("04_data.py", "--out", str(tmp_path / "o"), "--mix", "fineweb-edu:3",
                        env={"HF_HUB_OFFLINE": "1"}, timeout=120)
    line = one_error_line(result)
    assert "no internet" in line and "--source" in line
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())   # nothing written


# --- 04's number flags and its folder: bounds that make sense, files that are not ours ---------------------------

@pytest.mark.slow
def test_shard_tokens_below_one_window_is_one_line_before_anything_runs(tmp_path):
    """`--shard-tokens 1` once wrote one file per token for hours: the minimum is one window of linnet's
    1,024 tokens + its target (data.MIN_SHARD_TOKENS), refused by argparse before anything is read."""
    proc = run_script("04_data.py", "--preset", "tiny", "--shard-tokens", "1", "--out", str(tmp_path / "o"), timeout=60)
    assert proc.returncode == 2
    one_error_line(proc, "argument --shard-tokens: must be at least 1,025", "got '1'", "04_data.py --help")
    assert not (tmp_path / "o").exists()
    assert data.shard_tokens_arg(str(data.MIN_SHARD_TOKENS)) == data.MIN_SHARD_TOKENS == 1_025


@pytest.mark.parametrize("value", ["4294967296", "-1", "1.5"])
def test_seed_outside_numpys_range_is_one_line(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as e:
        data.main(["--preset", "tiny", "--seed", value, "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"error: argument --seed: must be an integer from 0 to 4294967295, got '{value}'"), err
    assert not (tmp_path / "o").exists()


def test_largest_seed_interleaves(tmp_path, inputs):
    manifest = build(tmp_path / "s", inputs, seed=2 ** 32 - 1)
    assert manifest["seed"] == 2 ** 32 - 1 and manifest_is_trustworthy(tmp_path / "s")


@pytest.mark.slow
def test_a_stray_file_named_like_a_shard_is_left_alone(shards, inputs):
    """A user's backup `shard_00003.bak.npy` (or `shard_7.npy`) in --out once crashed 04's clean-up with a
    ValueError; 04 only deletes the names it writes (shard_NNNNN.npy), and keeps the user's files."""
    strays = [shards / "shard_00003.bak.npy", shards / "shard_7.npy", shards / "shard_.npy"]
    for path in strays:
        path.write_bytes((shards / "shard_00003.npy").read_bytes())
    (shards / "manifest.json").unlink()      # an unfinished run: the rerun clears what it does not keep
    build(shards, inputs)
    assert all(p.exists() for p in strays) and manifest_is_trustworthy(shards)
    proc = run_script("04_data.py", "--source", f"bard={inputs / 'bard.jsonl'}", "--tokenizer", str(inputs / "tokenizer.json"),
                      "--shard-tokens", "1500", "--val-tokens", "1000", "--out", str(shards), timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert all(p.exists() for p in strays) and "already done" in proc.stdout
