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
