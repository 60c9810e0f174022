"""The `smoke` chain end to end through papermill, via the `sherlock-instruct run` command.

One run is killed (SIGKILL) while it trains the instruct model, then resumed with one changed generation
parameter: the resume must redo the killed step, rerun the changed step and everything that depends on it, skip
the rest, and finish the run. Further reruns skip everything, refuse changed parameters on a finished run unless
--force, and bad input fails before any work starts.
"""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest

from sherlock_instruct.analysis import ROWS
from sherlock_instruct.cli import main

CLI = [str(Path(sys.executable).with_name('sherlock-instruct'))]
if not Path(CLI[0]).exists(): CLI = [sys.executable, '-m', 'sherlock_instruct.cli']
KILL_AT = '02_finetune-instruct'
ANSWER = lambda *rows: [f'{nb}-{r}' for r in rows for nb in ('03_generate', '04_evaluate')]
STEPS = ['00_load-data', *ANSWER('base', 'base_fewshot', 'base_open'), '02_finetune-domain', *ANSWER('domain', 'domain_open'),
         '02_finetune-instruct', *ANSWER('instruct', 'instruct_open'), '05_analysis-report']
CHANGED = ANSWER('domain')   # the resume changes generate.domain.max_new_tokens: the domain row's answers and scores


def cli(*args, timeout=600):
    env = {**os.environ, 'TOKENIZERS_PARALLELISM': 'false'}
    return subprocess.run([*CLI, 'run', *args], capture_output=True, text=True, timeout=timeout, env=env)


def manifest(run):
    return json.loads((run/'manifest.json').read_text())


def last(run):
    return manifest(run)['history'][-1]


@pytest.fixture(scope='module')
def smoke(data_dir, tmp_path_factory):
    "A smoke run killed during KILL_AT, then resumed with generate.domain.max_new_tokens changed."
    keep = os.environ.get('SHERLOCK_SMOKE_RUN')   # .ci/test keeps the run there: the docs check renders its report
    run = Path(keep).absolute() if keep else tmp_path_factory.mktemp('chain')/'run'
    if keep and run.exists():
        assert (run/'manifest.json').exists(), f'SHERLOCK_SMOKE_RUN={keep} is not a run folder: not removing it'
        shutil.rmtree(run)
    args = ['--preset', 'smoke', '--out', str(run), '--data-dir', str(data_dir)]
    t0 = time.time()
    proc = subprocess.Popen([*CLI, 'run', *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, 'TOKENIZERS_PARALLELISM': 'false'})
    try:
        while proc.poll() is None and time.time() - t0 < 400:
            m = json.loads((run/'manifest.json').read_text()) if (run/'manifest.json').exists() else {}
            if m.get('steps', {}).get(KILL_AT, {}).get('status') == 'running': break
            time.sleep(0.5)
        time.sleep(3)   # inside the step: kernel started, training under way
        assert proc.poll() is None, f'the run ended before it could be killed:\n{proc.stdout.read()}'
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None: proc.kill()
        first_output = proc.communicate()[0]
    killed = manifest(run)
    t1 = time.time()
    resumed = cli(*args, '-p', 'generate.domain.max_new_tokens=6')
    return dict(run=run, args=args, first_output=first_output, killed=killed, resumed=resumed,
                times=dict(until_kill=t1 - t0, resume=time.time() - t1))


def test_kill_and_resume(smoke):
    run, killed, r = smoke['run'], smoke['killed'], smoke['resumed']
    assert f'[1/{len(STEPS)}] 00_load-data: running' in smoke['first_output']        # live progress
    assert killed['status'] == 'running' and killed['steps'][KILL_AT]['status'] == 'running'
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    h = last(run)
    done = STEPS[:STEPS.index(KILL_AT)]                                   # complete before the kill
    assert h['skipped'] == [s for s in done if s not in CHANGED]         # untouched by the change
    assert h['executed'] == CHANGED + STEPS[STEPS.index(KILL_AT):]       # changed, then the killed step and the rest
    m = manifest(run)
    assert m['status'] == 'complete' and all(m['steps'][s]['status'] == 'complete' for s in STEPS)
    assert m['steps']['03_generate-domain']['parameters']['max_new_tokens'] == 6
    print(f"smoke chain: {smoke['times']['until_kill']:.0f} s until the kill, {smoke['times']['resume']:.0f} s to resume")


def test_outputs(smoke):
    run = smoke['run']
    m = manifest(run)
    for s in STEPS:
        rec = m['steps'][s]
        assert {'parameters', 'inputs', 'outputs', 'key', 'wall_s', 'status'} <= set(rec)
        assert (run/rec['executed_notebook']).exists()
    assert m['steps']['02_finetune-domain']['inputs'] == {'$DATA/gutenberg/2097.txt': m['steps']['02_finetune-domain']['inputs']['$DATA/gutenberg/2097.txt']}
    metrics = json.loads((run/'metrics.json').read_text())
    assert sorted(metrics['stages']) == sorted(ROWS)
    assert {st['mode'] for st in metrics['stages'].values()} == {'closed', 'open'}
    for st in metrics['stages'].values():
        assert {'precision', 'recall', 'f1', 'exact_match', 'f1_aliases', 'ci'} <= set(st) and st['n'] == 50
    for stage in metrics['stages']:
        assert {p.name for p in (run/stage).iterdir()} >= {'answers.txt', 'answers.jsonl', 'scores.json'}
    for model in ('domain', 'instruct'):
        assert (run/'models'/model/'model.safetensors').exists() and (run/'models'/model/'training_log.json').exists()
    assert json.loads((run/'params.json').read_text())['preset'] == 'smoke'
    html = (run/'report.html').read_text()
    assert 'data:image/png;base64,' in html and 'Paired bootstrap' in html and '0.0726' in html
    assert '| instruct |' in (run/'report.md').read_text()
    assert (run/'figures'/'f1.png').exists()
    assert not (run/'.lock').exists()


def test_rerun_skips_everything(smoke):
    run = smoke['run']
    t0 = time.time()
    r = cli(*smoke['args'], '-p', 'generate.domain.max_new_tokens=6')
    assert r.returncode == 0, r.stderr
    assert last(run)['skipped'] == STEPS and last(run)['executed'] == []
    assert all(manifest(run)['steps'][s]['last_action'] == 'skipped' for s in STEPS)
    assert time.time() - t0 < 60


def test_finished_run_is_not_overwritten(smoke):
    run = smoke['run']
    before = (run/'manifest.json').read_text()
    r = cli(*smoke['args'], '-p', 'instruct.lr=0.002')                  # changed parameter, no --force
    assert r.returncode == 2 and 'holds a finished run' in r.stderr and '02_finetune-instruct' in r.stderr and '--force' in r.stderr
    assert (run/'manifest.json').read_text() == before


def test_force_reruns_and_keeps_other_files(smoke):
    run = smoke['run']
    (run/'notes.txt').write_text('mine')
    r = cli(*smoke['args'], '-p', 'generate.domain.max_new_tokens=6', '--force', '--until', '00_load-data')
    assert r.returncode == 0, r.stderr
    assert last(run)['executed'] == ['00_load-data'] and manifest(run)['status'] == 'complete'
    assert (run/'notes.txt').read_text() == 'mine'


def test_failing_stage_names_notebook_and_cell(data_dir, tmp_path):
    r = cli('--preset', 'smoke', '--out', str(tmp_path/'run'), '--data-dir', str(data_dir), '-p', 'model=/no/such/model')
    assert r.returncode == 2
    assert 'step 00_load-data failed: SherlockError' in r.stderr and '00_load.ipynb' in r.stderr and 'the cell that starts' in r.stderr
    m = manifest(tmp_path/'run')
    assert m['status'] == 'failed' and m['steps']['00_load-data']['status'] == 'failed'


@pytest.mark.parametrize('extra, message', [
    (['--preset', 'nope'], 'unknown preset'),
    (['-p', 'instruct.lrr=1'], "unknown parameter 'instruct.lrr'"),
    (['-p', 'domain.max_steps=two'], 'expected an integer'),
    (['-p', 'lr'], 'expected key=value'),
])
def test_bad_input_fails_before_work(extra, message, data_dir, tmp_path, capsys):
    out = tmp_path/'run'
    assert main(['run', '--preset', 'smoke', '--out', str(out), '--data-dir', str(data_dir), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_data_and_bad_out(data_dir, tmp_path, capsys):
    partial = tmp_path/'data'
    shutil.copytree(data_dir/'questions', partial/'questions')
    assert main(['run', '--preset', 'smoke', '--out', str(tmp_path/'run'), '--data-dir', str(partial)]) == 2
    err = capsys.readouterr().err
    assert 'missing 2 file(s)' in err and 'alpaca_data.json' in err and '2097.txt' in err and not (tmp_path/'run').exists()
    (tmp_path/'file').write_text('x')
    assert main(['run', '--preset', 'smoke', '--out', str(tmp_path/'file'), '--data-dir', str(data_dir)]) == 2
    assert 'is a file' in capsys.readouterr().err


@pytest.mark.parametrize('preset', ['smoke', 'cpu', 'colab'])
def test_presets_match_the_notebooks(preset, data_dir, tmp_path, capsys):
    "Every preset key is a parameter of its notebook (prepare_run checks it), with no work done."
    assert main(['run', '--preset', preset, '--out', str(tmp_path/'run'), '--data-dir', str(data_dir), '--dry-run']) == 0
    assert '05_analysis-report' in capsys.readouterr().out and not (tmp_path/'run').exists()


def test_stage_sections_are_self_contained():
    "A run step skips the demonstration cells, so a Stage section must not read names only they define."
    from sherlock_instruct.run import repo_nbs, stage_undefined_names
    bad = {nb.name: names for nb in sorted(repo_nbs().glob('0[0-5]_*.ipynb')) if (names := stage_undefined_names(nb))}
    assert not bad, f'Stage sections read names defined only in skipped cells: {bad}'


def test_colab_preset_plans_without_a_data_folder(tmp_path, monkeypatch, capsys):
    "The colab preset with no data folder: the first step downloads, the later steps read the cached files (no network here)."
    import sherlock_instruct.run as R
    from sherlock_instruct.load import download_paths
    monkeypatch.setenv('SHERLOCK_CACHE', str(tmp_path/'cache'))
    monkeypatch.delenv('SHERLOCK_DATA', raising=False)
    monkeypatch.setattr(R, 'resolve_data_dir', lambda *a, **k: None)
    plan = R.prepare_run('colab', tmp_path/'run')
    steps = {s['name']: s for s in plan['steps']}
    assert list(steps) == STEPS
    cached = download_paths(plan['params']['books'])
    load = steps['00_load-data']
    assert load['parameters']['download'] is True and load['parameters']['questions'] == '' and load['inputs'] == []
    assert set(load['outputs']) >= {str(cached['questions']), str(cached['alpaca']), *map(str, cached['books'].values())}
    for s in ('base', 'domain', 'instruct'):
        assert steps[f'03_generate-{s}']['parameters']['questions'] == str(cached['questions'])
        assert steps[f'04_evaluate-{s}']['parameters']['questions'] == str(cached['questions'])
    assert steps['02_finetune-domain']['parameters']['data_dir'] == '' and str(cached['alpaca']) in steps['02_finetune-instruct']['inputs']
    assert main(['run', '--preset', 'colab', '--out', str(tmp_path/'run'), '--dry-run']) == 0
    assert '05_analysis-report' in capsys.readouterr().out and not (tmp_path/'run').exists()
    assert not (tmp_path/'cache'/'questions_sherlock.json').exists()   # nothing was downloaded
    assert main(['run', '--preset', 'colab', '--out', str(tmp_path/'run'), '-p', 'download=false', '--dry-run']) == 2
    assert '--data-dir' in capsys.readouterr().err
