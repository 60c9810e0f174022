#!/usr/bin/env python3
"""Check the Sherlock development set (sherlock_instruct/data/dev_questions.json) against the book texts.

For every item it checks:
  * the record has the expected fields and a short answer (1-5 words);
  * its `evidence` quote occurs verbatim in the named Gutenberg book, after collapsing whitespace
    (CRLF and line wraps become single spaces) -- a hard failure if not;
  * the answer, or one of its aliases, is visible in the quote (all content words present) --
    items where neither is are listed for manual review, not failed.
It also reports duplicate questions and per-book / per-story counts.
With --course PATH it flags dev questions too close (token Jaccard >= threshold) to any question in that file,
printing only the dev question and the score, never the course text.

Usage: python bench/check_devset.py [--dev PATH] [--data-dir DIR] [--course PATH] [--threshold 0.6]
Exit status: 0 when every hard check passes, 1 otherwise.
"""
from __future__ import annotations
import argparse, json, re, sys, unicodedata
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_PATH = REPO/'sherlock_instruct'/'data'/'dev_questions.json'
FIELDS = {'question': str, 'answer': str, 'aliases': list, 'story': str, 'book': int, 'evidence': str, 'scope': str}
from sherlock_instruct.analysis import DEV_SCOPES as SCOPES   # one list of scopes, shared with the ablation table
# passage: a fact one passage states; canon: a fact the canon knows well (characters, famous objects and sayings);
# story: a story's detail asked quiz-style, naming the story; generic: an everyday fact of Holmes's world asked in
# plain words, with no story named and few of the passage's own words (the kind of question BM25 finds hardest)
BOOKS = {2097: 'The Sign of the Four', 1661: 'The Adventures of Sherlock Holmes', 834: 'The Memoirs of Sherlock Holmes',
         2852: 'The Hound of the Baskervilles', 2350: 'His Last Bow', 221: 'The Return of Sherlock Holmes'}
STOP = {'the', 'a', 'an', 'of', 'and', 'mr', 'mrs', 'dr', 'miss', 'sir', 'lord', 'his', 'her', 'no', 'to', 'in', 'is', 'what',
        'which', 'who', 'whom', 'whose', 'where', 'when', 'how', 'many', 'did', 'does', 'was', 'were', 'by', 'for', 'at', 'on'}


def squash(text: str) -> str:
    "Collapse every run of whitespace (CRLF, line wraps, tabs) to one space and drop a leading BOM."
    return re.sub(r'\s+', ' ', text.lstrip('\ufeff')).strip()


def words(text: str) -> list[str]:
    "Lower-case word tokens with accents folded and curly quotes / dashes treated as separators."
    t = unicodedata.normalize('NFKD', text.replace('æ', 'ae').replace('Æ', 'AE'))
    t = ''.join(c for c in t if not unicodedata.combining(c)).lower()
    return re.findall(r"[a-z0-9]+|£", t)


def content(text: str) -> set[str]:
    "Content words of `text` (stop words and honorifics removed)."
    return {w for w in words(text) if w not in STOP}


def jaccard(a: str, b: str) -> float:
    "Token Jaccard similarity of two questions (all words, lower-cased)."
    x, y = set(words(a)), set(words(b))
    return len(x & y) / len(x | y) if x | y else 0.0


def load_dev(path=DEV_PATH) -> list[dict]:
    "Load the dev set JSON list."
    return json.loads(Path(path).read_text(encoding='utf-8'))


def field_problems(item: dict) -> list[str]:
    "Missing or mistyped fields, over-long answers, unknown books."
    probs = [f'{k}: missing or not {t.__name__}' for k, t in FIELDS.items() if not isinstance(item.get(k), t)]
    if probs: return probs
    if not all(isinstance(a, str) and a.strip() for a in item['aliases']): probs.append('aliases: must be non-empty strings')
    if not 1 <= len(item['answer'].split()) <= 5: probs.append(f"answer has {len(item['answer'].split())} words (want 1-5)")
    if item['book'] not in BOOKS: probs.append(f"book {item['book']} is not a course book")
    if not item['question'].strip().endswith('?'): probs.append('question does not end with "?"')
    if item['scope'] not in SCOPES: probs.append(f"scope {item['scope']!r} is not one of {SCOPES}")
    return probs


def supported(item: dict) -> bool:
    "True when the answer or an alias has all its content words inside the evidence quote."
    ev = set(words(item['evidence']))
    return any(content(a) and content(a) <= ev for a in [item['answer'], *item['aliases']])


def load_books(data_dir, books=BOOKS) -> dict[int, str]:
    "Whitespace-squashed text of each course book in `data_dir/gutenberg`."
    return {n: squash((Path(data_dir)/'gutenberg'/f'{n}.txt').read_text(encoding='utf-8')) for n in books}


def course_overlaps(dev: list[dict], course_questions: list[str], threshold: float = 0.6) -> list[tuple[int, float]]:
    "(dev index, best Jaccard) for each dev question whose similarity to some course question is >= threshold."
    out = []
    for i, it in enumerate(dev):
        best = max((jaccard(it['question'], q) for q in course_questions), default=0.0)
        if best >= threshold: out.append((i, round(best, 3)))
    return out


def check(dev: list[dict], texts: dict[int, str]) -> dict:
    "Run every check; return {'errors': [...], 'review': [...], 'dupes': [...]} (lists of printable lines)."
    errors, review = [], []
    for i, it in enumerate(dev):
        probs = field_problems(it)
        if not probs and squash(it['evidence']) not in texts.get(it['book'], ''): probs.append('evidence quote not found in book')
        errors += [f"#{i} [{it.get('book')}] {it.get('question', '')!r}: {p}" for p in probs]
        if not probs and not supported(it):
            review.append(f"#{i} [{it['book']}] {it['question']!r} -> {it['answer']!r}\n      evidence: {it['evidence']!r}")
    seen, dupes = {}, []
    for i, it in enumerate(dev):
        k = ' '.join(words(it.get('question', '')))
        if k in seen: dupes.append(f"#{i} repeats #{seen[k]}: {it['question']!r}")
        seen.setdefault(k, i)
    return {'errors': errors + dupes, 'review': review, 'dupes': dupes}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dev', default=str(DEV_PATH), help='dev set JSON')
    p.add_argument('--data-dir', default=None, help='shared data folder (default: sherlock_instruct.load.find_data_dir())')
    p.add_argument('--course', default=None, help='course question file to compare against (its text is never printed)')
    p.add_argument('--threshold', type=float, default=0.6, help='Jaccard threshold for --course')
    a = p.parse_args(argv)
    data_dir = a.data_dir
    if data_dir is None:
        from sherlock_instruct.load import find_data_dir
        data_dir = find_data_dir()
    if data_dir is None or not (Path(data_dir)/'gutenberg').is_dir():
        print('error: shared data folder not found: pass --data-dir or set SHERLOCK_DATA', file=sys.stderr); return 2
    dev = load_dev(a.dev)
    res = check(dev, load_books(data_dir))
    by_book = Counter(it.get('book') for it in dev)
    print(f'{len(dev)} items in {a.dev}')
    for n, title in BOOKS.items(): print(f'  {n:>5} {title:<36} {by_book.get(n, 0):>3}')
    print(f'  stories covered: {len({it.get("story") for it in dev})}')
    print(f'  question openings: ' + ', '.join(f'{w} {c}' for w, c in Counter(it['question'].split()[0] for it in dev).most_common()))
    print(f'\nhard failures: {len(res["errors"])}')
    for e in res['errors']: print('  ' + e)
    print(f'\nfor manual review (answer/alias words not all in the quote): {len(res["review"])}')
    for r in res['review']: print('  ' + r)
    if a.course:
        qs = [e['question'] for e in json.loads(Path(a.course).read_text(encoding='utf-8'))]
        close = course_overlaps(dev, qs, a.threshold)
        print(f'\ncourse overlap (Jaccard >= {a.threshold}): {len(close)}')
        for i, s in close: print(f'  #{i} {s}: {dev[i]["question"]!r}')
        if close: return 1
    return 1 if res['errors'] else 0


if __name__ == '__main__':
    sys.exit(main())
