import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/helpers.py
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never touch the network

# Hermetic: every default output path of the lessons (house.OUT_DIR, normally the repo's out/) points at a
# fresh folder of this test session — set before any lesson is imported, and inherited by every script the
# tests start — so a user's own runs in out/ neither change a test's result nor get touched by one.
_OUT = tempfile.mkdtemp(prefix="linnet-tests-out-")
os.environ["LINNET_OUT"] = _OUT
atexit.register(shutil.rmtree, _OUT, ignore_errors=True)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_inputs(tmp_path_factory):
    """01's tiny tokenizer and 04's tiny shards (from the embedded corpus), made once per test session, as a
    user makes them (`python 01_tokenizer.py --preset tiny`, then 04). Tests read them; none writes into them."""
    from helpers import run_script

    root = tmp_path_factory.mktemp("tiny_inputs")
    tokenizer, data_dir = root / "tok" / "tokenizer.json", root / "data"
    for args in (["01_tokenizer.py", "--preset", "tiny", "--out", str(tokenizer.parent)],
                 ["04_data.py", "--preset", "tiny", "--tokenizer", str(tokenizer), "--out", str(data_dir)]):
        made = run_script(*args, timeout=300)
        assert made.returncode == 0, made.stderr[-2000:]
    return dict(tokenizer=tokenizer, data_dir=data_dir)

