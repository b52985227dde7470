"""06 as a user meets it (issues 32 and 35): a HellaSwag file that repeats an example or is not UTF-8, a sample
that would run for hours, another model's results.json, Ctrl-C and a full memory all end in one line; the
evaluation shows its progress, and bits per byte scores what 05 scores, so the same weights give the same number."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import REPO_DIR, from_a_terminal, hellaswag_lines, lesson, one_error_line, run_script

house = lesson("house")
eval_lib = lesson("06_eval")
model_lib = lesson("02_model")


def tiny_args(tiny_inputs, out, *more):
    return ["--preset", "tiny", "--tokenizer", str(tiny_inputs["tokenizer"]), "--data-dir", str(tiny_inputs["data_dir"]),
            "--out", str(out), *more]


def test_a_repeated_example_is_refused_naming_both_lines(tmp_path):
    lines = hellaswag_lines(3)
    path = tmp_path / "hs.jsonl"
    path.write_text("\n".join(lines + [lines[1]]) + "\n")
    with pytest.raises(house.UserError, match=r"hs.jsonl:4 is not a HellaSwag example \(it repeats line 2 word for word\)"):
        eval_lib.load_hellaswag(path)
    assert len(eval_lib.load_hellaswag(path, limit=3)) == 3


@pytest.mark.slow
def test_a_latin1_hellaswag_file_is_one_line(tmp_path, tiny_inputs):
    path = tmp_path / "latin1.jsonl"
    row = json.loads(hellaswag_lines(1)[0])
    row["ctx_a"] += " Café."                                   # é in latin-1 is one byte, not UTF-8
    path.write_bytes((json.dumps(row, ensure_ascii=False) + "\n").encode("latin-1"))
    proc = run_script("06_eval.py", *tiny_args(tiny_inputs, tmp_path / "eval", "--hellaswag-file", str(path)))
    one_error_line(proc, "is not UTF-8 text")


@pytest.mark.slow
@pytest.mark.parametrize("script, flag", [("06_eval.py", "--max-new-tokens"), ("02_model.py", "--max-new-tokens")])
def test_a_sample_of_a_billion_tokens_is_refused(script, flag):
    proc = run_script(script, flag, str(10 ** 9), timeout=60)
    one_error_line(proc, "must be an integer from 1 to 10,000")


@pytest.mark.slow
def test_another_models_results_are_not_replaced_unasked(tmp_path, tiny_inputs):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"model": "out/my-linnet"}))
    proc = run_script("06_eval.py", *tiny_args(tiny_inputs, out, "--no-hellaswag"))
    one_error_line(proc, "holds the results of out/my-linnet", "--overwrite")
    assert json.loads((out / "results.json").read_text()) == {"model": "out/my-linnet"}     # untouched
    proc = run_script("06_eval.py", *tiny_args(tiny_inputs, out, "--no-hellaswag", "--overwrite"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_script("06_eval.py", *tiny_args(tiny_inputs, out, "--no-hellaswag"))   # the same model again: fine
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_hellaswag_and_bits_per_byte_show_their_progress_in_a_log(tmp_path, tiny_inputs):
    """Piped (not a terminal): the bars are plain lines, not one line rewritten in place."""
    proc = run_script("06_eval.py", *tiny_args(tiny_inputs, tmp_path / "eval", "--limit", "40"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HellaSwag: 40/40 examples" in proc.stderr and "bits per byte:" in proc.stderr
    assert "\r" not in proc.stderr
    assert "HellaSwag: 40 examples on cpu" in proc.stdout and "--limit N scores fewer" in proc.stdout


@pytest.mark.slow
def test_bits_per_byte_scores_what_05_scores(tiny_inputs):
    """A tiny model: batches of 8 windows of 64 over the whole validation shard, whatever the --preset, so 06's
    number for a checkpoint is 05's (README: 'hand on your model' scores the export with the linnet preset)."""
    model = eval_lib.tiny_random_model(1024)
    loader = lesson("04_data").ShardLoader(tiny_inputs["data_dir"], "val", 8, 64)
    result = eval_lib.bits_per_byte(model, tiny_inputs["data_dir"], lesson("01_tokenizer").load_tokenizer(
        tiny_inputs["tokenizer"]), 8, max_batches=-(-eval_lib.BPB_TOKENS // (8 * 64)), device="cpu")
    assert result["tokens"] == len(loader) * 8 * 64


@pytest.mark.slow
def test_ctrl_c_during_the_evaluation_is_one_line(tmp_path, tiny_inputs):
    proc = subprocess.Popen([sys.executable, str(REPO_DIR / "06_eval.py"),
                             *tiny_args(tiny_inputs, tmp_path / "eval", "--limit", "10042", "--batch-tokens", "512")],
                            cwd=REPO_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=from_a_terminal,
                            env={**__import__("os").environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"})
    deadline = time.time() + 120
    for line in proc.stdout:                                   # wait until the scoring has begun
        if line.startswith("HellaSwag:") or time.time() > deadline:
            break
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted:")
    assert not (tmp_path / "eval" / "results.json").exists()


@pytest.mark.slow
def test_running_out_of_memory_while_scoring_is_one_line(tmp_path, tiny_inputs, monkeypatch):
    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                           "you tried to allocate 68719476736 bytes.")
    monkeypatch.setattr(eval_lib, "evaluate_hellaswag", no_memory)
    with pytest.raises(SystemExit, match="error: out of memory on cpu while scoring: pass a smaller --batch-tokens"):
        eval_lib.main(tiny_args(tiny_inputs, tmp_path / "eval", "--limit", "5"))
    torch.set_num_threads(2)                                   # main set one thread for the tiny preset
