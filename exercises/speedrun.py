"""The capstone: a CPU speedrun on the tiny corpus — the lowest validation bits per byte for a fixed budget.

    python 05_train.py --preset tiny --out out/my_run --no-hellaswag [your knobs]   # train (≈ 1 min on a CPU)
    python -m exercises.speedrun out/my_run                                         # check the rules, score it

Change anything in the recipe — 05's flags (`--lr`, `--warmup-frac`, `--balance-coef`, `--optimizer`,
`--n-experts`, `--top-k`, `--total-batch-tokens`, `--planned-steps`, `--micro-batch`, `--seed`, ...) or the
code of 02, 03 and 05 — as long as the finished runs keep the rules below. The mean of 4 seeds goes on the
README's leaderboard ("Speedrun leaderboard") with the command that made the runs.

The rules (checked in this order; a run that breaks one is refused in one line, exit status 1):
  1. a finished 05 run of the tiny preset: OUT_DIR holds latest.pt and log.jsonl, the checkpoint is at the
     last step its schedule runs (`--max-steps` or `--planned-steps`; an interrupted run is not finished) and
     the log has an evaluation at that step;
  2. the budget: at most 307,200 training tokens (the tiny preset's 300 steps × 1,024) — tokens = steps ×
     `total_batch_tokens` — and at most the tiny model's training compute for them, 379.7 GFLOP
     (02's flops_per_token at T = 64 × tokens): a bigger model must train on fewer tokens;
  3. the data: the tokenizer and shards that `python 01_tokenizer.py --preset tiny` and
     `python 04_data.py --preset tiny` make from the embedded corpus (embedded/corpus): the tokenizer
     file's SHA-256 and the shards' SHA-256s are pinned below (`--fingerprint` prints them for any data); the
     run must have trained on exactly the shards of --data-dir (its checkpoint records their manifest's hash);
  4. the evaluation: validation windows of 64 + 1 tokens (`--seq-len 64`), the whole validation shard scored
     (the preset's `eval_batches` None) by the run's own last evaluation;
  5. the score: this script scores latest.pt itself with 06's bits_per_byte over the whole validation shard
     (batch 8 × 64: 3,136 windows, 200,704 tokens), as `python 06_eval.py --preset tiny` does; the run's
     own last evaluation must agree within 0.01 bits per byte (a log from another run does not).

What it cannot check: that the code which trained the run kept the validation shard out of training (05
reads the train split only; the score line gives the commit the run was trained at, so others can look).
One seed is one sample: the baseline's score moves by ≈ 0.03 bits per byte (sd) from seed to seed (4 seeds:
2.689 to 2.753), more than most recipe changes move it. So an entry is 4 seeds (--seed 1337, 1, 2, 3) of one
recipe, compared with others seed by seed (README, "Speedrun leaderboard"): pass the 4 run folders together,
and the last line is their mean ± sd:
    python -m exercises.speedrun out/my_run_s1337 out/my_run_s1 out/my_run_s2 out/my_run_s3
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import math
from pathlib import Path

import house
import house.runs

tokenizer_lib = importlib.import_module("01_tokenizer")
model_lib = importlib.import_module("02_model")
data_lib = importlib.import_module("04_data")
train_lib = importlib.import_module("05_train")
eval_lib = importlib.import_module("06_eval")

TINY = train_lib.PRESETS["tiny"]
TOKEN_BUDGET = TINY.planned_steps * TINY.total_batch_tokens          # 300 × 1,024 = 307,200
EVAL_SEQ_LEN = TINY.model.block_size                                        # 64: validation windows of 64 + 1 tokens
EVAL_BATCH = TINY.micro_batch                                       # 8: the batch this script scores with
AGREEMENT_BPB = 0.01                                                # the log's last val_bpb vs this script's
# What 01 and 04 make with --preset tiny from embedded/corpus, the repo's own (deterministic: same files, same hashes).
COURSE_TOKENIZER_SHA256 = "31a25a9dba94fb0b171694c5054ce1deb5fe1323ab6f0517c50a565a14471882"
COURSE_SHARDS_SHA256 = "19c1d6c807597792669e57815715c896ca62db2f27efe88a188ff04ccd2614bc"   # shards_fingerprint
MAKE_DATA = "python 01_tokenizer.py --preset tiny, then python 04_data.py --preset tiny"


def tiny_model_config(cfg, vocab_size: int = tokenizer_lib.TINY_VOCAB_SIZE) -> "model_lib.LLMConfig":
    """The model 05 builds for a TrainConfig (its `model`) at the tiny vocabulary."""
    return dataclasses.replace(cfg.model, vocab_size=vocab_size)


FLOP_BUDGET = model_lib.flops_per_token(tiny_model_config(TINY), EVAL_SEQ_LEN) * TOKEN_BUDGET   # 379.7 GFLOP


def shards_fingerprint(manifest: dict) -> str:
    """SHA-256 of the shards' (split, tokens, sha256) lines: which token streams, not where the text lay."""
    lines = "\n".join(f"{r['split']} {r['tokens']} {r['sha256']}" for r in manifest["shards"])
    return hashlib.sha256(lines.encode()).hexdigest()


def refuse(message: str) -> None:
    raise SystemExit(f"error: not a speedrun entry: {message}")


def read_run(out: Path) -> tuple[dict, list[dict]]:
    """The checkpoint (its tensors memory-mapped, not read) and the log's evaluations; one line if either is missing."""
    if not (out / "latest.pt").is_file():
        refuse(f"{house.shown(out)} holds no latest.pt: pass the --out of a finished python 05_train.py --preset tiny run")
    if not (out / "log.jsonl").is_file():
        refuse(f"{house.shown(out)} holds latest.pt but no log.jsonl: pass the whole --out folder of the run")
    checkpoint = house.runs.read_train_config(out / "latest.pt", train_lib.load_checkpoint)
    missing = [k for k in ("train_config", "config", "step", "tokenizer_sha256", "data_sha256") if k not in checkpoint]
    if missing:
        refuse(f"{house.shown(out / 'latest.pt')} has no {', '.join(missing)}: it was not written by this repo's 05_train.py")
    return checkpoint, house.runs.read_log(out / "log.jsonl")[1]


def check_finished(cfg, checkpoint: dict, evals: list[dict]) -> None:
    """Rule 1: the tiny preset (or tiny-plus, the same with linnet+'s switches), run to the last step of its
    schedule, with an evaluation at that step."""
    if cfg.size != "tiny":
        refuse(f"the run used --preset {cfg.preset}; the speedrun starts from --preset tiny (or tiny-plus)")
    step, last = checkpoint["step"], cfg.steps_to_run
    if step != last:
        refuse(f"the run is not finished: its checkpoint is at step {step} of the {last} it runs; finish it "
               f"with python 05_train.py --resume --preset tiny --out ... (its other flags are in the checkpoint)")
    if not evals or evals[-1]["step"] != step:
        refuse(f"the log has no evaluation at the last step ({step}): log.jsonl is not this run's, or was cut short")


def check_budget(cfg, model_config) -> dict:
    """Rule 2: tokens = steps × total_batch_tokens ≤ 307,200 and their training FLOPs ≤ the tiny model's."""
    tokens = cfg.steps_to_run * cfg.total_batch_tokens
    flops = model_lib.flops_per_token(model_config, cfg.model.block_size) * tokens
    if tokens > TOKEN_BUDGET:
        refuse(f"over budget: {cfg.steps_to_run} steps × {cfg.total_batch_tokens:,} tokens = {tokens:,} training tokens, "
               f"the budget is {TOKEN_BUDGET:,}: lower --planned-steps/--max-steps or --total-batch-tokens")
    if flops > FLOP_BUDGET * (1 + 1e-9):
        refuse(f"over budget: {flops / 1e9:.1f} GFLOP of training compute ({model_lib.flops_per_token(model_config, cfg.model.block_size):,} "
               f"FLOPs/token × {tokens:,} tokens), the budget is {FLOP_BUDGET / 1e9:.1f} GFLOP: a bigger model "
               "must train on fewer tokens")
    return {"tokens": tokens, "flops": flops}


def check_evaluation(cfg, last_eval: dict, data_dir: Path) -> None:
    """Rule 3: 64-token windows over the whole validation shard, as the log's last evaluation shows."""
    if cfg.model.block_size != EVAL_SEQ_LEN:
        refuse(f"the run used --seq-len {cfg.model.block_size}: the speedrun evaluates windows of {EVAL_SEQ_LEN} tokens "
               f"(the model's context is part of the fixed evaluation); train with --seq-len {EVAL_SEQ_LEN}")
    if cfg.eval_batches is not None:
        refuse(f"the run evaluated {cfg.eval_batches} validation batches (eval_batches); the speedrun scores the "
               f"whole validation shard: keep the tiny preset's eval_batches None")
    if "val_tokens" not in last_eval:
        refuse("the log's evaluations do not say how many tokens they scored (val_tokens): train with this "
               "repo's current 05_train.py")
    seq = cfg.model.block_size
    whole = len(data_lib.ShardLoader(data_dir, "val", cfg.micro_batch, seq)) * cfg.micro_batch * seq
    if last_eval["val_tokens"] != whole:
        refuse(f"the last evaluation scored {last_eval['val_tokens']:,} validation tokens, the whole shard at "
               f"micro-batch {cfg.micro_batch} is {whole:,}: the evaluation was changed")


def check_data(checkpoint: dict, tokenizer_path: Path, data_dir: Path) -> dict:
    """Rule 4: the embedded corpus's tiny tokenizer and shards, and the run trained on exactly these shards."""
    if checkpoint["tokenizer_sha256"] != COURSE_TOKENIZER_SHA256:
        refuse(f"the run was trained with another tokenizer than the embedded corpus's tiny one: make the data with {MAKE_DATA}, "
               "and train on it")
    if not tokenizer_path.is_file() or tokenizer_lib.tokenizer_sha256(tokenizer_path) != COURSE_TOKENIZER_SHA256:
        refuse(f"--tokenizer {house.shown(tokenizer_path)} is not the embedded corpus's tiny tokenizer: pass the one "
               f"the run was trained with, or make it with {MAKE_DATA}")
    manifest = data_lib.read_manifest(data_dir)
    if house.runs.data_sha256(data_dir) != checkpoint["data_sha256"]:
        refuse(f"the run was not trained on the shards in --data-dir {house.shown(data_dir)} (their manifest differs "
               "from the one its checkpoint records): pass the --data-dir the run used")
    if shards_fingerprint(manifest) != COURSE_SHARDS_SHA256:
        refuse(f"the shards in {house.shown(data_dir)} are not the embedded corpus's tiny shards (other text or other "
               f"settings): make them with {MAKE_DATA}, and train on them")
    return manifest


def score(out: Path, tokenizer_path: Path, data_dir: Path, last_eval: dict) -> dict:
    """Rule 5: 06's bits per byte of latest.pt over the whole validation shard, checked against the run's log."""
    tokenizer = tokenizer_lib.load_tokenizer(tokenizer_path)
    model = eval_lib.load_model(out / "latest.pt", device="cpu")
    result = eval_lib.bits_per_byte(model, data_dir, tokenizer, batch_size=EVAL_BATCH, seq_len=EVAL_SEQ_LEN,
                                    max_batches=None, device="cpu")
    if not math.isfinite(result["bpb"]) or abs(result["bpb"] - last_eval["val_bpb"]) > AGREEMENT_BPB:
        refuse(f"latest.pt scores {result['bpb']:.4f} bits per byte but the log's last evaluation says "
               f"{last_eval['val_bpb']:.4f}: the log is not this checkpoint's")
    return result


def recipe_flags(cfg) -> str:
    """The 05 flags that turn the tiny preset (or tiny-plus) into this run's TrainConfig (what to write on the
    leaderboard)."""
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


def score_line(result: dict, budget: dict, cfg, checkpoint: dict, out: Path) -> str:
    """The leaderboard line: score first, then what was spent and how."""
    return (f"speedrun: {result['bpb']:.4f} bits/byte on {result['tokens']:,} validation tokens | "
            f"{budget['tokens']:,} training tokens ({cfg.steps_to_run} steps × {cfg.total_batch_tokens:,}), "
            f"{budget['flops'] / 1e9:.1f} of {FLOP_BUDGET / 1e9:.1f} GFLOP | flags: {recipe_flags(cfg)} | "
            f"seed {cfg.seed} | commit {str(checkpoint.get('git_commit', 'unknown'))[:12]} | run {house.shown(out)}")


def score_run(out: Path, tokenizer_path: Path, data_dir: Path) -> dict:
    """Rules 1–5 for one run folder, then its score line (printed) and its score."""
    checkpoint, evals = read_run(out)
    cfg = train_lib.saved_train_config(checkpoint, out / "latest.pt")
    check_finished(cfg, checkpoint, evals)
    budget = check_budget(cfg, model_lib.LLMConfig.from_dict(checkpoint["config"]))
    check_data(checkpoint, tokenizer_path, data_dir)
    check_evaluation(cfg, evals[-1], data_dir)
    result = score(out, tokenizer_path, data_dir, evals[-1])
    line = score_line(result, budget, cfg, checkpoint, out)
    print(line)
    return {"line": line, "bpb": result["bpb"], "cfg": cfg, "tokens": budget["tokens"], "flops": budget["flops"]}


def summary_line(runs: list[dict]) -> str:
    """Several seeds of ONE recipe: the leaderboard's number is their mean, with the sd between seeds."""
    recipes = {recipe_flags(dataclasses.replace(r["cfg"], seed=TINY.seed)) for r in runs}
    if len(recipes) > 1:
        refuse(f"the runs differ in more than --seed ({' / '.join(sorted(recipes))}): a mean is over seeds of one recipe")
    seeds = [r["cfg"].seed for r in runs]
    if len(set(seeds)) < len(seeds):
        refuse(f"two runs have the same seed ({', '.join(map(str, seeds))}): a mean is over different seeds")
    scores = [r["bpb"] for r in runs]
    mean = sum(scores) / len(scores)
    sd = math.sqrt(sum((x - mean) ** 2 for x in scores) / (len(scores) - 1))
    return (f"speedrun: {mean:.4f} ± {sd:.4f} bits/byte (mean ± sd of {len(runs)} seeds: "
            f"{', '.join(map(str, seeds))}) | {runs[0]['tokens']:,} training tokens, {runs[0]['flops'] / 1e9:.1f} "
            f"of {FLOP_BUDGET / 1e9:.1f} GFLOP | flags: {recipes.pop()} (and --seed)")


def build_parser():
    parser = house.ArgumentParser(prog="python -m exercises.speedrun", description=__doc__.split("\n\n")[0],
                                  epilog="the rules: python -m exercises.speedrun --rules", formatter_class=house.HelpFormatter)
    parser.add_argument("out", type=Path, nargs="*", help="the --out folder of a finished python 05_train.py run; "
                        "several: seeds of one recipe, scored each and then as mean ± sd")
    parser.add_argument("--tokenizer", type=Path, default=train_lib.DEFAULT_TOKENIZER, help="the tokenizer the runs used")
    parser.add_argument("--data-dir", type=Path, default=train_lib.DEFAULT_DATA_DIR, help="the shards the runs used")
    parser.add_argument("--rules", action="store_true", help="print the rules and exit")
    parser.add_argument("--fingerprint", action="store_true", help="print the SHA-256s of --tokenizer and of the "
                        "shards in --data-dir, the two numbers rule 3 pins (to pin other data), and exit")
    return parser


def print_fingerprint(tokenizer_path: Path, data_dir: Path) -> None:
    """The two numbers rule 3 pins, for the tokenizer and shards given (COURSE_TOKENIZER_SHA256, COURSE_SHARDS_SHA256)."""
    if not tokenizer_path.is_file():
        raise SystemExit(f"error: no tokenizer at {house.shown(tokenizer_path)}: pass --tokenizer")
    print(f"tokenizer {tokenizer_lib.tokenizer_sha256(tokenizer_path)}\n"
          f"shards    {shards_fingerprint(data_lib.read_manifest(data_dir))}")


@house.speaks
def main(argv=None) -> str:
    """Score each run folder (one line each); for several, one more line: their mean ± sd. Returns the last line."""
    args = build_parser().parse_intermixed_args(argv)   # run folders before and after the options
    if args.rules:
        print(__doc__[__doc__.index("The rules"):].rstrip())
        return ""
    if args.fingerprint:
        print_fingerprint(args.tokenizer.resolve(), args.data_dir.resolve())
        return ""
    if not args.out:
        raise SystemExit("error: pass the --out folder of a finished run: python -m exercises.speedrun OUT_DIR "
                         "(the rules: python -m exercises.speedrun --rules)")
    tokenizer_path, data_dir = args.tokenizer.resolve(), args.data_dir.resolve()
    runs = [score_run(out.resolve(), tokenizer_path, data_dir) for out in args.out]
    if len(runs) == 1:
        return runs[0]["line"]
    line = summary_line(runs)
    print(line)
    return line


if __name__ == "__main__":
    main()
