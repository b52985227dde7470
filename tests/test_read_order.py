"""The repo reads as a book: read order = import order, house names for earlier lessons, short functions,
citations that resolve inside the repo, and no module patching. Static checks (ast and text), no imports.

The rules (README.md, house/__init__.py):
  * a numbered lesson imports `house` and lessons with SMALLER numbers only; the one documented exception
    is 05_train → 06_eval (05 borrows 06's HellaSwag scorer and bits per byte; 06 never imports 05);
  * an earlier lesson is always bound to its house name: `tokenizer_lib = importlib.import_module("01_tokenizer")`,
    `model_lib` (02), `muon_lib` (03), `data_lib` (04), `train_lib` (05), `eval_lib` (06);
  * house/ says on its first line that it is not a lesson;
  * no function in a lesson is longer than 50 lines, from `def` to its last line, docstring included;
  * every repo document cited by a lesson, bench script, notebook or README exists in the repo; the linnet
    facts live in docs/, so `ARCHITECTURE.md` without `docs/` is a dangling citation;
  * nobody patches another module's attributes (`model_lib.name = ...`, `setattr(model_lib, ...)`): a fast
    path and its `NAME_reference` are chosen with an ordinary argument.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[1]
LESSON_FILES = sorted(REPO_DIR.glob("0[1-6]_*.py"))
HOUSE_NAMES = {"01": "tokenizer_lib", "02": "model_lib", "03": "muon_lib", "04": "data_lib",
               "05": "train_lib", "06": "eval_lib"}
ALLOWED_FORWARD_IMPORTS = {("05", "06")}   # 05_train uses 06_eval's scorer and bits per byte; 06 never imports 05
MAX_FUNCTION_LINES = 50

DOCS_ONLY = {"ARCHITECTURE.md", "PERFORMANCE.md", "DATA.md", "HELLASWAG.md", "checkpoint_keys.json"}
# Names of files that runs write or read (outputs, data), not documents of the repo.
RUN_FILE_NAMES = {"config.json", "tokenizer.json", "tokenizer_config.json", "manifest.json", "progress.json", "results.json", "args.json",
                  "loss_equivalence.json"}
CITED_NAME = re.compile(r"(?<![\w./$-])((?:\.{1,2}/)*(?:[\w.-]+/)*[\w-][\w.-]*\.(?:md|json))(?![\w])")
URL = re.compile(r"[a-z]+://\S+")


def lesson_id(path: Path) -> str:
    return path.name[:2]


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def is_import_module_call(node: ast.AST) -> bool:
    """True for `importlib.import_module(...)`."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "importlib")


def lesson_imports(tree: ast.Module) -> list[tuple[int, str, str | None]]:
    """(line, imported module name, the name it is bound to or None) for every importlib.import_module call.

    A call whose argument is not a string literal is reported with the module name "<dynamic>"."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and is_import_module_call(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound[id(node.value)] = targets[0].id if len(targets) == 1 and isinstance(targets[0], ast.Name) else None
    found = []
    for node in ast.walk(tree):
        if is_import_module_call(node):
            arg = node.args[0] if node.args else None
            name = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else "<dynamic>"
            found.append((node.lineno, name, bound.get(id(node))))
    return sorted(found)


def plain_imports(tree: ast.Module) -> set[str]:
    """Top-level names of every `import x` / `from x import y` in the module."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_there_are_six_lessons():
    assert [lesson_id(p) for p in LESSON_FILES] == ["01", "02", "03", "04", "05", "06"], LESSON_FILES


@pytest.mark.parametrize("path", LESSON_FILES, ids=lambda p: p.stem)
def test_read_order_is_import_order(path):
    """A lesson imports `house` and lessons with smaller numbers only (05 → 06 is the documented exception)."""
    tree = parse(path)
    me = lesson_id(path)
    assert "house" in plain_imports(tree), f"{path.name} does not `import house`"
    wrong = []
    for line, name, _ in lesson_imports(tree):
        if name == "<dynamic>":
            wrong.append(f"{path.name}:{line} imports a module whose name is not a literal: read order cannot be checked")
        elif re.fullmatch(r"\d\d_\w+", name) and name[:2] >= me and (me, name[:2]) not in ALLOWED_FORWARD_IMPORTS:
            wrong.append(f"{path.name}:{line} imports {name}: a lesson may use only house and lessons before it")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", LESSON_FILES, ids=lambda p: p.stem)
def test_earlier_lessons_have_their_house_names(path):
    """`importlib.import_module("02_model")` is always assigned to `model_lib`, and so on (HOUSE_NAMES)."""
    wrong = []
    for line, name, bound_to in lesson_imports(parse(path)):
        expected = HOUSE_NAMES.get(name[:2]) if re.fullmatch(r"\d\d_\w+", name) else None
        if expected and bound_to != expected:
            how = f"bound to `{bound_to}`" if bound_to else "not assigned to a name"
            wrong.append(f"{path.name}:{line} imports {name} {how}: write `{expected} = importlib.import_module({name!r})`")
    assert not wrong, "\n".join(wrong)


def test_house_says_it_is_not_a_lesson():
    docstring = ast.get_docstring(parse(REPO_DIR / "house" / "__init__.py")) or ""
    first_line = docstring.splitlines()[0] if docstring else ""
    assert "not a lesson" in first_line, f"house/__init__.py's first docstring line should say it is not a lesson: {first_line!r}"


def function_lengths(tree: ast.Module):
    """(qualified name, first line, length in lines from `def` to the last line) of every function, nested too."""
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{prefix}{child.name}", child.lineno, child.end_lineno - child.lineno + 1
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)
    return list(walk(tree, ""))


@pytest.mark.parametrize("path", LESSON_FILES, ids=lambda p: p.stem)
def test_lesson_functions_are_at_most_50_lines(path):
    too_long = [f"{path.name}:{line} {name} is {length} lines (at most {MAX_FUNCTION_LINES})"
                for name, line, length in function_lengths(parse(path)) if length > MAX_FUNCTION_LINES]
    assert not too_long, "\n".join(too_long)


def citing_files() -> list[Path]:
    """Lessons, house.py, bench scripts, notebooks and the READMEs (and BENCHMARKS.md, which README sends readers to)."""
    files = [*LESSON_FILES, *sorted((REPO_DIR / "house").glob("*.py")), *sorted((REPO_DIR / "fast").glob("*.py")), *sorted((REPO_DIR / "bench").glob("*.py")),
             *sorted((REPO_DIR / "bench").glob("*.sh")), *sorted((REPO_DIR / "notebooks").glob("*.ipynb")),
             REPO_DIR / "README.md", REPO_DIR / "exercises" / "README.md", REPO_DIR / "BENCHMARKS.md"]
    return [f for f in files if f.is_file()]


def readable_text(path: Path) -> str:
    """The file's text; for a notebook, the source of its cells."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        cells = json.loads(text)["cells"]
        text = "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells)
    return text


def cited_documents(text: str) -> list[tuple[int, str]]:
    """(line, name) of every cited `.md` / `.json` that looks like a repo document (not a URL, not a run's file)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for name in CITED_NAME.findall(URL.sub(" ", line)):
            base = name.rsplit("/", 1)[-1]
            if base in RUN_FILE_NAMES or base.endswith(".meta.json") or name.startswith(("out/", "$")):
                continue
            found.append((number, name))
    return found


def dangling(path: Path, name: str) -> str | None:
    """Why the citation `name` in `path` does not lead to a file of the repo, or None when it does."""
    base = name.rsplit("/", 1)[-1]
    if base in DOCS_ONLY and name.removeprefix("./") != f"docs/{base}":
        return f"cites {name}: write docs/{base} (the linnet facts live in the repo's docs/)"
    for root in (REPO_DIR, path.parent):
        target = (root / name).resolve()
        if target.is_file() and target.is_relative_to(REPO_DIR):
            return None
    return f"cites {name}, which is not a file of the repo"


@pytest.mark.parametrize("path", citing_files(), ids=lambda p: str(p.relative_to(REPO_DIR)))
def test_cited_documents_exist_in_the_repo(path):
    problems = [f"{path.relative_to(REPO_DIR)}:{line} {why}" for line, name in cited_documents(readable_text(path))
                if (why := dangling(path, name))]
    assert not problems, "\n".join(problems)


def patching_files() -> list[Path]:
    return [*LESSON_FILES, *sorted((REPO_DIR / "bench").glob("*.py")),
            *sorted((REPO_DIR / "exercises" / "checker").glob("*.py"))]


def module_names(tree: ast.Module) -> set[str]:
    """Names that hold one of this repo's modules: `house`, any `*_lib`, whatever an import_module call binds."""
    names = {"house"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id.endswith("_lib"):
            names.add(node.id)
        elif isinstance(node, ast.Assign) and is_import_module_call(node.value):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def module_patches(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, what) for every `module.attr = ...` / `module.attr += ...` / `setattr(module, ...)` on a module name."""
    modules, found = module_names(tree), []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for t in targets:
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in modules:
                found.append((t.lineno, f"{t.value.id}.{t.attr} = ..."))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") \
                and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in modules:
            found.append((node.lineno, f"{node.func.id}({node.args[0].id}, ...)"))
    return sorted(found)


@pytest.mark.parametrize("path", [p for p in patching_files() if p.is_file()], ids=lambda p: str(p.relative_to(REPO_DIR)))
def test_no_module_is_patched(path):
    """A fast path and its NAME_reference are chosen with an argument (a config field, `reference=True`),
    never by replacing a module's attribute."""
    found = [f"{path.relative_to(REPO_DIR)}:{line} {what}: choose the plain version with an argument instead"
             for line, what in module_patches(parse(path))]
    assert not found, "\n".join(found)
