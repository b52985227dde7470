"""The README's "Knobs to break the recipe" table, measured over several seeds (mean ± sd).

Each knob is one flag of 05_train.py; every (knob, seed) pair is a full tiny-preset run of 300 steps, started
as a user would start it (a subprocess), with --no-hellaswag. From each run's log.jsonl:
  - val bpb:   validation bits per byte at the last step (the whole validation shard, 05's tiny preset),
  - val loss:  the same evaluation in nats per token,
  - train:     the mean training loss of the last 20 steps (it includes the balance term),
  - min share: the smallest expert's share of layer 1's token-slots over the last 50 steps (uniform = 1/E;
               near 0 = an expert starved, the router collapsed).
A knob's effect is its difference from the baseline run with the same seed (same init, same data order),
mean ± sd over the seeds; it counts as real when |mean| > 2 sd/√n (the table says which).

    python bench/knobs.py                                  # all knobs, seeds 1337 1 2 (≈ 20 s a run on 2 cores)
    python bench/knobs.py --knobs baseline dense --seeds 1337 1 2 3 4
Writes bench/results/knobs_tiny.json (every run's numbers) and prints the Markdown table the README shows.
"""
from __future__ import annotations

import json
import math
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_DIR))
import house  # noqa: E402

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

    The seed (init and data order) moves the tiny run's bits per byte by ≈ 0.03, more than most knobs, and
    moves it alike with and without a knob; so a knob's effect is the difference from the baseline WITH THE
    SAME SEED, mean ± sd over seeds, and it is "beyond seed noise" when |mean| > 2 sd/√n."""
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
            d_m, d_sd = mean_sd(deltas)
            delta = f"{d_m:+.4f} ± {d_sd:.4f}"
            verdict = "yes" if len(deltas) > 1 and abs(d_m) > 2 * d_sd / math.sqrt(len(deltas)) else "no"
        lines.append(f"| {knob} | {len(rs)} | {m:.4f} ± {sd:.4f} | {delta} | {verdict} | {t_m:.3f} ± {t_sd:.3f} | "
                     f"{s_m:.2f} ± {s_sd:.2f} |")
    return "\n".join(lines)


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
    parser.add_argument("--table-from", type=Path, default=None, help="print the table of an earlier --json, run nothing")
    args = parser.parse_args(argv)
    if args.table_from is not None:
        print(table(json.loads(args.table_from.read_text())["runs"]))
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
    house.write_json(args.json, {"date": time.strftime("%Y-%m-%d"), "runs": runs, "table": table(runs)})
    print(table(runs))
    print(f"wrote {house.shown(args.json)}")


if __name__ == "__main__":
    main()
