"""bench/hostile.py (issue 24's hostile-user table) cannot rot: three of its cheap cases run through its own
functions as the full table runs them, and its verdicts are shown to say "traceback", "hang", "data lost"
and "misleading" when a run is one."""
import importlib.util
import sys

import pytest

from helpers import REPO_DIR

spec = importlib.util.spec_from_file_location("hostile", REPO_DIR / "bench" / "hostile.py")
hostile = importlib.util.module_from_spec(spec)
sys.modules["hostile"] = hostile
spec.loader.exec_module(hostile)

CHEAP = ["05 --seed 4294967296", "06 --sample= (empty prompt)", "05 --lr nan"]   # no shared inputs: ~1 s each


def by_name(name):
    return next(c for c in hostile.CASES if c.name == name)


def test_there_are_87_cases_with_unique_names():   # issue 24's 72, issue 32's 15
    assert len(hostile.CASES) == 87 and len({c.name for c in hostile.CASES}) == 87
    assert [c.number for c in hostile.CASES] == list(range(1, 88))


@pytest.mark.parametrize("name", CHEAP)
def test_a_cheap_case_runs_as_in_the_table(tmp_path, name):
    ctx = hostile.Ctx(tmp_path, timeout=60, quiet=True)
    row = hostile.run_case(ctx, by_name(name))
    assert row.verdict in hostile.VERDICTS, row            # a verdict, not a harness error
    assert row.exit not in ("", "timeout") and row.message and "python" in row.command and "$T" in row.command
    assert not ctx.setup_log                               # these cases need no shared inputs
    assert "| " + str(row.case.number) + " |" in hostile.table([row])


def proc(rc=1, out="", err="", timed_out=False):
    return hostile.Proc(["python", "x.py"], rc, out, err, timed_out)


def test_verdicts_can_say_each_failure():
    ok = proc(err="error: x holds a run: pass --resume\n")
    assert hostile.refusal(ok, "--resume") == hostile.HELD
    assert hostile.refusal(ok, "--overwrite") == hostile.MISLEADING                # the fix is not named
    assert hostile.refusal(ok, "--resume", changed=True) == hostile.LOST           # sha256 differs afterwards
    assert hostile.refusal(proc(rc=0), accepted=hostile.WRONG) == hostile.WRONG    # ran on in silence
    assert hostile.refusal(proc(err="Traceback (most recent call last):\nOSError: x\n")) == hostile.TRACEBACK
    assert hostile.refusal(proc(err="error: a\nerror: b\n")) == hostile.MISLEADING
    assert hostile.refusal(proc(err="error: \x1b[31mred\x1b[0m\n")) == hostile.MISLEADING   # raw terminal codes
    assert hostile.refusal(proc(rc=None, timed_out=True)) == hostile.HANG
    bar = "  5%|▌         | 1/20 [00:00<00:01, 10.0step/s]\r"                      # a progress bar is not a line
    assert hostile.refusal(proc(err=bar + "error: disk is full\n"), "disk") == hostile.HELD
    assert hostile.worse(hostile.HELD, hostile.MISLEADING, hostile.LOST) == hostile.LOST


def test_a_run_past_its_timeout_is_killed_and_called_a_hang(tmp_path):
    p = hostile.finish(hostile.start([sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path), timeout=1)
    assert p.timed_out and p.rc is None and p.seconds < 30
    assert hostile.refusal(p) == hostile.HANG
