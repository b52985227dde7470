"""The worked examples in the lessons' docstrings (`>>> ...`) are true: run them as doctests."""
import doctest

import pytest

from helpers import REPO_DIR, lesson

LESSONS = ["01_tokenizer", "02_model", "03_muon", "04_data", "05_train", "06_eval"]
NEEDS_A_TRAINED_TOKENIZER = 'load_tokenizer("out/'   # that example shows a file a previous run wrote


@pytest.mark.parametrize("name", LESSONS)
def test_docstring_examples_hold(name, monkeypatch):
    monkeypatch.chdir(REPO_DIR)               # examples use paths relative to the repo root
    module = lesson(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    attempted = 0
    for test in doctest.DocTestFinder().find(module, module.__name__):
        test.examples = [e for e in test.examples if NEEDS_A_TRAINED_TOKENIZER not in e.source]
        attempted += len(test.examples)
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert attempted > 0 and results.failed == 0, f"{results.failed} docstring example(s) of {name} are wrong"


PLUMBING = sorted(f"{p.parent.name}.{p.stem}" for folder in ("house", "fast")
                  for p in (REPO_DIR / folder).glob("*.py") if p.stem != "__init__")


def test_plumbing_docstring_examples_hold(monkeypatch):
    """house/ and fast/ keep worked examples too (house.shards.split_advice, ...): every one holds."""
    import importlib

    monkeypatch.chdir(REPO_DIR)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    attempted = 0
    for name in PLUMBING:
        module = importlib.import_module(name)
        for test in doctest.DocTestFinder().find(module, module.__name__):
            attempted += len(test.examples)
            runner.run(test)
    results = runner.summarize(verbose=False)
    assert attempted > 0 and results.failed == 0, f"{results.failed} docstring example(s) in house/ or fast/ are wrong"
