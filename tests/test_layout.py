"""The house's layout: the lessons hold their ideas; `house/` (plumbing) and `fast/` (the fast twins) never
import a lesson, so that a lesson can be read, run and changed on its own. Static checks (ast), no imports."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[1]
PACKAGES = ("house", "fast")


def package_files() -> list[Path]:
    return sorted(p for name in PACKAGES for p in (REPO_DIR / name).glob("*.py"))


def imported_lessons(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, lesson) for every import of a numbered lesson: import_module("02_model"), __import__, `from 02_…`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and re.fullmatch(r"0\d_\w+", node.args[0].value):
            found.append((node.lineno, node.args[0].value))
        elif isinstance(node, ast.ImportFrom) and node.module and re.match(r"0\d_", node.module):
            found.append((node.lineno, node.module))
    return found


def test_both_packages_exist():
    for name in PACKAGES:
        assert (REPO_DIR / name / "__init__.py").is_file(), f"{name}/ is not a package"
        assert "not a lesson" in (ast.get_docstring(ast.parse((REPO_DIR / name / "__init__.py").read_text())) or "")


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(REPO_DIR)))
def test_house_and_fast_import_no_lesson(path):
    found = imported_lessons(ast.parse(path.read_text(encoding="utf-8")))
    assert not found, "\n".join(f"{path.relative_to(REPO_DIR)}:{line} imports {name}: take tensors, dicts, paths "
                                f"and callables instead" for line, name in found)


# --- a lesson holds its idea: the length it may have (issue 31) ---------------------------------------------
LESSONS = sorted(REPO_DIR.glob("0[1-6]_*.py"))
MAX_LINES = {"02_model.py": 1_100}          # the model; every other lesson: 900
MAX_TOTAL, MAX_DOCSTRING = 5_000, 25


def lines_of(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_six_lessons():
    assert [p.name[:3] for p in LESSONS] == ["01_", "02_", "03_", "04_", "05_", "06_"]


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_a_lesson_holds_its_idea(path):
    """≤ 900 lines (02: 1,100), a module docstring of ≤ 25 lines that says how to run it, no appendix: speed
    goes to fast/, plumbing to house/, measurements to BENCHMARKS.md."""
    text = path.read_text(encoding="utf-8")
    limit = MAX_LINES.get(path.name, 900)
    assert lines_of(path) <= limit, f"{path.name} has {lines_of(path)} lines, more than {limit}: move plumbing to house/"
    doc = ast.get_docstring(ast.parse(text), clean=False) or ""
    assert 0 < len(doc.strip().splitlines()) <= MAX_DOCSTRING, f"{path.name}'s docstring is not 1-{MAX_DOCSTRING} lines"
    assert f"python {path.name}" in doc, f"{path.name}'s docstring does not say how to run it"
    assert not re.search(r"^#.*\bappendix\b", text, re.I | re.M), f"{path.name} has an appendix"


def test_the_lessons_together():
    total = sum(lines_of(p) for p in LESSONS)
    assert total <= MAX_TOTAL, f"the six lessons have {total} lines, more than {MAX_TOTAL}"


def test_one_way_to_choose_a_variant():
    """A variant is an ordinary config field (LLMConfig.moe_impl, rope_impl, x0_mix, ...): no setter, slot,
    environment variable or class swap; TrainConfig nests 02's LLMConfig instead of copying its fields."""
    model = (REPO_DIR / "02_model.py").read_text(encoding="utf-8")
    for banned in ("set_rope_impl", "LINNET_ROPE", "LLMPlus", "BlockPlus", "__new__"):
        assert banned not in model, f"02_model.py has {banned}"
    for path in [*LESSONS, *package_files()]:
        assert "LINNET_ROPE" not in path.read_text(encoding="utf-8"), f"{path.name} reads an environment variable"
    train = ast.parse((REPO_DIR / "05_train.py").read_text(encoding="utf-8"))
    config = next(n for n in train.body if isinstance(n, ast.ClassDef) and n.name == "TrainConfig")
    fields = {n.target.id: ast.unparse(n.annotation) for n in config.body if isinstance(n, ast.AnnAssign)}
    assert fields.get("model") == "model_lib.LLMConfig", "TrainConfig.model is not 02's LLMConfig"
    copied = {"depth", "n_experts", "n_active_experts", "block_size", "balance_coef", "moe_impl", "x0_mix"} & set(fields)
    assert not copied, f"TrainConfig re-declares LLMConfig's {sorted(copied)}"
