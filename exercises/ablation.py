"""The experiment report's numbers: two arms' per-seed runs → the table, mean ± sd, the paired t-test, a plot.

    python -m exercises.ablation --baseline out/base_s1337 out/base_s1 out/base_s2 out/base_s3 \
        --ablation out/abl_s1337 out/abl_s1 out/abl_s2 out/abl_s3 --plot out/ablation.png
    python -m exercises.ablation --knobs bench/results/knobs_tiny.json --baseline baseline \
        --ablation "AdamW only" --seeds 1337 1 2 --plot /tmp/ablation.png     # docs/report_example.md's numbers

A run is the --out folder of a finished `python 05_train.py` run: its seed is read from latest.pt (train_config),
its number from the last evaluation in log.jsonl (--metric, default val_bpb); with --knobs, the runs are the
records bench/knobs.py wrote, named by knob. Runs pair up by seed: the assignment's seeds are 1337, 1, 2, 3 (the
README's), each required once in both arms (--seeds states others; say so in the report). Prints Markdown for
the report (exercises/report_template.md): a row per seed with the difference, mean ± sd, then the paired t-test:
t = mean Δ / (sd Δ / √n) against Student's t with n − 1 degrees of freedom (two-sided, 95 %: 12.71 for 2 seeds,
4.30 for 3, 3.18 for 4), its p-value, the 95 % interval of the mean difference and the verdict.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import house
import house.runs
from house import stats
from house.stats import incomplete_beta, t_critical, t_two_sided_p  # noqa: F401  (where the tests look)

REQUIRED_SEEDS = (1337, 1, 2, 3)


# --- 1. The paired t-test: house/stats.py's, the one rule of the repo (README, "Beyond seed noise") ----------

def paired_t(deltas: list[float], level: float = 0.95) -> dict:
    """The paired t-test of per-seed differences: mean, sd, standard error, t, df, critical value, p, interval."""
    n = len(deltas)
    if n < 2:
        raise house.UserError(f"a paired t-test needs at least 2 seeds in both arms, got {n}")
    v = stats.paired(deltas, level)
    se = v.sd / math.sqrt(n)
    return {"n": n, "mean": v.mean, "sd": v.sd, "se": se, "t": v.t, "df": n - 1, "crit": v.critical, "p": v.p,
            "level": level, "low": v.mean - v.critical * se, "high": v.mean + v.critical * se, "beyond": v.beyond}


# --- 2. The runs: 05's --out folders, or bench/knobs.py's records ------------------------------------------

def read_run(folder: Path, metric: str) -> tuple[int, float]:
    """(seed, the metric at the last evaluation) of a finished 05 run folder."""
    if not (folder / "latest.pt").is_file() or not (folder / "log.jsonl").is_file():
        raise house.UserError(f"{house.shown(folder)} holds no latest.pt and log.jsonl: pass the --out folder of a "
                              "finished python 05_train.py run")

    def unreadable(path):
        raise house.UserError(f"{house.shown(path)} is not a checkpoint 05 wrote (no train_config)")
    seed = house.runs.read_train_config(folder / "latest.pt", unreadable)["train_config"]["seed"]
    evals = [r for r in house.runs.read_log(folder / "log.jsonl")[1] if metric in r]
    if not evals:
        raise house.UserError(f"{house.shown(folder / 'log.jsonl')} has no evaluation with {metric!r}: did the run "
                              "finish? (05 evaluates at the last step)")
    return int(seed), float(evals[-1][metric])


def read_knob(records: list[dict], knob: str, metric: str) -> list[tuple[int, float]]:
    """(seed, metric) of every run of `knob` in bench/knobs.py's records."""
    runs = [(int(r["seed"]), float(r[metric])) for r in records if r["knob"] == knob]
    if not runs:
        names = ", ".join(dict.fromkeys(repr(r["knob"]) for r in records))
        raise house.UserError(f"the records hold no knob {knob!r}; they hold {names}")
    return runs


def by_seed(runs: list[tuple[int, float]], seeds: list[int], arm: str) -> dict[int, float]:
    """{seed: value} of one arm, with exactly the seeds the assignment asks for (each once)."""
    found: dict[int, float] = {}
    for seed, value in runs:
        if seed in found:
            raise house.UserError(f"the {arm} has two runs with seed {seed}: one run per seed")
        found[seed] = value
    missing, extra = [s for s in seeds if s not in found], [s for s in found if s not in seeds]
    if missing or extra:
        raise house.UserError(f"the {arm}'s seeds are {sorted(found)}, the report's are {list(seeds)} ("
                              + ("missing " + ", ".join(map(str, missing)) if missing else "")
                              + ("; " if missing and extra else "") + ("extra " + ", ".join(map(str, extra)) if extra
                                                                        else "") + "): run the same seeds in both arms, "
                              "or state yours with --seeds and say why in the report")
    return {s: found[s] for s in seeds}


# --- 3. What goes into the report: the table, the test, the plot --------------------------------------------

def report_markdown(base: dict, abl: dict, names: tuple[str, str], metric: str, test: dict) -> str:
    """The table (a row per seed, then mean ± sd) and the paired t-test, as Markdown."""
    b_name, a_name = names
    lines = [f"| seed | {b_name}: {metric} | {a_name}: {metric} | Δ = {a_name} − {b_name} |", "|---|---|---|---|"]
    lines += [f"| {s} | {base[s]:.4f} | {abl[s]:.4f} | {abl[s] - base[s]:+.4f} |" for s in base]
    sd = lambda xs: statistics.stdev(xs)                                        # noqa: E731
    lines.append(f"| mean ± sd | {statistics.fmean(base.values()):.4f} ± {sd(list(base.values())):.4f} | "
                 f"{statistics.fmean(abl.values()):.4f} ± {sd(list(abl.values())):.4f} | "
                 f"{test['mean']:+.4f} ± {test['sd']:.4f} |")
    level = round(100 * test["level"])
    beyond = (f"**beyond seed noise**: |t| = {abs(test['t']):.2f} > {test['crit']:.3f}" if test["beyond"] else
              f"**not shown**: |t| = {abs(test['t']):.2f} ≤ {test['crit']:.3f}, within seed noise at {level} % with "
              f"{test['n']} seeds")
    return "\n".join(lines + [
        "",
        f"Paired t-test over n = {test['n']} seeds: mean Δ = {test['mean']:+.4f}, sd Δ = {test['sd']:.4f}, standard "
        f"error sd/√n = {test['se']:.4f}, t = mean/se = {test['t']:+.2f} with n − 1 = {test['df']} degrees of "
        f"freedom; two-sided {level} % critical value t({(1 + test['level']) / 2:.3f}, {test['df']}) = "
        f"{test['crit']:.3f}; p = {test['p']:.3f}.",
        f"{level} % interval of the mean Δ: {test['mean']:+.4f} ± {test['crit'] * test['se']:.4f} = "
        f"[{test['low']:+.4f}, {test['high']:+.4f}]. Verdict: {beyond}."])


def plot(base: dict, abl: dict, names: tuple[str, str], metric: str, test: dict, path: Path) -> None:
    """Left: each seed's two runs joined by a line. Right: each seed's Δ, their mean and its 95 % interval."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for s in base:
        left.plot([0, 1], [base[s], abl[s]], "o-", label=f"seed {s}")
    left.set(xticks=[0, 1], xticklabels=list(names), ylabel=metric, title="each seed, both arms")
    left.legend(fontsize=7)
    deltas = [abl[s] - base[s] for s in base]
    right.axhline(0, color="grey", lw=0.8)
    right.plot(range(len(deltas)), deltas, "o", label="Δ per seed")
    right.errorbar([len(deltas)], [test["mean"]], yerr=[[test["mean"] - test["low"]], [test["high"] - test["mean"]]],
                   fmt="s", color="black", capsize=4, label=f"mean, {round(100 * test['level'])} % interval")
    right.set(xticks=list(range(len(deltas) + 1)), xticklabels=[str(s) for s in base] + ["mean"],
              ylabel=f"Δ {metric}", title=f"{names[1]} − {names[0]}: t = {test['t']:+.2f}, p = {test['p']:.3f}")
    right.legend(fontsize=7)
    fig.tight_layout()
    house.check_writable(path.parent)
    fig.savefig(path, dpi=120)
    plt.close(fig)


@house.speaks
def main(argv=None) -> None:
    parser = house.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=house.HelpFormatter)
    parser.add_argument("--baseline", nargs="+", required=True, help="the baseline's run folders (with --knobs: its "
                        "knob's name)")
    parser.add_argument("--ablation", nargs="+", required=True, help="the ablation's run folders (with --knobs: its "
                        "knob's name)")
    parser.add_argument("--knobs", type=Path, default=None, help="bench/knobs.py's JSON: --baseline and --ablation "
                        "name knobs in it")
    parser.add_argument("--metric", default="val_bpb", help="the number compared (an evaluation record's field)")
    parser.add_argument("--seeds", nargs="+", type=house.seed, default=list(REQUIRED_SEEDS),
                        help="the seeds every arm must have, each once")
    parser.add_argument("--names", nargs=2, default=None, metavar=("BASELINE", "ABLATION"),
                        help="how the table names the two arms (default: baseline and ablation, or the knobs' names)")
    parser.add_argument("--plot", type=Path, default=None, help="save the figure here (PNG)")
    args = parser.parse_args(argv)
    if args.knobs is not None:
        records = json.loads(args.knobs.read_text())["runs"]
        runs = [read_knob(records, " ".join(arm), args.metric) for arm in (args.baseline, args.ablation)]
    else:
        runs = [[read_run(Path(f), args.metric) for f in arm] for arm in (args.baseline, args.ablation)]
    base, abl = (by_seed(r, args.seeds, arm) for r, arm in zip(runs, ("baseline", "ablation")))
    test = paired_t([abl[s] - base[s] for s in args.seeds])
    names = tuple(args.names or ((" ".join(args.baseline), " ".join(args.ablation)) if args.knobs else
                                 ("baseline", "ablation")))
    print(report_markdown(base, abl, names, args.metric, test))
    if args.plot is not None:
        plot(base, abl, names, args.metric, test, args.plot)
        print(f"plot: {house.shown(args.plot)} — left: each seed's two runs; right: each seed's Δ and their mean "
              "with its interval (an interval that crosses 0 is not shown to differ)")


if __name__ == "__main__":
    main()
