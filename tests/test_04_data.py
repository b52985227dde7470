"""04_data: sources, the mix, exact encoding, shards + manifest, resumability, the loader."""
import json
import random
import re

import numpy as np
import pytest
import torch

from helpers import CORPUS, lesson, run_script, shakespeare_text

house = lesson("house")
tok = lesson("01_tokenizer")
data = lesson("04_data")


# --- fixtures: a small tokenizer and two small local sources cut from the course corpus ----------------

@pytest.fixture(scope="module")
def corpus_docs():
    """~60 python-docs pieces and ~30 shakespeare pieces (distinct, 1-3 KB each) from the embedded corpus."""
    corpus = CORPUS
    out = {}
    for name, n in (("python-docs", 60), ("shakespeare", 30)):
        text = ""
        for doc in house.iter_file_texts(corpus / f"{name}.jsonl.zst"):
            text += doc
            if len(text) >= n * 3000:
                break
        rng = random.Random(name)
        docs, pos = [], 0
        for _ in range(n):
            size = rng.randint(200, 3000)
            docs.append(text[pos:pos + size])
            pos += size
        out[name] = docs
    return out


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory, corpus_docs):
    texts = corpus_docs["python-docs"][:30] + corpus_docs["shakespeare"][:15]
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save_tokenizer(tok.train_tokenizer(texts, 512, show_progress=False), path)
    return path


@pytest.fixture(scope="module")
def tokenizer(tokenizer_path):
    return tok.load_tokenizer(tokenizer_path)


def write_jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sources_dir(tmp_path_factory, corpus_docs):
    d = tmp_path_factory.mktemp("src")
    for name, docs in corpus_docs.items():
        write_jsonl(d / f"{name}.jsonl", docs)
    return d


def make_sources(sources_dir):
    return [data.LocalSource("python-docs", [sources_dir / "python-docs.jsonl"]),
            data.LocalSource("shakespeare", [sources_dir / "shakespeare.jsonl"])]


COUNTS = {"python-docs": 60, "shakespeare": 30}
SIZES = dict(shard_tokens=3_000, val_tokens=2_000)


def build(out, sources_dir, tokenizer, tokenizer_path, **kw):
    kwargs = dict(tokenizer_sha256=tok.tokenizer_sha256(tokenizer_path), seed=3, show_progress=False, **SIZES)
    kwargs.update(kw)
    return data.build_shards(make_sources(sources_dir), dict(COUNTS), tokenizer, out, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory, sources_dir, tokenizer, tokenizer_path):
    out = tmp_path_factory.mktemp("shards")
    return out, build(out, sources_dir, tokenizer, tokenizer_path)


def all_tokens(out, manifest):
    return np.concatenate([np.load(out / r["file"]) for r in manifest["shards"]])


# --- the mix -------------------------------------------------------------------------------------------

def test_mix_is_proportional_deterministic_and_seeded():
    counts = {"fineweb-edu": 700, "dclm": 250}
    order = list(data.mix_schedule(counts, seed=5))
    assert order == list(data.mix_schedule(counts, seed=5))
    assert order != list(data.mix_schedule(counts, seed=6))
    assert {n: order.count(n) for n in counts} == counts
    for end in range(1, len(order) + 1, 37):   # every prefix holds the sources in proportion, ± 1 document
        assert abs(order[:end].count("dclm") - end * 250 / 950) <= 1.0


def test_linnet_order_is_all_dclm_then_fineweb():
    order = list(data.linnet_schedule({"fineweb-edu": 4, "dclm": 2}))
    assert order == ["dclm", "dclm", "fineweb-edu", "fineweb-edu", "fineweb-edu", "fineweb-edu"]


def test_source_running_dry_says_how_to_fix(sources_dir):
    with pytest.raises(house.UserError, match="--mix shakespeare:30"):
        list(data.iter_mixed_documents(make_sources(sources_dir), {"python-docs": 1, "shakespeare": 31}))


# --- exact encoding of long documents in pieces ----------------------------------------------------------

def test_pieces_encode_to_exactly_the_whole_document(tokenizer):
    corpus = CORPUS
    docs = [d[:60_000] for f in ("python-docs.jsonl.zst", "shakespeare.jsonl.zst")
            for d in list(house.iter_file_texts(corpus / f))[:4]]
    rng = random.Random(0)
    alphabet = ["a", "b", "Z", "1", " ", "  ", "\n", "\n\n", " \n", "\r\n", "\t", "é", "'s", ".", "\u3000", "\x1c", "\u0301"]
    docs += ["".join(rng.choice(alphabet) for _ in range(3_000)) for _ in range(30)]
    n_split = 0
    for doc in docs:
        pieces = data.split_for_encoding(doc, piece_chars=64)
        assert "".join(pieces) == doc
        n_split += len(pieces) > 1
        whole = tokenizer.encode(doc, add_special_tokens=False).ids
        joined = [i for e in tokenizer.encode_batch(pieces, add_special_tokens=False) for i in e.ids]
        assert joined == whole
    assert n_split >= 30   # the check above really exercised cuts


def test_encode_documents_puts_eot_first(tokenizer):
    eot = tok.eot_id(tokenizer)
    (ids,) = data.encode_documents(tokenizer, ["hello world"], eot)
    assert ids.dtype == np.uint16 and ids[0] == eot
    assert ids[1:].tolist() == tokenizer.encode("hello world", add_special_tokens=False).ids


# --- shards and manifest ---------------------------------------------------------------------------------

def test_decoded_shards_are_the_documents_in_mix_order(built, corpus_docs, tokenizer):
    out, manifest = built
    eot = manifest["eot_id"]
    tokens = all_tokens(out, manifest)
    assert tokens.dtype == np.uint16 and tokens[0] == eot
    starts = np.flatnonzero(tokens == eot).tolist() + [len(tokens)]
    decoded = [tokenizer.decode(tokens[a + 1:b].tolist()) for a, b in zip(starts[:-1], starts[1:])]
    expected, taken = [], {n: 0 for n in COUNTS}
    for name in data.mix_schedule(COUNTS, seed=3):   # the recorded order: mix, seed, per-source file order
        expected.append(corpus_docs[name][taken[name]])
        taken[name] += 1
    assert decoded == expected


def test_validation_shard_holds_whole_documents_from_both_sources(built):
    out, manifest = built
    val = np.load(out / "shard_00000.npy")
    first_train = np.load(out / "shard_00001.npy")
    assert len(val) >= SIZES["val_tokens"] and first_train[0] == manifest["eot_id"]   # no document is cut at the split
    assert all(manifest["per_source"][n]["val_documents"] > 0 for n in COUNTS)


def test_manifest_counts_equal_what_is_on_disk(built, corpus_docs, tokenizer):
    out, manifest = built
    records = manifest["shards"]
    assert [r["file"] for r in records] == [f"shard_{i:05d}.npy" for i in range(len(records))]
    assert sorted(p.name for p in out.glob("shard_*.npy")) == [r["file"] for r in records]
    for r in records[1:-1]:
        assert r["tokens"] == SIZES["shard_tokens"]
    for r in records:
        shard = np.load(out / r["file"])
        assert len(shard) == r["tokens"] == sum(r["source_tokens"].values())
        assert house.shards.sha256_file(out / r["file"]) == r["sha256"]
    tokens = all_tokens(out, manifest)
    assert manifest["tokens"] == len(tokens)
    assert manifest["documents"] == (tokens == manifest["eot_id"]).sum() == sum(COUNTS.values())
    for name, docs in corpus_docs.items():
        p = manifest["per_source"][name]
        assert p["documents"] == len(docs)
        assert p["bytes"] == sum(len(d.encode()) for d in docs)
        assert p["tokens"] == sum(len(tokenizer.encode(d).ids) + 1 for d in docs)
    assert manifest["vocab_size"] == tokenizer.get_vocab_size() and manifest["eot_id"] == tok.eot_id(tokenizer)
    assert manifest["mix"] == COUNTS and manifest["seed"] == 3
    assert not (out / "progress.json").exists() and not list(out.glob(".*tmp*"))


def test_val_bytes_per_token_counts_eot_as_zero_bytes(built, tokenizer):
    out, manifest = built
    val = np.load(out / "shard_00000.npy")
    eot = manifest["eot_id"]
    starts = np.flatnonzero(val == eot).tolist() + [len(val)]
    n_bytes = sum(len(tokenizer.decode(val[a + 1:b].tolist()).encode()) for a, b in zip(starts[:-1], starts[1:]))
    assert manifest["val_bytes_per_token"] == pytest.approx(n_bytes / len(val))


def test_linnet_order_puts_only_the_first_source_in_validation(tmp_path, sources_dir, tokenizer, tokenizer_path):
    manifest = build(tmp_path, sources_dir, tokenizer, tokenizer_path, linnet_order=True)
    assert manifest["order"] == "linnet"
    assert manifest["per_source"]["python-docs"]["val_documents"] > 0     # "python-docs" < "shakespeare"
    assert manifest["per_source"]["shakespeare"]["val_documents"] == 0


# --- killed and rerun: byte-identical -----------------------------------------------------------------------

class Crash(Exception):
    pass


def shard_bytes(out):
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard_*.npy"))} | {"manifest": (out / "manifest.json").read_bytes()}


def test_killed_run_resumes_byte_identical(tmp_path, built, sources_dir, tokenizer, tokenizer_path):
    reference, _ = built

    def crash_after_shard_3(record):
        if record["index"] == 3:
            raise Crash

    out = tmp_path / "run"
    with pytest.raises(Crash):
        build(out, sources_dir, tokenizer, tokenizer_path, on_shard_written=crash_after_shard_3)
    assert not (out / "manifest.json").exists() and (out / "progress.json").exists()
    (out / ".shard_00004.npy.tmp999").write_bytes(b"half a shard")      # a SIGKILL mid-write leaves this
    (out / "shard_00003.npy").write_bytes(b"corrupt")                    # and a damaged shard is redone
    written = []
    build(out, sources_dir, tokenizer, tokenizer_path, on_shard_written=lambda r: written.append(r["index"]))
    assert written[0] == 3                     # shards 0-2 were verified and kept, not rewritten
    assert shard_bytes(out) == shard_bytes(reference)
    assert not list(out.glob(".*tmp*"))


def test_rerun_of_finished_run_keeps_everything_and_other_settings_need_overwrite(tmp_path, sources_dir, tokenizer,
                                                                                 tokenizer_path):
    first = build(tmp_path, sources_dir, tokenizer, tokenizer_path)
    written = []
    again = build(tmp_path, sources_dir, tokenizer, tokenizer_path, on_shard_written=written.append)
    assert written == [] and again["shards"] == first["shards"]
    with pytest.raises(house.UserError, match="other settings"):
        build(tmp_path, sources_dir, tokenizer, tokenizer_path, seed=4)
    assert data.read_manifest(tmp_path)["shards"] == first["shards"]
    other = build(tmp_path, sources_dir, tokenizer, tokenizer_path, seed=4, overwrite=True, on_shard_written=written.append)
    assert len(written) == len(other["shards"]) and other["seed"] == 4


# --- errors a user can cause ------------------------------------------------------------------------------

def test_vocab_over_uint16_is_refused(tmp_path, sources_dir):
    from tokenizers import Tokenizer, models

    big = Tokenizer(models.BPE(vocab={f"t{i}": i for i in range(70_000)}, merges=[]))
    with pytest.raises(house.UserError, match="uint16"):
        data.build_shards(make_sources(sources_dir), dict(COUNTS), big, tmp_path, tokenizer_sha256="x")
    assert not list(tmp_path.iterdir())


def test_empty_source_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "empty.jsonl").write_text(json.dumps({"text": ""}) + "\n")
    with pytest.raises(SystemExit, match="no non-empty documents"):
        data.main(["--preset", "tiny", "--source", f"empty={tmp_path / 'empty.jsonl'}", "--out", str(tmp_path / "o")])


def test_bad_source_argument_and_missing_tokenizer(tmp_path, sources_dir):
    with pytest.raises(house.UserError, match="NAME=PATH"):
        data.parse_source_arg("just/a/path.jsonl")
    with pytest.raises(SystemExit, match="01_tokenizer.py --preset tiny"):
        data.main(["--preset", "tiny", "--source", f"a={sources_dir / 'shakespeare.jsonl'}",
                   "--tokenizer", str(tmp_path / "none.json"), "--out", str(tmp_path / "o")])


def test_corrupt_zstd_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 10)
    with pytest.raises(house.UserError, match="bad.jsonl.zst is not valid zstandard"):
        list(data.LocalSource("bad", [tmp_path]).iter_documents())


def test_no_internet_linnet_preset_says_pass_local_sources(tmp_path, monkeypatch):
    monkeypatch.setattr(house.sources, "has_internet", lambda *a, **k: False)
    monkeypatch.setattr(house, "RAW_DATA_DIR", tmp_path / "raw")
    with pytest.raises(SystemExit) as e:
        data.main(["--out", str(tmp_path / "o")])
    assert "--source" in str(e.value) and "\n" not in str(e.value)


# --- a .txt file: its paragraphs are the documents; all text in the validation shard: advice that works -------

def paragraphs(n_bytes: int) -> list[str]:
    """Paragraphs of the embedded Shakespeare (a play as a .txt file holds them), about `n_bytes` of them."""
    found = list(house.text.iter_paragraphs(shakespeare_text(n_bytes).splitlines(keepends=True)))
    return found[:next(i for i in range(len(found)) if len("\n\n".join(found[:i + 1])) >= n_bytes) + 1]


def build_txt(out, txt, tokenizer, tokenizer_path, val_tokens):
    source = data.LocalSource("my", [txt])
    return data.build_shards([source], {"my": data.count_documents(source)}, tokenizer, out, show_progress=False,
                             tokenizer_sha256=tok.tokenizer_sha256(tokenizer_path), shard_tokens=3_000, val_tokens=val_tokens)


def refusal(out, txt, tokenizer, tokenizer_path, val_tokens=200_000) -> str:
    """The advice of 04's refusal when every token went to the validation shard; nothing of it is left in `out`."""
    with pytest.raises(house.UserError, match=f"went to the validation shard .*now {val_tokens:,}") as e:
        build_txt(out, txt, tokenizer, tokenizer_path, val_tokens)
    assert not list(out.iterdir())           # no lone shard 0 or progress.json: a rerun starts clean
    return str(e.value).split("): ", 1)[1]


@pytest.mark.slow
def test_small_txt_file_gets_a_val_tokens_that_works_when_followed(tmp_path, tokenizer_path):
    """30 KB of text is fewer tokens than the tiny preset's validation shard: the refusal names the --val-tokens
    that leaves a training shard, and what each side gets; the printed value, passed, gives exactly that."""
    txt, out = tmp_path / "essay.txt", tmp_path / "out"
    txt.write_text("\n\n".join(paragraphs(30_000)))
    args = ["--preset", "tiny", "--data", str(txt), "--tokenizer", str(tokenizer_path), "--out", str(out)]
    refused = run_script("04_data.py", *args, timeout=300)
    line = refused.stderr.strip().splitlines()[-1]           # after the tokenizing bar, one line
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert line.startswith("error: all ") and "went to the validation shard" in line and "now 200,000" in line
    assert not list(out.iterdir())
    found = re.search(r"pass --val-tokens (\d+) \(validation: the first ([\d,]+) of ([\d,]+) documents, ([\d,]+) tokens; "
                      r"training: ([\d,]+) tokens\)$", line)
    val_tokens, val_docs, n_docs, val_n, train_n = [int(g.replace(",", "")) for g in found.groups()]
    followed = run_script("04_data.py", *args, "--val-tokens", str(val_tokens), timeout=300)
    assert followed.returncode == 0, followed.stderr[-2000:]
    manifest = data.read_manifest(out)
    assert (manifest["val_tokens"], manifest["tokens"] - manifest["val_tokens"]) == (val_n, train_n)
    assert (manifest["per_source"]["essay"]["val_documents"], manifest["documents"]) == (val_docs, n_docs)
    for split in ("train", "val"):
        assert len(data.ShardLoader(out, split, B=8, T=64)) >= 1     # a batch of 05's tiny preset on each side


def test_one_document_txt_says_split_it_and_the_split_text_works(tmp_path, tokenizer, tokenizer_path):
    txt, out = tmp_path / "one.txt", tmp_path / "out"
    lines = "\n".join(paragraphs(20_000)).splitlines()
    txt.write_text("\n".join(lines))                        # no blank line: one document
    advice = refusal(out, txt, tokenizer, tokenizer_path)
    assert advice.startswith("the text is one document (") and "a .txt file is split at blank lines" in advice
    txt.write_text("\n\n".join(lines))                      # followed: every line a paragraph
    advice = refusal(out, txt, tokenizer, tokenizer_path)
    val_tokens = int(re.fullmatch(r"pass --val-tokens (\d+) \(.*\)", advice).group(1))
    manifest = build_txt(out, txt, tokenizer, tokenizer_path, val_tokens)
    assert manifest["tokens"] - manifest["val_tokens"] >= data.MIN_SHARD_TOKENS <= manifest["val_tokens"]


def test_too_small_txt_says_how_much_text_is_missing_and_that_much_is_enough(tmp_path, tokenizer, tokenizer_path):
    txt, out = tmp_path / "note.txt", tmp_path / "out"
    more = paragraphs(40_000)
    txt.write_text("\n\n".join(more[:20]))                 # ~1 KB: too small for two shards of 1,025 tokens
    advice = refusal(out, txt, tokenizer, tokenizer_path)
    kb = int(re.search(r"add about (\d+) KB of text \(more documents\), then pass --val-tokens 1025$", advice).group(1))
    added = next(i for i in range(20, len(more)) if len("\n\n".join(more[20:i])) >= kb * 1000)
    txt.write_text("\n\n".join(more[:added]))              # followed: that much more text, then --val-tokens 1025
    manifest = build_txt(out, txt, tokenizer, tokenizer_path, 1_025)
    assert manifest["tokens"] - manifest["val_tokens"] >= data.MIN_SHARD_TOKENS <= manifest["val_tokens"]


@pytest.mark.slow
def test_05_trains_on_an_ordinary_txt_file(tmp_path):
    """`python 05_train.py --preset tiny --data plays.txt` (the README invites it): 01 and 04 run on it, its
    paragraphs are the documents, and the run trains (once every .txt was one document, all in validation)."""
    txt = tmp_path / "plays.txt"
    txt.write_text(shakespeare_text(650_000))
    proc = run_script("05_train.py", "--preset", "tiny", "--data", str(txt), "--tokenizer", str(tmp_path / "tok" / "tokenizer.json"),
                      "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--max-steps", "2",
                      "--no-hellaswag", "--eval-every", "1000", timeout=600)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    manifest = data.read_manifest(tmp_path / "data")
    assert manifest["documents"] == len(list(house.iter_texts([txt]))) > 1_000 and len(manifest["shards"]) >= 2
    assert (tmp_path / "run" / "latest.pt").is_file()


# --- Hugging Face sources (house/sources.py), offline: a directory laid out like the real repos ---------

def write_zst_jsonl(path, texts):
    import zstandard

    path.parent.mkdir(parents=True, exist_ok=True)
    raw = "".join(json.dumps({"text": t, "url": "http://x"}) + "\n" for t in texts).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(raw))


def fake_hub(root):
    """fineweb-edu and dclm laid out as on the Hub (file names from docs/DATA.md), with decoys that must be skipped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fw = root / "HuggingFaceFW/fineweb-edu"
    (fw / "sample/10BT").mkdir(parents=True)
    for i, texts in enumerate([["fw0", "", "fw1", "fw2"], ["fw3", "fw4"]]):
        table = pa.table({"text": texts, "id": [f"i{k}" for k in range(len(texts))], "score": [3.0] * len(texts)})
        pq.write_table(table, fw / f"sample/10BT/{i:03d}_00000.parquet", row_group_size=2)
    (fw / "sample/100BT").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["decoy"]}), fw / "sample/100BT/000_00000.parquet")
    (fw / "README.md").write_text("decoy")
    dclm = root / "mlfoundations/dclm-baseline-1.0"
    write_zst_jsonl(dclm / "global-shard_01_of_10/local-shard_0_of_10/shard_00000000_processed.jsonl.zst", ["d0", "d1"])
    write_zst_jsonl(dclm / "global-shard_01_of_10/local-shard_0_of_10/shard_00000001_processed.jsonl.zst", ["", "d2"])
    (dclm / "README.md").write_text("decoy")
    return root


def test_hf_sources_read_a_local_mirror_of_the_real_layout(tmp_path):
    root = fake_hub(tmp_path)
    fw = house.sources.HFSource("fineweb-edu", local_dir=root / "HuggingFaceFW/fineweb-edu", **house.sources.HF_DATASETS["fineweb-edu"])
    dclm = house.sources.HFSource("dclm", local_dir=root / "mlfoundations/dclm-baseline-1.0", **house.sources.HF_DATASETS["dclm"])
    assert fw.list_files() == ["sample/10BT/000_00000.parquet", "sample/10BT/001_00000.parquet"]
    assert list(fw.iter_documents()) == ["fw0", "fw1", "fw2", "fw3", "fw4"]      # empty text skipped
    assert list(dclm.iter_documents()) == ["d0", "d1", "d2"]
    mixed = list(data.iter_mixed_documents([fw, dclm], {"fineweb-edu": 4, "dclm": 2}, linnet_order=True))
    assert mixed == [("dclm", "d0"), ("dclm", "d1"), ("fineweb-edu", "fw0"), ("fineweb-edu", "fw1"),
                     ("fineweb-edu", "fw2"), ("fineweb-edu", "fw3")]


def test_hf_source_download_path_lists_and_fetches_through_huggingface_hub(tmp_path, monkeypatch):
    import huggingface_hub

    root = fake_hub(tmp_path / "hub")
    dclm_dir = root / "mlfoundations/dclm-baseline-1.0"
    write_zst_jsonl(dclm_dir / "global-shard_02_of_10/local-shard_0_of_10/shard_00000000_processed.jsonl.zst", ["x"])
    listed, calls = [], []

    def list_repo_tree(self, repo_id, path_in_repo=None, *, repo_type=None, revision=None, **kw):
        assert repo_type == "dataset" and not kw.get("recursive")
        listed.append((path_in_repo, revision))
        folder = root / repo_id / (path_in_repo or "")
        return [huggingface_hub.hf_api.RepoFolder(path=p.relative_to(root / repo_id).as_posix(), oid="x") if p.is_dir()
                else huggingface_hub.hf_api.RepoFile(path=p.relative_to(root / repo_id).as_posix(), size=1, oid="x")
                for p in folder.iterdir()]

    def hf_hub_download(repo_id, filename, repo_type=None, cache_dir=None, revision=None, **kw):
        calls.append((filename, revision))
        return str(root / repo_id / filename)

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", list_repo_tree)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    dclm = house.sources.HFSource("dclm", cache_dir=tmp_path / "cache", **house.sources.HF_DATASETS["dclm"])
    raw = house.sources.download_raw(dclm, 2, raw_dir=tmp_path / "raw")
    assert [json.loads(line)["text"] for line in raw.read_text().splitlines()] == ["d0", "d1"]
    pin = house.HUB_REVISIONS["mlfoundations/dclm-baseline-1.0"]
    assert calls == [("global-shard_01_of_10/local-shard_0_of_10/shard_00000000_processed.jsonl.zst", pin)]  # only what was needed
    # only the folders on the way to the first file: the root, then one global and one local shard folder
    assert listed == [(None, pin), ("global-shard_01_of_10", pin), ("global-shard_01_of_10/local-shard_0_of_10", pin)]


def test_docstring_examples_of_the_shard_bookkeeping():
    """house/shards.py's worked examples (04's until they moved there; tests/test_docstrings.py runs 04's own)."""
    import doctest

    results = doctest.testmod(house.shards)
    assert results.attempted > 0 and results.failed == 0


# --- the loader ---------------------------------------------------------------------------------------------

def test_loader_windows_are_shifted_by_one_and_come_from_the_shards(built):
    out, manifest = built
    loader = data.ShardLoader(out, "train", B=4, T=64, seed=1)
    x, y = next(iter(loader))
    assert x.shape == y.shape == (4, 64) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    shards = [np.load(out / r["file"]) for r in manifest["shards"][1:]]
    for row in range(4):
        assert any(np.array_equal(s[i:i + 65], torch.cat([x[row], y[row, -1:]]).numpy())
                   for s in shards for i in range(0, len(s) - 64, 64))


def test_loader_resumes_on_the_exact_next_batch(built):
    out, _ = built
    uninterrupted = data.ShardLoader(out, "train", B=2, T=32, seed=7)
    stream = iter(uninterrupted)
    n = len(uninterrupted) + 3                 # crosses an epoch boundary
    expected = [next(stream) for _ in range(n + 2)]
    first = data.ShardLoader(out, "train", B=2, T=32, seed=7)
    it = iter(first)
    for _ in range(n):
        next(it)
    state = json.loads(json.dumps(first.state_dict()))    # survives a checkpoint round trip
    resumed = data.ShardLoader(out, "train", B=2, T=32, seed=7)
    resumed.load_state_dict(state)
    got = iter(resumed)
    for k in range(2):
        x, y = next(got)
        assert torch.equal(x, expected[n + k][0]) and torch.equal(y, expected[n + k][1])
    with pytest.raises(house.UserError, match="B=2"):
        data.ShardLoader(out, "train", B=3, T=32, seed=7).load_state_dict(state)


def test_epochs_are_shuffled_differently_and_deterministically(built):
    out, _ = built
    loader = data.ShardLoader(out, "train", B=2, T=32, seed=7)
    assert np.array_equal(loader.epoch_order(0), data.ShardLoader(out, "train", B=2, T=32, seed=7).epoch_order(0))
    assert not np.array_equal(loader.epoch_order(0), loader.epoch_order(1))
    assert sorted(map(tuple, loader.epoch_order(0))) == sorted(map(tuple, loader.epoch_order(1)))


def test_two_ranks_never_share_a_window_in_an_epoch(built):
    out, _ = built
    seen = []
    for rank in range(2):
        loader = data.ShardLoader(out, "train", B=3, T=32, rank=rank, world_size=2, seed=2)
        windows = set()
        for batch in range(len(loader)):
            rows = loader.batch_windows(0, batch)
            x, _ = loader.get_batch(0, batch)
            for (s, start), row in zip(rows, x):   # the batch really holds those windows
                assert np.array_equal(loader._tokens(int(s))[start:start + 32], row.numpy())
            windows |= {tuple(r) for r in rows.tolist()}
        seen.append(windows)
        assert len(windows) == len(loader) * 3
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 2 * len(loader) * 3


def test_val_batches_read_shard_0_in_order_once(built):
    out, _ = built
    val = np.load(out / "shard_00000.npy")
    batches = list(data.val_batches(out, 2, 16))
    assert len(batches) == (len(val) - 1) // 16 // 2
    flat = torch.cat([x.reshape(-1) for x, _ in batches]).numpy()
    assert np.array_equal(flat, val[:len(flat)])
    assert len(list(data.val_batches(out, 2, 16, max_batches=3))) == 3


def test_loader_errors_are_one_line(tmp_path, built):
    with pytest.raises(house.NotFound, match=r"run python 04_data.py \(--preset tiny for the small one\) first"):
        data.read_manifest(tmp_path)
    out, _ = built
    with pytest.raises(house.UserError, match="fewer than one batch"):
        data.ShardLoader(out, "val", B=1000, T=1024)


def test_plots_return_figures(built, tokenizer):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    out, manifest = built
    eot = manifest["eot_id"]
    window = data.window_with_boundaries(data.ShardLoader(out, "train", 1, 300, seed=3), eot)
    assert window.shape == (300,) and (window == eot).any()
    figures = [data.plot_doc_lengths(manifest), data.plot_tokens_per_source(manifest),
               data.plot_bytes_per_token(manifest), data.plot_window(window, eot, tokenizer)]
    assert all(isinstance(f, Figure) for f in figures)
    plt.close("all")


# --- the whole script ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_tiny_preset_end_to_end(tmp_path, tokenizer_path):
    out = tmp_path / "out"
    result = run_script("04_data.py", "--preset", "tiny", "--tokenizer", str(tokenizer_path), "--out", str(out),
                        "--data", str(CORPUS), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = data.read_manifest(out)
    assert set(manifest["per_source"]) == {"python-docs", "shakespeare"}
    assert manifest["per_source"]["python-docs"]["documents"] == 248
    assert len(manifest["shards"]) >= 4
    for name in ("doc_lengths", "tokens_per_source", "bytes_per_token", "window"):
        assert (out / f"{name}.png").stat().st_size > 10_000
        assert "plot: " in result.stdout and f"{name}.png" in result.stdout
    before = shard_bytes(out)
    again = run_script("04_data.py", "--preset", "tiny", "--tokenizer", str(tokenizer_path), "--out", str(out),
                       "--data", str(CORPUS), timeout=300)
    assert again.returncode == 0 and "already done" in again.stdout
    assert shard_bytes(out) == before
