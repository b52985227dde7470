"""house/: the conventions every lesson relies on."""
import json
import os

import pytest

from helpers import lesson

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


def test_a_txt_file_is_one_document_per_paragraph(tmp_path):
    """A book or an essay as a .txt: paragraphs (split at blank lines, which may hold spaces or be \\r\\n) are the
    documents, each keeping its lines and their indentation; runs of blank lines and a last line without a
    newline change nothing. (One document per file once made 04 put everything into the validation shard.)"""
    (tmp_path / "book.txt").write_bytes(b"\n\nCHAPTER I\r\n\r\nIt was a dark night.\nThe end\n  of it.\n \t \n\n\n"
                                       b"    def f():\n        return 1\n\x0c\nLast line, no newline")
    assert list(house.iter_texts([tmp_path / "book.txt"])) == [
        "CHAPTER I", "It was a dark night.\nThe end\n  of it.", "    def f():\n        return 1", "Last line, no newline"]
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    assert list(house.iter_texts([tmp_path / "blank.txt"])) == []


def test_docstring_examples_of_house_text():
    import doctest

    results = doctest.testmod(house.text)
    assert results.attempted > 0 and results.failed == 0


@pytest.mark.parametrize("name, data", [("latin1.txt", "fine\n\ncaf\xe9\n".encode("latin-1")),
                                        ("late.txt", b"fine paragraph\n\n" * 10_000 + b"caf\xe9\n"),
                                        ("utf16.txt", "caf\xe9\n".encode("utf-16")),
                                        ("latin1.jsonl", '{"text": "caf\xe9"}\n'.encode("latin-1"))])
def test_a_file_that_is_not_utf8_is_one_line_naming_it(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(house.UserError) as e:
        list(house.iter_texts([tmp_path]))
    assert str(e.value) == f"{tmp_path / name} is not UTF-8 text: convert it or leave it out"


def test_bad_jsonl_line_names_the_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(house.UserError, match=r"bad.jsonl:2"):
        list(house.iter_texts([tmp_path / "bad.jsonl"]))


def test_missing_path_is_one_clear_line(tmp_path):
    with pytest.raises(house.UserError, match="does not exist"):
        house.list_text_files([tmp_path / "nope"])


EMBEDDED = ["python-docs.jsonl.zst", "shakespeare.jsonl.zst"]


@pytest.mark.parametrize("online", [False, True])
def test_tiny_data_is_the_embedded_corpus_online_or_not(monkeypatch, tmp_path, online):
    """Same text on every machine: no download, no ../shared, whatever the network says."""
    monkeypatch.setattr(house.sources, "has_internet", lambda *a, **k: online)
    monkeypatch.setattr(house.sources, "fetch_fineweb_sample", lambda *a, **k: pytest.fail("downloaded without --data hub"))
    monkeypatch.setattr(house.sources, "FINEWEB_CACHE", tmp_path / "fineweb-edu-sample.jsonl")
    (tmp_path / "fineweb-edu-sample.jsonl").write_text('{"text": "cached"}\n')
    assert [p.name for p in house.find_tiny_data(None)] == EMBEDDED


def test_embedded_corpus_is_text_of_both_sources():
    files = house.find_tiny_data(None)
    docs = {f.name: list(house.iter_file_texts(f)) for f in files}
    assert [len(d) for d in docs.values()] == [248, 21]
    assert "Python" in docs["python-docs.jsonl.zst"][0] and "ROMEO" in "".join(docs["shakespeare.jsonl.zst"])
    assert sum(len(t.encode()) for d in docs.values() for t in d) == 5_834_746 + 2_577_985   # embedded/README.md


def test_embedded_files_match_their_readme_and_stay_small():
    """Every file in embedded/ is listed in its README with its compressed size and the sha256 of its
    unpacked bytes, and they stay within the 5 MB the repo allows for them."""
    import hashlib
    import re

    import zstandard

    readme = (house.EMBEDDED_DIR / "README.md").read_text()
    files = sorted(p for p in house.EMBEDDED_DIR.rglob("*.zst"))
    assert len(files) == 3
    for f in files:
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{f.relative_to(house.EMBEDDED_DIR)}`"))
        size, _, sha = re.search(r"\| ([\d,]+) \| ([\d,]+) \| `([0-9a-f]{64})`", row).groups()
        assert int(size.replace(",", "")) == f.stat().st_size
        assert hashlib.sha256(zstandard.ZstdDecompressor().decompressobj().decompress(f.read_bytes())).hexdigest() == sha
    assert sum(f.stat().st_size for f in files) <= 5_000_000


def test_tiny_data_without_the_embedded_corpus_says_what_to_pass(monkeypatch, tmp_path):
    monkeypatch.setattr(house.sources, "EMBEDDED_CORPUS_DIR", tmp_path / "absent")
    with pytest.raises(house.UserError, match=r"the embedded corpus .* is missing: restore it .* --data PATH"):
        house.find_tiny_data(None)


def test_a_damaged_zst_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl.zst"
    bad.write_bytes(b"\x28\xb5\x2f\xfd" + b"not zstd at all" * 10)
    with pytest.raises(house.UserError, match=r".*bad.jsonl.zst is not valid zstandard data"):
        list(house.iter_texts([bad]))


def test_a_missing_zstandard_package_is_named(monkeypatch):
    """Seen on the GPU machine (no zstandard there): reading the embedded HellaSwag ended in a traceback."""
    import builtins
    import sys

    real_import = builtins.__import__
    monkeypatch.delitem(sys.modules, "zstandard", raising=False)
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "zstandard" else real_import(name, *a, **k))
    with pytest.raises(house.UserError, match=r"needs the zstandard package, which is not installed: pip install zstandard"):
        with house.open_text(house.REPO_DIR / "embedded" / "hellaswag" / "hellaswag_val.jsonl.zst"):
            pass


def test_data_hub_reads_the_cached_sample(monkeypatch, tmp_path):
    cached = tmp_path / "fineweb-edu-sample.jsonl"
    cached.write_text('{"text": "cached"}\n')
    monkeypatch.setattr(house.sources, "FINEWEB_CACHE", cached)
    monkeypatch.setattr(house.sources, "has_internet", lambda *a, **k: pytest.fail("asked the network with a cached sample"))
    assert house.find_tiny_data("hub") == [cached]


def test_data_hub_offline_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(house.sources, "FINEWEB_CACHE", tmp_path / "absent.jsonl")
    monkeypatch.setattr(house.sources, "has_internet", lambda *a, **k: False)
    with pytest.raises(house.UserError, match="--data hub needs the Hugging Face Hub.*drop --data"):
        house.find_tiny_data("hub")


# --- the network, asked through huggingface_hub (no raw socket to huggingface.co) -----------------------------

import socket                      # noqa: E402
import subprocess                  # noqa: E402
import sys                         # noqa: E402
import threading                   # noqa: E402
import time                        # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer   # noqa: E402

from helpers import REPO_DIR       # noqa: E402


@pytest.fixture
def http_server():
    """A real local HTTP server that records the request lines it gets (a Hub mirror, or a proxy)."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self):
            seen.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def forbid_raw_sockets_to_the_hub(monkeypatch):
    real = socket.getaddrinfo

    def getaddrinfo(host, *a, **k):
        assert "huggingface.co" not in str(host), "asked huggingface.co directly, not through HF_ENDPOINT"
        return real(host, *a, **k)

    real_connect = socket.create_connection

    def create_connection(address, *a, **k):
        assert "huggingface.co" not in str(address[0]), "opened a socket to huggingface.co"
        return real_connect(address, *a, **k)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)


def test_hf_hub_offline_means_no_call_at_all(monkeypatch):
    from huggingface_hub import constants, utils

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(utils, "get_session", lambda: pytest.fail("the Hub was asked while offline"))
    forbid_raw_sockets_to_the_hub(monkeypatch)
    assert house.has_internet() is False
    assert house.has_internet("raw.githubusercontent.com") is False


def test_has_internet_asks_the_library_endpoint_a_mirror(monkeypatch, http_server):
    from huggingface_hub import constants

    url, seen = http_server
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", url)          # what HF_ENDPOINT=... sets
    forbid_raw_sockets_to_the_hub(monkeypatch)
    assert house.has_internet() is True
    assert seen == ["HEAD /"]


def test_has_internet_goes_through_the_proxy_the_user_set(http_server):
    """HF_ENDPOINT names a host that does not resolve: only HTTP_PROXY can answer, and it does."""
    proxy, seen = http_server
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://hub-mirror.invalid", "HTTP_PROXY": proxy,
           "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
    result = subprocess.run([sys.executable, "-c", "import house; print(house.has_internet())"], cwd=REPO_DIR, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "True", result.stderr[-2000:]
    assert seen == ["HEAD http://hub-mirror.invalid/"]


def test_connection_error_on_data_hub_is_one_line_quickly(monkeypatch, tmp_path):
    import httpx2
    from huggingface_hub import constants, utils

    class NoNetwork:
        def head(self, url, timeout):
            raise httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(utils, "get_session", lambda: NoNetwork())
    monkeypatch.setattr(house.sources, "fetch_fineweb_sample", lambda *a, **k: pytest.fail("tried to download while offline"))
    monkeypatch.setattr(house.sources, "FINEWEB_CACHE", tmp_path / "absent.jsonl")
    started = time.perf_counter()
    with pytest.raises(house.UserError, match="cannot be reached"):
        house.find_tiny_data("hub")
    assert time.perf_counter() - started < 5


def test_download_failing_after_the_probe_is_one_line(monkeypatch, tmp_path):
    import httpx2

    def fails(*a, **k):
        raise httpx2.ProxyError("407 Proxy Authentication Required")

    monkeypatch.setattr(house.sources, "has_internet", lambda *a, **k: True)
    monkeypatch.setattr(house.sources, "fetch_fineweb_sample", fails)
    monkeypatch.setattr(house.sources, "FINEWEB_CACHE", tmp_path / "absent.jsonl")
    with pytest.raises(house.UserError, match="could not download the fineweb-edu sample .ProxyError: 407"):
        house.find_tiny_data("hub")


def test_fineweb_sample_is_read_at_the_pinned_revision(monkeypatch, tmp_path):
    import huggingface_hub
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["one", "two"]}), tmp_path / "sample.parquet")
    opened = []

    class FakeFS:
        def open(self, path, mode="rb", revision=None):
            opened.append((path, revision))
            return open(tmp_path / "sample.parquet", mode)

    monkeypatch.setattr(huggingface_hub, "HfFileSystem", FakeFS)
    out = house.fetch_fineweb_sample(cache_dir=tmp_path / "cache")
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == ["one", "two"]
    assert opened == [(f"datasets/{house.sources.FINEWEB_REPO}/{house.sources.FINEWEB_SAMPLE_FILE}", house.HUB_REVISIONS[house.sources.FINEWEB_REPO])]


def test_the_tests_never_use_the_repos_own_out_folder():
    """conftest points house.OUT_DIR (every default --out, and what 05/06 read by default) at a temporary folder."""
    import house

    assert house.OUT_DIR != house.REPO_DIR / "out" and not house.OUT_DIR.is_relative_to(house.REPO_DIR)
    assert lesson("06_eval").DEFAULT_CHECKPOINT.is_relative_to(house.OUT_DIR)
    assert lesson("05_train").DEFAULT_DATA_DIR.is_relative_to(house.OUT_DIR.resolve())


def test_run_lesson_prints_through_python_so_a_notebook_cell_shows_it(capsys):
    """05 runs 01 and 04 as subprocesses (house.runs.run_lesson): what they print comes through this process's
    sys.stdout and sys.stderr, which a Jupyter cell (or contextlib.redirect_stdout) captures; a child writing
    to the terminal directly would bypass them. capsys sees only what passes through Python."""
    from house.runs import run_lesson

    run_lesson("01_tokenizer.py", "--help")
    out = capsys.readouterr().out
    assert out.startswith("running: python 01_tokenizer.py --help\nusage: 01_tokenizer.py"), out[:300]
    with pytest.raises(house.UserError, match=r"python 01_tokenizer.py --preset nope failed \(see above\)"):
        run_lesson("01_tokenizer.py", "--preset", "nope")
    captured = capsys.readouterr()
    assert captured.out == "running: python 01_tokenizer.py --preset nope\n"
    assert captured.err.startswith("error: argument --preset: invalid choice: 'nope'"), captured.err


def test_progress_in_a_log_is_a_line_every_30_s_and_the_last(monkeypatch):
    """house.progress on output that is not a terminal: plain lines, never a redraw ("\\r"), none in between
    before 30 s have passed (even with set_postfix each step and a mininterval meant for terminals)."""
    import io

    log = io.StringIO()
    bar = house.progress(total=500, unit="step", file=log, mininterval=1.0, dynamic_ncols=True)
    for _ in range(500):
        bar.set_postfix(loss="1.000", refresh=False)
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2, lines
    assert lines[0].startswith("  0%|") and lines[1].startswith("100%|") and "500/500" in lines[1] and "loss=1.000" in lines[1]
