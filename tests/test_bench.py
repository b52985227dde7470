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


@pytest.mark.slow
def test_loss_equivalence_smoke_run_on_cpu(tmp_path):
    """bench/loss_equivalence.py on a CPU: the readable path and the fast path, trained from the same weights
    on the same batches in fp32, give the same losses at every step (on the GPU the check is within bf16
    noise: BENCHMARKS.md)."""
    out = tmp_path / "bench"
    result = run_script("bench/loss_equivalence.py", "--depth", "2", "--vocab", "512", "--seq-len", "64",
                        "--micro-batch", "4", "--accum", "2", "--steps", "6", "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((out / "loss_equivalence.json").read_text())
    assert set(record["runs"]) == {"reference", "fast, eager"}
    losses = record["runs"]["reference"]["loss"]
    assert len(losses) == 6 and losses[-1] < losses[0]                     # it trained
    # the two paths sum in another order (one grouped GEMM vs a loop over experts) and 6 Muon steps amplify
    # fp32 rounding: seen up to 1.2e-4 on a busy 2-core machine (2026-12-04); a wrong path differs by > 1e-2
    assert record["max |reference - fast, eager|"] < 5e-4
    assert (out / "loss_equivalence.png").stat().st_size > 10_000
    assert "plot: " in result.stdout


@pytest.mark.slow
def test_attention_backends_and_plain_choices_on_cpu():
    """--what attention times each SDPA backend that runs here; --plain picks the plain side of a pair through
    the lessons' own arguments (moe → LLMConfig.moe_impl="reference", cast_experts → TrainConfig.
    cast_experts_once=False, loss → LLMConfig.loss_impl="reference"), and an unknown name is refused by argparse in one line that lists the choices."""
    result = run_script("bench/throughput.py", "--what", "attention", "--depth", "2", "--seq-len", "64",
                        "--micro-batch", "2", "--warmup", "1", "--steps", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["math"]["ms_fwd_bwd_per_layer"] > 0
    result = run_script("bench/throughput.py", "--what", "fwdbwd", "--depth", "2", "--vocab", "512", "--seq-len", "64",
                        "--micro-batch", "2", "--steps", "1", "--warmup", "1", "--plain", "moe", "cast_experts", "loss")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["plain"] == ["moe", "cast_experts", "loss"]
    assert record["moe"] == "reference" and record["cast_experts_once"] is False and record["loss_impl"] == "reference"
    result = run_script("bench/throughput.py", "--plain", "rope_cos_sin")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert "error: argument --plain: invalid choice: 'rope_cos_sin' (choose from" in error, error
    assert "moe" in error and "cast_experts" in error, error


@pytest.mark.slow
def test_ce_kernels_smoke_run_on_cpu(tmp_path):
    """bench/ce_kernels.py on a CPU (fp32): the chunked loss head gives plain's loss and gradients; quack's row says
    why it cannot run here instead of stopping the script."""
    out = tmp_path / "ce.jsonl"
    result = run_script("bench/ce_kernels.py", "--tokens", "256", "--C", "64", "--V", "512", "--chunk", "100",
                        "--reps", "2", "--warmup", "1", "--json", str(out), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"plain", "chunked", "chunked-quack", "quack-ce", "quack"} and rows["plain"]["ms"] > 0
    assert rows["chunked"]["loss_diff"] < 1e-5 and rows["chunked"]["dx_rel"] < 1e-5 and rows["chunked"]["dw_rel"] < 1e-5
    assert all("error" in rows[q] or rows[q]["dw_rel"] < 1e-2 for q in ("quack", "quack-ce", "chunked-quack"))
    result = run_script("bench/ce_kernels.py", "--norm", "--tokens", "256", "--C", "64", "--reps", "2", "--warmup", "1",
                        "--json", str(out), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["path"]: r for r in map(json.loads, out.read_text().splitlines()) if r["path"].endswith("-norm")}
    assert set(rows) == {"plain-norm", "quack-norm"} and rows["plain-norm"]["ms"] > 0
    assert "error" in rows["quack-norm"] or rows["quack-norm"]["dx_rel"] < 1e-2


def test_fp8_quack_probe_says_why_it_cannot_run_here(tmp_path):
    """bench/fp8_quack.py (the probe of FP8 inside quack's fused up GEMM) runs anywhere: where quack does not, every
    row says why instead of stopping the script."""
    out = tmp_path / "fp8.jsonl"
    result = run_script("bench/fp8_quack.py", "--json", str(out), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == ["bf16", "fp8", "fp8+quant"]
    assert all("error" in r or (r["ms"] > 0 and r["rel_error"] < 0.1) for r in rows)


STAND_IN = '''"""A stand-in with the original model.py's interface (the original is not part of this repo): LLMConfig(depth,
vocab_size), LLM(config)(idx, targets) -> (logits, loss), LLM.configure_optimizers(...) -> [Muon-like, AdamW]."""
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

STEPS = Path(__file__).with_name("steps.txt")          # one line per optimizer step: its learning rate


class LLMConfig:
    def __init__(self, depth=12, vocab_size=32768):
        self.depth, self.vocab_size = depth, vocab_size


class Counted(torch.optim.SGD):
    def step(self, closure=None):
        with open(STEPS, "a") as f:
            f.write(f"{self.param_groups[0]['lr']}\\n")
        return super().step(closure)


class LLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, 16)
        self.mix = nn.Linear(16, 16, bias=False)
        self.lm_head = nn.Linear(16, config.vocab_size, bias=False)

    def forward(self, idx, targets=None):
        logits = self.lm_head(torch.relu(self.mix(self.wte(idx))))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    def configure_optimizers(self, weight_decay, learning_rate, device):
        return [Counted([self.mix.weight], lr=learning_rate * 10),
                Counted([self.wte.weight, self.lm_head.weight], lr=learning_rate)]
'''


@pytest.mark.slow
def test_original_code_runner_times_the_step_of_a_model_py_it_is_given(tmp_path):
    """bench/original.py imports linnet's original model.py from the path it is given and times the original's step
    (both optimizers stepped every step); a missing or wrong file ends in one line that says what to do."""
    from helpers import one_error_line
    (tmp_path / "model.py").write_text(STAND_IN)
    out = tmp_path / "pair.jsonl"
    result = run_script("bench/original.py", "--model-py", str(tmp_path), "--depth", "2", "--vocab", "500", "--seq-len",
                        "16", "--micro-batch", "2", "--accum", "3", "--warmup", "1", "--steps", "2", "--json", str(out),
                        timeout=120, env={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["tokens_per_s"] > 0 and record["micro_batch"] == 2 and record["accum"] == 3 and record["device"] == "cpu"
    assert 0 < record["loss"] < 10 and record["model_py"] == str(tmp_path / "model.py")
    # 1 warm-up + 2 timed steps, each stepping both optimizers at train.py's learning rates (Muon's 10× AdamW's)
    lrs = [float(line) for line in (tmp_path / "steps.txt").read_text().split()]
    assert lrs == pytest.approx([1e-2, 1e-3] * 3)
    missing = run_script("bench/original.py", "--model-py", str(tmp_path / "nowhere"), timeout=120)
    assert missing.returncode == 1
    assert "git clone https://github.com/rudyon/pipeline" in one_error_line(missing, "no file")
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "model.py").write_text("x = 1\n")
    wrong = run_script("bench/original.py", "--model-py", str(tmp_path / "wrong"), timeout=120)
    assert wrong.returncode == 1 and "not linnet's model.py" in one_error_line(wrong, "LLM")


@pytest.mark.slow
def test_loss_equivalence_replots_runs_from_several_files(tmp_path):
    """--replot draws the runs of several loss_equivalence.json files on one plot (a path met again is "… #2") and
    prints their differences; runs of different lengths are refused in one line."""
    def record(name, runs):
        path = tmp_path / name
        path.write_text(json.dumps({"device": "cpu", "runs": {k: {"loss": v} for k, v in runs.items()}}))
        return str(path)
    a = record("a.json", {"fast, eager": [3.0, 2.0, 1.5], "fast, compiled": [3.0, 2.01, 1.49], "quack, compiled": [3.0, 2.0, 1.52]})
    b = record("b.json", {"quack, compiled": [3.0, 2.02, 1.5], "quack+loss, compiled": [3.0, 2.0, 1.46]})
    result = run_script("bench/loss_equivalence.py", "--replot", a, b, "--out", str(tmp_path / "plot"), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "max |quack, compiled - quack, compiled #2|: 2.00e-02" in result.stdout
    assert "max |quack, compiled #2 - quack+loss, compiled|: 4.00e-02" in result.stdout
    assert (tmp_path / "plot" / "loss_equivalence.png").stat().st_size > 10_000
    short = record("c.json", {"reference": [3.0, 2.0]})
    from helpers import one_error_line
    refused = run_script("bench/loss_equivalence.py", "--replot", a, short, "--out", str(tmp_path / "plot"), timeout=120)
    assert "different lengths" in one_error_line(refused)
