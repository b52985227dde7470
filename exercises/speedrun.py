"""The capstone: a CPU speedrun on the tiny corpus — the lowest validation bits per byte for a fixed budget.

A score counts only when this script trained it. You submit a RECIPE, not a run folder: 05's flags in a
small file, and/or a git patch against the pinned commit; the script applies it to a clean copy of the
pinned tree, trains the four required seeds on data whose every shard it checks, scores each checkpoint
with the pinned evaluation, and writes a record that anyone re-runs with one command.

    python -m exercises.speedrun my_recipe.txt          # train seeds 1337, 1, 2, 3; write the record
    python -m exercises.speedrun --rerun RECORD.json    # the teacher: train it again, compare seed by seed
    python -m exercises.speedrun --compare RECORD.json  # the paired rule against the baseline's record
    python -m exercises.speedrun --check-run OUT_DIR    # your own 05 run, checked (not an entry)

A recipe file (lines; `#` starts a comment):
    flags: --warmup-frac 0 --lr 4e-3      # 05_train.py flags on top of --preset tiny (or --preset tiny-plus)
    patch: my_change.patch                # optional: `git diff <pinned commit>` of your code change
A .patch or .diff file is a recipe with a patch and no flags. Training four seeds takes ≈ 4 × 1.5 min on a
shared 2-core machine (--jobs 2: two at a time); the runs and the record go to out/speedrun/<recipe name>/.

The rules (a recipe or a run that breaks one is refused in one line, exit status 1):
  1. the budget: at most 307,200 training tokens (the tiny preset's 300 steps × 1,024) — tokens = steps ×
     `total_batch_tokens` — and at most the tiny model's training compute for them, 379.7 GFLOP
     (02's flops_per_token at T = 64 × tokens): a bigger model must train on fewer tokens. The checkpoint
     must prove it: its loader's position and AdamW's step counters agree with its step and train_config;
  2. the data: the tokenizer and shards that `python 01_tokenizer.py --preset tiny` and
     `python 04_data.py --preset tiny` make from the embedded corpus (embedded/corpus); the SHA-256 of the
     tokenizer and of EVERY shard are pinned below, checked before and after training;
  3. the evaluation: validation windows of 64 + 1 tokens (`--seq-len 64`), the whole validation shard
     (batch 8 × 64: 3,136 windows, 200,704 tokens), scored by 06's bits_per_byte of the pinned commit; the
     run's own last evaluation must agree within 0.001 bits per byte (CPU runs are bit-exact);
  4. what is fixed: a patch may change 02_model.py, 03_muon.py, 05_train.py and fast/ — not the evaluation
     (06_eval.py; 05's evaluate and probe_loss), the data and its loader (01_tokenizer.py, 04_data.py,
     embedded/, 05's training ShardLoader and its split; no added line names the "val" split), the budget
     (05's tiny preset and steps_to_run, 02's flops_per_token), what a checkpoint records (05's
     save_checkpoint), the scorer (exercises/) or the plumbing (house/); flags may not set --seed, --seq-len,
     paths or --resume;
  5. the seeds: 1337, 1, 2 and 3, trained by the scorer; an entry is their mean, and two entries are compared
     seed by seed by the paired t-test of README "Beyond seed noise" (house/stats.py): A beats B when the mean
     paired difference is below zero by more than t(n − 1) standard errors (two-sided 95 %: t(3) = 3.18).

What it cannot check: code in a patch that reaches around the rules (reads the validation text from disk
itself, or rewrites a fixed function at run time); the record keeps the whole patch, for a reader.
"""
from __future__ import annotations

import ast
import dataclasses
import datetime
import hashlib
import importlib
import io
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import house
from house import checkpoints
import house.runs
import house.shards
import house.stats

tokenizer_lib = importlib.import_module("01_tokenizer")
model_lib = importlib.import_module("02_model")
data_lib = importlib.import_module("04_data")
train_lib = importlib.import_module("05_train")
eval_lib = importlib.import_module("06_eval")

# --- 1. The pins: the commit a patch applies to, the budget, the data, the seeds, the agreement -----------

PINNED_COMMIT = "34f7400d5cd03a42574e25eeaaa3f565fba4ed13"   # main, 2026-12-06: the tree every recipe trains in
TINY = train_lib.PRESETS["tiny"]
TOKEN_BUDGET = TINY.planned_steps * TINY.total_batch_tokens          # 300 × 1,024 = 307,200
EVAL_SEQ_LEN = TINY.model.block_size                                 # 64: validation windows of 64 + 1 tokens
EVAL_BATCH = TINY.micro_batch                                        # 8: the batch the score is computed with
REQUIRED_SEEDS = (1337, 1, 2, 3)                                     # the README's; an entry is these four
AGREEMENT_BPB = 1e-3        # a re-run, and a run's own last evaluation, vs the scorer's (CPU runs are bit-exact)
# What 01 and 04 make with --preset tiny from embedded/corpus, the repo's own (deterministic: same files, same hashes).
COURSE_TOKENIZER_SHA256 = "31a25a9dba94fb0b171694c5054ce1deb5fe1323ab6f0517c50a565a14471882"
COURSE_SHARDS = {   # file: (split, tokens, sha256 of the file's bytes)
    "shard_00000.npy": ("val", 201154, "dd91d442a23a0e99e38e7b1bc9db7a044efc873c8ec7c7cd7424755b5f5f4a50"),
    "shard_00001.npy": ("train", 500000, "e66d6f9d385177d718cb49284ad9f2f09d7be5b192e8b06151632bbc05032ed2"),
    "shard_00002.npy": ("train", 500000, "82fb9a5c24cb6b7e0d3cfda942b9a7286afd6d37358724fde2bf14354edb20d3"),
    "shard_00003.npy": ("train", 500000, "2351c5c3db9d9c006de0ff0eeea7a5e4160217eeb94ad79f9e2687de86d3f033"),
    "shard_00004.npy": ("train", 500000, "fa745b786d08cb27d4552b7810c3a7f0b47542ab7454be17bfc7255232e5be66"),
    "shard_00005.npy": ("train", 500000, "26d6185d0d172aa14ce9c5ab47b766e400f54e4f2f16e13a5315a32f7e9efaf1"),
    "shard_00006.npy": ("train", 500000, "b08273b8e48544bff52aabbe819c238f30283344bc0c625d9b30ddca7bc5480f"),
    "shard_00007.npy": ("train", 310163, "5fc754e32cc67712c93a8e98ccd18de5b042dee464cfe71b9d103bdf88c413eb"),
}
COURSE_SHARDS_SHA256 = "19c1d6c807597792669e57815715c896ca62db2f27efe88a188ff04ccd2614bc"   # shards_fingerprint
MAKE_DATA = "python 01_tokenizer.py --preset tiny, then python 04_data.py --preset tiny"
BASELINE_RECORD = house.REPO_DIR / "bench" / "results" / "speedrun" / "baseline.json"
WORK_DIR = house.OUT_DIR / "speedrun"



def tiny_model_config(cfg, vocab_size: int = tokenizer_lib.TINY_VOCAB_SIZE) -> "model_lib.LLMConfig":
    """The model 05 builds for a TrainConfig (its `model`) at the tiny vocabulary."""
    return dataclasses.replace(cfg.model, vocab_size=vocab_size)


FLOP_BUDGET = model_lib.flops_per_token(tiny_model_config(TINY), EVAL_SEQ_LEN) * TOKEN_BUDGET   # 379.7 GFLOP


def refuse(message: str) -> None:
    raise house.UserError(f"not a speedrun entry: {message}")


# --- 2. What a patch may change: whole files, and the fixed parts of 05 and 02 ----------------------------

PATCHABLE = ("02_model.py", "03_muon.py", "05_train.py", "fast/")
FIXED_FILES = {"06_eval.py": "the evaluation", "04_data.py": "the data and its loader", "01_tokenizer.py":
               "the tokenizer", "embedded/": "the corpus", "exercises/": "the scorer", "house/": "the plumbing "
               "(shard checks, checkpoint files, the log)", "tests/": "the tests", "bench/": "the recorded results"}
FIXED_PARTS = {   # file: [(what in its pinned source, what it fixes)]
    "05_train.py": [("PRESETS['tiny']", "the budget (the tiny preset: 300 steps × 1,024 tokens, the whole "
                     "validation shard scored)"), ("TrainConfig.steps_to_run", "the budget (the steps a run trains)"),
                    ("train: ShardLoader(...)", "the data and its loader split (the training loader reads \"train\")"),
                    ("save_checkpoint", "what a checkpoint records (the proof of the budget and the data)"),
                    ("evaluate", "the evaluation"), ("probe_loss", "the evaluation (the validation batch a "
                     "checkpoint is probed with)")],
    "02_model.py": [("flops_per_token", "the compute budget (the FLOPs a token costs)")],
}
VAL_SPLIT = re.compile(r"""["']val["']""")


def fixed_lines(source: str, name: str) -> tuple[int, int]:
    """(first, last) line of a fixed part of a pinned source: a function, a method (Class.name), the "tiny"
    entry of PRESETS, or the ShardLoader call inside train()."""
    tree = ast.parse(source)
    if name == "PRESETS['tiny']":
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "PRESETS":
                i = next(i for i, k in enumerate(node.value.keys) if getattr(k, "value", None) == "tiny")
                return node.value.keys[i].lineno, node.value.values[i].end_lineno
    outer, _, inner = name.partition(": ") if ": " in name else (None, None, name)
    scope = next((n for n in tree.body if getattr(n, "name", None) == outer), tree) if outer else tree
    if inner == "ShardLoader(...)":
        call = next(n for n in ast.walk(scope) if isinstance(n, ast.Call) and getattr(n.func, "attr", None) == "ShardLoader")
        return call.lineno, call.end_lineno
    cls, _, fn = inner.rpartition(".")
    body = next(n for n in tree.body if getattr(n, "name", None) == cls).body if cls else tree.body
    node = next(n for n in body if getattr(n, "name", None) == fn)
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return first, node.end_lineno


def parse_patch(text: str) -> dict[str, dict]:
    """A unified diff (git diff) → {path: {"touched": old line numbers removed or inserted before, "added":
    [(new line number, text)], "paths": every path it names, "special": a symlink/binary/mode line or None}}."""
    files, current, old, new = {}, None, 0, 0
    for line in text.splitlines():
        if line.startswith("diff --git "):
            a, _, b = line[len("diff --git "):].partition(" b/")
            current = files.setdefault(b, {"touched": set(), "added": [], "paths": {a.removeprefix("a/"), b}, "special": None})
        elif current is None:
            continue
        elif line.startswith(("rename from ", "rename to ", "copy from ", "copy to ")):
            current["paths"].add(line.split(" ", 2)[2])
        elif line.startswith(("new file mode 120000", "new mode 120000", "GIT binary patch", "Binary files")):
            current["special"] = line
        elif m := re.match(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@", line):
            old, new = int(m.group(1)), int(m.group(2))
            old, new = (old or 1), (new or 1)
        elif line.startswith(("--- ", "+++ ", "index ", "new file mode", "deleted file mode", "old mode", "new mode", "similarity")):
            continue
        elif line.startswith("-"):
            current["touched"].add(old)
            old += 1
        elif line.startswith("+"):
            current["touched"].add(old - 0.5)          # inserted between old line `old - 1` and `old`
            current["added"].append((new, line[1:]))
            new += 1
        elif line.startswith(" ") or line == "":
            old, new = old + 1, new + 1
    return files


def check_patch(text: str, commit: str) -> None:
    """Refuse, in one line naming the cause, a patch that changes what is fixed (the rules' 4)."""
    files = parse_patch(text)
    if text.strip() and not files:
        refuse("the patch holds no `diff --git` file: make it with git diff (git diff "
               f"{commit[:12]} > my.patch)")
    for path, change in files.items():
        for p in sorted(change["paths"]):
            if not p.startswith(PATCHABLE) or "/../" in f"/{p}":
                what = next((w for prefix, w in FIXED_FILES.items() if p.startswith(prefix)), "not part of a recipe")
                refuse(f"the patch changes {p}: {what} is fixed (a patch may change {', '.join(PATCHABLE)} only, "
                       "outside their fixed parts: python -m exercises.speedrun --rules)")
        if change["special"]:
            refuse(f"the patch changes {path} with \"{change['special']}\": a recipe's patch holds text changes only")
        source = git_show(commit, path) if path in FIXED_PARTS else ""
        for part, what in FIXED_PARTS.get(path, []):
            first, last = fixed_lines(source, part)
            hit = sorted(n for n in change["touched"]   # a removed line n; a line inserted before line p (p - 0.5)
                         if (first <= n <= last if n == int(n) else first < n + 0.5 <= last))
            if hit:
                refuse(f"the patch changes {path} line {math.ceil(hit[0])} ({part}, lines {first}–{last} of the pinned "
                       f"{path}): {what} is fixed")
        for number, line in change["added"]:
            if VAL_SPLIT.search(line):
                refuse(f"the patch's {path} line {number} names the validation split ({line.strip()[:60]}): the "
                       "data and its loader split are fixed — a recipe trains on \"train\" only")


# --- 3. The pinned tree and the data: a clean copy, shard by shard ---------------------------------------

def git(*args: str, binary: bool = False):
    done = subprocess.run(["git", "-C", str(house.REPO_DIR), *args], capture_output=True, timeout=120)
    if done.returncode:
        raise house.UserError(done.stderr.decode(errors="replace").strip().splitlines()[-1] if done.stderr else "git failed")
    return done.stdout if binary else done.stdout.decode()


def git_show(commit: str, path: str) -> str:
    return git("show", f"{commit}:{path}")


def check_commit(commit: str) -> None:
    if not re.fullmatch(r"[0-9a-f]{40}", commit or ""):
        refuse(f"the pinned commit {commit!r} is not a 40-digit commit hash")
    try:
        git("cat-file", "-e", f"{commit}^{{commit}}")
    except house.UserError:
        refuse(f"the pinned commit {commit[:12]} is not in this clone ({house.shown(house.REPO_DIR)}): git fetch "
               "origin main, then run this again")


def pinned_tree(commit: str, into: Path, patch: str) -> Path:
    """A clean copy of the pinned commit's files (git archive, never the working tree), with the patch applied."""
    tree = into / "tree"
    tree.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(git("archive", "--format=tar", commit, binary=True))) as tar:
        tar.extractall(tree, filter="data")
    if patch.strip():
        (into / "recipe.patch").write_text(patch, encoding="utf-8")
        done = subprocess.run(["git", "apply", "--whitespace=nowarn", str(into / "recipe.patch")], cwd=tree,
                              capture_output=True, text=True, timeout=60)
        if done.returncode:
            why = (done.stderr.strip().splitlines() or ["git apply failed"])[0]
            refuse(f"the patch does not apply to the pinned commit {commit[:12]} ({why}): make it with "
                   f"git diff {commit[:12]} in a checkout of that commit")
    return tree


def shards_fingerprint(manifest: dict) -> str:
    """SHA-256 of the shards' (split, tokens, sha256) lines: which token streams, not where the text lay."""
    lines = "\n".join(f"{r['split']} {r['tokens']} {r['sha256']}" for r in manifest["shards"])
    return hashlib.sha256(lines.encode()).hexdigest()


def check_pinned_data(tokenizer_path: Path, data_dir: Path, when: str = "") -> None:
    """The tokenizer, the manifest's shard list and the bytes of EVERY shard are the pinned ones (rule 2)."""
    fix = f"make them with {MAKE_DATA} (or leave out --data-dir and --tokenizer: the scorer makes them)"
    if not tokenizer_path.is_file() or tokenizer_lib.tokenizer_sha256(tokenizer_path) != COURSE_TOKENIZER_SHA256:
        refuse(f"the tokenizer {house.shown(tokenizer_path)} is not the pinned one{when}: {fix}")
    manifest = data_lib.read_manifest(data_dir)
    listed = {r["file"]: (r["split"], r["tokens"], r["sha256"]) for r in manifest["shards"]}
    if listed != COURSE_SHARDS:
        refuse(f"the manifest of {house.shown(data_dir)} lists other shards than the pinned ones{when}: {fix}")
    for name, (split, _, sha) in COURSE_SHARDS.items():
        actual = house.shards.sha256_file(data_dir / name)
        if actual != sha:
            refuse(f"{house.shown(data_dir / name)} (a {split} shard) is not the pinned one{when}: its sha256 is "
                   f"{actual[:12]}…, the pin is {sha[:12]}… (the manifest only lists what a shard should be): {fix}")


def private_data(tokenizer_path: Path | None, data_dir: Path | None, tree: Path, work: Path) -> tuple[Path, Path]:
    """The scorer's own copy of the tokenizer and shards (given, or made by the pinned 01 and 04), checked
    shard by shard: (tokenizer.json, data folder). A run never trains on a folder a student can write to."""
    if tokenizer_path is None and data_dir is None:
        tokenizer_path, data_dir = WORK_DIR / "data" / "tokenizer" / "tokenizer.json", WORK_DIR / "data" / "shards"
        if not (tokenizer_path.is_file() and (data_dir / "manifest.json").is_file()):
            print(f"speedrun: making the pinned data with the pinned 01 and 04 in {house.shown(data_dir.parent)} (≈ 1 min)")
            for script, *args in (("01_tokenizer.py", "--out", tokenizer_path.parent),
                                  ("04_data.py", "--tokenizer", tokenizer_path, "--out", data_dir)):
                run_in_tree(tree, [script, "--preset", "tiny", "--data", "embedded/corpus", *map(str, args)],
                            f"the pinned {script} (making the data)")
    tokenizer_path = tokenizer_path or train_lib.DEFAULT_TOKENIZER
    data_dir = data_dir or train_lib.DEFAULT_DATA_DIR
    copy_tok, copy_data = work / "data" / "tokenizer.json", work / "data" / "shards"
    copy_data.mkdir(parents=True)
    if not tokenizer_path.is_file():
        raise house.NotFound(f"no tokenizer at {house.shown(tokenizer_path)}: make it with {MAKE_DATA}, or leave out --tokenizer")
    shutil.copyfile(tokenizer_path, copy_tok)
    for name in ("manifest.json", *COURSE_SHARDS):
        if (data_dir / name).is_file():
            shutil.copyfile(data_dir / name, copy_data / name)
    if not (copy_data / "manifest.json").is_file():
        raise house.NotFound(f"no shards in {house.shown(data_dir)} (no manifest.json): make them with {MAKE_DATA}")
    check_pinned_data(copy_tok, copy_data)
    return copy_tok, copy_data


def run_in_tree(tree: Path, argv: list[str], what: str, log: Path | None = None) -> subprocess.CompletedProcess:
    """`python ARGV` in the pinned tree; a failure is one line naming `what` and its last error line."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, *argv], cwd=tree, env=env, capture_output=True, text=True)
    if log is not None:
        log.write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode:
        lines = [l for l in done.stderr.splitlines() if l.strip()] or ["(no output)"]
        said = next((l for l in reversed(lines) if l.startswith("error:")), lines[-1])
        refuse(f"{what} stopped (exit status {done.returncode}): {said}")
    return done


# --- 4. The recipe: its file, its flags, training the seeds, scoring them --------------------------------

FORBIDDEN_FLAGS = {   # flag: why a recipe may not set it
    "--seed": f"the scorer trains the required seeds {', '.join(map(str, REQUIRED_SEEDS))} itself",
    "--seq-len": f"the evaluation's windows are fixed at {EVAL_SEQ_LEN} tokens", "--out": "the scorer chooses where runs go",
    "--tokenizer": "the data is fixed", "--data-dir": "the data is fixed", "--data": "the data is fixed",
    "--resume": "each seed is one whole run", "--overwrite": "each seed is one whole run", "--wandb": "the scorer runs offline",
}


@dataclasses.dataclass
class Recipe:
    name: str
    flags: list[str]
    patch: str = ""

    @property
    def patch_sha256(self) -> str | None:
        return hashlib.sha256(self.patch.encode()).hexdigest() if self.patch.strip() else None


def read_recipe(path: Path) -> Recipe:
    """A recipe file (`flags: ...`, `patch: FILE` lines) or a .patch/.diff file."""
    if not path.is_file():
        raise house.NotFound(f"no recipe at {house.shown(path)}: write a file with a `flags: ...` line and/or a "
                             "`patch: FILE` line (python -m exercises.speedrun --help)")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".patch", ".diff"):
        return Recipe(path.stem, [], text)
    flags, patch = [], ""
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        key, sep, value = line.partition(":")
        if not line:
            continue
        if not sep or key.strip() not in ("flags", "patch"):
            refuse(f"{house.shown(path)} line {number} is not `flags: ...` or `patch: FILE`: {line[:60]}")
        if key.strip() == "flags":
            flags += shlex.split(value)
        else:
            patch_path = (path.parent / value.strip())
            if not patch_path.is_file():
                raise house.NotFound(f"no patch at {house.shown(patch_path)} (line {number} of {house.shown(path)})")
            patch = patch_path.read_text(encoding="utf-8")
    return Recipe(path.stem, flags, patch)


def flag_value(flags: list[str], name: str):
    """The value given to `name` (last one wins, as argparse does), or None."""
    value = None
    for i, flag in enumerate(flags):
        if flag == name and i + 1 < len(flags):
            value = flags[i + 1]
        elif flag.startswith(name + "="):
            value = flag.split("=", 1)[1]
    return value


def check_flags(flags: list[str]) -> None:
    """Refuse flags the scorer sets itself, a preset other than tiny/tiny-plus, and a budget overrun the flags
    alone show (the checkpoint proves the rest after training)."""
    for flag in flags:
        name = flag.split("=", 1)[0]
        meant = [f for f in FORBIDDEN_FLAGS if f.startswith(name)] if name.startswith("--") and len(name) > 3 else []
        if name in FORBIDDEN_FLAGS or len(meant) == 1:   # argparse takes a unique prefix: --see is --seed
            full = name if name in FORBIDDEN_FLAGS else meant[0]
            shown = name if full == name else f"{name} ({full})"
            refuse(f"the recipe sets {shown}: {FORBIDDEN_FLAGS[full]}; drop it from the flags")
    preset = flag_value(flags, "--preset") or "tiny"
    if preset not in ("tiny", "tiny-plus"):
        refuse(f"the recipe uses --preset {preset}; the speedrun starts from --preset tiny (or tiny-plus)")
    try:
        steps = int(flag_value(flags, "--planned-steps") or TINY.planned_steps)
        steps = min(steps, int(flag_value(flags, "--max-steps") or steps))
        batch = int(flag_value(flags, "--total-batch-tokens") or TINY.total_batch_tokens)
    except ValueError:
        return   # 05 says what is wrong with the number, in its own line
    if steps * batch > TOKEN_BUDGET:
        refuse(f"over budget: {steps} steps × {batch:,} tokens = {steps * batch:,} training tokens, the budget is "
               f"{TOKEN_BUDGET:,}: lower --planned-steps/--max-steps or --total-batch-tokens")


def train_seeds(tree: Path, recipe: Recipe, tok: Path, data: Path, runs_dir: Path, jobs: int) -> dict[int, Path]:
    """05 of the pinned (patched) tree, once per required seed, `jobs` at a time: {seed: its out folder}."""
    outs = {seed: runs_dir / f"seed_{seed}" for seed in REQUIRED_SEEDS}
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "PYTHONPATH": ""}
    waiting, running = list(REQUIRED_SEEDS), {}
    while waiting or running:
        while waiting and len(running) < jobs:
            seed = waiting.pop(0)
            outs[seed].mkdir(parents=True)
            argv = [sys.executable, "05_train.py", "--preset", "tiny", *recipe.flags, "--no-hellaswag", "--seed",
                    str(seed), "--tokenizer", str(tok), "--data-dir", str(data), "--out", str(outs[seed])]
            log = open(outs[seed] / "output.txt", "w", encoding="utf-8")
            running[seed] = (subprocess.Popen(argv, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT), log, time.time())
        time.sleep(0.2)
        for seed, (proc, log, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[seed]
            if proc.returncode:
                for other, _, _ in running.values():
                    other.kill()
                lines = [l for l in (outs[seed] / "output.txt").read_text().splitlines() if l.strip()] or ["(no output)"]
                said = next((l for l in reversed(lines) if l.startswith("error:")), lines[-1])
                refuse(f"05_train.py stopped on seed {seed} (exit status {proc.returncode}): {said}")
            print(f"speedrun: seed {seed} trained in {time.time() - t0:.0f} s ({house.shown(outs[seed])})", flush=True)
    return outs


EVAL_CODE = """
import importlib, json, sys
sys.path.insert(0, ".")
import torch
torch.set_num_threads(1)
tokenizer_lib, model_lib, eval_lib = (importlib.import_module(m) for m in ("01_tokenizer", "02_model", "06_eval"))
tokenizer = tokenizer_lib.load_tokenizer(sys.argv[1])
for path in sys.argv[3:]:
    model = eval_lib.load_model(path, device="cpu")
    r = eval_lib.bits_per_byte(model, sys.argv[2], tokenizer, batch_size=%d, seq_len=%d, max_batches=None, device="cpu")
    print(json.dumps({"path": path, "bpb": r["bpb"], "tokens": r["tokens"],
                      "flops_per_token": model_lib.flops_per_token(model.config, %d)}))
""" % (EVAL_BATCH, EVAL_SEQ_LEN, EVAL_SEQ_LEN)


def score_in_tree(tree: Path, tok: Path, data: Path, checkpoints: list[Path]) -> list[dict]:
    """The pinned 06's bits_per_byte (and the pinned 02's flops_per_token) of each checkpoint, in the tree."""
    done = run_in_tree(tree, ["-c", EVAL_CODE, str(tok), str(data), *map(str, checkpoints)], "the pinned evaluation")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


# --- 5. What a checkpoint proves: step, loader position, optimizer counters, budget, data -----------------

def read_checkpoint(path: Path) -> dict:
    """The keys of a 05 latest.pt this script needs, read as data (weights_only=True; tensors memory-mapped).
    An older checkpoint's numpy RNG state needs numpy's array types, nothing else."""
    if not path.is_file():
        refuse(f"{house.shown(path.parent)} holds no latest.pt: pass the --out of a finished python 05_train.py --preset tiny run")
    core = getattr(np, "_core", None) or np.core          # numpy 2 / numpy 1
    allowed = [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:   # noqa: BLE001 - any unreadable file is the same answer
        beyond = [name for name in checkpoints.unsafe_globals(path) if name not in checkpoints.OLD_FORMAT]
        if beyond:                                        # a payload: named, never unpickled (house's wording)
            refuse(checkpoints.not_data(house.shown(path), beyond))
        refuse(f"{house.shown(path)} is not a checkpoint this script can read as data ({type(e).__name__}): "
               "it was not written by this repo's 05_train.py")
    keys = ("step", "loader", "optimizers", "train_config", "config", "tokenizer_sha256", "data_sha256")
    missing = [k for k in keys if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        refuse(f"{house.shown(path)} has no {', '.join(missing)}: it was not written by this repo's 05_train.py")
    return {k: checkpoint[k] for k in (*keys, "git_commit") if k in checkpoint}


def optimizer_steps(checkpoint: dict) -> set[int]:
    """Every step counter in the optimizers' states (AdamW keeps one per parameter; Muon keeps none)."""
    return {int(state["step"]) for opt in checkpoint["optimizers"] for state in opt["state"].values() if "step" in state}


def check_proofs(checkpoint: dict, cfg, data_dir: Path, seed: int | None = None) -> None:
    """What the checkpoint itself proves, against what it claims: its step is the last of its schedule, its
    loader read exactly step × total_batch_tokens training tokens of the "train" split, AdamW took `step` steps."""
    step, loader = checkpoint["step"], checkpoint["loader"]
    if step != cfg.steps_to_run:
        refuse(f"the run is not finished: its checkpoint is at step {step} of the {cfg.steps_to_run} it runs")
    if loader.get("split") != "train":
        refuse(f"the checkpoint's loader read the {loader.get('split')!r} split: the run trained on the validation "
               "data (05's ShardLoader must read \"train\")")
    counters = optimizer_steps(checkpoint)
    if counters and counters != {step}:
        refuse(f"the checkpoint says step {step}, but its AdamW state has taken {', '.join(map(str, sorted(counters)))} "
               "steps: the checkpoint was edited, or the run stepped more often than it says")
    world = loader.get("world_size", 1)
    per_epoch = len(data_lib.ShardLoader(data_dir, "train", loader["B"], loader["T"], world_size=world))
    read = (loader["epoch"] * per_epoch + loader["batch"]) * loader["B"] * loader["T"] * world
    claimed = step * cfg.total_batch_tokens
    if (loader["B"], loader["T"]) != (cfg.micro_batch, cfg.model.block_size) or read != claimed:
        refuse(f"the checkpoint's loader has read {read:,} training tokens (batches of {loader['B']} × {loader['T']}), "
               f"its train_config claims {step} steps × {cfg.total_batch_tokens:,} = {claimed:,}: the checkpoint's "
               "train_config or step was edited")
    if seed is not None and (cfg.seed, loader.get("seed")) != (seed, seed):
        refuse(f"the run of seed {seed} says seed {cfg.seed} (its loader {loader.get('seed')}): the recipe changed the seed")


def check_budget(cfg, flops_per_token: int) -> dict:
    """Rule 1: tokens = steps × total_batch_tokens ≤ 307,200 and their training FLOPs ≤ the tiny model's."""
    tokens = cfg.steps_to_run * cfg.total_batch_tokens
    flops = flops_per_token * tokens
    if tokens > TOKEN_BUDGET:
        refuse(f"over budget: {cfg.steps_to_run} steps × {cfg.total_batch_tokens:,} tokens = {tokens:,} training tokens, "
               f"the budget is {TOKEN_BUDGET:,}: lower --planned-steps/--max-steps or --total-batch-tokens")
    if flops > FLOP_BUDGET * (1 + 1e-9):
        refuse(f"over budget: {flops / 1e9:.1f} GFLOP of training compute ({flops_per_token:,} FLOPs/token × {tokens:,} "
               f"tokens), the budget is {FLOP_BUDGET / 1e9:.1f} GFLOP: a bigger model must train on fewer tokens")
    return {"tokens": tokens, "flops": flops}


def check_settings(cfg, checkpoint: dict, data_dir: Path) -> None:
    """Rules 2 and 3 as the checkpoint records them: the tiny preset, 64-token windows, the whole validation
    shard, the pinned tokenizer and exactly the shards of `data_dir`."""
    if cfg.size != "tiny":
        refuse(f"the run used --preset {cfg.preset}; the speedrun starts from --preset tiny (or tiny-plus)")
    if cfg.model.block_size != EVAL_SEQ_LEN:
        refuse(f"the run used --seq-len {cfg.model.block_size}: the speedrun evaluates windows of {EVAL_SEQ_LEN} tokens "
               f"(the model's context is part of the fixed evaluation); train with --seq-len {EVAL_SEQ_LEN}")
    if cfg.eval_batches is not None:
        refuse(f"the run evaluated {cfg.eval_batches} validation batches (eval_batches); the speedrun scores the "
               f"whole validation shard: keep the tiny preset's eval_batches None")
    if checkpoint["tokenizer_sha256"] != COURSE_TOKENIZER_SHA256:
        refuse(f"the run was trained with another tokenizer than the embedded corpus's tiny one: make the data with "
               f"{MAKE_DATA}, and train on it")
    if house.runs.data_sha256(data_dir) != checkpoint["data_sha256"]:
        refuse(f"the run was not trained on the shards in --data-dir {house.shown(data_dir)} (their manifest differs "
               "from the one its checkpoint records): pass the --data-dir the run used")


def last_eval(out: Path, step: int, data_dir: Path) -> dict:
    """The run's own last evaluation: at its last step, over the whole validation shard."""
    if not (out / "log.jsonl").is_file():
        refuse(f"{house.shown(out)} holds latest.pt but no log.jsonl: pass the whole --out folder of the run")
    evals = house.runs.read_log(out / "log.jsonl")[1]
    if not evals or evals[-1]["step"] != step:
        refuse(f"the log has no evaluation at the last step ({step}): log.jsonl is not this run's, or was cut short")
    whole = len(data_lib.ShardLoader(data_dir, "val", EVAL_BATCH, EVAL_SEQ_LEN)) * EVAL_BATCH * EVAL_SEQ_LEN
    if evals[-1].get("val_tokens") != whole:
        refuse(f"the last evaluation scored {evals[-1].get('val_tokens', 0):,} validation tokens, the whole shard is "
               f"{whole:,}: the evaluation was changed")
    return evals[-1]


def check_agreement(bpb: float, last: dict) -> None:
    """The scorer's bits per byte and the run's last evaluation agree within 0.001 (a log from another run, or
    an edited log line, does not)."""
    if not math.isfinite(bpb) or abs(bpb - last["val_bpb"]) > AGREEMENT_BPB:
        refuse(f"latest.pt scores {bpb:.4f} bits per byte but the log's last evaluation says {last['val_bpb']:.4f} "
               f"({abs(bpb - last['val_bpb']):.4f} apart, more than {AGREEMENT_BPB:g}): the log is not this checkpoint's")


# --- 6. A recipe scored: the tree, the data, four seeds, the pinned evaluation, the record ---------------

def score_recipe(recipe: Recipe, commit: str, tokenizer: Path | None, data_dir: Path | None, work: Path,
                 jobs: int = 1) -> dict:
    """Everything in the rules, in order; returns the record (not yet written)."""
    check_commit(commit)
    check_flags(recipe.flags)
    check_patch(recipe.patch, commit)
    if work.exists():
        shutil.rmtree(work / "runs", ignore_errors=True)        # the scorer's own runs of this recipe, made again
    with tempfile.TemporaryDirectory(prefix="speedrun_") as tmp:
        tree = pinned_tree(commit, Path(tmp), recipe.patch)
        tok, data = private_data(tokenizer, data_dir, tree, Path(tmp))
        print(f"speedrun: training seeds {', '.join(map(str, REQUIRED_SEEDS))} of {recipe.name} in a clean copy of "
              f"{commit[:12]}{' + its patch' if recipe.patch_sha256 else ''} (the runs: {house.shown(work / 'runs')})", flush=True)
        outs = train_seeds(tree, recipe, tok, data, work / "runs", jobs)
        check_pinned_data(tok, data, when=" after training (the recipe wrote to the data)")
        results = score_in_tree(tree, tok, data, [outs[seed] / "latest.pt" for seed in REQUIRED_SEEDS])
        per_seed = [check_seed(outs[seed], seed, result, data) for seed, result in zip(REQUIRED_SEEDS, results)]
    return make_record(recipe, commit, per_seed)


def check_seed(out: Path, seed: int, result: dict, data: Path) -> dict:
    """One seed's run against the rules, from its checkpoint's own proofs; its score."""
    checkpoint = read_checkpoint(out / "latest.pt")
    cfg = train_lib.saved_train_config(checkpoint, out / "latest.pt")
    check_settings(cfg, checkpoint, data)
    check_proofs(checkpoint, cfg, data, seed)
    budget = check_budget(cfg, result["flops_per_token"])
    check_agreement(result["bpb"], last_eval(out, checkpoint["step"], data))
    return {"seed": seed, "bpb": result["bpb"], "steps": checkpoint["step"], "training_tokens": budget["tokens"],
            "gflop": round(budget["flops"] / 1e9, 3), "validation_tokens": result["tokens"]}


def make_record(recipe: Recipe, commit: str, per_seed: list[dict]) -> dict:
    scores = [s["bpb"] for s in per_seed]
    record = {
        "what": "a speedrun record: this recipe trained and scored by python -m exercises.speedrun; re-run it "
                "with python -m exercises.speedrun --rerun THIS_FILE",
        "recipe": recipe.name, "pinned_commit": commit, "flags": shlex.join(recipe.flags),
        "patch_sha256": recipe.patch_sha256, "patch": recipe.patch or None, "seeds": list(REQUIRED_SEEDS),
        "per_seed": per_seed, "mean_bpb": float(np.mean(scores)), "sd_bpb": float(np.std(scores, ddof=1)),
        "agreement_bpb": AGREEMENT_BPB,
        "data": {"tokenizer_sha256": COURSE_TOKENIZER_SHA256, "shards": {k: v[2] for k, v in COURSE_SHARDS.items()}},
        "scored": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "scorer_commit": house.runs.git_commit(), "python": platform.python_version(),
                   "torch": torch.__version__, "machine": platform.machine()},
    }
    baseline = read_record(BASELINE_RECORD) if BASELINE_RECORD.is_file() else None
    if baseline is not None and (recipe.flags or recipe.patch_sha256):
        for s, b in zip(per_seed, baseline["per_seed"]):
            s["baseline_bpb"], s["minus_baseline"] = b["bpb"], s["bpb"] - b["bpb"]
        record["against_baseline"] = paired_rule(record, baseline)["verdict"]
    return record


def record_lines(record: dict, path: Path) -> list[str]:
    """What the scorer prints: a line per seed, then the entry's line (the leaderboard's)."""
    lines = [f"speedrun: seed {s['seed']}: {s['bpb']:.4f} bits/byte"
             + (f" (baseline {s['baseline_bpb']:.4f}, {s['minus_baseline']:+.4f})" if "baseline_bpb" in s else "")
             for s in record["per_seed"]]
    first = record["per_seed"][0]
    patch = f" | patch sha256 {record['patch_sha256'][:12]}" if record["patch_sha256"] else ""
    lines.append(f"speedrun: {record['mean_bpb']:.4f} ± {record['sd_bpb']:.4f} bits/byte (mean ± sd of seeds "
                 f"{', '.join(map(str, record['seeds']))}) | {first['training_tokens']:,} training tokens, "
                 f"{first['gflop']:.1f} of {FLOP_BUDGET / 1e9:.1f} GFLOP | flags: {record['flags'] or '(none)'}{patch} | "
                 f"pinned commit {record['pinned_commit'][:12]} | record {house.shown(path)}")
    if "against_baseline" in record:
        lines.append(f"speedrun: against the baseline: {record['against_baseline']}")
    return lines


RECORD_KEYS = ("recipe", "pinned_commit", "flags", "patch_sha256", "patch", "seeds", "per_seed", "mean_bpb")


def read_record(path: Path) -> dict:
    """A record this script wrote, checked for its keys and its patch's hash."""
    if not path.is_file():
        raise house.NotFound(f"no record at {house.shown(path)}: score a recipe first (python -m exercises.speedrun RECIPE)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        refuse(f"{house.shown(path)} is not JSON: pass a record this script wrote")
    missing = [k for k in RECORD_KEYS if not isinstance(record, dict) or k not in record]
    if missing:
        refuse(f"{house.shown(path)} has no {', '.join(missing)}: it is not a record this script wrote")
    patch = record["patch"] or ""
    if (hashlib.sha256(patch.encode()).hexdigest() if patch.strip() else None) != record["patch_sha256"]:
        refuse(f"{house.shown(path)}'s patch does not have the sha256 the record names: the record was edited")
    seeds = [s["seed"] for s in record["per_seed"]]
    if seeds != list(REQUIRED_SEEDS) or record["seeds"] != list(REQUIRED_SEEDS):
        refuse(f"{house.shown(path)} has seeds {', '.join(map(str, seeds))}; an entry is the required seeds "
               f"{', '.join(map(str, REQUIRED_SEEDS))}, trained by the scorer")
    return record


def write_record(record: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    house.write_json(path, record)


def rerun(path: Path, tokenizer: Path | None, data_dir: Path | None, jobs: int) -> list[str]:
    """The teacher's one command: train the record's recipe again and require every seed within 0.001."""
    record = read_record(path)
    recipe = Recipe(record["recipe"], shlex.split(record["flags"]), record["patch"] or "")
    again = score_recipe(recipe, record["pinned_commit"], tokenizer, data_dir, WORK_DIR / f"{recipe.name}_rerun", jobs)
    for old, new in zip(record["per_seed"], again["per_seed"]):
        gap = abs(new["bpb"] - old["bpb"])
        if not gap <= AGREEMENT_BPB or new["training_tokens"] != old["training_tokens"]:
            refuse(f"the record does not reproduce: seed {old['seed']} scores {new['bpb']:.4f} bits/byte on "
                   f"{new['training_tokens']:,} training tokens here, the record says {old['bpb']:.4f} on "
                   f"{old['training_tokens']:,} ({gap:.4f} apart; the agreement is {AGREEMENT_BPB:g}): the record "
                   f"{house.shown(path)} was not made by this recipe")
    pairs = ", ".join(f"{n['seed']} {n['bpb']:.4f}" for n in again["per_seed"])
    return [f"rerun: reproduced {house.shown(path)} — seeds {pairs} (each within {AGREEMENT_BPB:g} of the record), "
            f"mean {again['mean_bpb']:.4f} ± {again['sd_bpb']:.4f}, pinned commit {record['pinned_commit'][:12]}"]


# --- 7. The paired rule: two entries compared seed by seed ----------------------------------------------

def paired_rule(a: dict, b: dict) -> dict:
    """Differences a − b seed by seed, tested by the repo's one rule (house/stats.py, README "Beyond seed
    noise"): A beats B when t = mean / (sd / √n) is below −t(n − 1), two-sided 95 % (t(3) = 3.18 for four seeds)."""
    b_by_seed = {s["seed"]: s["bpb"] for s in b["per_seed"]}
    diffs = [s["bpb"] - b_by_seed[s["seed"]] for s in a["per_seed"]]
    v = house.stats.paired(diffs)
    if v.beyond:
        verdict = f"{a['recipe']} beats {b['recipe']}" if v.mean < 0 else f"{b['recipe']} beats {a['recipe']}"
    else:
        verdict = "not shown to differ (within seed noise)"
    line = (f"{a['recipe']} − {b['recipe']} per seed: "
            + ", ".join(f"{s['seed']} {d:+.4f}" for s, d in zip(a["per_seed"], diffs))
            + f" | mean {v.mean:+.4f} ± {v.sd:.4f} (sd), paired t = {v.t:+.2f} with {v.n - 1} degrees of freedom, "
              f"the two-sided 95 % cutoff t({v.n - 1}) = {v.critical:.2f} | {verdict}")
    return {"diffs": diffs, "mean": v.mean, "sd": v.sd, "t": v.t, "cutoff": v.critical, "verdict": line}


def compare(paths: list[Path]) -> list[str]:
    if len(paths) > 2:
        raise house.UserError("--compare takes one record (compared with the baseline's) or two")
    a = read_record(paths[0])
    b = read_record(paths[1] if len(paths) == 2 else BASELINE_RECORD)
    return [f"compare: {paired_rule(a, b)['verdict']}"]


# --- 8. A run folder checked (a student's own 05 run; not an entry) ---------------------------------------

def recipe_flags(cfg) -> str:
    """The 05 flags that turn the tiny preset (or tiny-plus) into this run's TrainConfig."""
    base = train_lib.PRESETS.get(cfg.preset, TINY)
    old = train_lib.flat_fields(base)            # the training fields and the model's (02) in one dict
    changed = {k: v for k, v in train_lib.flat_fields(cfg).items()
               if v != old.get(k) and k not in ("compile", "preset", "vocab_size")}   # vocab: the tokenizer's
    flagged = {k: v for k, v in changed.items() if k in train_lib.FLAG_FIELDS}
    try:   # what these flags make: 02 derives the rest of the model (n_layer, n_embd, ...) from them
        made = train_lib.flat_fields(train_lib.preset_with_flags(base.preset, flagged))
    except house.UserError:
        made = old
    flags = [] if cfg.preset == "tiny" else [f"--preset {cfg.preset}"]
    for name, new in changed.items():
        if name not in flagged and new == made.get(name):
            continue
        if isinstance(new, bool):
            flags.append(f"--{name.replace('_', '-')}" if new else f"{name}=False (a code change)")
        elif name == "moe_impl" and new == "grouped_fp8":
            flags.append("--fp8")
        elif name in flagged:
            flags.append(f"{train_lib.FLAG_NAMES.get(name, '--' + name.replace('_', '-'))} {new}")
        else:
            flags.append(f"{name}={new!r} (a code change)")
    return " ".join(flags) or "(none: the tiny preset as is)"


def commit_shown(commit: str) -> str:
    """"34f7400d5cd0", or with a dirty tree "34f7400d5cd0 + uncommitted changes: 05_train.py"."""
    head, _, dirty = str(commit).partition(" ")
    return head[:12] + (f" + {dirty.strip('()')}" if dirty else "")


def check_run(out: Path, tokenizer_path: Path, data_dir: Path) -> dict:
    """Every claim of a finished run folder against what its checkpoint proves; its score with this tree's 06."""
    checkpoint = read_checkpoint(out / "latest.pt")
    cfg = train_lib.saved_train_config(checkpoint, out / "latest.pt")
    check_settings(cfg, checkpoint, data_dir)
    check_pinned_data(tokenizer_path, data_dir)
    check_proofs(checkpoint, cfg, data_dir)
    model_config = model_lib.LLMConfig.from_dict(checkpoint["config"])
    budget = check_budget(cfg, model_lib.flops_per_token(model_config, cfg.model.block_size))
    last = last_eval(out, checkpoint["step"], data_dir)
    tokenizer = tokenizer_lib.load_tokenizer(tokenizer_path)
    model = eval_lib.load_model(out / "latest.pt", device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # the tiny model: one thread beats several fighting over a busy CPU (as 05 trains it)
    try:
        result = eval_lib.bits_per_byte(model, data_dir, tokenizer, batch_size=EVAL_BATCH, seq_len=EVAL_SEQ_LEN,
                                        max_batches=None, device="cpu")
    finally:
        torch.set_num_threads(threads)
    check_agreement(result["bpb"], last)
    line = (f"checked: {result['bpb']:.4f} bits/byte on {result['tokens']:,} validation tokens | "
            f"{budget['tokens']:,} training tokens ({cfg.steps_to_run} steps × {cfg.total_batch_tokens:,}), "
            f"{budget['flops'] / 1e9:.1f} of {FLOP_BUDGET / 1e9:.1f} GFLOP | flags: {recipe_flags(cfg)} | "
            f"seed {cfg.seed} | commit {commit_shown(checkpoint.get('git_commit', 'unknown'))} | run {house.shown(out)}")
    print(line)
    return {"line": line, "bpb": result["bpb"], "seed": cfg.seed}


def check_runs(outs: list[Path], tokenizer_path: Path, data_dir: Path) -> str:
    runs = [check_run(out.resolve(), tokenizer_path, data_dir) for out in outs]
    seeds = [r["seed"] for r in runs]
    scores = [r["bpb"] for r in runs]
    which = ("the required seeds" if sorted(seeds) == sorted(REQUIRED_SEEDS) else
             f"not the required {', '.join(map(str, REQUIRED_SEEDS))}")
    sd = f" ± {np.std(scores, ddof=1):.4f}" if len(runs) > 1 else ""
    return (f"checked {len(runs)} run(s), seeds {', '.join(map(str, seeds))} ({which}): {np.mean(scores):.4f}{sd} "
            "bits/byte — a check, not a leaderboard entry: a score counts when the scorer trains the recipe "
            "(python -m exercises.speedrun RECIPE)")


# --- 9. Command line ---------------------------------------------------------------------------------------

def build_parser():
    parser = house.ArgumentParser(prog="python -m exercises.speedrun", description=__doc__.split("\n\n")[0],
                                  epilog="the rules: python -m exercises.speedrun --rules", formatter_class=house.HelpFormatter)
    parser.add_argument("recipe", type=Path, nargs="?", help="a recipe file (`flags: ...`, `patch: FILE`) or a "
                        ".patch: trained on the required seeds in a clean copy of the pinned commit, then scored")
    parser.add_argument("--rerun", type=Path, metavar="RECORD", help="train a record's recipe again; every seed "
                        f"must agree within {AGREEMENT_BPB:g} bits per byte")
    parser.add_argument("--compare", type=Path, nargs="+", metavar="RECORD", help="the paired rule: RECORD against "
                        "the baseline's record, or the first of two records against the second")
    parser.add_argument("--check-run", type=Path, nargs="+", metavar="OUT_DIR", help="check finished 05 run "
                        "folders against the rules and what their checkpoints prove (a check, not an entry)")
    parser.add_argument("--tokenizer", type=Path, help="the pinned tokenizer, if you have it (default: the scorer "
                        "makes it; --check-run: out/01_tokenizer/tokenizer.json)")
    parser.add_argument("--data-dir", type=Path, help="the pinned shards, if you have them (checked shard by shard; "
                        "default: the scorer makes them; --check-run: out/04_data)")
    parser.add_argument("--record", type=Path, help="where to write the record (default: out/speedrun/<recipe>/record.json)")
    parser.add_argument("--jobs", type=house.positive_int, default=1, help="seeds trained at once (default 1)")
    parser.add_argument("--rules", action="store_true", help="print the rules and exit")
    parser.add_argument("--fingerprint", action="store_true", help="print the SHA-256s of --tokenizer and of the "
                        "shards in --data-dir (to pin other data), and exit")
    return parser


def print_fingerprint(tokenizer_path: Path, data_dir: Path) -> None:
    """The tokenizer's SHA-256 and the shards' fingerprint, for the tokenizer and shards given."""
    if not tokenizer_path.is_file():
        raise house.NotFound(f"no tokenizer at {house.shown(tokenizer_path)}: pass --tokenizer")
    print(f"tokenizer {tokenizer_lib.tokenizer_sha256(tokenizer_path)}\n"
          f"shards    {shards_fingerprint(data_lib.read_manifest(data_dir))}")


def submit(args) -> list[str]:
    recipe = read_recipe(args.recipe.resolve())
    work = WORK_DIR / recipe.name
    record = score_recipe(recipe, PINNED_COMMIT, resolved(args.tokenizer), resolved(args.data_dir), work, args.jobs)
    path = (args.record or work / "record.json").resolve()
    write_record(record, path)
    return record_lines(record, path)


def resolved(path: Path | None) -> Path | None:
    return path.resolve() if path is not None else None


@house.speaks
def main(argv=None) -> str:
    """One mode per call (a recipe, --rerun, --compare, --check-run, --rules, --fingerprint); prints its lines
    and returns the last."""
    args = build_parser().parse_intermixed_args(argv)
    tokenizer = (args.tokenizer or train_lib.DEFAULT_TOKENIZER).resolve()
    data_dir = (args.data_dir or train_lib.DEFAULT_DATA_DIR).resolve()
    if args.rules:
        lines = [__doc__[__doc__.index("The rules"):].rstrip()]
    elif args.fingerprint:
        print_fingerprint(tokenizer, data_dir)
        return ""
    elif args.rerun:
        lines = rerun(args.rerun.resolve(), resolved(args.tokenizer), resolved(args.data_dir), args.jobs)
    elif args.compare:
        lines = compare([p.resolve() for p in args.compare])
    elif args.check_run:
        lines = [check_runs(args.check_run, tokenizer, data_dir)]
    elif args.recipe:
        lines = submit(args)
    else:
        raise house.UserError("pass a recipe: python -m exercises.speedrun RECIPE (a file with `flags: ...` and/or "
                              "`patch: FILE`; the rules: python -m exercises.speedrun --rules)")
    for line in lines:
        print(line, flush=True)
    return lines[-1]


if __name__ == "__main__":
    main()
