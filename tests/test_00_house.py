"""house.py: the conventions every lesson relies on."""
import json

import pytest

from helpers import lesson, require_shared

house = lesson("house")


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "file.txt"
    with pytest.raises(RuntimeError):
        with house.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with house.atomic_path(target) as tmp:
            tmp.write_text("new but unfinished")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_iter_texts_reads_jsonl_txt_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two"}) + "\n")
    (tmp_path / "b.txt").write_text("three")
    pq.write_table(pa.table({"text": ["four", "five"]}), tmp_path / "c.parquet", row_group_size=1)
    (tmp_path / "ignored.csv").write_text("x")
    assert list(house.iter_texts([tmp_path])) == ["one", "two", "three", "four", "five"]


def test_bad_jsonl_line_names_the_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(SystemExit, match=r"bad.jsonl:2"):
        list(house.iter_texts([tmp_path / "bad.jsonl"]))


def test_missing_path_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        house.list_text_files([tmp_path / "nope"])


def test_tiny_data_falls_back_to_shared_corpus(monkeypatch):
    require_shared("corpus")
    monkeypatch.setattr(house, "has_internet", lambda *a, **k: False)
    names = [p.name for p in house.find_tiny_data(None)]
    assert names == ["python-docs.jsonl", "shakespeare.jsonl"]


def test_tiny_data_without_anything_says_what_to_pass(monkeypatch, tmp_path):
    monkeypatch.setattr(house, "has_internet", lambda *a, **k: False)
    monkeypatch.setattr(house, "SHARED_CORPUS_DIR", tmp_path / "absent")
    with pytest.raises(SystemExit, match="--data"):
        house.find_tiny_data(None)
