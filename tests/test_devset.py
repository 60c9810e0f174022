"""Package data checks: the Sherlock development set (dev_questions.json) and the general-knowledge short-answer set (short_qa.json).

The dev set must be verifiable against the books and must not mirror the course evaluation questions;
short_qa must teach only the short-answer style, with no Sherlock Holmes content.
"""
import importlib.util, json, re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'sherlock_instruct'/'data'
_spec = importlib.util.spec_from_file_location('check_devset', ROOT/'bench'/'check_devset.py')
check_devset = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_devset)


@pytest.fixture(scope='module')
def dev():
    return check_devset.load_dev(DATA/'dev_questions.json')


@pytest.fixture(scope='module')
def short_qa():
    return json.loads((DATA/'short_qa.json').read_text(encoding='utf-8'))


def test_dev_loads_with_fields(dev):
    assert isinstance(dev, list) and len(dev) >= 60, f'dev set has {len(dev)} items, want >= 60'
    probs = [(i, p) for i, it in enumerate(dev) for p in check_devset.field_problems(it)]
    assert not probs, probs
    assert set(check_devset.BOOKS) <= {it['book'] for it in dev}, 'every course book should have dev questions'
    scopes = {s: sum(it['scope'] == s for it in dev) for s in check_devset.SCOPES}
    assert min(scopes.values()) >= 40, f'each scope needs at least 40 questions: {scopes}'


def test_dev_loads_as_question_file(dev):
    "The dev set is a valid question file for the evaluator (question/answer keys, no repeats)."
    from sherlock_instruct.load import load_entries
    assert len(load_entries(DATA/'dev_questions.json')) == len(dev)
    assert not check_devset.check(dev, {})['dupes']


def _books_dir(data_dir):
    d = Path(data_dir)/'gutenberg'
    if not d.is_dir(): pytest.skip(f'book folder {d} not found')
    return d


def test_dev_evidence_in_books(dev, data_dir):
    _books_dir(data_dir)
    texts = check_devset.load_books(data_dir)
    res = check_devset.check(dev, texts)
    assert not res['errors'], '\n'.join(res['errors'])


def test_dev_answers_supported_by_evidence(dev):
    unsupported = [it['question'] for it in dev if not check_devset.supported(it)]
    assert not unsupported, unsupported


def test_dev_not_like_course_questions(dev, data_dir):
    "No dev question may be (near-)identical to a course question. Only dev text is shown on failure."
    from sherlock_instruct.load import DATA_LAYOUT
    course = Path(data_dir)/DATA_LAYOUT['questions']
    if not course.exists(): pytest.skip(f'course question file {course} not found')
    qs = [e['question'] for e in json.loads(course.read_text(encoding='utf-8'))]
    close = check_devset.course_overlaps(dev, qs, threshold=0.6)
    assert not close, [(dev[i]['question'], s) for i, s in close]


def test_jaccard_helper():
    assert check_devset.jaccard('Who is the dog?', 'who is THE dog') == 1.0
    assert check_devset.jaccard('a b', 'c d') == 0.0
    assert check_devset.course_overlaps([{'question': 'What colour is the sky?'}], ['What colour is the sky today?']) == [(0, 0.833)]


BANNED = re.compile(r'holmes|watson|baker street|conan doyle|moriarty|lestrade', re.I)


def test_short_qa_records(short_qa):
    assert isinstance(short_qa, list) and len(short_qa) >= 300, f'short_qa has {len(short_qa)} records, want >= 300'
    for r in short_qa:
        assert set(r) == {'instruction', 'input', 'output'}, r
        assert all(isinstance(v, str) for v in r.values()), r
        assert r['instruction'].strip() and r['output'].strip() and r['input'] == '', r
        assert len(r['output'].split()) <= 8, r
        assert r['output'].endswith('.'), r
    assert len({r['instruction'] for r in short_qa}) == len(short_qa), 'repeated instructions'


def test_short_qa_has_no_sherlock_content(short_qa):
    hits = [r for r in short_qa if BANNED.search(r['instruction'] + ' ' + r['output'])]
    assert not hits, hits
