"""bench/throughput.py runs on CPU (a smoke run: the real numbers come from a GPU, see BENCHMARKS.md)."""
import json

import pytest

from helpers import run_script


@pytest.mark.slow
@pytest.mark.parametrize("what", ["step", "fwdbwd", "optimizer"])
def test_throughput_smoke_run_on_cpu(what):
    result = run_script("bench/throughput.py", "--what", what, "--depth", "2", "--vocab", "512", "--seq-len", "64",
                        "--micro-batch", "4", "--accum", "2", "--steps", "2", "--warmup", "1", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["device"] == "cpu"
    if what == "optimizer":
        assert all(v > 0 for k, v in record.items() if k.startswith(("ours", "torch.optim", "AdamW")))
    else:
        assert record["tokens_per_s"] > 0
    if what == "step":
        assert set(record["phases_ms"]) == {"data", "forward", "backward", "optimizer"}
