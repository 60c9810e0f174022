"""The `colab` preset's whole chain on this CPU, with the tiny stand-in model and small budgets (its own file, so that
`pytest -n 2 --dist loadfile` runs it beside the smoke chain of test_chain.py)."""
import json, time

from test_chain import cli, manifest


COLAB_SMALL = ['-p', 'model=tiny', '-p', 'domain.max_steps=2', '-p', 'domain.max_train_tokens=4096', '-p', 'instruct.max_steps=2',
               '-p', 'instruct.alpaca_count=50', '-p', 'instruct.book_qa=20', '-p', 'instruct.unanswerable=10',
               '-p', 'generate.open_book.passages=2', '-p', 'generate.open_book.guess=1']   # the reading as `smoke` does it


def test_colab_preset_end_to_end_on_cpu(data_dir, tmp_path):
    "The colab preset's whole chain on CPU with the tiny stand-in and small budgets: every planned answer row is scored, the report built."
    run = tmp_path/'run'
    t0 = time.time()
    r = cli('--preset', 'colab', '--data-dir', str(data_dir), '--out', str(run), *COLAB_SMALL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    m = manifest(run)
    assert m['status'] == 'complete' and all(s['status'] == 'complete' for s in m['steps'].values())
    assert json.loads((run/'params.json').read_text())['preset'] == 'colab'
    rows = [s.split('-', 1)[1] for s in m['steps'] if s.startswith('03_generate-')]   # the answer rows this run planned
    assert rows and all(f'04_evaluate-{row}' in m['steps'] for row in rows)
    stages = json.loads((run/'metrics.json').read_text())['stages']
    from sherlock_instruct.load import load_entries
    n = len(load_entries(data_dir/'questions'/'questions_sherlock.json'))
    for row in rows:
        assert row in stages, f'metrics.json has no summary for the answer row {row!r} (it has {sorted(stages)})'
        st = stages[row]
        assert {'precision', 'recall', 'f1', 'exact_match', 'ci'} <= set(st) and st['n'] == n, (row, sorted(st))
        assert all(0 <= st[k] <= 1 for k in ('precision', 'recall', 'f1', 'exact_match'))
        assert {p.name for p in (run/row).iterdir()} >= {'answers.jsonl', 'scores.json'}
    for model in ('domain', 'instruct'):
        assert (run/'models'/model/'training_log.json').exists()
        assert json.loads((run/'models'/model/'training_log.json').read_text())['global_step'] == 2
    html = (run/'report.html').read_text()
    assert html.strip() and all(row in html for row in rows)
    assert not (run/'.lock').exists()
    print(f'colab chain ({len(rows)} answer rows, tiny model): {time.time() - t0:.0f} s')
