"`sherlock-instruct score` through the real console script: course numbers and clean errors on bad input."
import json, shutil, subprocess, sys
from pathlib import Path
import pytest

REFERENCE = {'gpt2': (0.0555, 0.1450, 0.0726), 'pretrained_gpt2': (0.1013, 0.1862, 0.1257),
             'instruct_gpt2': (0.0248, 0.1795, 0.0419)}
SEP = '-' * 60


def cli(*args):
    exe = Path(sys.executable).parent/'sherlock-instruct'
    exe = str(exe) if exe.exists() else shutil.which('sherlock-instruct')
    assert exe, 'the sherlock-instruct console script is not installed: pip install -e .'
    return subprocess.run([exe, 'score', *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize('name', REFERENCE)
def test_reference_numbers(data_dir, name):
    f = data_dir/'reference_answers'/f'{name}_answers.txt'
    for extra in ([], ['--questions', data_dir/'questions'/'questions_sherlock.json']):
        r = cli(f, '--json', *extra)
        assert r.returncode == 0, r.stderr
        s = json.loads(r.stdout)
        assert s['n'] == 50
        assert tuple(round(s[k], 4) for k in ('precision', 'recall', 'f1')) == REFERENCE[name]
        for k in ('exact_match', 'f1_aliases', 'exact_match_aliases', 'precision_aliases', 'recall_aliases'):
            assert 0 <= s[k] <= 1
            assert s['ci'][k][0] <= s[k] <= s['ci'][k][1]
        assert s['f1_aliases'] >= s['f1']


def test_text_and_verbose(tmp_path):
    f = tmp_path/'answers.txt'
    f.write_text(f'Q: Which hat?\nA: A deerstalker\nExpected:A deerstalker.\n{SEP}\nQ: Who?\nA: nobody\nknows\nExpected:Doyle.\n{SEP}\n')
    r = cli(f, '--verbose')
    assert r.returncode == 0, r.stderr
    assert 'f1_aliases' in r.stdout and 'nobody knows' in r.stdout
    s = json.loads(cli(f, '--json', '--verbose').stdout)
    assert s['n'] == 2 and s['exact_match'] == 0.5 and len(s['rows']) == 2


def _error(r, name):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error:') and name in lines[0], r.stderr
    assert 'Traceback' not in r.stderr


@pytest.mark.parametrize('body', ['', '\n  \n', 'A: no question\nExpected:x\n', f'Q: q\nA: a\n{SEP}\n', '{"answer": 1}\n'])
def test_bad_answers_file(tmp_path, body):
    f = tmp_path/'bad_answers.txt'
    f.write_text(body)
    _error(cli(f), 'bad_answers.txt')


def test_missing_file(tmp_path):
    _error(cli(tmp_path/'no_such_answers.txt'), 'no_such_answers.txt')


def test_wrong_question_count(tmp_path):
    a, q = tmp_path/'answers.jsonl', tmp_path/'three_questions.json'
    a.write_text(''.join(json.dumps({'question': f'q{i}', 'answer': 'x'}) + '\n' for i in range(2)))
    q.write_text(json.dumps([{'question': f'q{i}', 'answer': 'x'} for i in range(3)]))
    _error(cli(a, '--questions', q), 'three_questions.json')
    _error(cli(a), 'answers.jsonl')   # no expected answers and no --questions
