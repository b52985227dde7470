"""notebooks/: every walkthrough runs headless from top to bottom, is stored without outputs, and writes
nothing into the repo outside out/ (here: a temp folder, through LINNET_NOTEBOOK_OUT)."""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO_DIR, require_shared

nbformat = pytest.importorskip("nbformat")

NOTEBOOK_DIR = REPO_DIR / "notebooks"
NOTEBOOKS = ["00_overview", "01_tokenizer", "02_model", "03_muon", "04_data", "05_train", "06_eval"]
LESSONS = {"01_tokenizer", "02_model", "03_muon", "04_data", "05_train", "06_eval"}
IGNORED_DIRS = {".git", "out", "__pycache__", ".pytest_cache", ".hypothesis", ".ipynb_checkpoints"}


def read(name: str):
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


# --- stored notebooks: one per lesson, valid, outputs stripped ----------------------------------------

def test_one_notebook_per_lesson_plus_overview():
    found = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert found == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
    nb = read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name}.ipynb has no code cells"
    for i, cell in enumerate(code):
        assert cell.outputs == [], f"{name}.ipynb code cell {i} has saved outputs: clear them before committing"
        assert cell.execution_count is None, f"{name}.ipynb code cell {i} has an execution count: clear outputs"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("name", NOTEBOOKS[1:])
def test_notebook_calls_its_lesson(name):
    """The walkthrough imports its numbered file and calls its main(), instead of copying code."""
    source = "\n".join(c.source for c in read(name).cells if c.cell_type == "code")
    assert f'importlib.import_module("{name}")' in source
    assert ".main(" in source and '"--preset", "tiny"' in source


EXERCISE_FILE = re.compile(r"exercises/(\w+)\.py")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_a_workbench(name):
    """At least three "Predict:" prompts, each shaped: the question (markdown), a cell for the student's
    guess (`my_guess = ...`), the cell that shows the answer, then a "Why:" that explains it; and a pointer
    to at least one exercise that exists."""
    cells = read(name).cells
    prompts = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and "**Predict:**" in c.source]
    assert len(prompts) >= 3, f"{name}.ipynb has {len(prompts)} **Predict:** prompts, expected at least 3"
    for n, i in enumerate(prompts):
        assert i + 3 < len(cells), f"{name}.ipynb: the Predict prompt in cell {i} has no answer after it"
        guess, answer = cells[i + 1], cells[i + 2]
        assert guess.cell_type == "code" and "my_guess" in guess.source, \
            f"{name}.ipynb cell {i + 1}: after a Predict prompt comes a `my_guess = ...` cell for the student"
        assert answer.cell_type == "code" and "my_guess" not in answer.source, \
            f"{name}.ipynb cell {i + 2}: after the guess comes the cell that shows the answer"
        end = prompts[n + 1] if n + 1 < len(prompts) else len(cells)
        why = [c for c in cells[i + 3:end] if c.cell_type == "markdown" and "**Why:**" in c.source]
        assert why, f"{name}.ipynb: the Predict prompt in cell {i} has no **Why:** before the next prompt"
    text = "\n".join(c.source for c in cells)
    named = set(EXERCISE_FILE.findall(text))
    assert named, f"{name}.ipynb points to no exercise (exercises/NAME.py)"
    missing = sorted(n for n in named if not (REPO_DIR / "exercises" / f"{n}.py").exists())
    assert not missing, f"{name}.ipynb points to exercises that do not exist: {missing}"


# --- execution --------------------------------------------------------------------------------------

def repo_snapshot() -> set[str]:
    """Every file in the repo except out/, .git and caches."""
    snap = set()
    for root, dirs, files in os.walk(REPO_DIR):
        dirs[:] = [d for d in dirs if d not in IGNORED_DIRS]
        for f in files:
            snap.add(str(Path(root, f).relative_to(REPO_DIR)))
    return snap


def kernel_manager():
    """A python3 kernel that runs THIS interpreter (the venv the tests run in), whatever the kernelspec says."""
    pytest.importorskip("ipykernel")
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.kernel_spec.argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    return km


def execute(nb, cwd: Path):
    nbclient = pytest.importorskip("nbclient")
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", km=kernel_manager(),
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()   # raises CellExecutionError on the first cell that fails
    return nb


@pytest.fixture(scope="module")
def notebook_out(tmp_path_factory):
    """One out folder for the whole module, so 06 finds 05's checkpoint as it would in class."""
    require_shared("corpus")
    require_shared("hellaswag")
    out = tmp_path_factory.mktemp("notebooks_out")
    old = {k: os.environ.get(k) for k in ("LINNET_NOTEBOOK_OUT", "HF_HUB_OFFLINE", "MPLBACKEND")}
    os.environ.update(LINNET_NOTEBOOK_OUT=str(out), HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    yield out
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.mark.slow
def test_kernel_runs_this_interpreter(notebook_out):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    execute(nb, NOTEBOOK_DIR)
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs).strip()
    assert Path(printed).resolve() == Path(sys.executable).resolve()


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, notebook_out):
    before = repo_snapshot()
    started = time.time()
    nb = execute(read(name), NOTEBOOK_DIR)
    print(f"{name}.ipynb executed in {time.time() - started:.1f} s")
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    n_shown = sum(c.source.count("display(Image(") for c in nb.cells if c.cell_type == "code")
    assert len(images) == n_shown and n_shown >= 2, f"{name}: {len(images)} plots rendered, {n_shown} expected"
    # New files only: the lesson files themselves may be edited while a long run is going (not by the notebook).
    new_files = set(repo_snapshot()) - before
    assert not new_files, f"{name}.ipynb wrote into the repo outside out/: {sorted(new_files)}"
