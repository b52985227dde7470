"""notebooks/: no Predict prompt is answered in the text above it. tests/test_notebooks.py checks that no OUTPUT
above a prompt shows its answer (it runs the notebooks); this file reads, without running anything, the
markdown and the code comments of every cell above each prompt, and the prompt itself, for the phrases that
would give its answer away (a hint that is the answer, a fact stated before the question about it)."""
from __future__ import annotations

import json
import re

import pytest

from helpers import REPO_DIR

NOTEBOOK_DIR = REPO_DIR / "notebooks"

# Per notebook, per Predict prompt in order: regexes (case-insensitive) that state the prompt's answer. Each list
# is what the prompt's own **Why:** says; none may appear above the prompt or in it.
SPOILERS = {
    "00_overview": [
        [r"\bln ?V\b", r"ln ?\(?1024", r"\b6\.9\d?\b", r"costs? ln\b"],                    # loss at step 1
        [r"inside (the|that) band", r"noise, even when it reads"],                         # HellaSwag after 300 steps
        [r"validation (sits|is|ends|stays) \*?(above|higher|below|lower)", r"the gap grows"],   # val vs train
        [r"at 0\.1 the model", r"falls? into a loop", r"more invented words"],             # temperature
    ],
    "01_tokenizer": [
        [r"'s`? is a word of its own", r"\b5 words\b"],
        [r"`a` \+ `t` comes first", r"\"at\" occurs \d+ times"],
        [r"\b5 tokens\b"],
        [r"doubling[^.]*(buys|gains?|costs?) less", r"each doubling", r"\*?logarithm\*? of the vocabulary",
         r"well under 2", r"diminishing"],
    ],
    "02_model": [
        [r"every expert still gets work", r"trained shares range", r"collaps\w* onto one expert"],
        [r"12,582,912", r"3× smaller", r"memory saving, not a compute", r"\b5\.1 % fewer"],
        [r"can never exceed √32", r"nothing bounds the logit", r"peak of ≈ ?\d+"],
        [r"stays higher with base 50,000", r"slowest pair turns"],
        [r"100 becomes 400", r"→ 96\b", r"averages ≈ ?2\.7 %"],
    ],
    "03_muon": [
        [r"(every|each) singular value[^.]*≈ ?1(?![\d.])", r"not exactly 1", r"\[0\.68, ?1\.2\]",
         r"approximately\)? U·Vᵀ"],
        [r"0\.471", r"below 0\.68", r"x ≈ 0\.0015"],
        [r"0\.0084\)? (first )?reaches the band after", r"a 3-step Muon would give"],
        [r"Muon\+AdamW is lower at both", r"AdamW alone is \*?worse\*? at 1e-2"],
    ],
    "04_data": [
        [r"57,000 tokens each", r"the two percentages in each printed line differ"],
        [r"shifted by one", r"11 of the 12", r"T \+ 1 tokens gives T", r"next-token prediction at every position"],
        [r"\(b\) and \(c\) are refused", r"refuses a mismatch"],
        [r"smaller source by documents again gets a much larger share"],
    ],
    "05_train": [
        [r"step 89\b", r"\(0 \+ 1\) / 1"],
        [r"about half\b", r"≈ ?1\.25 numbers per weight"],
        [r"shares 0\.49 and 0\.01", r"another starves", r"the loss barely notices"],
    ],
    "06_eval": [
        [r"`acc` picks the short", r"−6/7"],
        [r"picks the ending with the \*?fewest tokens"],
        [r"\*random\* model wins", r"little more than one sd of luck"],
        [r"sd = √\(0\.25 · 0\.75 / n\)", r"1,876", r"needs about 2,000", r"shrinks as 1/√n"],
    ],
}


def cells_of(path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def readable_text(cell: dict) -> str:
    """What a student reads in a cell before running it: a markdown cell's text, a code cell's comments."""
    source = "".join(cell["source"])
    if cell["cell_type"] == "markdown":
        return source
    return "\n".join(line.split("#", 1)[1] for line in source.splitlines() if "#" in line)


def spoiled(cells: list[dict], patterns: list[list[str]]) -> list[str]:
    """Each (prompt, pattern) whose answer already stands in the text above the prompt or in the prompt."""
    prompts = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "**Predict:**" in "".join(c["source"])]
    found = []
    for n, (i, spoilers) in enumerate(zip(prompts, patterns)):
        above = [(k, readable_text(c)) for k, c in enumerate(cells[:i + 1])]
        for pattern in spoilers:
            hits = [k for k, text in above if re.search(pattern, text, flags=re.IGNORECASE)]
            if hits:
                found.append(f"prompt {n + 1} (cell {i}): {pattern!r} already in cell {hits[0]}")
    return found


def test_every_prompt_lists_its_spoilers():
    for name, patterns in SPOILERS.items():
        prompts = [c for c in cells_of(NOTEBOOK_DIR / f"{name}.ipynb")
                   if c["cell_type"] == "markdown" and "**Predict:**" in "".join(c["source"])]
        assert len(patterns) == len(prompts), f"{name}: list the spoilers of each of its {len(prompts)} prompts"
    assert sorted(SPOILERS) == sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("name", sorted(SPOILERS))
def test_no_answer_in_the_text_above_its_prompt(name):
    found = spoiled(cells_of(NOTEBOOK_DIR / f"{name}.ipynb"), SPOILERS[name])
    assert not found, f"{name}.ipynb gives answers away before their questions:\n" + "\n".join(found)


@pytest.mark.parametrize("name", sorted(SPOILERS))
def test_each_spoiler_is_what_the_answer_says(name):
    """The patterns are not made up: for every prompt, some of them match the text AFTER it (its answer cell, its
    Why), so the scan above looks for the real answer; a reworded Why must bring its spoilers along."""
    cells = cells_of(NOTEBOOK_DIR / f"{name}.ipynb")
    prompts = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "**Predict:**" in "".join(c["source"])]
    for n, (i, spoilers) in enumerate(zip(prompts, SPOILERS[name])):
        end = prompts[n + 1] if n + 1 < len(prompts) else len(cells)
        after = "\n".join("".join(c["source"]) for c in cells[i + 1:end])
        used = [p for p in spoilers if re.search(p, after, flags=re.IGNORECASE)]
        assert used, f"{name} prompt {n + 1} (cell {i}): none of {spoilers} is in its answer or Why"
