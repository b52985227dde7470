"""Every pointer into a lesson's sections lands where it says: an exercise's "section N, name" names a
`# --- N.` heading of that lesson with `name` defined under it, exercises/README.md's §N agrees with its
stub, and a "§N (what)" in the README, docs/ or a notebook names a heading about that "what"."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from helpers import REPO_DIR

LESSON_RE = re.compile(r"\b(0[1-6]_[a-z]+\.py)")
HEADING_RE = re.compile(r"^# --- (\d+)\. (.*?)\s*-*$")
STOP = {"the", "and", "what", "each", "with", "from", "into", "then", "that", "this", "them", "its", "of", "to", "by", "in",
        "on", "at", "as", "is", "it", "an", "or"}


def lesson_sections(lesson: str) -> dict[int, tuple[str, set[str]]]:
    """Heading number → (its title, the names defined under it: functions, classes, Class.method)."""
    path = REPO_DIR / lesson
    lines = path.read_text().splitlines()
    starts = [(i + 1, int(m.group(1)), m.group(2)) for i, line in enumerate(lines) if (m := HEADING_RE.match(line))]
    sections = {n: (title, set()) for _, n, title in starts}
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            continue
        owner = [n for line, n, _ in starts if line < node.lineno]
        if not owner:
            continue
        names = sections[owner[-1]][1]
        names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(f"{node.name}.{m.name}" for m in node.body if isinstance(m, ast.FunctionDef))
    return sections


def all_names(sections) -> set[str]:
    return {name.split(".")[0] for _, names in sections.values() for name in names}


def pointers(text: str) -> list[tuple[str, int, set[str]]]:
    """(lesson, section, code names after it) for each "LESSON, section N[: or ,] names; section M, ..."."""
    found = []
    for m in re.finditer(r"(0[1-6]_[a-z]+\.py),?\s+(sections? [^)]*)\)", " ".join(text.split())):
        lesson = m.group(1)
        for part in re.split(r"(?=\bsections? \d)", m.group(2)):
            if not (num := re.match(r"sections? (\d+)(?:\s*[-–]\s*(\d+))?", part)):
                continue
            first, last = int(num.group(1)), int(num.group(2) or num.group(1))
            names = set(re.findall(r"(?<![\w.=\"'])([A-Za-z_]\w*(?:\.\w+)?)", part[num.end():]))
            found += [(lesson, n, names if first == last else set()) for n in range(first, last + 1)]
    return found


def stub_and_checker_texts() -> list[tuple[str, str]]:
    """(where, text): each exercise's and solution's docstring, each `# --- name (lesson, section …)` line."""
    texts = []
    for path in sorted([*REPO_DIR.glob("exercises/*.py"), *REPO_DIR.glob("exercises/solutions/*.py")]):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        texts.append((str(path.relative_to(REPO_DIR)), doc))
    for path in sorted(REPO_DIR.glob("exercises/checker/checks_*.py")):
        texts += [(f"{path.relative_to(REPO_DIR)}:{i + 1}", line) for i, line in enumerate(path.read_text().splitlines())
                  if line.startswith("# --- ")]
    return texts


def test_every_exercise_section_pointer_names_a_heading_with_those_names_under_it():
    problems, seen = [], 0
    for where, text in stub_and_checker_texts():
        for lesson, n, names in pointers(text):
            seen += 1
            sections = lesson_sections(lesson)
            if n not in sections:
                problems.append(f"{where}: {lesson} has no '# --- {n}.' heading")
                continue
            known = all_names(sections)
            for name in sorted(names):
                if name.split(".")[0] in known and name not in sections[n][1]:
                    where_is = [k for k, (_, ns) in sections.items() if name in ns]
                    problems.append(f"{where}: {name} is in {lesson} section {where_is}, not section {n}")
    assert seen >= 30, f"only {seen} pointers found: has the pointer format changed?"
    assert not problems, "\n".join(problems)


def test_what_a_stub_asks_for_is_defined_in_the_sections_it_points_at():
    """exercises/wsd_schedule.py asks for lr_multiplier: its pointer must be the section that defines it."""
    problems = []
    for path in sorted(REPO_DIR.glob("exercises/*.py")):
        tree = ast.parse(path.read_text())
        found = pointers(ast.get_docstring(tree) or "")
        if not found:
            continue
        sections = lesson_sections(found[0][0])
        pointed = {name for _, n, _ in found if n in sections for name in sections[n][1]}
        asked = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        problems += [f"{path.name}: {name} is in {found[0][0]} section "
                     f"{[k for k, (_, ns) in sections.items() if name in ns]}, not {sorted({n for _, n, _ in found})}"
                     for name in sorted(asked & all_names(sections) - pointed)]
    assert not problems, "\n".join(problems)


def stub_sections(name: str) -> tuple[str, set[int]]:
    doc = ast.get_docstring(ast.parse((REPO_DIR / "exercises" / f"{name}.py").read_text())) or ""
    found = pointers(doc)
    return (found[0][0] if found else ""), {n for _, n, _ in found}


def test_exercises_readme_sections_agree_with_each_stub():
    rows = re.findall(r"^\| `(\w+)` \| `(0\d_\w+\.py)` §(\d+)(?:[–-](\d+))?(?:, §(\d+))? \|",
                      (REPO_DIR / "exercises" / "README.md").read_text(), flags=re.M)
    assert len(rows) >= 15
    for name, lesson, a, b, c in rows:
        listed = set(range(int(a), int(b or a) + 1)) | ({int(c)} if c else set())
        assert stub_sections(name) == (lesson, listed), f"exercises/README.md's {name} row vs exercises/{name}.py"


def prose_files() -> list[tuple[str, str]]:
    files = [REPO_DIR / "README.md", *sorted(REPO_DIR.glob("docs/*.md")), REPO_DIR / "exercises" / "problems.md"]
    texts = [(str(p.relative_to(REPO_DIR)), p.read_text()) for p in files]
    for nb in sorted(REPO_DIR.glob("notebooks/*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            texts.append((f"{nb.relative_to(REPO_DIR)} cell {i}", "".join(cell["source"])))
    return texts


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower().replace("newton–schulz", "newton schulz"))
            if len(w) > 1 and w not in STOP}


@pytest.mark.parametrize("where,text", prose_files(), ids=lambda x: x if isinstance(x, str) and len(x) < 60 else "")
def test_prose_section_pointers_name_the_heading_they_describe(where, text):
    """"`02_model.py` §5 (router, experts, balance loss)": heading 5 exists and shares a word with the "what"."""
    for line in text.splitlines():
        lesson = None
        for m in re.finditer(r"0[1-6]_[a-z]+\.py|(?:§|[Ss]ection )(\d+)([a-z]?)(?:[–-](\d+))?(?: \(([^)]*)\))?", line):
            if m.group(0).endswith(".py"):
                lesson = m.group(0)
                continue
            if lesson is None:
                continue
            sections = lesson_sections(lesson)
            assert not m.group(2), f"{where}: {lesson} has no lettered section {m.group(0)!r}: {line.strip()[:120]}"
            numbers = range(int(m.group(1)), int(m.group(3) or m.group(1)) + 1)
            for n in numbers:
                assert n in sections, f"{where}: {lesson} has no section {n}: {line.strip()[:120]}"
            if m.group(4):
                titles = " ".join(sections[n][0] for n in numbers)
                assert words(m.group(4)) & words(titles), (f"{where}: {lesson} §{m.group(1)} is "
                                                           f"{titles!r}, not {m.group(4)!r}")
