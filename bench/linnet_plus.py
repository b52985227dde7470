"""linnet+: what each recipe change buys, and how many tokens all of them together save (BENCHMARKS.md "linnet+").

The protocol, so anyone can rerun it:
  data      the course corpus, tokenized with the 32k tokenizer as bench/short_run.sh does (validation: the
            whole validation shard, ≈ 200k tokens);
  baseline  linnet's recipe at N steps × 16,384 tokens, its WSD schedule planned for N;
  switch    the baseline plus one switch, same N, same seeds: its effect is Δ final validation loss (mean ± sd),
            per seed, beyond seed noise by house/stats.py's paired t-test (README, "Beyond seed noise");
  combined  every switch whose mean Δ was negative, at f·N steps with the schedule planned for f·N
            (f = 0.5, 0.6, 0.7; and the baseline at 0.7·N for scale): the smallest f whose mean final loss
            is ≤ the baseline's at N is the answer,
            printed as `tokens to reach the baseline's validation loss: NN %`.
Every run is `python 05_train.py --preset linnet ...` as a user starts it, several at once on one GPU.

    python bench/linnet_plus.py prepare --corpus DIR --work WORK        # 01 (32k) + 04 on the corpus
    python bench/linnet_plus.py switches --work WORK --json S           # baseline + each switch at N
    python bench/linnet_plus.py combined --work WORK --from S --json C  # the paying ones together
    python bench/linnet_plus.py table --from bench/results/linnet_plus/switches_h200.json   # the tables
(S, C: JSON files of every run's numbers; BENCHMARKS.md "linnet+" has the exact commands and results.)
On a CPU, `--preset tiny --steps 30` runs the same protocol in miniature (the tests do).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_DIR))
import house  # noqa: E402
from house import stats  # noqa: E402

SWITCHES = {   # name → 05 flags (each off in linnet)
    "zero-init": ["--zero-init-out"],
    "x0-mix": ["--x0-mix"],
    "softcap-15": ["--logit-softcap", "15"],
    "momentum-warmup": ["--muon-momentum-warmup"],
    "router-adamw": ["--router-on-adamw"],
    "short-warmup": ["--warmup-frac", "0.02"],
    "linear-cooldown": ["--decay-shape", "linear", "--decay-start-frac", "0.5"],
}
FRACTIONS = (0.5, 0.6, 0.7)


def run_05(name: str, flags: list[str], steps: int, seed: int, args) -> dict:
    """Start one 05 run (a subprocess); returns a handle to wait on."""
    out = args.work / "runs" / f"{name}_n{steps}_s{seed}"
    cmd = [sys.executable, "05_train.py", "--preset", args.preset, "--tokenizer", str(args.work / "tok" / "tokenizer.json"),
           "--data-dir", str(args.work / "data"), "--out", str(out), "--overwrite", "--no-hellaswag", "--no-compile",
           "--max-steps", str(steps), "--planned-steps", str(steps), "--eval-every", str(steps),
           "--checkpoint-every", str(steps), "--seed", str(seed), *flags]
    if args.preset == "linnet":
        cmd += ["--total-batch-tokens", str(args.batch), "--micro-batch", str(args.batch // 1024)]
    log = open(args.work / "runs" / f"{out.name}.txt", "w")
    return {"name": name, "flags": flags, "steps": steps, "seed": seed, "out": out, "log": log,
            "proc": subprocess.Popen(cmd, cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "OMP_NUM_THREADS": "2"})}


def summary(run: dict) -> dict:
    """Final validation loss, median tokens/s (steps after the first 5) and parameters of a finished run."""
    records = [json.loads(line) for line in (run["out"] / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r.get("kind") != "eval"]
    final = [r for r in records if r.get("kind") == "eval"][-1]
    params = next((line for line in (run["out"].parent / f"{run['out'].name}.txt").read_text().splitlines()
                   if line.startswith("model:")), "")
    return {k: run[k] for k in ("name", "flags", "steps", "seed")} | {
        "val_loss": final["val_loss"], "val_bpb": final["val_bpb"], "val_tokens": final["val_tokens"],
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steps[5:] or steps), "model": params}


def run_all(jobs: list[tuple[str, list[str], int, int]], args) -> list[dict]:
    """Run every (name, flags, steps, seed), `args.parallel` at a time; their summaries in order."""
    (args.work / "runs").mkdir(parents=True, exist_ok=True)
    pending, running, done = list(jobs), [], []
    while pending or running:
        while pending and len(running) < args.parallel:
            running.append(run_05(*pending.pop(0), args))
        time.sleep(1)
        for run in [r for r in running if r["proc"].poll() is not None]:
            running.remove(run)
            run["log"].close()
            if run["proc"].returncode != 0:
                tail = (run["out"].parent / f"{run['out'].name}.txt").read_text().strip().splitlines()[-1:]
                raise SystemExit(f"error: run {run['out'].name} failed: {tail}")
            done.append(summary(run))
            if args.json:   # after every run: a command stopped at its time limit keeps what it finished
                house.write_json(args.json, {"stage": args.stage, "preset": args.preset, "steps": args.steps,
                                             "runs": done, "finished": False})
            print(f"{run['name']:>16} n={run['steps']} seed {run['seed']}: val loss {done[-1]['val_loss']:.4f} "
                  f"({done[-1]['tokens_per_s']:,.0f} tokens/s)", flush=True)
    order = {(n, st, se): i for i, (n, _, st, se) in enumerate(jobs)}
    return sorted(done, key=lambda r: order[(r["name"], r["steps"], r["seed"])])


def losses(runs: list[dict], name: str, steps: int) -> list[float]:
    return [r["val_loss"] for r in runs if r["name"] == name and r["steps"] == steps]


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else float("nan")


def paying_switches(runs: list[dict], steps: int) -> list[str]:
    """The switches whose mean final validation loss at N steps is below the baseline's."""
    base = statistics.fmean(losses(runs, "baseline", steps))
    return [s for s in SWITCHES if losses(runs, s, steps) and statistics.fmean(losses(runs, s, steps)) < base]


def paired_deltas(runs: list[dict], name: str, steps: int, base_steps: int | None = None) -> list[float]:
    """Per seed: this run's final loss minus the baseline's with the same seed (same init, same data order).
    The seed moves the loss far more than most switches do (≈ 0.18 nats between seeds 1 and 1337 at N = 240),
    and moves it alike with and without a switch: differences within a seed see through that."""
    base = {r["seed"]: r["val_loss"] for r in runs if r["name"] == "baseline" and r["steps"] == (base_steps or steps)}
    return [r["val_loss"] - base[r["seed"]] for r in runs if r["name"] == name and r["steps"] == steps
            and r["seed"] in base]


def delta_cell(deltas: list[float]) -> tuple[str, str]:
    """'mean ± sd' of the per-seed differences, and house.stats.paired's verdict on them ('no (t = 1.84 < 4.30, n = 3)')."""
    test = stats.paired(deltas)
    return f"{test.mean:+.4f} ± {test.sd:.4f}", test.label()


def switch_table(runs: list[dict], steps: int) -> str:
    base = losses(runs, "baseline", steps)
    b_mean, b_sd = mean_sd(base)
    b_speed = statistics.median(r["tokens_per_s"] for r in runs if r["name"] == "baseline" and r["steps"] == steps)
    rows = ["| switch | flags | seeds | final val loss (mean ± sd) | Δ vs baseline, same seed (mean ± sd) | "
            "beyond seed noise? | tokens/s vs baseline (median run) |", "|---|---|---|---|---|---|---|",
            f"| baseline (linnet) | — | {len(base)} | {b_mean:.4f} ± {b_sd:.4f} | — | — | {b_speed:,.0f} |"]
    for name, flags in SWITCHES.items():
        xs, deltas = losses(runs, name, steps), paired_deltas(runs, name, steps)
        if not deltas:
            rows.append(f"| {name} | `{' '.join(flags)}` | {len(xs)} | not measured (see text) | | | |")
            continue
        m, sd = mean_sd(xs)
        delta, beyond = delta_cell(deltas)
        speed = statistics.median(r["tokens_per_s"] for r in runs if r["name"] == name and r["steps"] == steps)
        rows.append(f"| {name} | `{' '.join(flags)}` | {len(xs)} | {m:.4f} ± {sd:.4f} | {delta} | {beyond} | "
                    f"{speed / b_speed - 1:+.1%} |")
    return "\n".join(rows)


def combined_table(runs: list[dict], steps: int, fractions=FRACTIONS) -> tuple[str, str]:
    """The combined runs at each fraction of N against the baseline at N (per seed), and the headline line."""
    b_mean, b_sd = mean_sd(losses(runs, "baseline", steps))
    rows = ["| run | steps × 16,384 tokens | seeds | final val loss (mean ± sd) | Δ vs baseline at N, same seed | "
            "beyond seed noise? |", "|---|---|---|---|---|---|",
            f"| baseline | {steps} (100 %) | {len(losses(runs, 'baseline', steps))} | {b_mean:.4f} ± {b_sd:.4f} | — | — |"]
    reached = {}
    for f in fractions:
        n = round(f * steps)
        xs = losses(runs, "combined", n)
        if xs:
            m, sd = mean_sd(xs)
            delta, beyond = delta_cell(paired_deltas(runs, "combined", n, base_steps=steps))
            rows.append(f"| combined | {n} ({f:.0%}) | {len(xs)} | {m:.4f} ± {sd:.4f} | {delta} | {beyond} |")
            if m <= b_mean:
                reached[f] = stats.paired(paired_deltas(runs, "combined", n, base_steps=steps))
    if reached:
        f = min(reached)
        shown = "lower beyond seed noise" if reached[f].beyond else "lower on average, not beyond seed noise"
        line = (f"tokens to reach the baseline's validation loss: {round(100 * f)} % (mean of {reached[f].n} seeds; "
                f"{shown} {reached[f].label().split(' ', 1)[1]})")
    else:
        line = ("tokens to reach the baseline's validation loss: more than "
                f"{round(100 * max(fractions))} % (no combined run reached it)")
    return "\n".join(rows), line


@house.speaks
def main(argv=None) -> None:
    parser = house.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=house.HelpFormatter)
    parser.add_argument("stage", choices=["prepare", "switches", "combined", "table"])
    parser.add_argument("--work", type=Path, default=house.OUT_DIR / "linnet_plus", help="tokenizer, shards, runs")
    parser.add_argument("--corpus", type=Path, default=house.SHARED_CORPUS_DIR, help="prepare: the text")
    parser.add_argument("--preset", choices=["linnet", "tiny"], default="linnet", help="tiny: the protocol on a CPU")
    parser.add_argument("--steps", type=house.positive_int, default=240, help="N, the baseline's steps")
    parser.add_argument("--batch", type=house.positive_int, default=16_384, help="tokens per step (linnet preset)")
    parser.add_argument("--seeds", nargs="+", type=house.non_negative_int, default=[1337, 1, 2])
    parser.add_argument("--parallel", type=house.positive_int, default=4, help="runs at once (one GPU holds several)")
    parser.add_argument("--only", nargs="+", choices=list(SWITCHES), default=None, help="switches: run only these")
    parser.add_argument("--switches", nargs="+", choices=list(SWITCHES), default=None,
                        help="combined: these switches (default: every one that paid in --from)")
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS), help="combined: f of N")
    parser.add_argument("--skip-baseline", action="store_true", help="do not rerun the baseline (it is in --from)")
    parser.add_argument("--json", type=Path, default=None, help="where the runs' numbers go")
    parser.add_argument("--from", dest="inputs", nargs="+", type=Path, default=[], help="earlier --json files")
    args = parser.parse_args(argv)
    earlier = [r for p in args.inputs for r in json.loads(p.read_text())["runs"]]
    if args.stage == "prepare":
        return prepare(args)
    if args.stage == "table":
        return print_tables(earlier, args.steps)
    if args.stage == "switches":
        names = ([] if args.skip_baseline else ["baseline"]) + list(args.only or SWITCHES)
        jobs = [(n, SWITCHES.get(n, []), args.steps, s) for n in names for s in args.seeds]
    else:
        chosen = args.switches or paying_switches(earlier, args.steps)
        flags = [f for s in chosen for f in SWITCHES[s]]
        print(f"combined: {', '.join(chosen) or 'nothing paid'} → {' '.join(flags)}")
        jobs = [("combined", flags, round(f * args.steps), s) for f in args.fractions for s in args.seeds]
        if not args.skip_baseline:
            jobs += [("baseline", [], round(max(args.fractions) * args.steps), s) for s in args.seeds]   # for scale
        jobs += [(n, SWITCHES[n], args.steps, s) for n in args.only or [] for s in args.seeds]   # more switches
    runs = run_all(jobs, args)
    if args.json:
        house.write_json(args.json, {"stage": args.stage, "preset": args.preset, "steps": args.steps, "runs": runs,
                                     "finished": True})
    print_tables(earlier + runs, args.steps)


def prepare(args) -> None:
    """The 32k tokenizer (01) and the shards (04) on the corpus, as bench/short_run.sh makes them."""
    vocab = ["--vocab-size", "32768"] if args.preset == "linnet" else ["--preset", "tiny"]
    commands = [["01_tokenizer.py", "--data", str(args.corpus), *vocab, "--out", str(args.work / "tok"), "--overwrite"],
                ["04_data.py", *[f"--source={f.stem}={f}" for f in house.list_text_files([args.corpus])],
                 "--tokenizer", str(args.work / "tok" / "tokenizer.json"), "--out", str(args.work / "data"),
                 "--shard-tokens", "1000000", "--val-tokens", "200000", "--overwrite"]]
    for command in commands:
        if subprocess.run([sys.executable, *command], cwd=REPO_DIR).returncode != 0:
            raise SystemExit(f"error: {' '.join(command)} failed (see above)")


def print_tables(runs: list[dict], steps: int) -> None:
    if losses(runs, "baseline", steps) and any(r["name"] not in ("baseline", "combined") for r in runs):
        print(switch_table(runs, steps))
    if losses(runs, "baseline", steps) and any(r["name"] == "combined" for r in runs):
        table, line = combined_table(runs, steps)
        print(table)
        print(line)


if __name__ == "__main__":
    main()
