"""No training example and no prompt contains a course answer next to its question's key words.

The course questions are our test set. `leaked_questions` (04_evaluate) flags a text that holds a course answer (or
one of its aliases) with at least half of that question's key words within 30 words. These tests run it over the
instruction records of each preset's recipe (Alpaca as filtered, the shipped extra files, the records made from the
books), our development set and the prompt texts, and show first that it flags a planted leak, so they can fail.
"""
import json
import pytest
from sherlock_instruct.load import load_entries, package_data
from sherlock_instruct.evaluate import leak_probes, leaked_questions
from sherlock_instruct.retrieve import OPEN_BOOK_SHOT, OPEN_BOOK_HEAD, OPEN_BOOK_INSTRUCTION
from sherlock_instruct.prompts import FEWSHOT_EXAMPLES, SHORT_INSTRUCTION
from sherlock_instruct.run import load_preset
from sherlock_instruct.finetune import resolve_params, instruct_records, drop_leaks, record_text


@pytest.fixture(scope='module')
def course(data_dir): return load_entries(data_dir/'questions'/'questions_sherlock.json')


@pytest.fixture(scope='module')
def probes(course): return leak_probes(course)


def test_check_flags_a_planted_leak(data_dir, course, probes):
    q = course[5]
    planted = {'instruction': 'Answer the question.', 'input': q['question'], 'output': q['answer']}
    assert q['question'] in leaked_questions(record_text(planted), probes)
    assert leaked_questions("The weather in Paris was fine and the trains ran on time.", probes) == []
    clean = {'instruction': 'Say yes.', 'input': '', 'output': 'Yes.'}
    assert drop_leaks([planted, clean], data_dir) == [clean]


@pytest.mark.parametrize('preset', ['cpu', 'colab'])
def test_training_records_do_not_leak(data_dir, probes, preset):
    ins = load_preset(preset)['instruct']
    keys = ('alpaca_count', 'max_output_words', 'extra_data', 'book_qa', 'book_qa_passages', 'unanswerable')
    train, val = instruct_records(resolve_params(stage='instruct', data_dir=str(data_dir), **{k: ins[k] for k in keys if k in ins}))
    assert len(train) >= ins['alpaca_count'] + ins.get('book_qa', 0) + ins.get('unanswerable', 0)
    bad = [(i, q) for i, r in enumerate(train + val) if (q := leaked_questions(record_text(r), probes))]
    assert bad == [], f"{len(bad)} training records contain a course answer next to its question: {bad[:5]}"


def test_dev_set_and_prompts_do_not_leak(probes):
    dev = json.loads(package_data('dev_questions.json').read_text())
    texts = [f"{d['question']}\n{d['answer']}\n{d.get('evidence', '')}" for d in dev]
    texts += [f"{q}\n{a}" for q, a in FEWSHOT_EXAMPLES] + [SHORT_INSTRUCTION, OPEN_BOOK_SHOT, OPEN_BOOK_HEAD, OPEN_BOOK_INSTRUCTION]
    bad = [(t[:80], q) for t in texts if (q := leaked_questions(t, probes))]
    assert bad == [], bad
