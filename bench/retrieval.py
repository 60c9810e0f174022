#!/usr/bin/env python3
"""Retrieval recall on the development set: how often the answer is in the k best BM25 passages.

The reader (03a_read) can only copy an answer that a passage it reads holds, so recall@k bounds what reading k
passages can score. This prints, for each passage size (`--words`) and dev-set scope, the share of questions whose
answer (or one of its aliases, SQuAD-normalised) occurs in the k best passages. It needs no model and runs in seconds.
With `--prf FB:TERMS:WEIGHT` it also ranks with pseudo-relevance feedback (the TERMS highest-idf terms of the FB best
passages added to the query at WEIGHT), a query-expansion lever we measured and did not adopt.

Usage: python bench/retrieval.py [--words 120 200] [--ks 1 3 5 8 16] [--prf 3:10:0.3] [--data-dir DIR]
"""
from __future__ import annotations
import argparse, json, sys
from collections import Counter


def answer_forms(e:dict) -> list[str]:
    "The answer and its aliases, SQuAD-normalised (empty forms dropped)."
    from sherlock_instruct.evaluate import normalize_answer
    return [f for f in (normalize_answer(x) for x in [e['answer']] + e.get('aliases', [])) if f]


def first_hit(texts:list[str], ids:list[int], forms:list[str]) -> int|None:
    "Rank (1-based) of the first passage among `ids` whose normalised text in `texts` holds one of `forms` as whole words."
    return next((r for r, i in enumerate(ids, 1) if any(f' {f} ' in texts[i] for f in forms)), None)


def prf_ranked(index, query:str, k:int, fb:int, terms:int, weight:float) -> list[int]:
    "BM25 with pseudo-relevance feedback: the `terms` highest-idf terms of the `fb` best passages join the query at `weight`."
    from sherlock_instruct.retrieve import index_terms
    scores = index._bm25(query)
    weight_of, asked = Counter(), set(index_terms(query))
    for i in sorted(scores, key=lambda i: (-scores[i], i))[:fb]:
        for t in index_terms(index.passages[i]['text']): weight_of[t] += index.idf[t]
    extra = index._bm25(' '.join([t for t, _ in weight_of.most_common() if t not in asked][:terms]))
    total = {i: scores.get(i, 0.0) + weight * extra.get(i, 0.0) for i in set(scores) | set(extra)}
    return sorted(total, key=lambda i: (-total[i], i))[:k]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--words', type=int, nargs='+', default=[120], help='passage sizes in words (default: 120, the recipe)')
    ap.add_argument('--ks', type=int, nargs='+', default=[1, 3, 5, 8, 12, 16], help='k values to report')
    ap.add_argument('--prf', default='', help='also rank with pseudo-relevance feedback FB:TERMS:WEIGHT, e.g. 3:10:0.3')
    ap.add_argument('--data-dir', default='', help='data folder (default: found automatically)')
    a = ap.parse_args(argv)
    from pathlib import Path
    from sherlock_instruct.load import COURSE_BOOKS, find_data_dir, load_books, package_data
    from sherlock_instruct.evaluate import normalize_answer
    from sherlock_instruct.retrieve import BookIndex, book_passages
    data = Path(a.data_dir) if a.data_dir else find_data_dir()
    if data is None: sys.exit("error: no data folder: pass --data-dir (a folder with gutenberg/) or set $SHERLOCK_DATA")
    dev = json.loads(package_data('dev_questions.json').read_text(encoding='utf-8'))
    books, K = load_books(tuple(COURSE_BOOKS), data), max(a.ks)
    for words in a.words:
        index = BookIndex(book_passages(books, words))
        texts = [f" {normalize_answer(p['text'])} " for p in index.passages]   # normalised once, not per question and k
        rankers = {'bm25': lambda q: index.search(q, K)}
        if a.prf:
            fb, terms, w = a.prf.split(':')
            rankers[f'bm25+prf{a.prf}'] = lambda q: prf_ranked(index, q, K, int(fb), int(terms), float(w))
        for name, rank in rankers.items():
            for scope in sorted({e['scope'] for e in dev}):
                es = [e for e in dev if e['scope'] == scope]
                hits = [first_hit(texts, rank(e['question']), answer_forms(e)) for e in es]
                recall = {k: sum(h is not None and h <= k for h in hits) / len(es) for k in a.ks}
                print(f"{words:4d} words ({len(index.passages)} passages) {name:18} {scope:8} n={len(es):3d} " +
                      ' '.join(f"R@{k}={v:.2f}" for k, v in recall.items()), flush=True)
    return 0


if __name__ == '__main__': sys.exit(main())
