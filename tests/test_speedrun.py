"""The capstone's scoring script (exercises/speedrun.py): one score line for a finished tiny run that keeps
the rules, one error line (exit status != 0) for each rule a run breaks.

One real run (20 planned steps on the embedded corpus's tiny tokenizer and shards) is made once; each broken
rule is a copy of it with one thing changed, as a student's run would differ."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from helpers import CORPUS, REPO_DIR, lesson, one_error_line, run_script

from exercises import speedrun

STEPS = 20


def run_speedrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "exercises.speedrun", *map(str, args)], cwd=REPO_DIR, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The embedded corpus's tiny tokenizer and shards (01 and 04 --preset tiny) and a finished 20-step run on them."""
    corpus = CORPUS
    root = tmp_path_factory.mktemp("speedrun")
    tok, data, run = root / "tok" / "tokenizer.json", root / "data", root / "run"
    for script, *args in (("01_tokenizer.py", "--out", tok.parent),
                          ("04_data.py", "--tokenizer", tok, "--out", data),
                          ):
        done = run_script(script, "--preset", "tiny", "--data", str(corpus), *map(str, args), timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    done = run_script("05_train.py", "--preset", "tiny", "--planned-steps", str(STEPS), "--no-hellaswag",
                      "--tokenizer", str(tok), "--data-dir", str(data), "--out", str(run), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(root=root, tok=tok, data=data, run=run)


def paths(f, run=None, data=None):
    return [run or f["run"], "--tokenizer", f["tok"], "--data-dir", data or f["data"]]


def last_eval(run):
    return [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines() if '"eval"' in l][-1]


@pytest.mark.slow
def test_a_finished_run_that_keeps_the_rules_gets_one_score_line(finished):
    done = run_speedrun(*paths(finished))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("speedrun: "), done.stdout
    line = lines[0]
    score = float(re.match(r"speedrun: (\d+\.\d{4}) bits/byte on 200,704 validation tokens \| ", line).group(1))
    assert score == pytest.approx(last_eval(finished["run"])["val_bpb"], abs=6e-5)   # the run's own, to 4 decimals
    assert 3.0 < score < 4.36       # 20 steps: above a trained run (≈ 2.7), below guessing (10 bits / 2.29 bytes)
    assert f"{STEPS * 1024:,} training tokens ({STEPS} steps × 1,024)" in line
    assert f"of {speedrun.FLOP_BUDGET / 1e9:.1f} GFLOP" in line and "379.7 GFLOP" in line
    assert f"flags: --planned-steps {STEPS} | seed 1337 | " in line


@pytest.mark.slow
def test_the_pinned_data_is_what_01_and_04_make_from_the_course_corpus(finished, capsys):
    speedrun.main(["--fingerprint", "--tokenizer", str(finished["tok"]), "--data-dir", str(finished["data"])])
    assert capsys.readouterr().out.split() == ["tokenizer", speedrun.COURSE_TOKENIZER_SHA256,
                                                "shards", speedrun.COURSE_SHARDS_SHA256]


def test_the_budget_is_the_tiny_presets():
    assert speedrun.TOKEN_BUDGET == 307_200
    tiny = lesson("05_train").PRESETS["tiny"]
    assert speedrun.FLOP_BUDGET == lesson("02_model").flops_per_token(speedrun.tiny_model_config(tiny), 64) * 307_200
    assert round(speedrun.FLOP_BUDGET / 1e9, 1) == 379.7


def test_the_rules_and_the_readme_say_the_same():
    readme = (REPO_DIR / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Speedrun leaderboard"):]
    section = section[:section.index("\n## ", 5)] if "\n## " in section[5:] else section
    for fact in ("307,200", "379.7 GFLOP", "`--seq-len 64`", "200,704", "python -m exercises.speedrun"):
        assert fact in section, fact
        assert fact in speedrun.__doc__, fact
    done = run_speedrun("--rules")
    assert done.returncode == 0 and done.stdout.startswith("The rules") and "307,200" in done.stdout


def edit_checkpoint(run, **changes):
    """Change keys of latest.pt; `train_config__x` / `config__x` change one field of those dicts, and
    `train_config__model__x` one field of the model's config inside the train config."""
    path = run / "latest.pt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    for key, value in changes.items():
        *outer, inner = key.split("__")
        target = ckpt
        for name in outer:
            target = target[name]
        target[inner] = value
    torch.save(ckpt, path)


def edit_last_eval(run, **changes):
    path = run / "log.jsonl"
    lines = path.read_text().splitlines()
    i = max(n for n, l in enumerate(lines) if '"eval"' in l)
    lines[i] = json.dumps({**json.loads(lines[i]), **changes})
    path.write_text("\n".join(lines) + "\n")


def copy_run(f, name):
    run = f["root"] / name
    shutil.copytree(f["run"], run)
    return run


def other_data(f, name, change_shard: bool):
    """A copy of the shards whose manifest says something else (a setting, or one shard's hash)."""
    data = f["root"] / name
    shutil.copytree(f["data"], data)
    manifest = json.loads((data / "manifest.json").read_text())
    if change_shard:
        manifest["shards"][3]["sha256"] = "0" * 64
    else:
        manifest["seed"] = 1
    (data / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return data


BROKEN = {   # name: (how the copy of the run differs, needles of the one error line)
    "not finished": (lambda f, run: edit_checkpoint(run, step=STEPS // 2), ("not finished", f"step {STEPS // 2} of the {STEPS}")),
    "no final evaluation": (lambda f, run: edit_last_eval(run, step=STEPS - 5), ("no evaluation at the last step",)),
    "over the token budget": (lambda f, run: edit_checkpoint(run, train_config__total_batch_tokens=16_384),
                              ("over budget", "327,680 training tokens", "307,200")),
    "over the compute budget": (lambda f, run: edit_checkpoint(run, config__n_layer=100), ("over budget", "GFLOP", "379.7")),
    "other eval windows": (lambda f, run: edit_checkpoint(run, train_config__model__block_size=128), ("--seq-len 128", "64")),
    "part of the val shard": (lambda f, run: edit_checkpoint(run, train_config__eval_batches=2), ("eval_batches", "whole")),
    "eval changed in the log": (lambda f, run: edit_last_eval(run, val_tokens=4096), ("scored 4,096", "200,704", "changed")),
    "other tokenizer": (lambda f, run: edit_checkpoint(run, tokenizer_sha256="0" * 64), ("another tokenizer",)),
    "log of another run": (lambda f, run: edit_last_eval(run, val_bpb=last_eval(run)["val_bpb"] - 0.5),
                           ("the log is not this checkpoint's",)),
}


def refused(argv, *needles) -> str:
    """speedrun.main in this process (faster than a subprocess; the exit status is checked below): it must stop
    with ONE line "error: not a speedrun entry: ..." holding every needle, and print no score."""
    with pytest.raises(SystemExit) as stop:
        speedrun.main([str(a) for a in argv])
    message = stop.value.code
    assert isinstance(message, str) and message.startswith("error: not a speedrun entry: "), message
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BROKEN))
def test_each_broken_rule_is_refused_in_one_line(finished, name, capsys):
    change, needles = BROKEN[name]
    run = copy_run(finished, name.replace(" ", "_"))
    change(finished, run)
    refused(paths(finished, run=run), *needles)
    assert "speedrun:" not in capsys.readouterr().out


@pytest.mark.slow
def test_other_data_is_refused_in_one_line(finished):
    """Shards other than the run trained on, and a run trained on shards that are not the embedded corpus's."""
    refused(paths(finished, data=other_data(finished, "data_other_settings", False)),
            "not trained on the shards in --data-dir")
    data = other_data(finished, "data_other_text", True)
    run = copy_run(finished, "run_on_other_text")
    edit_checkpoint(run, data_sha256=hashlib.sha256((data / "manifest.json").read_bytes()).hexdigest())
    refused(paths(finished, run=run, data=data), "not the embedded corpus's tiny shards")


@pytest.mark.slow
def test_a_refusal_is_one_stderr_line_and_a_failing_exit_status(finished):
    run = copy_run(finished, "unfinished")
    edit_checkpoint(run, step=STEPS - 1)
    one_error_line(run_speedrun(*paths(finished, run=run)), "not a speedrun entry", "not finished")


@pytest.mark.slow
def test_seeds_of_one_recipe_make_a_mean_and_other_recipes_are_refused(finished, capsys):
    """The leaderboard's number: several seeds of ONE recipe, each scored, then mean ± sd. (A copy whose saved
    seed says 5 stands in for a second seed: the script cannot tell, and need not for this check.)"""
    other_seed = copy_run(finished, "seed_5")
    edit_checkpoint(other_seed, train_config__seed=5)
    line = speedrun.main([*map(str, paths(finished)), str(other_seed)])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3 and out[-1] == line
    score = last_eval(finished["run"])["val_bpb"]
    assert line.startswith(f"speedrun: {score:.4f} ± 0.0000 bits/byte (mean ± sd of 2 seeds: 1337, 5) | "), line
    assert f"flags: --planned-steps {STEPS} (and --seed)" in line
    refused([*paths(finished), finished["run"]], "same seed", "1337, 1337")
    other_lr = copy_run(finished, "lr_1e-2")
    edit_checkpoint(other_lr, train_config__lr=1e-2)
    refused([*paths(finished), other_lr], "differ in more than --seed", "--lr 0.01")


def test_no_run_is_refused_in_one_line(tmp_path):
    refused([tmp_path], "holds no latest.pt")
    one_error_line(run_speedrun(), "pass the --out folder")
