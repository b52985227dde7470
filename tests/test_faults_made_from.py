"""Issue 32 item 3, a run keeps what it was made from: the tokenizer's and the shards' sha256 are taken once when 05
starts and travel with every checkpoint; a tokenizer or a manifest that changes under a running run stops it at
the next save in one line (the last checkpoint kept, still naming what it was trained on), and following the
advice (put the file back, --resume) continues. An export records its tokenizer's sha256 (config.json and the
record inside pytorch_model.bin): a folder whose tokenizer.json was replaced by another of the same size is
refused in one line by 02 --checkpoint and 06 --checkpoint."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import torch

from helpers import REPO_DIR, lesson, one_error_line, run_script

import house
from house import checkpoints, runs

tokenizer_lib = lesson("01_tokenizer")
model_lib = lesson("02_model")
TEXTS = ["the quick brown fox jumps over the lazy dog. " * 20, "def f(x):\n    return x + 1\n" * 20]


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_size_other_tokenizer(path):
    """`path` rewritten as another tokenizer of the same size: the ids of two tokens swapped (260 ↔ 261)."""
    text = path.read_text(encoding="utf-8")
    swapped = re.sub(r'": (260|261),\n', lambda m: f'": {521 - int(m.group(1))},\n', text)
    assert swapped != text and len(swapped) == len(text)
    path.write_text(swapped, encoding="utf-8")


@pytest.fixture
def inputs(tiny_inputs, tmp_path):
    """A private copy of the tiny tokenizer and shards (the test rewrites them under a run)."""
    tokenizer = tmp_path / "tok" / "tokenizer.json"
    tokenizer.parent.mkdir()
    shutil.copy(tiny_inputs["tokenizer"], tokenizer)
    shutil.copytree(tiny_inputs["data_dir"], tmp_path / "data")
    return dict(tokenizer=tokenizer, data_dir=tmp_path / "data")


def change_tokenizer(inputs):
    same_size_other_tokenizer(inputs["tokenizer"])       # another tokenizer of the very same size
    return "tokenizer", inputs["tokenizer"]


def replace_tokenizer(inputs):
    """As `01_tokenizer.py --overwrite --vocab-size 512` does: another tokenizer file renamed over the run's."""
    other = inputs["tokenizer"].with_name("other.json")
    tokenizer_lib.save_tokenizer(tokenizer_lib.train_tokenizer(TEXTS, 512, show_progress=False), other)
    os.replace(other, inputs["tokenizer"])
    return "tokenizer", inputs["tokenizer"]


def change_manifest(inputs):
    manifest = inputs["data_dir"] / "manifest.json"
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "seed": record.get("seed", 0) + 1}, indent=1))   # 04 again, other seed
    return "shards' manifest", manifest


@pytest.mark.slow
@pytest.mark.parametrize("change", [change_tokenizer, replace_tokenizer, change_manifest],
                         ids=["tokenizer of the same size", "another tokenizer file", "manifest"])
def test_an_input_changed_under_a_run_stops_it_at_the_next_save(inputs, tmp_path, change):
    out = tmp_path / "run"
    args = ["--preset", "tiny", "--tokenizer", str(inputs["tokenizer"]), "--data-dir", str(inputs["data_dir"]),
            "--no-hellaswag", "--eval-every", "1000", "--out", str(out)]
    started = {"tokenizer_sha256": sha256(inputs["tokenizer"]), "data_sha256": sha256(inputs["data_dir"] / "manifest.json")}
    originals = {p: p.read_bytes() for p in (inputs["tokenizer"], inputs["data_dir"] / "manifest.json")}
    proc = subprocess.Popen([sys.executable, str(REPO_DIR / "05_train.py"), *args, "--checkpoint-every", "5"],
                            cwd=REPO_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"})
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "latest.pt").exists() and proc.poll() is None:
        time.sleep(0.05)
    assert (out / "latest.pt").exists(), proc.communicate(timeout=60)
    what, path = change(inputs)                                        # between two saves of the running run
    stdout, stderr = proc.communicate(timeout=300)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    line = one_error_line(done, f"the {what} {house.shown(path)} changed", "while this run trained on it",
                          "was not saved", f"{house.shown(out / 'latest.pt')} is the last checkpoint", "--resume")
    stopped = int(re.search(r"step (\d+) was not saved", line).group(1))
    kept = torch.load(out / "latest.pt", weights_only=True)           # whole, and still true to the run
    assert 5 <= kept["step"] < stopped < 300 and kept["step"] % 5 == 0
    assert {k: kept[k] for k in started} == started
    for p, data in originals.items():                                  # the advice: put the file back, --resume
        p.write_bytes(data)
    resumed = run_script("05_train.py", *args, "--resume", "--max-steps", str(kept["step"] + 2), timeout=300)
    assert resumed.returncode == 0 and f"resumed from {out / 'latest.pt'} at step {kept['step']}" in resumed.stdout, \
        resumed.stderr[-2000:]


def test_the_check_before_a_save(tmp_path):
    """runs.check_inputs_unchanged: silent while both files are as the run found them; a removed one is named."""
    tokenizer, data = tmp_path / "tokenizer.json", tmp_path / "data"
    data.mkdir()
    tokenizer.write_text("{}")
    (data / "manifest.json").write_text('{"shards": []}')
    started = runs.input_hashes(tokenizer, data)
    assert started == {"tokenizer_sha256": sha256(tokenizer), "data_sha256": runs.data_sha256(data)}
    runs.check_inputs_unchanged(started, tokenizer, data, 7, None)
    tokenizer.unlink()
    with pytest.raises(house.UserError, match=r"the tokenizer .* was removed while this run trained on it: step 7 was "
                                              r"not saved and the run stopped; this run wrote no checkpoint"):
        runs.check_inputs_unchanged(started, tokenizer, data, 7, None)


# --- An export keeps its tokenizer's sha256; a swapped tokenizer.json is refused ----------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 05-style latest.pt (trained with `tok`), its export, and the export's tokenizer sha256."""
    root = tmp_path_factory.mktemp("export_made_from")
    tok = tokenizer_lib.save_tokenizer(tokenizer_lib.train_tokenizer(TEXTS, 300, show_progress=False), root / "tokenizer.json")
    torch.manual_seed(0)
    config = model_lib.LLMConfig(block_size=64, vocab_size=320, **model_lib.TINY_TRAINING_SHAPE)
    model = model_lib.LLM(config).eval()
    torch.save({"model": model_lib.export_linnet_state_dict(model), "config": config.to_dict(), "train_config": {},
                "optimizers": [], "loader": {}, "rng": {}, "step": 2, "git_commit": None,
                "tokenizer_sha256": sha256(tok)}, root / "latest.pt")
    model_lib.export_pretrained(root / "latest.pt", root / "export", tok)
    return dict(root=root, tok=tok, export=root / "export")


def test_an_export_records_its_tokenizer(exported):
    folder, sha = exported["export"], sha256(exported["tok"])
    assert sha256(folder / "tokenizer.json") == sha
    assert json.loads((folder / "config.json").read_text())["tokenizer_sha256"] == sha
    record = torch.load(folder / "pytorch_model.bin", weights_only=True)
    assert checkpoints.saved_config(record)["tokenizer_sha256"] == sha
    assert checkpoints.pick_tokenizer(folder, None, exported["tok"]) == folder / "tokenizer.json"
    model_lib.LLM.from_pretrained(folder)                               # the new key is read, not refused
    loads_as_linnets_own_code_does(record)


def loads_as_linnets_own_code_does(sd):
    """linnet's model.py reads no config.json: `LLM(LLMConfig(...)).load_state_dict(torch.load(path))`. A module
    with exactly linnet's parameter names stands in for it (the record rides in `_metadata`, which it ignores)."""
    root = torch.nn.Module()
    for name, tensor in sd.items():
        *parents, leaf = name.split(".")
        module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, torch.nn.Parameter(torch.zeros_like(tensor)))
    root.load_state_dict(sd, strict=True)
    assert all(torch.equal(p, sd[k]) for k, p in root.named_parameters(remove_duplicate=False))


@pytest.mark.parametrize("kind", ["older export", "linnet's folder"])
def test_an_export_that_records_no_tokenizer_still_loads(exported, tmp_path, kind):
    """An export made before its tokenizer's sha256 was recorded, or linnet's published folder (no record in the
    weights, linnet's config.json): nothing to check against, so its tokenizer.json is used as it is."""
    folder = tmp_path / "export"
    shutil.copytree(exported["export"], folder)
    sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
    config = json.loads((folder / "config.json").read_text())
    del config["tokenizer_sha256"]
    recorded = {k: v for k, v in checkpoints.saved_config(sd).items() if k != "tokenizer_sha256"}
    plain = dict(sd)
    if kind == "older export":                                         # the record without the sha, as before
        checkpoints.save_pytorch_model_bin(plain, folder / "pytorch_model.bin", recorded)
    else:                                                              # a bare state_dict, as linnet's file
        torch.save(plain, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(config))
    same_size_other_tokenizer(folder / "tokenizer.json")              # not checkable: nothing recorded
    assert checkpoints.pick_tokenizer(folder, None, exported["tok"]) == folder / "tokenizer.json"
    model_lib.LLM.from_pretrained(folder)


def swapped_copy(exported, tmp_path, drop_config_key: bool = False):
    folder = tmp_path / "export"
    shutil.copytree(exported["export"], folder)
    size = (folder / "tokenizer.json").stat().st_size
    same_size_other_tokenizer(folder / "tokenizer.json")
    assert (folder / "tokenizer.json").stat().st_size == size
    if drop_config_key:                                                # config.json edited too: the weights' record holds
        config = json.loads((folder / "config.json").read_text())
        del config["tokenizer_sha256"]
        (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("drop_config_key", [False, True], ids=["config.json", "record in the weights"])
def test_a_swapped_export_tokenizer_is_refused_by_the_library(exported, tmp_path, drop_config_key):
    folder = swapped_copy(exported, tmp_path, drop_config_key)
    with pytest.raises(house.UserError, match=r"tokenizer.json is not the tokenizer this export was made with \(it "
                                              r"recorded sha256 " + sha256(exported["tok"])[:12]):
        checkpoints.pick_tokenizer(folder, None, exported["tok"])


@pytest.mark.slow
@pytest.mark.parametrize("script", ["02_model.py", "06_eval.py"])
def test_a_swapped_export_tokenizer_is_one_line(exported, tmp_path, script):
    folder = swapped_copy(exported, tmp_path)
    extra = ["--no-hellaswag", "--out", str(tmp_path / "eval")] if script == "06_eval.py" else []
    proc = run_script(script, "--checkpoint", str(folder), *extra, timeout=120)
    one_error_line(proc, "is not the tokenizer this export was made with", "python 02_model.py --export")
    assert not (tmp_path / "eval" / "results.json").exists()


def test_an_export_refuses_a_tokenizer_that_changes_while_it_is_read(exported, tmp_path):
    """The bytes copied into the folder are the ones hashed: a tokenizer rewritten after 02's check is refused."""
    folder = tmp_path / "export"
    with pytest.raises(house.UserError, match="changed while it was being exported"):
        checkpoints.write_export_folder(folder, {}, {"block_size": 64}, exported["tok"], "<|endoftext|>", "<|padding|>",
                                        trained_with="0" * 64)
    assert not (folder / "pytorch_model.bin").exists()
