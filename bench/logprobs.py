#!/usr/bin/env python3
"""Forced decoding speed: `answer_logprobs` (the LM head on the answer positions only) against full logits.

`answer_logprobs` scores an answer after its prompt (the gated fit of 03a_read). It used to run the LM head over
every position of the batch, prompt and padding included: for SmolLM2 that is 49,152 logits per token, for Gemma 3
262,144. Now the decoder runs on every token and the head on the answer's few positions (`load.scored_logits`). This
times both ways in one run, on the same prompts and the same model, and checks that they give the same log-probabilities.

Usage: python bench/logprobs.py [--model smollm2-135m-instruct] [--n 128] [--open-book] [--batch-size 16]
"""
from __future__ import annotations
import argparse, json, sys, time


def full_logits_logprobs(model, tokenizer, prompts:list[str], answers:list[str], batch_size:int=16) -> list[tuple[float, int]]:
    "The reference: the same sums from the model's full logits over every position (the way `answer_logprobs` worked before)."
    import torch
    from sherlock_instruct.generate import _pad_id, batch_order
    eos = tokenizer.eos_token_id
    seqs = [(tokenizer(p)['input_ids'], tokenizer(a, add_special_tokens=False)['input_ids'] + [eos]) for p, a in zip(prompts, answers)]
    out = [None] * len(seqs)
    with torch.inference_mode():
        for idx in batch_order([len(p) + len(a) for p, a in seqs], batch_size):
            L = max(len(p) + len(a) for p, a in (seqs[i] for i in idx))
            ids, mask = torch.full((len(idx), L), _pad_id(tokenizer)), torch.zeros((len(idx), L), dtype=torch.long)
            for j, i in enumerate(idx):
                s = seqs[i][0] + seqs[i][1]
                ids[j, :len(s)], mask[j, :len(s)] = torch.tensor(s), 1
            logits = model(input_ids=ids, attention_mask=mask).logits
            for j, i in enumerate(idx):
                p, a = seqs[i]
                lp = logits[j, len(p) - 1:len(p) + len(a) - 1].float().log_softmax(-1)
                out[i] = (lp.gather(-1, torch.tensor(a)[:, None]).sum().item(), len(a))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', default='smollm2-135m-instruct', help='model to score with (default: smollm2-135m-instruct)')
    ap.add_argument('--n', type=int, default=128, help='how many dev questions to score (default: 128)')
    ap.add_argument('--open-book', action='store_true', help='score after an open-book prompt (one passage) instead of the closed-book one')
    ap.add_argument('--batch-size', type=int, default=16)
    ap.add_argument('--data-dir', default='', help='data folder, for --open-book (default: found automatically)')
    a = ap.parse_args(argv)
    import torch
    from sherlock_instruct.load import load_model, package_data
    from sherlock_instruct.read import answer_logprobs, closed_book_text
    torch.manual_seed(0)
    dev = json.loads(package_data('dev_questions.json').read_text(encoding='utf-8'))[:a.n]
    if a.open_book:
        from sherlock_instruct.retrieve import OPEN_BOOK, BookIndex
        index = BookIndex.from_books(data_dir=a.data_dir or None)
        prompts = [OPEN_BOOK['alpaca_short'](e['question'], index.context(e['question'], 1)) for e in dev]
    else: prompts = [closed_book_text(e['question']) for e in dev]
    answers = [e['answer'] for e in dev]
    tok, model = load_model(a.model)
    answer_logprobs(model, tok, prompts[:4], answers[:4], a.batch_size)   # warm up
    times = {}
    for name, fn in (('full logits', full_logits_logprobs), ('answer positions', answer_logprobs)):
        t = time.perf_counter(); res = fn(model, tok, prompts, answers, a.batch_size); times[name] = (time.perf_counter() - t, res)
    (tf, ref), (ta, got) = times['full logits'], times['answer positions']
    diff = max(abs(x[0] - y[0]) for x, y in zip(ref, got))
    toks = sum(len(tok(p)['input_ids']) for p in prompts) / len(prompts)
    print(f"{a.model}: {len(prompts)} {'open-book' if a.open_book else 'closed-book'} prompts of {toks:.0f} tokens on average, batch {a.batch_size}")
    print(f"full logits      {tf:7.2f} s")
    print(f"answer positions {ta:7.2f} s   ({tf / ta:.2f}x faster; largest |difference| in log p {diff:.2e})")
    return 0 if diff < 1e-3 else 1


if __name__ == '__main__': sys.exit(main())
