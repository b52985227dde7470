"""The problem set (exercises/problems.md) and its answer key (exercises/solutions/problems_key.md).

Every number the key states as `ID: value` is recomputed from the lessons' own code by
exercises/solutions/problems_key.py and must agree to the digits shown; every problem has points, the
header's totals are the real ones, and every problem has its answers in the key (and no answer is orphaned).
"""
from __future__ import annotations

import re

import pytest

from helpers import REPO_DIR

from exercises.solutions import problems_key

PROBLEMS = REPO_DIR / "exercises" / "problems.md"
KEY = REPO_DIR / "exercises" / "solutions" / "problems_key.md"
ANSWER = re.compile(r"`(\d\.\d+[a-z]): ([^`]+)`")
PROBLEM = re.compile(r"^\*\*(\d)\.(\d+) \((\d+) points\)", re.M)
SESSION = re.compile(r"^## Session (\d) — ", re.M)


def stated_answers(text: str) -> dict[str, str]:
    """{"3.1d": "157,406,976", ...}: every `ID: value` span of the key (an ID stated twice is an error)."""
    found = ANSWER.findall(text)
    ids = [i for i, _ in found]
    assert len(ids) == len(set(ids)), f"answers stated twice: {sorted({i for i in ids if ids.count(i) > 1})}"
    return dict(found)


def agrees(stated: str, true) -> bool:
    """True when the key's text `stated` is `true`: strings exactly, integers exactly, floats to the
    decimals written (0.701 states 0.70099…; 8,540 states 8,539.875)."""
    if isinstance(true, str):
        return stated == true
    number = stated.replace(",", "")
    if not re.fullmatch(r"-?\d+(\.\d+)?", number):
        return False
    if isinstance(true, int):
        return "." not in number and int(number) == true
    decimals = len(number.partition(".")[2])
    return abs(float(number) - true) <= 0.5 * 10 ** -decimals * (1 + 1e-9)


def mismatches(key_text: str, answers: dict) -> list[str]:
    """Every way the key's text disagrees with the recomputed answers, one line each."""
    stated = stated_answers(key_text)
    problems = [f"{i}: missing from the key (recomputed: {answers[i]!r})" for i in answers if i not in stated]
    problems += [f"{i}: in the key but not recomputed by problems_key.py" for i in stated if i not in answers]
    problems += [f"{i}: the key says {stated[i]!r}, the lessons give {answers[i]!r}"
                 for i in answers if i in stated and not agrees(stated[i], answers[i])]
    return problems


@pytest.fixture(scope="module")
def answers():
    return problems_key.answers()


def test_the_key_states_every_answer_the_lessons_compute(answers):
    assert len(answers) >= 60
    assert mismatches(KEY.read_text(encoding="utf-8"), answers) == []


def test_a_wrong_missing_or_extra_answer_is_caught(answers):
    """The comparison above can fail: one digit changed, one answer dropped, one answer made up."""
    key = KEY.read_text(encoding="utf-8")
    assert "`3.1d: 157,406,976`" in key
    wrong = key.replace("`3.1d: 157,406,976`", "`3.1d: 157,406,967`")
    assert mismatches(wrong, answers) == ["3.1d: the key says '157,406,967', the lessons give 157406976"]
    rounded_badly = key.replace("`4.1a: 0.701`", "`4.1a: 0.70`").replace("`4.3a: 0.02309`", "`4.3a: 0.0231`")
    assert mismatches(rounded_badly, answers) == []                # fewer digits, still right
    assert mismatches(key.replace("`4.1a: 0.701`", "`4.1a: 0.702`"), answers)   # a wrong last digit
    assert mismatches(key.replace("`6.1e: 0.00060`", "0.00060"), answers) == [
        "6.1e: missing from the key (recomputed: 0.0006)"]
    assert mismatches(key + "\n`7.3d: 3`", answers) == ["7.3d: in the key but not recomputed by problems_key.py"]
    assert not agrees("1.1", 1) and not agrees("l+o, lo+w", "l+o, lo+w, Ġ+low, Ġlow+e")


def test_problem_set_has_points_and_true_totals():
    text = PROBLEMS.read_text(encoding="utf-8")
    problems = PROBLEM.findall(text)
    assert len(problems) >= 20
    total = sum(int(p) for _, _, p in problems)
    assert f"{len(problems)} problems, {total} points." in text
    ids = [f"{s}.{n}" for s, n, _ in problems]
    assert len(ids) == len(set(ids)), ids
    sessions = SESSION.findall(text)
    assert sessions == [str(i) for i in range(1, 8)]           # the 7 sessions of the course plan, in order
    for session in sessions:                                     # every session has problems ...
        assert any(i.startswith(session + ".") for i in ids), session
    # ... and each problem sits under its own session's heading
    parts = SESSION.split(text)
    for session, body in zip(parts[1::2], parts[2::2]):
        assert {s for s, _, _ in PROBLEM.findall(body)} == {session}, session


def test_every_problem_has_answers_in_the_key_and_every_answer_a_problem(answers):
    problems = {f"{s}.{n}" for s, n, _ in PROBLEM.findall(PROBLEMS.read_text(encoding="utf-8"))}
    answered = {re.sub(r"[a-z]$", "", i) for i in answers}
    assert problems == answered
    key = KEY.read_text(encoding="utf-8")
    for p in problems:
        assert f"\n**{p}**" in key, f"the key has no paragraph for problem {p}"


def test_measured_inputs_are_the_repos_numbers():
    """The numbers the problems start from are the ones the repo states (not copied wrongly)."""
    problems = PROBLEMS.read_text(encoding="utf-8")
    benchmarks = (REPO_DIR / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert f"{problems_key.H200_STEP_TOKENS_PER_S:,} tokens/s" in benchmarks
    assert f"{problems_key.H200_STEP_TOKENS_PER_S:,} tokens/s" in problems
    performance = (REPO_DIR / "docs" / "PERFORMANCE.md").read_text(encoding="utf-8")
    same_h200 = performance[performance.index("## The original code and this repo on the same H200"):]
    original = f"{problems_key.ORIGINAL_TOKENS_PER_S / 1000:.1f}k"
    assert f"| the original code, compiled, micro-batch 16, its own Muon + AdamW | **{original}** |" in same_h200
    assert f"{original} tokens/s on the\nsame H200" in problems      # 6.3 compares one GPU with itself
    for number in (problems_key.TINY_VAL_SHARD_TOKENS, problems_key.TINY_TRAIN_TOKENS, problems_key.LINNET_STEPS):
        assert f"{number:,}" in problems, number
    eval_doc = (REPO_DIR / "06_eval.py").read_text(encoding="utf-8")
    e = problems_key.BPB_EXAMPLE
    for text in (f"{e['nats_per_token']:.3f} nats/token", f"{e['tokens']:,} tokens", f"{e['bytes']:,} bytes"):
        assert text in eval_doc, text
    assert problems_key.BPE_TEXT in problems
    logits = ", ".join(f"{x:.1f}".replace("-", "−") for x in problems_key.ROUTER_LOGITS)
    assert f"`[{logits}]`" in problems
    for row in problems_key.BALANCE_PROBS:
        assert f"`{row}`" in problems, row
    for ending, logprobs in zip(problems_key.HELLASWAG_ENDINGS, problems_key.HELLASWAG_TOKEN_LOGPROBS):
        assert f"`{ending}`" in problems and sum(logprobs) < 0, ending


def exercise_names() -> list[str]:
    """The exercises the checker knows (the EXERCISES dict of exercises/checker/run.py, read with ast: nothing
    is run)."""
    import ast

    tree = ast.parse((REPO_DIR / "exercises" / "checker" / "run.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXERCISES" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("exercises/checker/run.py has no EXERCISES dict")


def test_the_course_plan_lists_every_exercise_and_each_sessions_problems():
    """README's course plan and docs/COURSE.md stay complete as exercises and problems are added."""
    readme = (REPO_DIR / "README.md").read_text(encoding="utf-8")
    plan = readme[readme.index("## Course plan"):readme.index("## Speedrun leaderboard")]
    course = (REPO_DIR / "docs" / "COURSE.md").read_text(encoding="utf-8")
    names = exercise_names()
    assert len(names) >= 18
    for name in names:
        assert f"`{name}`" in plan, f"README's course plan does not place the exercise {name}"
        assert f"`{name}`" in course, f"docs/COURSE.md does not place the exercise {name}"
    problems = PROBLEM.findall(PROBLEMS.read_text(encoding="utf-8"))
    sessions = [" ".join(block.split()) for block in re.split(r"^## Session ", course, flags=re.M)[1:]]
    assert len(sessions) == 7
    for s in range(1, 8):
        mine = [(int(n), int(p)) for sess, n, p in problems if int(sess) == s]
        points = sum(p for _, p in mine)
        assert f"| {s}.1–{s}.{max(n for n, _ in mine)} ({points}):" in plan, (s, points)
        assert f": {points} points" in sessions[s - 1], (s, points)
        for n, p in mine:
            assert re.search(rf"{s}\.{n} [^()]*\({p}( points)?\)", sessions[s - 1]), (s, n, p)
    assert "**§4 (the run loop)**" in plan and "**§4 (the run: the loop itself)**" in course
