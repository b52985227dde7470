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
