"""'Beyond seed noise' is one rule (house/stats.py, README "Beyond seed noise"), and every label says what it gives.

The critical values are Student's t (checked here by integrating its density, no scipy needed); the README's
knob table, its linnet+ table and the speedrun leaderboard are recomputed from the committed raw records
(bench/results/knobs_tiny*.json, bench/results/linnet_plus/*.json); the old rule (|mean| > 2 sd/√n) is gone.
"""
from __future__ import annotations

import json
import math
import re
import statistics
import sys

import pytest

from helpers import REPO_DIR

from house import stats

sys.path.insert(0, str(REPO_DIR / "bench"))
import linnet_plus  # noqa: E402

README = (REPO_DIR / "README.md").read_text(encoding="utf-8")
KNOB_RECORDS = [REPO_DIR / "bench" / "results" / "knobs_tiny.json", REPO_DIR / "bench" / "results" / "knobs_tiny_seed3.json"]


def t_cdf(x: float, df: int) -> float:
    """P(T ≤ x) for Student's t with df degrees of freedom, by Simpson's rule on its density from 0 to x."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    density = lambda t: c * (1 + t * t / df) ** (-(df + 1) / 2)
    n = 2000
    h = x / n
    total = density(0) + density(x) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, n))
    return 0.5 + total * h / 3


@pytest.mark.parametrize("df,table", [(1, 12.71), (2, 4.30), (3, 3.18), (4, 2.78), (9, 2.26), (30, 2.04)])
def test_critical_values_are_students_t(df, table):
    """house.stats.t_critical (incomplete beta + bisection) against Simpson's rule on the density, and the table."""
    value = stats.t_critical(df)
    assert abs(t_cdf(value, df) - 0.975) < 1e-4, (df, t_cdf(value, df))
    assert round(value, 2) == table


def test_the_cutoffs_the_readme_states():
    assert round(stats.t_critical(2), 2) == 4.30 and round(stats.t_critical(3), 2) == 3.18
    assert stats.t_critical(3) < stats.t_critical(2.5) < stats.t_critical(2)     # Welch's fractional df
    with pytest.raises(ValueError):
        stats.t_critical(0)
    assert "4.30 with 3 seeds, 3.18 with 4" in README


def test_one_implementation_of_the_rule():
    """bench/knobs.py, bench/linnet_plus.py and exercises/ablation.py decide with house/stats.py, and nothing
    else in the repo computes a t cutoff of its own."""
    from exercises import ablation
    assert ablation.t_critical is stats.t_critical and ablation.t_two_sided_p is stats.t_two_sided_p
    for script in ("bench/knobs.py", "bench/linnet_plus.py", "exercises/ablation.py"):
        assert "from house import stats" in (REPO_DIR / script).read_text(encoding="utf-8"), script
    own = [p for p in [*REPO_DIR.glob("*.py"), *REPO_DIR.glob("*/*.py"), *REPO_DIR.glob("*/*/*.py")]
           if p.name != "stats.py" and "out" not in p.parts and "tests" not in p.parts
           and re.search(r"def (t_critical|incomplete_beta|paired_t)\b|4\.30[0-9]*\s*if|12\.71",
                         p.read_text(encoding="utf-8")) and p.name != "ablation.py"]
    assert not own, own


def test_paired_is_a_t_test_on_the_differences():
    v = stats.paired([0.0134, 0.0136, 0.0019])     # mean 2.49 standard errors: "yes" by the old rule, not by t(2)
    assert v.n == 3 and abs(v.t - 2.49) < 0.01 and round(v.critical, 2) == 4.30 and not v.beyond
    assert v.label() == "no (t = 2.49 < 4.30, n = 3)"
    assert stats.paired([-0.03, -0.02, -0.04, -0.03]).beyond              # n = 4: t = 7.3 > 3.18
    assert stats.paired([0.01, 0.01, 0.01]).beyond and not stats.paired([0.0, 0.0]).beyond   # sd 0
    assert stats.paired([0.01]).label().startswith("—") and not stats.paired([0.01]).beyond


def test_welch_when_runs_are_not_paired():
    a, b = [10.49, 11.47, 10.00, 10.52, 10.03], [10.54, 11.00, 10.88, 9.97, 10.26]
    v = stats.welch(a, b)
    va, vb = statistics.variance(a) / 5, statistics.variance(b) / 5
    assert v.test == "Welch t" and abs(v.t - (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)) < 1e-12
    assert not v.beyond and stats.welch([1.0, 1.1, 0.9], [2.0, 2.1, 1.9]).beyond


def test_the_old_rule_is_gone():
    """|mean| > 2 sd/√n (a z-test with 3 or 4 seeds) appears nowhere students or scripts read it as the rule."""
    files = [REPO_DIR / "README.md", REPO_DIR / "BENCHMARKS.md", *REPO_DIR.glob("docs/*.md"), *REPO_DIR.glob("bench/*.py"),
             REPO_DIR / "exercises" / "speedrun.py", *REPO_DIR.glob("notebooks/*.ipynb")]
    for path in files:
        text = path.read_text(encoding="utf-8")
        for old in ("2 sd/√", "2 × sd / √", "two standard errors", "2 * d_sd / math.sqrt", "2 * sd / math.sqrt"):
            assert old not in text, f"{path.relative_to(REPO_DIR)} still states the old rule: {old!r}"


# --- the README's numbers, from the raw records -----------------------------------------------------------

def knob_runs() -> list[dict]:
    return [r for path in KNOB_RECORDS for r in json.loads(path.read_text())["runs"]]


def knob_test(knob: str) -> stats.Verdict:
    runs = knob_runs()
    base = {r["seed"]: r["val_bpb"] for r in runs if r["knob"] == "baseline"}
    return stats.paired([r["val_bpb"] - base[r["seed"]] for r in runs if r["knob"] == knob])


def test_every_knob_has_four_seeds_recorded():
    runs = knob_runs()
    seeds = {}
    for r in runs:
        seeds.setdefault(r["knob"], []).append(r["seed"])
    assert all(sorted(s) == [1, 2, 3, 1337] for s in seeds.values()), seeds


def test_the_knob_table_labels_follow_from_the_records():
    section = README[README.index("## Knobs to break the recipe"):README.index("### Beyond seed noise")]
    rows = {cells[0].strip(): cells for line in section.splitlines() if line.startswith("| ")
            for cells in [line.strip().strip("|").split(" | ")]}
    named = {"baseline", "balance off", "AdamW only", "dense", "no warm-up", "long warm-up"}
    assert named <= set(rows)
    for knob in named - {"baseline"}:
        v = knob_test(knob)
        row = " | ".join(rows[knob])
        assert f"t = {abs(v.t):.2f}" in row and ("yes" if v.beyond else "no") in row, (knob, v.label(), row)
        assert f"{v.mean:+.3f}".replace("-", "−") in row, (knob, v.mean, row)
    for knob in ("fp8 (emulated)", "linnet+ (tiny-plus)"):                    # in the prose below the table
        v = knob_test(knob)
        assert f"t = {abs(v.t):.2f}" in README, (knob, v.label())


def test_the_linnet_plus_labels_follow_from_the_records():
    runs = [r for path in sorted((REPO_DIR / "bench" / "results" / "linnet_plus").glob("*.json"))
            for r in json.loads(path.read_text())["runs"]]
    section = README[README.index("### linnet+: switches"):README.index("## More than one GPU")]
    for name, flags in linnet_plus.SWITCHES.items():
        v = stats.paired(linnet_plus.paired_deltas(runs, name, 240))
        row = next(line for line in section.splitlines() if f"`{' '.join(flags)}`" in line)
        assert f"t = {abs(v.t):.2f}" in row or f"t = {abs(v.t):.1f}" in row, (name, v.label(), row)
        assert ("beyond seed noise" in row) == v.beyond, (name, v.label(), row)


def test_the_leaderboard_scores_are_the_records():
    """Every score of the leaderboard is a committed run's val bpb; each row's verdict is the paired rule's."""
    section = README[README.index("## Speedrun leaderboard"):]
    by_seed = {(r["knob"], r["seed"]): r["val_bpb"] for r in knob_runs()}
    # the baseline row is the scorer's own record (exercises/speedrun.py --rerun reproduces it seed by seed)
    scorer = json.loads((REPO_DIR / "bench" / "results" / "speedrun" / "baseline.json").read_text(encoding="utf-8"))
    by_seed.update({("baseline", s["seed"]): s["bpb"] for s in scorer["per_seed"]})
    rows = {"linnet+ (tiny-plus)": "| 1 |", "no warm-up": "| 2 |", "baseline": "| 3 |"}
    for knob, start in rows.items():
        line = next(l for l in section.splitlines() if l.startswith(start))
        scores = [by_seed[(knob, seed)] for seed in (1337, 1, 2, 3)]
        assert ", ".join(f"{s:.4f}" for s in scores) in line, (knob, scores, line)
        assert f"{statistics.fmean(scores):.4f} ± {statistics.stdev(scores):.4f}" in line, (knob, line)
        if knob != "baseline":
            v = knob_test(knob)
            assert f"t = {abs(v.t):.2f}" in line, (knob, v.label(), line)


def test_knobs_prints_the_table_of_both_record_files(capsys):
    import knobs
    knobs.main(["--table-from", *map(str, KNOB_RECORDS)])
    table = capsys.readouterr().out
    assert knob_test("AdamW only").label() in table and "| AdamW only | 4 |" in table
    with pytest.raises(SystemExit):                      # one record per knob and seed: the same file twice is refused
        knobs.main(["--table-from", str(KNOB_RECORDS[1]), str(KNOB_RECORDS[1])])
