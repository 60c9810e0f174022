#!/usr/bin/env python3
"""Ablation rows: answer our development set with one model/prompt/passages setting and record F1, EM and the 95% CI.

Every lever of the recipe is judged here on the **development set** (`sherlock_instruct/data/dev_questions.json`,
134 questions we wrote from the six books), never on the course questions. `--course` adds the course-set score to
a row; it is meant for the final recipe only, which is reported as a test set.

A row is `LABEL=MODEL:PROMPT:PASSAGES:MAX_NEW_TOKENS`, for example

    python bench/ablate.py \\
        --row "instruct, open book (1 passage)=runs/A/models/instruct:alpaca_short:1:16" \\
        --lever "book QA data" --note "instruct trained with 400 book_qa records"

Rows are merged into the results file by label (a rerun of a label replaces it), written atomically.
"""
from __future__ import annotations
import argparse, json, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_row(text:str) -> dict:
    "LABEL=MODEL:PROMPT:PASSAGES:MAX_NEW_TOKENS -> dict (MODEL may contain ':' only as a Windows drive, not supported)."
    label, _, spec = text.partition('=')
    parts = spec.split(':')
    if not label or len(parts) != 4: sys.exit(f"error: bad --row {text!r}: use LABEL=MODEL:PROMPT:PASSAGES:MAX_NEW_TOKENS")
    return dict(label=label, model=parts[0], prompt=parts[1], passages=int(parts[2]), max_new_tokens=int(parts[3]))


def score_set(model, tok, entries, prompt, max_new_tokens:int) -> dict:
    "Answer `entries` and score them: F1/EM means, F1 CI, seconds."
    from sherlock_instruct.generate import generate_records
    from sherlock_instruct.evaluate import score_answers
    t = time.perf_counter()
    recs = generate_records(model, tok, entries, prompt, batch_size=16, max_new_tokens=max_new_tokens, progress=False)
    s = score_answers([(r['index'], r['question'], r['answer'], r['expected']) for r in recs])
    return dict(n=s['n'], f1=round(s['f1'], 4), f1_ci=[round(x, 4) for x in s['ci']['f1']], em=round(s['exact_match'], 4),
                f1_aliases=round(s.get('f1_aliases', s['f1']), 4), seconds=round(time.perf_counter() - t, 1),
                examples=[r['answer'] for r in recs[:3]])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--results', default=str(ROOT/'sherlock_instruct'/'data'/'ablation_cpu.json'), help='JSON file of rows to create or update (default: the shipped ablation_cpu.json)')
    ap.add_argument('--row', action='append', required=True, help='LABEL=MODEL:PROMPT:PASSAGES:MAX_NEW_TOKENS')
    ap.add_argument('--lever', default='', help='which lever this row turns on/off (for the table)')
    ap.add_argument('--note', default='', help='how the model was trained (for the table)')
    ap.add_argument('--course', action='store_true', help='also score the course questions (final recipe only)')
    ap.add_argument('--data-dir', default='', help='data folder (default: found automatically)')
    a = ap.parse_args(argv)
    from sherlock_instruct.load import find_data_dir, load_entries, load_model, package_data, write_json
    from sherlock_instruct.generate import as_prompt
    from sherlock_instruct.retrieve import BookIndex, open_book
    data = Path(a.data_dir) if a.data_dir else find_data_dir()
    dev = load_entries(package_data('dev_questions.json'))
    index = BookIndex.from_books(data_dir=data)
    res = Path(a.results)
    for spec in map(parse_row, a.row):
        tok, model = load_model(spec['model'])
        p = as_prompt(spec['prompt'])
        if spec['passages']: p = open_book(p.name, index, spec['passages'])
        row = dict(spec, lever=a.lever, note=a.note, prompt=p.name, dev=score_set(model, tok, dev, p, spec["max_new_tokens"]))
        if a.course: row['course'] = score_set(model, tok, load_entries(data/'questions'/'questions_sherlock.json'), p, spec["max_new_tokens"])
        table = json.loads(res.read_text()) if res.exists() else {'rows': []}   # re-read: another run may have added rows
        table['rows'] = [r for r in table['rows'] if r['label'] != row['label']] + [row]
        write_json(res, table)
        d = row['dev']
        print(f"{row['label']:48} dev F1 {d['f1']:.3f} [{d['f1_ci'][0]:.3f}, {d['f1_ci'][1]:.3f}] EM {d['em']:.3f} ({d['seconds']} s) {d['examples']}"
              + (f"  course F1 {row['course']['f1']:.3f} {row['course']['f1_ci']} EM {row['course']['em']:.3f}" if 'course' in row else ''), flush=True)
    return 0


if __name__ == '__main__': sys.exit(main())
