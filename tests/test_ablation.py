"""exercises/ablation.py (the experiment report's numbers): Student's t against the textbook table, the paired
test, runs paired by seed, the required seeds refused when missing, and the worked example
(docs/report_example.md) reprinted from the knob table's committed records."""
import json
import math

import pytest
import torch

from helpers import REPO_DIR

import house
from exercises import ablation

KNOBS = REPO_DIR / "bench" / "results" / "knobs_tiny.json"


@pytest.mark.parametrize("df, table", [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (10, 2.228),
                                       (30, 2.042), (1000, 1.962)])
def test_critical_values_are_the_textbook_ones(df, table):
    assert round(ablation.t_critical(df), 3) == table


@pytest.mark.parametrize("t, df, p", [(2.0, 1, 0.29517), (2.0, 2, 0.18350), (3.182446, 3, 0.05), (1.0, 10, 0.34089),
                                      (0.0, 4, 1.0), (50.0, 3, 1.7e-05)])
def test_two_sided_p_values(t, df, p):
    assert math.isclose(ablation.t_two_sided_p(t, df), p, rel_tol=2e-3, abs_tol=1e-6)


def test_paired_t_by_hand():
    test = ablation.paired_t([0.01, 0.03, 0.02, 0.04])
    assert math.isclose(test["mean"], 0.025) and math.isclose(test["sd"], math.sqrt(0.0005 / 3))
    assert math.isclose(test["t"], 0.025 / (test["sd"] / 2)) and test["df"] == 3 and test["beyond"]
    assert math.isclose(test["low"], 0.025 - 3.182446 * test["se"], rel_tol=1e-5)
    with pytest.raises(house.UserError, match="at least 2 seeds"):
        ablation.paired_t([0.1])


def test_the_worked_example_is_what_the_tool_prints_from_the_committed_records(capsys, tmp_path):
    ablation.main(["--knobs", str(KNOBS), "--baseline", "baseline", "--ablation", "AdamW only", "--seeds", "1337", "1",
                   "2", "--plot", str(tmp_path / "r.png")])
    printed = capsys.readouterr().out
    assert "t = mean/se = +3.85 with n − 1 = 2 degrees of freedom" in printed and "t(0.975, 2) = 4.303" in printed
    assert "p = 0.061" in printed and "**not shown**" in printed and (tmp_path / "r.png").stat().st_size > 10_000
    example = (REPO_DIR / "docs" / "report_example.md").read_text(encoding="utf-8")
    for line in printed.splitlines():
        if line.startswith(("|", "Paired", "95 %")):
            assert line in example, line
    assert (REPO_DIR / "docs" / "report_example.png").is_file()


def test_a_small_steady_effect_is_shown(capsys):
    ablation.main(["--knobs", str(KNOBS), "--baseline", "baseline", "--ablation", "balance off", "--seeds", "1337", "1",
                   "2"])
    assert "t = mean/se = +8.26" in capsys.readouterr().out


def test_the_required_seeds_are_refused_when_missing():
    with pytest.raises(SystemExit) as stop:
        ablation.main(["--knobs", str(KNOBS), "--baseline", "baseline", "--ablation", "AdamW only"])
    assert str(stop.value) == ("error: the baseline's seeds are [1, 2, 1337], the report's are "
                                               "[1337, 1, 2, 3] (missing 3): run the same seeds in both arms, or "
                                               "state yours with --seeds and say why in the report")


def fake_run(folder, seed: int, val_bpb: float):
    """The two files of a finished 05 run that the tool reads: latest.pt's train_config, log.jsonl's evaluations."""
    folder.mkdir()
    torch.save({"train_config": {"seed": seed}, "step": 300}, folder / "latest.pt")
    records = [{"step": 299, "loss": 4.0}, {"kind": "eval", "step": 150, "val_bpb": 9.9},
               {"kind": "eval", "step": 300, "val_bpb": val_bpb}]
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(folder)


def test_run_folders_pair_up_by_the_seed_in_their_checkpoint(tmp_path, capsys):
    base = [fake_run(tmp_path / f"b{s}", s, 2.70 + i / 100) for i, s in enumerate((1337, 1, 2, 3))]
    abl = [fake_run(tmp_path / f"a{s}", s, 2.72 + i / 100 + (0.001 if s == 2 else 0)) for i, s in
           enumerate((3, 2, 1, 1337))][::-1]            # given in another order: paired by seed, not by position
    ablation.main(["--baseline", *base, "--ablation", *abl])
    printed = capsys.readouterr().out
    assert "| 1337 | 2.7000 | 2.7500 | +0.0500 |" in printed and "| 3 | 2.7300 | 2.7200 | -0.0100 |" in printed
    assert "over n = 4 seeds" in printed and "t(0.975, 3) = 3.182" in printed
    with pytest.raises(SystemExit, match="the ablation has two runs with seed 1337: one run per seed"):
        ablation.main(["--baseline", *base, "--ablation", *abl[:3], base[0]])
    with pytest.raises(SystemExit, match="holds no latest.pt and log.jsonl: pass the --out folder"):
        ablation.main(["--baseline", str(tmp_path), "--ablation", *abl])
