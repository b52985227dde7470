"""house.py: the conventions every lesson relies on."""
import json
import os

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


def test_connection_error_falls_back_to_the_course_corpus_quickly(monkeypatch):
    require_shared("corpus")
    import httpx2
    from huggingface_hub import constants, utils

    class NoNetwork:
        def head(self, url, timeout):
            raise httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(utils, "get_session", lambda: NoNetwork())
    monkeypatch.setattr(house, "fetch_fineweb_sample", lambda *a, **k: pytest.fail("tried to download while offline"))
    started = time.perf_counter()
    assert [p.name for p in house.find_tiny_data(None)] == ["python-docs.jsonl", "shakespeare.jsonl"]
    assert time.perf_counter() - started < 5


def test_download_failing_after_the_probe_falls_back_with_a_note(monkeypatch, capsys):
    require_shared("corpus")
    import httpx2

    def fails(*a, **k):
        raise httpx2.ProxyError("407 Proxy Authentication Required")

    monkeypatch.setattr(house, "has_internet", lambda *a, **k: True)
    monkeypatch.setattr(house, "fetch_fineweb_sample", fails)
    assert [p.name for p in house.find_tiny_data(None)] == ["python-docs.jsonl", "shakespeare.jsonl"]
    assert "ProxyError" in capsys.readouterr().err


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
    assert opened == [(f"datasets/{house.FINEWEB_REPO}/{house.FINEWEB_SAMPLE_FILE}", house.HUB_REVISIONS[house.FINEWEB_REPO])]


def test_the_tests_never_use_the_repos_own_out_folder():
    """conftest points house.OUT_DIR (every default --out, and what 05/06 read by default) at a temporary folder."""
    import house

    assert house.OUT_DIR != house.REPO_DIR / "out" and not house.OUT_DIR.is_relative_to(house.REPO_DIR)
    assert lesson("06_eval").DEFAULT_CHECKPOINT.is_relative_to(house.OUT_DIR)
    assert lesson("05_train").DEFAULT_DATA_DIR.is_relative_to(house.OUT_DIR.resolve())
