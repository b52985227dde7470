"""The capstone's scorer (exercises/speedrun.py): a score counts only when the scorer trained it.

One real entry is made once (module fixture): the embedded corpus's tiny tokenizer and shards, and a recipe
(`--planned-steps 2`, the cheapest that still runs every step of the pipeline) trained on the four required
seeds in a clean copy of the pinned commit. Each cheat a teacher tried (issue 33, "Why") is a test below:
refused in one line naming its real cause, or impossible by design."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import REPO_DIR, lesson, one_error_line, run_script

from exercises import speedrun

STEPS = 2


def run_speedrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "exercises.speedrun", *map(str, args)], cwd=REPO_DIR, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The pinned tokenizer and shards, made as the scorer makes them when none are given: the pinned
    commit's 01 and 04 (--preset tiny, the embedded corpus), then checked shard by shard."""
    root = tmp_path_factory.mktemp("speedrun_data")
    work, speedrun.WORK_DIR = speedrun.WORK_DIR, root
    try:
        tree = speedrun.pinned_tree(speedrun.PINNED_COMMIT, root / "pinned", "")
        speedrun.private_data(None, None, tree, root / "copy")
    finally:
        speedrun.WORK_DIR = work
    return dict(root=root, tok=root / "data" / "tokenizer" / "tokenizer.json", data=root / "data" / "shards")


def data_args(d, data=None):
    return ["--tokenizer", d["tok"], "--data-dir", data or d["data"]]


@pytest.fixture(scope="module")
def entry(data, tmp_path_factory):
    """A recipe scored as a student submits it: its record, its lines, its runs (the scorer's work folder)."""
    root = tmp_path_factory.mktemp("speedrun_entry")
    work, speedrun.WORK_DIR = speedrun.WORK_DIR, root / "work"
    try:
        recipe = root / "two_steps.txt"
        recipe.write_text(f"# the cheapest recipe\nflags: --planned-steps {STEPS}\n")
        line = speedrun.main([str(a) for a in (recipe, *data_args(data), "--jobs", 2, "--record", root / "record.json")])
    finally:
        speedrun.WORK_DIR = work
    record = json.loads((root / "record.json").read_text())
    return dict(root=root, recipe=recipe, line=line, record=record, path=root / "record.json",
                runs=root / "work" / "two_steps" / "runs")


def refused(argv, *needles) -> str:
    """speedrun.main in this process: it must stop with ONE line "error: not a speedrun entry: ..." holding
    every needle (a subprocess test below checks the exit status and stderr)."""
    with pytest.raises(SystemExit) as stop:
        speedrun.main([str(a) for a in argv])
    message = stop.value.code
    assert isinstance(message, str) and message.startswith("error: "), message
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def recipe_file(tmp_path, flags="", patch=None) -> str:
    lines = [f"flags: {flags}"]
    if patch is not None:
        (tmp_path / "change.patch").write_text(patch)
        lines.append("patch: change.patch")
    path = tmp_path / "recipe.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def pinned_diff(path: str, old: str, new: str) -> str:
    """`git diff` of one text replacement in a pinned file, as a student makes a patch."""
    text = speedrun.git_show(speedrun.PINNED_COMMIT, path)
    assert old in text, old
    import difflib
    lines = difflib.unified_diff(text.splitlines(keepends=True), text.replace(old, new, 1).splitlines(keepends=True),
                                 f"a/{path}", f"b/{path}")
    return f"diff --git a/{path} b/{path}\n" + "".join(lines)


# --- The entry: trained by the scorer on the required seeds, recorded, re-run -------------------------------

@pytest.mark.slow
def test_a_recipe_is_trained_by_the_scorer_on_the_required_seeds_and_recorded(entry):
    record = entry["record"]
    assert record["seeds"] == [1337, 1, 2, 3] and [s["seed"] for s in record["per_seed"]] == [1337, 1, 2, 3]
    assert record["pinned_commit"] == speedrun.PINNED_COMMIT and record["flags"] == f"--planned-steps {STEPS}"
    assert record["patch_sha256"] is None and record["patch"] is None
    for s in record["per_seed"]:
        assert 3.5 < s["bpb"] < 4.36 and s["steps"] == STEPS and s["training_tokens"] == STEPS * 1024
        assert s["validation_tokens"] == 200_704
        assert s["minus_baseline"] == pytest.approx(s["bpb"] - s["baseline_bpb"])   # per-seed, against the baseline
        ckpt = speedrun.read_checkpoint(entry["runs"] / f"seed_{s['seed']}" / "latest.pt")
        assert ckpt["train_config"]["seed"] == ckpt["loader"]["seed"] == s["seed"]
    assert len({s["bpb"] for s in record["per_seed"]}) == 4            # four seeds, four runs
    assert "t(3) = 3.18" in record["against_baseline"] and "baseline beats two_steps" in record["against_baseline"]
    assert re.match(r"speedrun: against the baseline: two_steps − baseline per seed: 1337 \+\d\.\d{4}", entry["line"])
    lines = speedrun.record_lines(record, entry["path"])
    assert lines[-2].startswith(f"speedrun: {record['mean_bpb']:.4f} ± {record['sd_bpb']:.4f} bits/byte (mean ± sd "
                                "of seeds 1337, 1, 2, 3) | 2,048 training tokens")
    assert f"pinned commit {speedrun.PINNED_COMMIT[:12]}" in lines[-2]


@pytest.mark.slow
def test_the_teacher_reruns_a_record_with_one_command(entry, data, tmp_path, monkeypatch):
    monkeypatch.setattr(speedrun, "WORK_DIR", tmp_path)
    line = speedrun.main([str(a) for a in ("--rerun", entry["path"], *data_args(data), "--jobs", 2)])
    assert line.startswith("rerun: reproduced ") and "each within 0.001 of the record" in line, line
    for s in entry["record"]["per_seed"]:
        assert f"{s['seed']} {s['bpb']:.4f}" in line


@pytest.mark.slow
def test_an_edited_record_is_refused(entry, tmp_path, monkeypatch):
    """A score moved by 0.002 (over the 1e-3 agreement) does not reproduce; a patch changed without its hash,
    or a record of other seeds, is refused before any training."""
    record = json.loads(json.dumps(entry["record"]))
    monkeypatch.setattr(speedrun, "score_recipe", lambda *a, **k: entry["record"])   # the re-training, as measured
    record["per_seed"][2]["bpb"] += 0.002
    (tmp_path / "edited.json").write_text(json.dumps(record))
    refused(["--rerun", tmp_path / "edited.json"], "does not reproduce", "seed 2 scores", "0.0020 apart", "0.001")
    record = json.loads(json.dumps(entry["record"]))
    record["patch"] = "diff --git a/02_model.py b/02_model.py\n"
    (tmp_path / "patched.json").write_text(json.dumps(record))
    refused(["--rerun", tmp_path / "patched.json"], "does not have the sha256 the record names", "edited")


# --- Each attempt of issue 33 ("Why"): refused with its real cause, or impossible by design -----------------

def test_over_budget_flags_are_refused_before_training(tmp_path):
    """600 steps relabelled as 300 cannot happen (the scorer trains and reads the proofs); asking for 600 is refused."""
    refused([recipe_file(tmp_path, "--planned-steps 600")], "over budget", "600 steps × 1,024", "614,400", "307,200")
    refused([recipe_file(tmp_path, "--total-batch-tokens 16384 --planned-steps 20")], "over budget", "327,680")


def test_a_patch_that_changes_the_budget_is_refused(tmp_path):
    patch = pinned_diff("05_train.py", "planned_steps=300, lr=3e-3", "planned_steps=600, lr=3e-3")
    refused([recipe_file(tmp_path, patch=patch)], "PRESETS['tiny']", "the budget", "is fixed")
    patch = pinned_diff("02_model.py", "def flops_per_token(config: LLMConfig, seq_len: int | None = None) -> int:\n",
                        "def flops_per_token(config: LLMConfig, seq_len: int | None = None) -> int:\n    return 1\n")
    refused([recipe_file(tmp_path, patch=patch)], "flops_per_token", "the compute budget")


def test_a_patch_that_trains_on_the_validation_split_is_refused(tmp_path):
    patch = pinned_diff("05_train.py", 'ShardLoader(run.data_dir, "train"', 'ShardLoader(run.data_dir, "val"')
    refused([recipe_file(tmp_path, patch=patch)], "05_train.py line", "train: ShardLoader(...)",
            "the data and its loader split")
    patch = pinned_diff("05_train.py", "def build_model(cfg", 'SPLIT = "val"\n\n\ndef build_model(cfg')
    refused([recipe_file(tmp_path, patch=patch)], "names the validation split", "SPLIT = \"val\"")


def test_a_patch_that_edits_the_evaluation_is_refused(tmp_path):
    patch = pinned_diff("06_eval.py", '"bpb": total_nats / (math.log(2) * total_bytes)',
                        '"bpb": 0.9 * total_nats / (math.log(2) * total_bytes)')
    refused([recipe_file(tmp_path, patch=patch)], "the patch changes 06_eval.py", "the evaluation is fixed")
    patch = pinned_diff("05_train.py", 'record = {"kind": "eval", "step": step, "val_loss": bpb["loss"], "val_bpb": bpb["bpb"]',
                        'record = {"kind": "eval", "step": step, "val_loss": bpb["loss"], "val_bpb": 0.9 * bpb["bpb"]')
    refused([recipe_file(tmp_path, patch=patch)], "(evaluate, lines", "the evaluation is fixed")
    for path, what in (("04_data.py", "the data and its loader"), ("exercises/speedrun.py", "the scorer"),
                       ("house/shards.py", "the plumbing")):
        patch = f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1,1 +1,1 @@\n-x\n+y\n"
        refused([recipe_file(tmp_path, patch=patch)], f"changes {path}", what)


@pytest.mark.slow
def test_shards_that_are_not_the_pinned_ones_are_refused_shard_by_shard(data, tmp_path):
    """An edited validation shard with a manifest that agrees with it: the pin is on every shard's bytes."""
    edited = tmp_path / "data"
    shutil.copytree(data["data"], edited)
    shard = edited / "shard_00000.npy"
    tokens = np.load(shard)
    tokens[:1000] = 0
    np.save(shard, tokens)
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = speedrun.house.shards.sha256_file(shard)
    (edited / "manifest.json").write_text(json.dumps(manifest))
    refused([recipe_file(tmp_path, "--planned-steps 2"), *data_args(data, edited)], "lists other shards")
    manifest["shards"][0]["sha256"] = speedrun.COURSE_SHARDS["shard_00000.npy"][2]   # the manifest says the pin
    (edited / "manifest.json").write_text(json.dumps(manifest))
    refused([recipe_file(tmp_path, "--planned-steps 2"), *data_args(data, edited)], "shard_00000.npy (a val shard)",
            "is not the pinned one", "its sha256 is")


@pytest.mark.slow
def test_seeds_are_the_scorers_not_the_recipes(tmp_path, entry):
    """Run 20 seeds, submit the best 4: impossible, the scorer trains 1337, 1, 2, 3; a record of others is refused."""
    refused([recipe_file(tmp_path, "--seed 5")], "sets --seed", "1337, 1, 2, 3")
    refused([recipe_file(tmp_path, "--see=5")], "sets --see (--seed)")        # argparse's unique prefix
    for flags, why in (("--seq-len 128", "64 tokens"), ("--data-dir elsewhere", "the data is fixed"),
                       ("--preset linnet", "--preset tiny")):
        refused([recipe_file(tmp_path, flags)], why)
    record = json.loads(json.dumps(entry["record"]))
    record["per_seed"][3]["seed"] = 7
    (tmp_path / "seed7.json").write_text(json.dumps(record))
    refused(["--compare", tmp_path / "seed7.json"], "seeds 1337, 1, 2, 7", "the required seeds 1337, 1, 2, 3")


# --- A run folder checked (the student's own; not an entry): every claim against the checkpoint's proofs ---

@pytest.fixture(scope="module")
def own_run(data, tmp_path_factory):
    """A student's own finished run, trained by this tree's 05 (--planned-steps 2, seed 1337)."""
    out = tmp_path_factory.mktemp("speedrun_own") / "run"
    done = run_script("05_train.py", "--preset", "tiny", "--planned-steps", str(STEPS), "--no-hellaswag",
                      *map(str, data_args(data)), "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def copy_run(own_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(own_run, run)
    return run


def edit_checkpoint(run, **changes):
    """Change keys of latest.pt; `a__b` changes key b of the dict under key a."""
    core = getattr(np, "_core", None) or np.core          # the pinned commit's 05 pickles numpy's RNG state
    with torch.serialization.safe_globals([core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]):
        ckpt = torch.load(run / "latest.pt", map_location="cpu", weights_only=True)
    for key, value in changes.items():
        *outer, inner = key.split("__")
        target = ckpt
        for name in outer:
            target = target[name]
        target[inner] = value
    torch.save(ckpt, run / "latest.pt")


def edit_last_eval(run, **changes):
    path = run / "log.jsonl"
    lines = path.read_text().splitlines()
    i = max(n for n, l in enumerate(lines) if '"eval"' in l)
    old = json.loads(lines[i])
    lines[i] = json.dumps({**old, **{k: v(old) if callable(v) else v for k, v in changes.items()}})
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_an_honest_run_is_checked_and_labelled_not_an_entry(own_run, data, capsys):
    line = speedrun.main(["--check-run", str(own_run), *map(str, data_args(data))])
    out = capsys.readouterr().out
    score = float(re.match(r"checked: (\d\.\d{4}) bits/byte on 200,704 validation tokens \| 2,048 training tokens "
                           r"\(2 steps × 1,024\)", out).group(1))
    assert f"| seed 1337 | commit {speedrun.house.runs.git_commit()[:12]}" in out      # the tree it was trained in
    assert line.startswith(f"checked 1 run(s), seeds 1337 (not the required 1337, 1, 2, 3): {score:.4f} bits/byte"), line
    assert "not a leaderboard entry" in line


def relabel_over_budget(run):
    """Issue 33: trained past the budget, then step, planned_steps and the last log record edited down."""
    edit_checkpoint(run, step=STEPS - 1, train_config__planned_steps=STEPS - 1)
    edit_last_eval(run, step=STEPS - 1)


ATTEMPTS = {   # name: (how the copy of a run is changed, needles of the one error line)
    "over budget, relabelled": (relabel_over_budget, ("says step 1", "AdamW state has taken 2 steps")),
    "train_config edited in latest.pt": (lambda run: edit_checkpoint(run, train_config__total_batch_tokens=512),
                                         ("loader has read 2,048 training tokens", "claims 2 steps × 512 = 1,024",
                                          "train_config or step was edited")),
    "trained on the val split": (lambda run: edit_checkpoint(run, loader__split="val"),
                                 ("loader read the 'val' split", "trained on the validation data")),
    "a log 0.0085 away": (lambda run: edit_last_eval(run, val_bpb=lambda old: old["val_bpb"] - 0.0085),
                          ("0.0085 apart, more than 0.001", "the log is not this checkpoint's")),
    "not finished": (lambda run: edit_checkpoint(run, step=1), ("not finished", "step 1 of the 2")),
    "other eval windows": (lambda run: edit_checkpoint(run, train_config__model__block_size=128), ("--seq-len 128",)),
    "part of the val shard": (lambda run: edit_checkpoint(run, train_config__eval_batches=2), ("eval_batches", "whole")),
    "eval changed in the log": (lambda run: edit_last_eval(run, val_tokens=4096), ("scored 4,096", "200,704")),
    "other tokenizer": (lambda run: edit_checkpoint(run, tokenizer_sha256="0" * 64), ("another tokenizer",)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ATTEMPTS))
def test_each_claim_of_a_run_folder_is_checked_against_its_checkpoint(own_run, data, tmp_path, name):
    change, needles = ATTEMPTS[name]
    run = copy_run(own_run, tmp_path)
    change(run)
    refused(["--check-run", run, *data_args(data)], *needles)


@pytest.mark.slow
def test_a_dirty_tree_is_named_in_the_checkpoint_and_the_line(tmp_path):
    """Issue 33: an uncommitted change to 05 trained a run whose line named the clean HEAD."""
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)
    git("init", "-q")
    (tmp_path / "05_train.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "one")
    clean = speedrun.house.runs.git_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", clean)
    (tmp_path / "05_train.py").write_text('x = "val"\n')
    dirty = speedrun.house.runs.git_commit(tmp_path)
    assert dirty == f"{clean} (uncommitted changes: 05_train.py)"
    assert speedrun.commit_shown(dirty) == f"{clean[:12]} + uncommitted changes: 05_train.py"


# --- The paired rule, the budget, the rules and the README -----------------------------------------------

def fake_record(name, scores):
    return {"recipe": name, "per_seed": [{"seed": s, "bpb": b} for s, b in zip(speedrun.REQUIRED_SEEDS, scores)]}


def test_the_paired_rule_uses_t_with_n_minus_one_degrees_of_freedom():
    t_critical = speedrun.house.stats.t_critical
    assert (round(t_critical(3), 3), round(t_critical(2), 3), round(t_critical(1), 3)) == (3.182, 4.303, 12.706)
    base = fake_record("baseline", [2.7356, 2.6888, 2.7053, 2.7033])
    plus = fake_record("linnet+", [2.7040, 2.6731, 2.6659, 2.6678])      # −0.032, −0.016, −0.039, −0.036
    rule = speedrun.paired_rule(plus, base)
    assert rule["t"] < -3.182 and rule["verdict"].endswith("| linnet+ beats baseline")
    assert "t(3) = 3.18" in rule["verdict"] and "1337 -0.0316" in rule["verdict"]
    # z = 2 would call this a win (t = −2.5); with four seeds t(3) = 3.18 does not
    d = [-0.010, -0.002, -0.018, -0.010]
    close = fake_record("close", [b + x for b, x in zip([2.7356, 2.6888, 2.7053, 2.7033], d)])
    rule = speedrun.paired_rule(close, base)
    assert -3.182 < rule["t"] < -2 and rule["verdict"].endswith("not shown to differ (within seed noise)")
    assert speedrun.paired_rule(base, plus)["verdict"].endswith("linnet+ beats baseline")


@pytest.mark.slow
def test_compare_prints_the_verdict_against_the_baseline_record(entry, capsys):
    line = speedrun.main(["--compare", str(entry["path"])])
    assert line.startswith("compare: two_steps − baseline per seed: 1337 +") and line.endswith("baseline beats two_steps")
    assert capsys.readouterr().out.strip() == line


def test_the_budget_is_the_tiny_presets():
    assert speedrun.TOKEN_BUDGET == 307_200
    tiny = lesson("05_train").PRESETS["tiny"]
    assert speedrun.FLOP_BUDGET == lesson("02_model").flops_per_token(speedrun.tiny_model_config(tiny), 64) * 307_200
    assert round(speedrun.FLOP_BUDGET / 1e9, 1) == 379.7


def test_the_fixed_parts_are_found_in_the_pinned_sources():
    for path, parts in speedrun.FIXED_PARTS.items():
        source = speedrun.git_show(speedrun.PINNED_COMMIT, path)
        for part, _ in parts:
            first, last = speedrun.fixed_lines(source, part)
            assert 0 < first <= last, part
    source = speedrun.git_show(speedrun.PINNED_COMMIT, "05_train.py")
    first, last = speedrun.fixed_lines(source, "train: ShardLoader(...)")
    assert 'ShardLoader(run.data_dir, "train"' in "".join(source.splitlines()[first - 1:last])


def test_a_patch_outside_the_fixed_parts_applies_to_a_clean_copy_of_the_pinned_tree(tmp_path):
    patch = pinned_diff("05_train.py", "    warmup = max(1, int(cfg.warmup_frac * cfg.planned_steps))",
                        "    warmup = max(2, int(cfg.warmup_frac * cfg.planned_steps))")
    speedrun.check_patch(patch, speedrun.PINNED_COMMIT)        # no refusal
    tree = speedrun.pinned_tree(speedrun.PINNED_COMMIT, tmp_path, patch)
    assert "max(2, int(cfg.warmup_frac" in (tree / "05_train.py").read_text()
    assert not (tree / ".git").exists() and (tree / "06_eval.py").read_text() == \
        speedrun.git_show(speedrun.PINNED_COMMIT, "06_eval.py")
    refused([recipe_file(tmp_path, patch=patch.replace("max(1, int", "max(7, int"))], "does not apply",
            speedrun.PINNED_COMMIT[:12])


def test_the_baseline_record_is_committed_with_the_required_seeds():
    record = speedrun.read_record(speedrun.BASELINE_RECORD)
    assert record["flags"] == "" and record["patch"] is None and record["pinned_commit"] == speedrun.PINNED_COMMIT
    readme = (REPO_DIR / "README.md").read_text(encoding="utf-8")
    scores = ", ".join(f"{s['bpb']:.4f}" for s in record["per_seed"])
    assert f"{record['mean_bpb']:.4f} ± {record['sd_bpb']:.4f} (seeds 1337, 1, 2, 3: {scores})" in readme


@pytest.mark.slow
def test_the_rules_and_the_readme_say_the_same():
    readme = (REPO_DIR / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Speedrun leaderboard"):]
    section = section[:section.index("\n## ", 5)] if "\n## " in section[5:] else section
    for fact in ("307,200", "379.7 GFLOP", "`--seq-len 64`", "200,704", "python -m exercises.speedrun",
                 "1337, 1, 2, 3", "--rerun", "--compare", "t(3) = 3.18", "06_eval.py", "04_data.py", "flops_per_token",
                 "save_checkpoint"):
        assert fact in section, fact
        assert fact in speedrun.__doc__, fact
    done = run_speedrun("--rules")
    assert done.returncode == 0 and done.stdout.startswith("The rules") and "307,200" in done.stdout


@pytest.mark.slow
def test_the_pinned_data_is_what_01_and_04_make_from_the_course_corpus(data, capsys):
    speedrun.main(["--fingerprint", *map(str, data_args(data))])
    assert capsys.readouterr().out.split() == ["tokenizer", speedrun.COURSE_TOKENIZER_SHA256,
                                                "shards", speedrun.COURSE_SHARDS_SHA256]
    speedrun.check_pinned_data(data["tok"], data["data"])      # every shard's bytes: no refusal


@pytest.mark.slow
def test_no_recipe_is_one_error_line_and_a_failing_exit_status(tmp_path):
    one_error_line(run_speedrun(), "pass a recipe")
    one_error_line(run_speedrun(tmp_path / "missing.txt"), "no recipe at")
    (tmp_path / "bad.txt").write_text("lr: 3\n")
    one_error_line(run_speedrun(tmp_path / "bad.txt"), "line 1 is not `flags: ...` or `patch: FILE`")
