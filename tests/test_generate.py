"`sherlock-instruct generate` end to end on the tiny model, then `score` on its output; bad inputs exit 2 with `error:`."
import json, os, subprocess
from pathlib import Path
import pytest
from sherlock_instruct.cli import main

QUESTIONS = [{"question": "What colour is a ripe banana?", "answer": "Yellow."},
             {"question": "How many days are in a week?", "answer": "Seven."},
             {"question": "What do bees make?", "answer": "Honey."}]


@pytest.fixture
def one_thread():
    "The tiny model's small matrices run fastest on one thread, above all on a busy machine."
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def qfile(tmp_path):
    f = tmp_path / "q.json"
    f.write_text(json.dumps(QUESTIONS), encoding="utf-8")
    return f


def _cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["sherlock-instruct", *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def test_generate_then_score(qfile, tmp_path):
    out = tmp_path / "ans"
    r = _cli("generate", "--model", "tiny", "--questions", qfile, "--out", out, "--max-new-tokens", "6", "--batch-size", "2")
    assert r.returncode == 0, r.stderr
    assert "3 answers" in r.stdout
    txt = (out / "answers.txt").read_text(encoding="utf-8")
    assert txt.startswith("Q: What colour is a ripe banana?\nA: ") and txt.count("-" * 60 + "\n") == 3
    recs = [json.loads(l) for l in (out / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["expected"] for r in recs] == ["Yellow.", "Seven.", "Honey."]
    assert {r["stop_reason"] for r in recs} <= {"eos", "stop_string", "length"} and recs[0]["settings"]["max_new_tokens"] == 6
    r = _cli("generate", "--model", "tiny", "--questions", qfile, "--out", out)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "--force" in r.stderr
    try: from sherlock_instruct.evaluate import score_command  # noqa: F401
    except ImportError: pytest.skip("the score command is not available yet")
    alone = tmp_path / "txt_only" / "answers.txt"  # the course text format alone, without the jsonl beside it
    alone.parent.mkdir()
    alone.write_text(txt, encoding="utf-8")
    for f in (out / "answers.txt", alone):
        r = _cli("score", f, "--resamples", "50")
        assert r.returncode == 0, r.stderr
        assert "n = 3" in r.stdout


def test_api_batched_equals_one_at_a_time(tiny, one_thread):
    from sherlock_instruct.generate import generate_records
    tok, model = tiny
    batched = generate_records(model, tok, QUESTIONS, "course", batch_size=2, max_new_tokens=5, stop=["a"], progress=False)
    alone = [generate_records(model, tok, [q], "course", batch_size=1, max_new_tokens=5, stop=["a"], progress=False)[0]
             for q in QUESTIONS]
    key = lambda rs: [(r["answer"], r["new_tokens"], r["stop_reason"]) for r in rs]
    assert key(batched) == key(alone)


def test_stage_on_course_questions(data_dir, tmp_path, one_thread):
    from sherlock_instruct.generate import GenerateParams, generate_stage
    from sherlock_instruct.read import ReadParams
    p = GenerateParams(stage="base", model="tiny", out=str(tmp_path / "base"), prompt="course", batch_size=25, max_new_tokens=3)
    s = generate_stage(p, ReadParams())
    assert s["n"] == 50 and sum(s["stop_reasons"].values()) == 50
    assert Path(s["questions"]) == data_dir / "questions" / "questions_sherlock.json"
    assert (tmp_path / "base" / "answers.jsonl").exists()


@pytest.mark.parametrize("extra,message", [
    (["--batch-size", "0"], "batch_size"),
    (["--max-new-tokens", "0"], "max_new_tokens"),
    (["--max-new-tokens", "600"], "context"),
    (["--prompt", "nope"], "unknown prompt"),
    (["--questions", "{tmp}/missing.json"], "does not exist"),
    (["--questions", "{tmp}/empty.json"], "empty list"),
    (["--out", "{tmp}/q.json/sub"], "cannot write"),
    (["--guess", "4"], "reading one passage at a time"),                           # closed book: nothing to read
    (["--passages", "2", "--fit", "0.5"], "reading one passage at a time"),       # passages read together
])
def test_bad_input_exits_2(qfile, tmp_path, capsys, one_thread, extra, message):
    (tmp_path / "empty.json").write_text("[]")
    args = ["generate", "--model", "tiny", "--questions", str(qfile), "--out", str(tmp_path / "o")]
    args += [a.format(tmp=tmp_path) for a in extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err, err
