"Integration checks for sherlock_instruct.load that need a process, a server or the filesystem (the notebook has the rest)."
import functools, hashlib, http.server, json, threading
from pathlib import Path

import pytest
import sherlock_instruct.load as L
from sherlock_instruct.load import (SherlockError, download, load_alpaca, load_books, load_model, load_stage)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    "A fresh, empty cache so nothing is read from (or written to) the real one."
    monkeypatch.setenv("SHERLOCK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def server(tmp_path):
    "An HTTP server on 127.0.0.1 (loopback only) serving tmp_path/www; yields (folder, base URL)."
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_missing_model_folder_names_it(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(SherlockError, match="no_such_model"):
        load_model(str(missing))
    with pytest.raises(SherlockError, match="does not exist"):
        load_model(str(tmp_path / "model.gguf"))


def test_tiny_model_loads_and_runs():
    import torch
    tok, model = load_model("tiny")
    ids = tok("Elementary, my dear Watson.", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    assert tok.pad_token == tok.eos_token == "<|im_end|>"


def test_download_over_http(server, tmp_path):
    www, base = server
    body = b'[{"instruction": "Say hi.", "input": "", "output": "Hi."}]'
    (www / "a.json").write_bytes(body)
    sha = hashlib.sha256(body).hexdigest()
    assert download(f"{base}/a.json", tmp_path / "out" / "a.json", sha256=sha).read_bytes() == body
    with pytest.raises(SherlockError, match="expected " + "f" * 64):
        download(f"{base}/a.json", tmp_path / "bad.json", sha256="f" * 64)
    assert not (tmp_path / "bad.json").exists()
    with pytest.raises(SherlockError, match="404"):
        download(f"{base}/missing.json", tmp_path / "m.json")


def test_load_alpaca_and_books_download_into_cache(server, cache, monkeypatch):
    www, base = server
    recs = [{"instruction": f"Count to {i}.", "input": "", "output": " ".join(map(str, range(1, i + 1)))} for i in range(1, 4)]
    (www / "alpaca.json").write_text(json.dumps(recs))
    assert load_alpaca(url=f"{base}/alpaca.json", count=2) == recs[:2]
    assert len(list(cache.glob("alpaca-*.json"))) == 1
    (www / "1-0.txt").write_bytes(b"\xef\xbb\xbf*** START OF THE PROJECT GUTENBERG EBOOK X ***\r\n\r\nText\r\nhere.\r\n")
    monkeypatch.setattr(L, "gutenberg_url", lambda n: f"{base}/{n}-0.txt")
    assert load_books([1]) == {1: "Text here."}
    (www / "1-0.txt").unlink()
    assert load_books([1]) == {1: "Text here."}  # second time from the cache
    assert (cache / "gutenberg" / "1.txt").exists()


def test_offline_errors_say_what_to_do(cache, monkeypatch):
    with pytest.raises(SherlockError, match=r"No network\?.*path="):
        load_alpaca(url="http://127.0.0.1:9/alpaca_data.json")
    monkeypatch.setattr(L, "gutenberg_url", lambda n: f"http://127.0.0.1:9/{n}-0.txt")
    with pytest.raises(SherlockError, match="--data-dir"):
        load_books([1661])


def test_load_stage_reports_missing_files(tmp_path):
    (tmp_path / "data" / "questions").mkdir(parents=True)
    with pytest.raises(SherlockError) as e:
        load_stage(tmp_path / "run", tmp_path / "data", books=[2097, 1661])
    msg = str(e.value)
    assert "missing 4 file(s)" in msg and "2097.txt" in msg and "1661.txt" in msg and "alpaca_data.json" in msg
    assert not (tmp_path / "run" / "data.json").exists()


def test_load_stage_writes_data_json(data_dir, tmp_path):
    info = load_stage(tmp_path, data_dir, model="tiny", books=[2350], alpaca_count=10)
    saved = json.loads((tmp_path / "data.json").read_text())
    assert saved == info
    assert saved["counts"]["alpaca_records"] == 10 and saved["counts"]["questions"] == 50
    assert set(saved["files"]["books"]) == {"2350"} and len(saved["files"]["alpaca"]["sha256"]) == 64
