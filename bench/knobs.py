"""The README's "Knobs to break the recipe" table, measured over several seeds (mean ± sd).

Each knob is one flag of 05_train.py; every (knob, seed) pair is a full tiny-preset run of 300 steps, started
as a user would start it (a subprocess), with --no-hellaswag. From each run's log.jsonl:
  - val bpb:   validation bits per byte at the last step (the whole validation shard, 05's tiny preset),
  - val loss:  the same evaluation in nats per token,
  - train:     the mean training loss of the last 20 steps (it includes the balance term),
  - min share: the smallest expert's share of layer 1's token-slots over the last 50 steps (uniform = 1/E;
               near 0 = an expert starved, the router collapsed).
A knob's effect is its difference from the baseline run with the same seed (same init, same data order),
mean ± sd over the seeds; it is beyond seed noise by the paired t-test of house/stats.py (README, "Beyond seed
noise": |t| > 4.30 with 3 seeds, 3.18 with 4).

    python bench/knobs.py --seeds 1337 1 2 3               # all knobs, 4 seeds (≈ 20 s a run on 2 idle cores)
    python bench/knobs.py --knobs baseline dense --seeds 4 5 --json /tmp/more.json
    python bench/knobs.py --table-from bench/results/knobs_tiny.json /tmp/more.json    # one table of both
Writes bench/results/knobs_tiny.json (every run's numbers, with the commit, torch and CPU that made them: CPU
runs repeat to the last digit on the same CPU and torch, not across them) and prints the README's table.
"""
from __future__ import annotations

import json
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_DIR))
import house  # noqa: E402
from house import stats  # noqa: E402

KNOBS = {   # name → the flags that take one piece of the recipe away (README: Knobs to break the recipe)
    "baseline": [],
    "balance off": ["--balance-coef", "0"],
    "AdamW only": ["--optimizer", "adamw"],
    "dense": ["--n-experts", "1"],
    "no warm-up": ["--warmup-frac", "0"],
    "long warm-up": ["--warmup-frac", "0.3"],
    "fp8 (emulated)": ["--fp8"],
    "linnet+ (tiny-plus)": ["--preset", "tiny-plus"],   # not a knob that breaks: the switches that improve
}


def run_one(knob: str, seed: int, args) -> dict:
    """One tiny run of 05 with this knob and seed; its summary numbers."""
    out = args.out / f"{knob.replace(' ', '_').replace('(', '').replace(')', '')}_seed{seed}"
    cmd = [sys.executable, "05_train.py", "--preset", "tiny", "--no-hellaswag", "--seed", str(seed), "--out", str(out),
           "--overwrite", *KNOBS[knob]]
    cmd += ["--tokenizer", str(args.tokenizer)] if args.tokenizer else []
    cmd += ["--data-dir", str(args.data_dir)] if args.data_dir else []
    started = time.time()
    proc = subprocess.run(cmd, cwd=REPO_DIR, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {shlex.join(cmd)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r.get("kind") != "eval"]
    final = [r for r in records if r.get("kind") == "eval"][-1]
    layer = min(1, len(steps[-1]["expert_load"]) - 1)
    shares = [sum(r["expert_load"][layer][e] for r in steps[-50:]) / 50 for e in range(len(steps[-1]["expert_load"][layer]))]
    return {"knob": knob, "seed": seed, "flags": KNOBS[knob], "val_bpb": final["val_bpb"], "val_loss": final["val_loss"],
            "val_tokens": final["val_tokens"], "train_loss": sum(r["loss"] for r in steps[-20:]) / 20,
            "layer1_shares": shares, "min_share": min(shares), "seconds": time.time() - started}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def table(runs: list[dict]) -> str:
    """Markdown: one row per knob, mean ± sd over seeds, and the per-seed difference from the baseline.

    The seed (init and data order) moves the tiny run's bits per byte by ≈ 0.02, more than most knobs, and
    moves it alike with and without a knob; so a knob's effect is the difference from the baseline WITH THE
    SAME SEED, mean ± sd over seeds, and "beyond seed noise" is house.stats.paired's verdict on them."""
    by_knob: dict[str, list[dict]] = {}
    for r in runs:
        by_knob.setdefault(r["knob"], []).append(r)
    base = {r["seed"]: r["val_bpb"] for r in by_knob["baseline"]}
    lines = ["| knob | seeds | val bpb (mean ± sd) | Δ vs baseline, same seed (mean ± sd) | beyond seed noise? | "
             "train loss, last 20 steps | smallest expert share, layer 1 |", "|---|---|---|---|---|---|---|"]
    for knob, rs in by_knob.items():
        m, sd = mean_sd([r["val_bpb"] for r in rs])
        t_m, t_sd = mean_sd([r["train_loss"] for r in rs])
        s_m, s_sd = mean_sd([r["min_share"] for r in rs])
        deltas = [r["val_bpb"] - base[r["seed"]] for r in rs if r["seed"] in base]
        if knob == "baseline" or not deltas:
            delta, verdict = "—", "—"
        else:
            test = stats.paired(deltas)
            delta, verdict = f"{test.mean:+.4f} ± {test.sd:.4f}", test.label()
        lines.append(f"| {knob} | {len(rs)} | {m:.4f} ± {sd:.4f} | {delta} | {verdict} | {t_m:.3f} ± {t_sd:.3f} | "
                     f"{s_m:.2f} ± {s_sd:.2f} |")
    return "\n".join(lines)


def machine() -> dict:
    """What made the runs: a CPU run repeats to the last digit only on the same code, torch and CPU."""
    import torch

    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO_DIR, capture_output=True, text=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else \
        platform.processor()
    return {"commit": commit.stdout.strip() or "unknown", "torch": torch.__version__, "cpu": cpu,
            "python": platform.python_version()}


@house.speaks
def main(argv=None) -> None:
    parser = house.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=house.HelpFormatter)
    parser.add_argument("--knobs", nargs="+", choices=list(KNOBS), default=list(KNOBS), help="which rows to run")
    parser.add_argument("--seeds", nargs="+", type=house.non_negative_int, default=[1337, 1, 2],
                        help="init and data-order seeds (1337 is the tiny preset's own)")
    parser.add_argument("--out", type=Path, default=house.OUT_DIR / "knobs", help="where the runs go")
    parser.add_argument("--tokenizer", type=Path, default=None, help="01's tokenizer.json (default: 05's)")
    parser.add_argument("--data-dir", type=Path, default=None, help="04's shards (default: 05's)")
    parser.add_argument("--json", type=Path, default=REPO_DIR / "bench/results/knobs_tiny.json",
                        help="every run's numbers")
    parser.add_argument("--table-from", type=Path, nargs="+", default=None,
                        help="print the table of earlier --json files (their runs together), run nothing")
    args = parser.parse_args(argv)
    if args.table_from is not None:
        runs = [r for path in args.table_from for r in json.loads(path.read_text())["runs"]]
        twice = sorted({(r["knob"], r["seed"]) for r in runs if sum(1 for s in runs if (s["knob"], s["seed"]) ==
                                                                     (r["knob"], r["seed"])) > 1})
        if twice:
            raise house.UserError(f"{twice[0][0]} seed {twice[0][1]} is in more than one --table-from file: "
                                  "keep one record per knob and seed")
        print(table(runs))
        return
    knobs = ["baseline", *[k for k in args.knobs if k != "baseline"]]
    house.check_writable(args.out)
    house.check_writable(args.json.parent)
    runs = []
    for knob in knobs:
        for seed in args.seeds:
            runs.append(run_one(knob, seed, args))
            r = runs[-1]
            print(f"{knob:>15} seed {seed:>4}: val bpb {r['val_bpb']:.4f}  train {r['train_loss']:.3f}  "
                  f"min share {r['min_share']:.2f}  ({r['seconds']:.0f} s)", flush=True)
    house.write_json(args.json, {"date": time.strftime("%Y-%m-%d"), **machine(), "runs": runs, "table": table(runs)})
    print(table(runs))
    print(f"wrote {house.shown(args.json)}")


if __name__ == "__main__":
    main()
