#!/usr/bin/env python3
"""Ablation rows: answer our development set with one model/prompt/passages setting and record F1, EM and the 95% CI.

Every lever of the recipe is judged here on the **development set** (`sherlock_instruct/data/dev_questions.json`,
265 questions we wrote from the six books), never on the course questions. The dev set has four scopes, scored
separately: `passage` (134 facts that one passage states), `canon` (46 facts the whole canon knows: characters,
famous objects and sayings), `story` (40 story details asked quiz-style, naming the story) and `generic` (45 everyday
facts of Holmes's world asked in plain words, naming no story: the kind of question retrieval finds hardest, like
many course questions). `--course` adds the course-set score to a row; it is meant for the final recipe only, which
is reported as a test set.

A row is `LABEL=MODEL:PROMPT:PASSAGES:MAX_NEW_TOKENS[:READ[:GUESS:FIT]]` (READ: `together`, the default, `each` or `copy`;
GUESS and FIT: `ReadParams`' `guess` passages and `fit` weight, 0 = off), for example

    python bench/ablate.py \\
        --row "instruct, open book (1 passage)=runs/A/models/instruct:alpaca_short:1:16" \\
        --lever "book QA data" --note "instruct trained with 400 book_qa records"

Rows are merged into the results file by label, written atomically: a rerun of a label replaces the scopes it
scored (`--scopes`) and keeps the others.
"""
from __future__ import annotations
import argparse, json, sys, time
from pathlib import Path
from sherlock_instruct.analysis import DEV_SCOPES   # one list of scopes, shared with the ablation table and check_devset

ROOT = Path(__file__).resolve().parents[1]


def parse_row(text:str) -> dict:
    "LABEL=MODEL:PROMPT:PASSAGES:MAX_NEW_TOKENS[:READ[:GUESS:FIT]] -> dict (MODEL may not contain ':')."
    label, _, spec = text.partition('=')
    parts = spec.split(':')
    if not label or len(parts) not in (4, 5, 7) or (parts[4:] and parts[4] not in ('together', 'each', 'copy')):
        sys.exit(f"error: bad --row {text!r}: use LABEL=MODEL:PROMPT:PASSAGES:MAX_NEW_TOKENS[:together|each|copy[:GUESS:FIT]]")
    row = dict(label=label, model=parts[0], prompt=parts[1], passages=int(parts[2]), max_new_tokens=int(parts[3]),
               read=(parts[4:] or ['together'])[0])
    return row | ({'guess': int(parts[5]), 'fit': float(parts[6])} if parts[5:] else {})


def score_set(model, tok, entries, spec:dict, index) -> dict:
    "Answer `entries` as the row `spec` says and score them: F1/EM means, F1 CI, seconds."
    from sherlock_instruct.generate import AnswerParams
    from sherlock_instruct.read import ReadParams, answer_questions, check_reading
    from sherlock_instruct.evaluate import score_answers
    t = time.perf_counter()
    a = AnswerParams(prompt=spec['prompt'], max_new_tokens=spec['max_new_tokens'])
    r = check_reading(ReadParams(passages=spec['passages'], read=spec['read'], guess=spec.get('guess', 0),
                                 fit=spec.get('fit', 0.0)))
    recs = answer_questions(model, tok, entries, a, r, index, progress=False)
    s = score_answers([(r['index'], r['question'], r['answer'], r['expected']) for r in recs])
    return dict(n=s['n'], f1=round(s['f1'], 4), f1_ci=[round(x, 4) for x in s['ci']['f1']], em=round(s['exact_match'], 4),
                f1_aliases=round(s.get('f1_aliases', s['f1']), 4), seconds=round(time.perf_counter() - t, 1),
                examples=[r['answer'] for r in recs[:3]], prompt=recs[0]['prompt'])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--results', default=str(ROOT/'sherlock_instruct'/'data'/'ablation_cpu.json'), help='JSON file of rows to create or update (default: the shipped ablation_cpu.json)')
    ap.add_argument('--row', action='append', required=True, help='LABEL=MODEL:PROMPT:PASSAGES:MAX_NEW_TOKENS[:READ]')
    ap.add_argument('--scopes', default=','.join(DEV_SCOPES), help=f"dev-set scopes to score (default: all: {','.join(DEV_SCOPES)})")
    ap.add_argument('--lever', default='', help='which lever this row turns on/off (for the table)')
    ap.add_argument('--note', default='', help='how the model was trained (for the table)')
    ap.add_argument('--course', action='store_true', help='also score the course questions (final recipe only)')
    ap.add_argument('--data-dir', default='', help='data folder (default: found automatically)')
    a = ap.parse_args(argv)
    from sherlock_instruct.load import load_entries, load_model, package_data, resolve_data_dir, write_json
    from sherlock_instruct.retrieve import BookIndex
    data = resolve_data_dir(a.data_dir)
    dev = json.loads(package_data('dev_questions.json').read_text(encoding='utf-8'))
    scopes = [s for s in a.scopes.split(',') if s]
    if not scopes or not set(scopes) <= set(DEV_SCOPES): sys.exit(f"error: --scopes {a.scopes!r}: use a comma-separated subset of {', '.join(DEV_SCOPES)}")
    index = BookIndex.from_books(data_dir=data)
    res = Path(a.results)
    for spec in map(parse_row, a.row):
        tok, model = load_model(spec['model'])
        scores = {s: score_set(model, tok, [e for e in dev if e['scope'] == s], spec, index) for s in scopes}
        if a.course: scores['course'] = score_set(model, tok, load_entries(data/'questions'/'questions_sherlock.json'), spec, index)
        table = json.loads(res.read_text()) if res.exists() else {'rows': []}   # re-read: another run may have added rows
        old = next((r for r in table['rows'] if r['label'] == spec['label']), {})
        row = dict(spec, lever=a.lever or old.get('lever', ''), note=a.note or old.get('note', ''), prompt=next(iter(scores.values()))['prompt'],
                   dev={**old.get('dev', {}), **{s: scores[s] for s in scopes}}, **({'course': scores['course']} if a.course else {}))
        if 'course' in old and not a.course: row['course'] = old['course']
        table['rows'] = [r if r['label'] != row['label'] else row for r in table['rows']] + ([] if old else [row])
        write_json(res, table)
        for s, d in scores.items():
            print(f"{row['label'][:60]:60} {s:8} F1 {d['f1']:.3f} [{d['f1_ci'][0]:.3f}, {d['f1_ci'][1]:.3f}] EM {d['em']:.3f} ({d['seconds']} s) {d['examples']}", flush=True)
    return 0


if __name__ == '__main__': sys.exit(main())
