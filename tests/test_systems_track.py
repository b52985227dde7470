"""The systems track (exercises/build/, specs in exercises/build/specs/): the DDP check runs the student's
BucketedDDP in two guarded processes of a gloo group on this CPU and compares every step with one process's;
the Triton check runs the student's kernel through Triton's interpreter where triton is installed and says
why it skipped where it is not (CI: the CPU wheels of torch bring no triton). Each wrong design below is the
worked solution with one slip; its check must end with a message that names the slip."""
import importlib.util
import re
import subprocess
import sys
import time

import pytest

from helpers import REPO_DIR

from exercises.checker import run as check

DDP = REPO_DIR / "exercises" / "solutions" / "build" / "ddp.py"
ROPE = REPO_DIR / "exercises" / "solutions" / "build" / "rope_triton.py"
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton not installed (the CPU wheels of torch bring none)")


def slipped(tmp_path, solution, slips: list[tuple[str, str]]):
    """The worked solution with each (old, new) replaced once, as a student's file in a folder of its own."""
    source = solution.read_text()
    for old, new in slips:
        assert source.count(old) == 1, f"the slip's anchor is not in {solution.name} once: {old!r}"
        source = source.replace(old, new)
    path = tmp_path / solution.name
    path.write_text(source)
    return path


@pytest.mark.slow
def test_ddp_worked_solution_passes_on_two_gloo_processes():
    """As a student runs it: `python -m exercises.check ddp --solution`, two gloo processes, in under a minute."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "exercises.check", "ddp", "--solution"], cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=170)
    seconds = time.monotonic() - started
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "correct: ddp", done.stdout + done.stderr
    assert seconds < 120, f"the DDP check took {seconds:.0f} s"


@pytest.mark.slow
def test_ddp_blank_stub_is_not_done_yet():
    """Through a path (as the command line runs it) and through the module (as a registry's tests may)."""
    for exercise in (check.exercise_path("ddp"), check.load_exercise("ddp")):
        passed, message = check.run_check("ddp", exercise, time_limit=60)
        assert not passed and message.startswith("not done yet: TODO in exercises/build/ddp.py: BucketedDDP"), message


DDP_SLIPS = {
    "sum instead of mean": ([("            flat /= self.world\n", "")],
                            r"the gradient of \S+ is the SUM over the 2 processes, 2× the mean"),
    "a bucket never waited on": ([("        for handle, flat, i in self.pending:\n            handle.wait()",
                                   "        for n, (handle, flat, i) in enumerate(self.pending):\n"
                                   "            if n:\n                handle.wait()")],
                                 r"all-reduce 1 of \d+ \([\d,]+ values\) was started but never waited on"),
    "a parameter missed by the hooks": ([("        for p in params:\n            p.register_post",
                                          "        for p in params[1:]:\n            p.register_post")],
                                        r"is rank 0's own \(its batch alone\), not the mean over the 2 processes: it "
                                        r"was never all-reduced — transformer.ln_f.weight got no hook"),
    "no broadcast from rank 0": ([("        for p in module.parameters():\n            dist.broadcast(p.data, src=0)"
                                   "              # every replica starts from rank 0's weights\n", "")],
                                 r"rank 1's transformer.wte.weight is still its own .* not rank 0's"),
    "one all-reduce per parameter": ([("if self.buckets[-1] and size + nbytes >", "if self.buckets[-1] or size >")],
                                     r"18 all-reduces of .* the spec's buckets are \d+ of .* hint: +one all-reduce "
                                     r"per PARAMETER is not bucketed"),
    "all-reduce after the backward": ([("self.pending.append((dist.all_reduce(flat, async_op=True), flat, i))",
                                        "self.pending.append((None, flat, i))"),
                                       ("            handle.wait()\n",
                                        "            dist.all_reduce(flat, async_op=True).wait()\n")],
                                      r"started in finish_gradient_synchronization, not during the backward: nothing "
                                      r"overlapped"),
    "waited on inside the hook": ([("self.pending.append((dist.all_reduce(flat, async_op=True), flat, i))",
                                    "self.pending.append((dist.all_reduce(flat, async_op=True), flat, i))\n"
                                    "            self.pending[-1][0].wait()")],
                                  r"was waited on inside the backward: the backward stood still"),
}


@pytest.mark.slow
@pytest.mark.parametrize("slip", DDP_SLIPS)
def test_ddp_wrong_design_is_named(tmp_path, slip):
    edits, expected = DDP_SLIPS[slip]
    passed, message = check.run_check("ddp", slipped(tmp_path, DDP, edits), time_limit=60)
    assert not passed and message.startswith("wrong: ddp"), message
    assert re.search(expected, message.replace("\n", " ")), message


def test_ddp_refuses_torch_ddp(tmp_path):
    path = tmp_path / "ddp.py"
    path.write_text("import torch.nn as nn\n\n\nclass BucketedDDP(nn.parallel.DistributedDataParallel):\n"
                    "    def finish_gradient_synchronization(self):\n        pass\n")
    passed, message = check.run_check("ddp", path)
    assert not passed and message.startswith("refused: ddp — ddp.py line 4 uses DistributedDataParallel"), message


@pytest.mark.slow
def test_systems_components_are_listed_with_their_files():
    from exercises.checker.checks_systems import COMPONENTS
    for component in COMPONENTS:
        for key in ("student_file", "spec_file", "solution_file"):
            assert (REPO_DIR / component[key]).is_file(), component[key]
        assert component["check"] is check.CHECKS[component["name"]]
    listed = subprocess.run([sys.executable, "-m", "exercises.check", "--list"], cwd=REPO_DIR, capture_output=True,
                            text=True, timeout=60).stdout
    assert "ddp" in listed and "rope_triton" in listed


@pytest.mark.skipif(HAS_TRITON, reason="triton is installed here: the check runs (tests below)")
def test_rope_triton_is_skipped_with_its_reason_without_triton():
    passed, message = check.check_one("rope_triton", solution=True)
    assert not passed and message.startswith("skipped: rope_triton — triton is not installed here"), message
    assert "pip install triton" in message


@needs_triton
def test_rope_triton_worked_solution_passes_through_the_interpreter():
    passed, message = check.check_one("rope_triton", solution=True, time_limit=120)
    assert passed and message == "correct: rope_triton", message


@needs_triton
def test_rope_triton_blank_stub_is_not_done_yet():
    passed, message = check.check_one("rope_triton", solution=False)
    assert not passed and message.startswith("not done yet: TODO in exercises/build/rope_triton.py"), message


ROPE_SLIPS = {
    "RMSNorm for LayerNorm": ([("    r1, r2 = r1 - mean, r2 - mean\n", "")],
                              r"yours equals RMSNorm in place of LayerNorm"),
    "no norm": ([("    r1, r2 = r1 - mean, r2 - mean\n", ""), ("tl.store(out + cols, r1 * rstd)", "tl.store(out + cols, r1)"),
                 ("tl.store(out + HALF + cols, r2 * rstd)", "tl.store(out + HALF + cols, r2)")],
                r"yours equals no QK-norm after RoPE"),
    "rotated the other way": ([("r1 = x1 * c1 - x2 * s1", "r1 = x1 * c1 + x2 * s1"),
                               ("r2 = x2 * c2 + x1 * s2", "r2 = x2 * c2 - x1 * s2")],
                              r"yours equals RoPE by minus the angle"),
    "torch ops, no kernel": ([("    rope_qk_norm_kernel[(B * T * n_qk,)](", "    (lambda *a, **k: None)(")],
                             r"rope_qk_norm launched no Triton kernel"),
}


@needs_triton
@pytest.mark.parametrize("slip", ROPE_SLIPS)
def test_rope_triton_wrong_design_is_named(tmp_path, slip):
    edits, expected = ROPE_SLIPS[slip]
    passed, message = check.run_check("rope_triton", slipped(tmp_path, ROPE, edits), time_limit=120)
    assert not passed, message
    assert re.search(expected, message.replace("\n", " ")), message


def test_rope_triton_refuses_torch_layer_norm(tmp_path):
    path = tmp_path / "rope_triton.py"
    path.write_text("import torch.nn.functional as F\n\n\ndef rope_qk_norm(qkv, cos, sin, n_head, n_kv_head):\n"
                    "    return F.layer_norm(qkv, qkv.shape[-1:])\n")
    passed, message = check.run_check("rope_triton", path)
    if HAS_TRITON:
        assert message.startswith("refused: rope_triton — rope_triton.py line 5 uses layer_norm"), message
    else:
        assert message.startswith("skipped: rope_triton"), message
