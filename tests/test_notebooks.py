"""notebooks/: every walkthrough runs headless from top to bottom, is stored without outputs, and writes
nothing into the repo outside out/ (here: a temp folder, through LINNET_NOTEBOOK_OUT)."""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO_DIR

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
    assert re.search(r"\.main(\(|, \[)", source) and '"--preset", "tiny"' in source   # main([...]) or quietly(x.main, [...])


EXERCISE_FILE = re.compile(r"exercises/(\w+)\.py")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_a_workbench(name):
    """At least three "Predict:" prompts, each shaped: the question (markdown), a cell for the student's
    guess (`my_guess = None`), the answer cell that prints the guess beside the measured value, then a "Why:"
    that explains it; every `my_guess` cell is such a guess cell; and a pointer to at least one exercise that
    exists."""
    cells = read(name).cells
    prompts = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and "**Predict:**" in c.source]
    assert len(prompts) >= 3, f"{name}.ipynb has {len(prompts)} **Predict:** prompts, expected at least 3"
    for n, i in enumerate(prompts):
        assert i + 3 < len(cells), f"{name}.ipynb: the Predict prompt in cell {i} has no answer after it"
        guess, answer = cells[i + 1], cells[i + 2]
        assert guess.cell_type == "code" and guess.source.startswith("my_guess = None"), \
            f"{name}.ipynb cell {i + 1}: after a Predict prompt comes a `my_guess = None  # ...` cell for the student"
        assert answer.cell_type == "code" and "reveal(my_guess" in answer.source, \
            f"{name}.ipynb cell {i + 2}: after the guess comes the answer cell, which prints my_guess beside the " \
            f"measured value (reveal(my_guess, ...))"
        end = prompts[n + 1] if n + 1 < len(prompts) else len(cells)
        why = [c for c in cells[i + 3:end] if c.cell_type == "markdown" and "**Why:**" in c.source]
        assert why, f"{name}.ipynb: the Predict prompt in cell {i} has no **Why:** before the next prompt"
    guesses = [i for i, c in enumerate(cells) if c.cell_type == "code" and c.source.startswith("my_guess")]
    assert guesses == [i + 1 for i in prompts], f"{name}.ipynb: a my_guess cell that does not follow a Predict prompt"
    assert "def reveal(guess, measured)" in cells[1].source, f"{name}.ipynb: the setup cell defines reveal()"
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
    """Run every cell of nb in a fresh kernel, then shut that kernel down (also when a cell fails)."""
    nbclient = pytest.importorskip("nbclient")
    km = kernel_manager()
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", km=km,
                                     resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute(cleanup_kc=True)   # raises CellExecutionError on the first cell that fails
    finally:
        if km.has_kernel:                 # cleanup_kc already shut it down unless starting it failed halfway
            km.shutdown_kernel(now=True)
    return nb


EXECUTED = {}   # name -> the executed notebook, so the answer checks reuse test_notebook_runs_top_to_bottom's run


def executed(name: str):
    if name not in EXECUTED:
        EXECUTED[name] = execute(read(name), NOTEBOOK_DIR)
    return EXECUTED[name]


@pytest.fixture(scope="module")
def notebook_out(tmp_path_factory):
    """One out folder for the whole module, so 06 finds 05's checkpoint as it would in class."""
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
def test_a_lesson_that_runs_another_prints_into_the_cell(notebook_out):
    """05 runs 01 and 04 as subprocesses when their outputs are missing (house.runs.run_lesson): what they print
    passes through the kernel's sys.stdout / sys.stderr, so the cell shows it in order, stdout and stderr apart,
    and 00_overview's `quietly` (contextlib.redirect_stdout) keeps it (a child writing straight to the file
    descriptor bypassed both: on the terminal that runs the notebook server, or in the cell despite `quietly`)."""
    code = (f"import contextlib, io, sys; sys.path.insert(0, {str(REPO_DIR)!r})\n"
            "from house.runs import run_lesson\n"
            "kept = io.StringIO()\n"
            "with contextlib.redirect_stdout(kept):\n    run_lesson('01_tokenizer.py', '--help')\n"
            "print('kept:', kept.getvalue().splitlines()[:2])\n"
            "run_lesson('01_tokenizer.py', '--help')\n"
            "try:\n    run_lesson('01_tokenizer.py', '--preset', 'nope')\n"
            "except Exception as e:\n    print('refused:', e)\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    execute(nb, NOTEBOOK_DIR)
    streams = {name: "".join(o.get("text", "") for o in nb.cells[0].outputs if o.get("name") == name)
               for name in ("stdout", "stderr")}
    out = streams["stdout"]
    assert out.startswith("kept: ['running: python 01_tokenizer.py --help', 'usage: 01_tokenizer.py"), out[:500]
    assert out.count("usage: 01_tokenizer.py") == 2, out   # the kept line above, and the second call's own
    assert out.index("kept:") < out.index("\nusage:") < out.index("running: python 01_tokenizer.py --preset nope") \
        < out.index("refused:"), out
    assert streams["stderr"].startswith("error: argument --preset: invalid choice"), streams


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, notebook_out):
    before = repo_snapshot()
    started = time.time()
    EXECUTED.pop(name, None)
    nb = executed(name)
    print(f"{name}.ipynb executed in {time.time() - started:.1f} s")
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    n_shown = sum(c.source.count("display(Image(") for c in nb.cells if c.cell_type == "code")
    assert len(images) == n_shown and n_shown >= 2, f"{name}: {len(images)} plots rendered, {n_shown} expected"
    # New files only: the lesson files themselves may be edited while a long run is going (not by the notebook).
    new_files = set(repo_snapshot()) - before
    assert not new_files, f"{name}.ipynb wrote into the repo outside out/: {sorted(new_files)}"


# --- Predict, then see: no answer on screen before its question -----------------------------------------
# Per notebook, per Predict prompt in order: a regex that the answer cell's output must match, and the string
# (built from the regex's groups) that no output ABOVE the prompt may contain. The values are measured at run
# time, so the checks hold whatever the data; what they pin down is where the answer first appears.
ANSWERS = {
    "00_overview": [
        (r"loss at step 1: (\d+\.\d\d)", "{}"),
        (r"acc_norm (\d+\.\d) % on (\d+) examples", "HellaSwag acc"),   # 05's eval line
        (r"validation (\d+\.\d\d) vs training (\d+\.\d\d)", "val loss"),             # 05's eval line
        (r"repeats itself most: temperature ([\d.]+)", "temperature 0.1:"),
    ],
    "01_tokenizer": [
        (r"(\d+) words; 's is (a word of its own|attached to world)", "['Hello'"),
        (r"first merge: ('.' \+ '.')", "-> id 258"),
        (r"(\d+) tokens for 11 bytes", "'the cat sat' ->"),
        (r"bytes per token, 2048 / 512: (\d+\.\d\d)x", "{}x"),
    ],
    "02_model": [
        (r"smallest share of an expert, trained: (0\.\d+) \(trained shares (0\.\d+–0\.\d+)\)", "shares {1}"),
        (r"([\d,]+) bytes with GQA", "{}"),
        (r"without QK-norm: ([\d.]+); with QK-norm: ([\d.]+)", "-> {}"),
        (r"base 50,000 ([\d.]+), base 10,000 ([\d.]+)", "keeps a vector more like itself"),
        (r"100 comes back as ([\d.]+); random rows: ([\d.]+) % relative error", "relative error"),
    ],
    "03_muon": [
        (r"after 5 steps: smallest (\d\.\d+), largest (\d\.\d+)", "{}"),
        (r"x = 0.001 after 5 steps: (\d\.\d+)", "{}"),
        (r"weakest direction \(0\.0084\) reaches the band after (\d+) steps", "{} steps: singular values in"),
        (r"lower held-out loss at lr 1e-2: (AdamW only|Muon\+AdamW)", "held-out"),
    ],
    "04_data": [
        (r"([\w-]+): ([\d.]+) % of the tokens from", " docs "),   # 04's per-source lines (documents AND tokens)
        (r"(\d+) of 12 ids shared", "y[0]:"),
        (r"loaders: \(a\) (.*?), \(b\) (.*?), \(c\) (\w[\w ]*)", "refused"),
        (r"[\w-]+: ([\d.]+) % of the tokens with the mix", "{} % of tokens"),
    ],
    "05_train": [
        (r"measured: +\((\d+), ([\d.]+)\)", "({}, {})"),
        (r"optimizer state: (\d+) % of the tensor bytes", "optimizer state"),
        (r"measured: +\((True|False), (\d)\)", "balance off"),
    ],
    "06_eval": [
        (r"acc picks (\d), acc_norm picks (\d)", "acc picks {}"),
        (r"a flat model: acc picks (\d), acc_norm picks (\d)", "a flat model"),
        (r"trained minus random, acc_norm: ([+-]\d+\.\d) points", "random: acc"),
        (r"needs n ≥ ([\d,]+) examples", "{}"),
    ],
}


def output_text(cell) -> str:
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", []))


def test_every_prompt_has_an_answer_check():
    for name in NOTEBOOKS:
        prompts = [c for c in read(name).cells if c.cell_type == "markdown" and "**Predict:**" in c.source]
        assert len(ANSWERS[name]) == len(prompts), f"{name}: list one answer check per Predict prompt"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_answer_on_screen_before_its_prompt(name, notebook_out):
    """For every Predict prompt: its answer cell prints the student's guess and the measured value, and no
    output above the prompt already contained that value."""
    cells = executed(name).cells
    prompts = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and "**Predict:**" in c.source]
    for i, (pattern, leak) in zip(prompts, ANSWERS[name]):
        answer = output_text(cells[i + 2])
        assert "your guess: no guess yet" in answer, f"{name} cell {i + 2}: the answer cell does not print my_guess"
        found = re.search(pattern, answer)
        assert found, f"{name} cell {i + 2}: the answer cell's output does not show {pattern!r}:\n{answer[-800:]}"
        value = leak.format(*found.groups())
        before = "\n".join(output_text(c) for c in cells[:i])
        assert value not in before, f"{name}: the answer to the Predict prompt in cell {i} ({value!r}) was on screen before it"
