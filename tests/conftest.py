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
