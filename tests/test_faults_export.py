"""Issue 24 item 5, the folder's own tokenizer wins: 02 --export refuses a folder with other model files,
02 --checkpoint takes a 05 latest.pt and an exported folder with the folder's tokenizer, a different
--tokenizer is refused (in 02 and 06), and a missing safetensors package is named as missing."""
import builtins
import json

import pytest
import torch

from helpers import lesson, one_error_line, run_script

import house
from house import checkpoints

model_lib = lesson("02_model")
tokenizer_lib = lesson("01_tokenizer")
eval_lib = lesson("06_eval")

TEXTS = ["the quick brown fox jumps over the lazy dog. " * 20, "def f(x):\n    return x + 1\n" * 20]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tokenizer.json, a 05-style latest.pt (05's checkpoint dict layout) and its export."""
    root = tmp_path_factory.mktemp("export_run")
    tok = tokenizer_lib.save_tokenizer(tokenizer_lib.train_tokenizer(TEXTS, 300, show_progress=False), root / "tokenizer.json")
    other = tokenizer_lib.save_tokenizer(tokenizer_lib.train_tokenizer(TEXTS[:1], 290, show_progress=False), root / "other.json")
    torch.manual_seed(0)
    config = model_lib.LLMConfig(block_size=64, vocab_size=320, **model_lib.TINY_TRAINING_SHAPE)
    model = model_lib.LLM(config).eval()
    torch.save({"model": model_lib.export_linnet_state_dict(model), "config": config.to_dict(), "train_config": {},
                "optimizers": [], "loader": {}, "rng": {}, "step": 2, "git_commit": None,
                "tokenizer_sha256": tokenizer_lib.tokenizer_sha256(tok)}, root / "latest.pt")
    model_lib.export_pretrained(root / "latest.pt", root / "export", tok)
    return dict(root=root, tok=tok, other=other, checkpoint=root / "latest.pt", export=root / "export", model=model)


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_export_over_an_older_pytorch_model_bin_is_refused_and_leaves_the_folder_as_it_was(run, tmp_path):
    out = tmp_path / "published"
    out.mkdir()
    (out / "pytorch_model.bin").write_bytes(b"older weights that the export would replace")
    (out / "config.json").write_text('{"depth": 12}')
    before = folder_bytes(out)
    proc = run_script("02_model.py", "--export", str(run["checkpoint"]), "--tokenizer", str(run["tok"]),
                      "--out", str(out), timeout=120)
    one_error_line(proc, "already holds an export (pytorch_model.bin, config.json)", "--overwrite")
    assert folder_bytes(out) == before


@pytest.mark.slow
def test_export_beside_weights_of_another_name_is_refused_even_with_overwrite(run, tmp_path):
    out = tmp_path / "published"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"another model that a loader could read instead")
    before = folder_bytes(out)
    proc = run_script("02_model.py", "--export", str(run["checkpoint"]), "--tokenizer", str(run["tok"]),
                      "--out", str(out), "--overwrite", timeout=120)
    one_error_line(proc, "model.safetensors", "new --out")
    assert folder_bytes(out) == before


def test_export_over_an_earlier_export_needs_overwrite(run, tmp_path):
    out = tmp_path / "again"
    model_lib.export_pretrained(run["checkpoint"], out, run["tok"])
    before = folder_bytes(out)
    with pytest.raises(house.UserError, match=r"already holds an export \(pytorch_model.bin, config.json, tokenizer.json, tokenizer_config.json\).*--overwrite"):
        model_lib.export_pretrained(run["checkpoint"], out, run["tok"])
    assert folder_bytes(out) == before
    model_lib.export_pretrained(run["checkpoint"], out, run["tok"], overwrite=True)   # asked for: replaced
    assert folder_bytes(out) == before                                                # (the same model)


@pytest.mark.slow
def test_02_checkpoint_takes_a_05_latest_pt_and_an_exported_folder(run):
    for path in (run["checkpoint"], run["export"], run["export"] / "pytorch_model.bin"):
        proc = run_script("02_model.py", "--checkpoint", str(path), "--tokenizer", str(run["tok"]),
                          "--prompt", "the quick", "--max-new-tokens", "3", timeout=120)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (path, proc.stderr[-2000:])
        assert proc.stdout.strip().startswith("the quick")


@pytest.mark.slow
def test_02_checkpoint_of_a_folder_uses_its_own_tokenizer(run):
    proc = run_script("02_model.py", "--checkpoint", str(run["export"]), "--prompt", "the quick",
                      "--max-new-tokens", "3", timeout=120)                     # no --tokenizer: the folder's own
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert checkpoints.pick_tokenizer(run["export"], None, run["other"]) == run["export"] / "tokenizer.json"
    assert checkpoints.pick_tokenizer(run["export"], run["tok"], run["other"]) == run["export"] / "tokenizer.json"  # same sha


@pytest.mark.slow
@pytest.mark.parametrize("script", ["02_model.py", "06_eval.py"])
def test_a_different_tokenizer_for_an_exported_folder_is_refused(run, tmp_path, script):
    args = (["--prompt", "the quick"] if script == "02_model.py" else
            ["--no-hellaswag", "--preset", "tiny", "--out", str(tmp_path / "eval")])
    proc = run_script(script, "--checkpoint", str(run["export"]), "--tokenizer", str(run["other"]), *args, timeout=120)
    one_error_line(proc, "carries its own tokenizer.json", "drop --tokenizer")


@pytest.mark.slow
def test_hellaswag_speed_takes_the_folders_tokenizer(run, tmp_path):
    """bench/hellaswag_speed.py --checkpoint FOLDER scores with the folder's tokenizer.json, not the default."""
    hellaswag = tmp_path / "hs.jsonl"
    hellaswag.write_text("".join(json.dumps({"ctx": f"A man is {w}.", "activity_label": "Cooking", "label": 0,
                                             "endings": ["he stops.", "he goes.", "it rains.", "she sings."],
                                             "split_type": "indomain", "ctx_a": "", "ctx_b": "", "ind": i,
                                             "source_id": "x", "split": "val"}) + "\n"
                                 for i, w in enumerate(["cooking", "running", "singing"])))
    default = tmp_path / "out" / "01_tokenizer" / "tokenizer.json"          # a default that differs from the folder's
    default.parent.mkdir(parents=True)
    default.write_bytes(run["other"].read_bytes())
    scored = {}
    for name, tokenizer in (("default", []), ("own", ["--tokenizer", str(run["export"] / "tokenizer.json")]),
                            ("other", ["--tokenizer", str(run["other"])])):
        proc = run_script("bench/hellaswag_speed.py", "--checkpoint", str(run["export"]), "--hellaswag", str(hellaswag),
                          "--warmup", "1", "--device", "cpu", *tokenizer, timeout=120,
                          env={"LINNET_OUT": str(tmp_path / "out")})
        if name == "other":
            one_error_line(proc, "carries its own tokenizer.json", "drop --tokenizer")
        else:
            assert proc.returncode == 0, proc.stderr[-2000:]
            scored[name] = json.loads(proc.stdout.strip().splitlines()[-1])["tokens_scored"]
    assert scored["default"] == scored["own"]


def test_06_takes_the_folders_tokenizer_over_the_default(run, monkeypatch, capsys):
    monkeypatch.setattr(eval_lib, "DEFAULT_TOKENIZER", run["other"])          # a default that differs
    tokenizer = eval_lib.tokenizer_for(run["other"], "tiny", run["export"])
    assert tokenizer_lib.tokenizer_sha256(tokenizer) == tokenizer_lib.tokenizer_sha256(run["tok"])
    assert "the exported folder's own" in capsys.readouterr().out


def test_a_missing_safetensors_package_is_named_not_called_a_damaged_file(run, monkeypatch, tmp_path):
    """Reading a .safetensors file needs the package; the export itself writes pytorch_model.bin (linnet's
    published file) and does not."""
    from safetensors.torch import save_file

    sd = checkpoints.read_state_dict(run["export"] / "pytorch_model.bin")
    save_file({k: v.clone().contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    real_import = builtins.__import__

    def no_safetensors(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    with pytest.raises(house.UserError, match="needs the safetensors package, which is not installed: pip install safetensors"):
        model_lib.LLM.from_pretrained(tmp_path / "model.safetensors")
    model_lib.export_pretrained(run["checkpoint"], run["root"] / "x", run["tok"])     # no safetensors needed
    assert sorted(p.name for p in (run["root"] / "x").iterdir()) == sorted(checkpoints.EXPORT_FILES)
