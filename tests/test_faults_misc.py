"""Faults not covered by the other fault suites, one class per section: a log line torn by a kill -9, a
corrupt manifest.json or progress.json, paths with spaces, unicode or a leading dash, a missing input file
given explicitly, an empty or truncated tokenizer.json, and an empty text file.

A user error ends with exit status != 0, exactly one stderr line starting with "error:", no "Traceback"
and nothing half-written; where the right answer is to recover (a torn LAST log line, a damaged
progress.json), the script says so in a note and exits 0."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO_DIR, lesson, one_error_line, run_script, shakespeare_text

house = lesson("house")
tok = lesson("01_tokenizer")
data = lesson("04_data")
runs = lesson("house.runs")                  # 05's run log

SIZES = ["--shard-tokens", "3000", "--val-tokens", "2000"]   # a few shards from ~300 KB of text




def run_in(cwd, script, *args, timeout=300):
    """`python <repo>/<script> <args>` started in `cwd` (for relative paths such as `--out=-x`)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, str(REPO_DIR / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def nothing_in(folder):
    return not folder.exists() or not any(folder.iterdir())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """~300 KB of Shakespeare as 300 documents, a vocab-512 tokenizer and 04's shards of it (in-process: fast)."""
    text = shakespeare_text(300_000)
    root = tmp_path_factory.mktemp("misc")
    docs = [text[i:i + 1_000] for i in range(0, 300_000, 1_000)]
    (root / "bard.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs), encoding="utf-8")
    tokenizer = tok.save_tokenizer(tok.train_tokenizer(docs[:60], 512, show_progress=False), root / "tokenizer.json")
    data.build_shards([data.LocalSource("bard", [root / "bard.jsonl"])], {"bard": len(docs)},
                      tok.load_tokenizer(tokenizer), root / "data", tokenizer_sha256=tok.tokenizer_sha256(tokenizer),
                      show_progress=False, shard_tokens=3_000, val_tokens=2_000)
    return dict(root=root, text=root / "bard.jsonl", tokenizer=tokenizer, data_dir=root / "data")


def train_args(inputs, out, *more):
    return ["--preset", "tiny", "--tokenizer", str(inputs["tokenizer"]), "--data-dir", str(inputs["data_dir"]),
            "--out", str(out), "--no-hellaswag", "--eval-every", "1000", *more]


# --- 1. log.jsonl: a kill -9 during `append_log` tears the last line --------------------------------------

@pytest.fixture(scope="module")
def trained(inputs, tmp_path_factory):
    """A finished 2-step 05 run (latest.pt at step 2, log.jsonl), copied by each test that damages it."""
    out = tmp_path_factory.mktemp("trained") / "run"
    proc = run_script("05_train.py", *train_args(inputs, out, "--max-steps", "2"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.slow
def test_torn_last_log_line_is_dropped_on_resume(inputs, trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    with open(out / "log.jsonl", "a") as f:
        f.write('{"step": 2, "loss": 6.8')                        # killed in the middle of the next append
    proc = run_script("05_train.py", *train_args(inputs, out, "--resume", "--max-steps", "4"), timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "note: dropped line 4 of" in proc.stdout and "torn" in proc.stdout
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]   # every line whole
    assert [r["step"] for r in records if r.get("kind") != "eval"] == [0, 1, 2, 3]
    assert not list(out.glob(".*.tmp*"))


@pytest.mark.slow
def test_damaged_log_line_before_the_last_is_one_line(inputs, trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    lines = (out / "log.jsonl").read_text().splitlines()
    lines[1] = lines[1][:25]                                     # not something a kill -9 of an append leaves
    (out / "log.jsonl").write_text("\n".join(lines) + "\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = run_script("05_train.py", *train_args(inputs, out, "--resume", "--max-steps", "4"), timeout=300)
    one_error_line(proc, f"{out / 'log.jsonl'} line 2 is damaged", "delete that line")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before          # nothing touched


def test_read_log_drops_a_torn_last_line_and_names_a_damaged_one(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 0, "loss": 7.0}\n\n{"kind": "eval", "step": 1, "val_loss": 6.9}\n{"step": 1, "lo')
    steps, evals = runs.read_log(path)
    assert [r["step"] for r in steps] == [0] and [r["step"] for r in evals] == [1]
    assert "dropped line 4" in capsys.readouterr().out
    path.write_text('{"step": 0}\n[1, 2]\n{"step": 1}\n')       # valid JSON, but not a record
    with pytest.raises(house.UserError, match=r"log.jsonl line 2 is damaged"):
        runs.trim_log(path, 1)
    assert path.read_text() == '{"step": 0}\n[1, 2]\n{"step": 1}\n'


# --- 2. A corrupt manifest.json: 04's read_manifest says so, for 05 and 06 alike ---------------------------

def damaged_copy(inputs, tmp_path, how):
    folder = tmp_path / "shards"
    shutil.copytree(inputs["data_dir"], folder)
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    if how == "empty":
        path.write_bytes(b"")
    elif how == "cut":
        path.write_bytes(path.read_bytes()[:300])
    elif how == "binary":
        path.write_bytes(bytes(range(256)))
    elif how == "no tokenizer_sha256":
        del manifest["tokenizer_sha256"]
        path.write_text(json.dumps(manifest))
    elif how == "shard without file":
        del manifest["shards"][2]["file"]
        path.write_text(json.dumps(manifest))
    elif how == "a list":
        path.write_text("[]")
    elif how in VALUES:                                  # well-formed JSON, values that cannot be right
        VALUES[how][0](manifest)
        path.write_text(json.dumps(manifest))
    return folder


def _drop_split(manifest, split):
    manifest["shards"] = [r for r in manifest["shards"] if r["split"] != split]


VALUES = {   # how: (the change, what read_manifest says); checked when read, so 05 stops before its first step
    "val_bytes_per_token 0": (lambda m: m.update(val_bytes_per_token=0), "val_bytes_per_token 0 is not a number > 0"),
    "no validation shard": (lambda m: _drop_split(m, "val"), 'no validation shard (split "val")'),
    "tokens true": (lambda m: m["shards"][1].update(tokens=True), "shard_00001.npy lists True tokens"),
    "split test": (lambda m: m["shards"][1].update(split="test"), "shard_00001.npy has split 'test'"),
    "file a path": (lambda m: m["shards"][1].update(file="../shard_00001.npy"), "shard file '../shard_00001.npy' is not a file name"),
    "eot_id past vocab": (lambda m: m.update(eot_id=m["vocab_size"]), "eot_id 512 is not a token id of the vocabulary"),
    "vocab_size text": (lambda m: m.update(vocab_size="512"), "vocab_size '512' is not a whole number"),
}
KINDS = {"empty": "empty, or not valid JSON", "cut": "empty, or not valid JSON", "binary": "empty, or not valid JSON",
         "shard without file": "a shard record without file", "a list": "not a JSON object",
         **{how: problem for how, (_, problem) in VALUES.items()}}


@pytest.mark.parametrize("how", list(KINDS))
def test_read_manifest_of_a_corrupt_manifest_is_one_line(inputs, tmp_path, how):
    folder = damaged_copy(inputs, tmp_path, how)
    with pytest.raises(house.UserError) as e:
        data.read_manifest(folder)
    assert str(e.value).startswith(f"{folder / 'manifest.json'} is corrupt ({KINDS[how]}")
    assert "rerun the python 04_data.py command" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("script,how,needle", [
    ("05_train.py", "empty", "empty, or not valid JSON"),
    ("05_train.py", "no tokenizer_sha256", "(no tokenizer_sha256)"),
    ("06_eval.py", "cut", "empty, or not valid JSON"),
    ("06_eval.py", "shard without file", "a shard record without file"),
    ("05_train.py", "val_bytes_per_token 0", "val_bytes_per_token 0 is not a number > 0"),
    ("05_train.py", "no validation shard", "no validation shard"),
])
def test_corrupt_manifest_stops_05_and_06_in_one_line(inputs, tmp_path, script, how, needle):
    folder = damaged_copy(inputs, tmp_path, how)
    out = tmp_path / "out"
    args = ["--preset", "tiny", "--tokenizer", str(inputs["tokenizer"]), "--data-dir", str(folder), "--out", str(out),
            "--no-hellaswag"] + (["--max-steps", "2"] if script == "05_train.py" else [])
    proc = run_script(script, *args, timeout=300)
    one_error_line(proc, f"{folder / 'manifest.json'} is corrupt", needle, "04_data.py")
    assert nothing_in(out)


@pytest.mark.slow
def test_04_rerun_rebuilds_a_corrupt_manifest(inputs, tmp_path):
    folder = damaged_copy(inputs, tmp_path, "no tokenizer_sha256")          # valid JSON: once kept as "done"
    proc = run_script("04_data.py", "--source", f"bard={inputs['text']}", "--tokenizer", str(inputs["tokenizer"]),
                      "--out", str(folder), *SIZES, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "manifest.json is damaged (no tokenizer_sha256)" in proc.stdout
    assert (folder / "manifest.json").read_bytes() == (inputs["data_dir"] / "manifest.json").read_bytes()


# --- 3. A corrupt progress.json in a folder 04 did not finish: ignored with a note, rebuilt --------------

@pytest.mark.slow
@pytest.mark.parametrize("content,problem", [
    (b"", "empty, or not valid JSON"), (b'{"config": {"format": 1, "tok', "empty, or not valid JSON"),
    (b"[1, 2]", "not a JSON object"), (b'{"config": {}}', "no shards"),
])
def test_corrupt_progress_json_is_ignored_and_the_shards_rebuilt(inputs, tmp_path, capsys, content, problem):
    folder = tmp_path / "half"
    shutil.copytree(inputs["data_dir"], folder)
    (folder / "manifest.json").unlink()                       # a run killed before its end...
    for shard in sorted(folder.glob("shard_*.npy"))[3:]:
        shard.unlink()
    (folder / "progress.json").write_bytes(content)           # ...whose progress.json was damaged since
    if content == b"":                                        # one of them as a user reruns it, the rest in-process
        proc = run_script("04_data.py", "--source", f"bard={inputs['text']}", "--tokenizer", str(inputs["tokenizer"]),
                          "--out", str(folder), *SIZES, timeout=300)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        out = proc.stdout
    else:
        data.build_shards([data.LocalSource("bard", [inputs["text"]])], {"bard": 300},
                          tok.load_tokenizer(inputs["tokenizer"]), folder, show_progress=False,
                          tokenizer_sha256=tok.tokenizer_sha256(inputs["tokenizer"]), shard_tokens=3_000, val_tokens=2_000)
        out = capsys.readouterr().out
    assert f"progress.json is damaged ({problem}): ignoring it" in out
    assert (folder / "manifest.json").read_bytes() == (inputs["data_dir"] / "manifest.json").read_bytes()
    assert not (folder / "progress.json").exists()


# --- 4. Paths with spaces, unicode and a leading dash (`--out=-x`, relative to where the user stands) ------

@pytest.fixture(scope="module")
def odd(inputs, tmp_path_factory):
    """01 and 04 run as a user in `.../out dir/é ü 数据/` with relative outputs `-tok` and `-data`."""
    where = tmp_path_factory.mktemp("odd") / "out dir" / "é ü 数据"
    where.mkdir(parents=True)
    text = shutil.copy(inputs["text"], where / "my text é.jsonl")
    made = [run_in(where, "01_tokenizer.py", "--preset", "tiny", "--data", str(text), "--out=-tok"),
            run_in(where, "04_data.py", "--preset", "tiny", "--data", str(text), "--tokenizer=-tok/tokenizer.json",
                   "--out=-data", *SIZES)]
    return dict(where=where, made=made)


@pytest.mark.slow
def test_01_and_04_work_with_spaces_unicode_and_a_leading_dash(odd):
    for proc in odd["made"]:
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (odd["where"] / "-tok" / "tokenizer.json").is_file()
    manifest = data.read_manifest(odd["where"] / "-data")
    assert manifest["tokenizer_sha256"] == tok.tokenizer_sha256(odd["where"] / "-tok" / "tokenizer.json")
    assert "my text é" in manifest["per_source"]


@pytest.mark.slow
def test_05_trains_on_them_into_an_odd_out(odd):
    proc = run_in(odd["where"], "05_train.py", "--preset", "tiny", "--tokenizer=-tok/tokenizer.json",
                  "--data-dir=-data", "--out", "run ü 1", "--no-hellaswag", "--max-steps", "2", "--eval-every", "1000")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (odd["where"] / "run ü 1" / "latest.pt").is_file() and (odd["where"] / "run ü 1" / "loss.png").is_file()


# --- 5-7. A missing input named explicitly, an empty or cut tokenizer.json, an empty or latin-1 text file -------

CASES = [   # (script, args with {t} = a good tokenizer, {d} = good shards, {x} = the folder of bad inputs, what to say)
    ("01_tokenizer.py", ["--preset", "tiny", "--data", "{x}/no/such"], "does not exist: check the path"),
    ("05_train.py", ["--preset", "tiny", "--tokenizer", "{x}/no/such.json", "--data-dir", "{d}", "--max-steps", "1"],
     "no tokenizer at"),
    ("06_eval.py", ["--preset", "tiny", "--tokenizer", "{t}", "--checkpoint", "{x}/no/such.pt", "--no-hellaswag"],
     "no checkpoint at"),
    ("06_eval.py", ["--preset", "linnet", "--tokenizer", "{x}/no/such.json", "--no-hellaswag"], "no tokenizer at"),
    ("06_eval.py", ["--preset", "tiny", "--tokenizer", "{x}/no/such.json", "--no-hellaswag"], "no tokenizer at"),
    ("04_data.py", ["--preset", "tiny", "--tokenizer", "{x}/empty.json"], "is not a valid tokenizer.json"),
    ("04_data.py", ["--preset", "tiny", "--tokenizer", "{x}/cut.json"], "is not a valid tokenizer.json"),
    ("06_eval.py", ["--preset", "tiny", "--tokenizer", "{x}/empty.json", "--no-hellaswag"], "is not a valid tokenizer.json"),
    ("06_eval.py", ["--preset", "tiny", "--tokenizer", "{x}/cut.json", "--no-hellaswag"], "is not a valid tokenizer.json"),
    ("01_tokenizer.py", ["--preset", "tiny", "--data", "{x}/empty.txt"], "no text in"),
    ("04_data.py", ["--preset", "tiny", "--tokenizer", "{t}", "--data", "{x}/empty.txt"], "has no non-empty documents"),
    ("01_tokenizer.py", ["--preset", "tiny", "--data", "{x}/latin1.txt"], "is not UTF-8 text: convert it or leave it out"),
    ("04_data.py", ["--preset", "tiny", "--tokenizer", "{t}", "--data", "{x}/latin1.txt"],
     "is not UTF-8 text: convert it or leave it out"),
]


@pytest.mark.slow
@pytest.mark.parametrize("script,args,needle", CASES, ids=[f"{s}:{' '.join(a)}" for s, a, _ in CASES])
def test_bad_input_file_is_one_line_and_writes_nothing(inputs, tmp_path, script, args, needle):
    x = tmp_path / "x"
    x.mkdir()
    (x / "empty.json").write_bytes(b"")
    (x / "cut.json").write_bytes(inputs["tokenizer"].read_bytes()[:2_000])
    (x / "empty.txt").write_bytes(b"")
    (x / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me, na\xefve.\n\nA second paragraph.\n".encode("latin-1"))
    fill = dict(t=inputs["tokenizer"], d=inputs["data_dir"], x=x)
    out = tmp_path / "out"
    proc = run_script(script, *[a.format(**fill) for a in args], "--out", str(out), timeout=300)
    line = one_error_line(proc, needle)
    named = next(a.format(**fill) for a in args if "{x}" in a)
    assert named in line, line                               # the file it is about, by name
    assert nothing_in(out) and not (x / "no").exists()       # nothing written, no folder made for the missing file


def test_bits_per_byte_with_a_tokenizer_of_another_vocabulary_is_one_line(inputs, tmp_path):
    """bits per byte counts each scored token's bytes with the tokenizer's table: a tokenizer whose vocabulary
    is smaller than the shard's token ids stops in one line, not an IndexError."""
    eval_lib, model_lib, tokenizer_lib = lesson("06_eval"), lesson("02_model"), lesson("01_tokenizer")
    full = tokenizer_lib.load_tokenizer(inputs["tokenizer"])
    small = tokenizer_lib.truncate_tokenizer(full, 300)
    model = model_lib.LLM(model_lib.LLMConfig(**{**model_lib.TINY_TRAINING_SHAPE, "block_size": 64,
                                                 "vocab_size": full.get_vocab_size()}))
    with pytest.raises(house.UserError, match="tokenizer"):
        eval_lib.bits_per_byte(model, inputs["data_dir"], small, batch_size=2, seq_len=32, max_batches=1, device="cpu")

# --- 6. HellaSwag lines with fields of the wrong type, and 06's --sample: one line before any scoring -------------

GOOD_ROW = {"ind": 4, "activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow.",
            "ctx_b": "then", "ctx": "Then, the man writes over the snow. then", "split": "val", "split_type": "indomain",
            "label": 3, "endings": [", the man adds wax.", ", a person is standing.", ", the man puts on a hat.",
                                    ", the man continues removing the snow."], "source_id": "activitynet~v_-1IBHYS3L-Y"}
BAD_FIELDS = [({"label": 2.7}, '"label" is 2.7, not 0, 1, 2 or 3'),
              ({"label": True}, '"label" is True, not 0, 1, 2 or 3'),
              ({"label": "7"}, """"label" is '7', not 0, 1, 2 or 3"""),
              ({"endings": "abcd"}, """"endings" is 'abcd', not a list of 4 strings"""),
              ({"endings": ["a", "b", "c", 4]}, '"endings" is'),
              ({"ctx_b": None}, '"ctx_b" is None, not a string')]


def hellaswag_file(folder, bad: dict):
    """Two good lines (two examples: a file may not repeat one), then line 3 with `bad` fields."""
    path = folder / "bad.jsonl"
    rows = ({**GOOD_ROW, "ind": 4}, {**GOOD_ROW, "ind": 5}, {**GOOD_ROW, "ind": 6, **bad})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("bad,problem", BAD_FIELDS, ids=[next(iter(b)) + "=" + repr(next(iter(b.values()))) for b, _ in BAD_FIELDS])
def test_hellaswag_field_of_the_wrong_type_names_the_line(tmp_path, bad, problem):
    eval_lib = lesson("06_eval")
    path = hellaswag_file(tmp_path, bad)
    with pytest.raises(house.UserError) as e:
        eval_lib.load_hellaswag(path)
    assert str(e.value).startswith(f"{path}:3 is not a HellaSwag example ({problem}") and "\n" not in str(e.value)
    assert [x["label"] for x in eval_lib.load_hellaswag(path, limit=2)] == [3, 3]      # the good lines load
    assert eval_lib.load_hellaswag(hellaswag_file(tmp_path, {"label": "2"}))[2]["label"] == 2   # the Hub's "2"


@pytest.mark.slow
def test_06_with_a_bad_hellaswag_line_is_one_line(inputs, tmp_path):
    path = hellaswag_file(tmp_path, {"label": 2.7})
    out = tmp_path / "out"
    proc = run_script("06_eval.py", "--preset", "tiny", "--tokenizer", str(inputs["tokenizer"]), "--hellaswag-file",
                      str(path), "--data-dir", str(inputs["data_dir"]), "--out", str(out), timeout=300)
    one_error_line(proc, f"{path}:3 is not a HellaSwag example", '"label" is 2.7')
    assert nothing_in(out)


@pytest.mark.slow
def test_06_empty_sample_is_one_line_before_any_work(tmp_path):
    proc = run_script("06_eval.py", "--preset", "tiny", "--sample=", "--out", str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 2
    one_error_line(proc, "argument --sample: must be some text for the model to continue", "got ''")
    assert not (tmp_path / "out").exists()
