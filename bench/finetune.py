#!/usr/bin/env python3
"""Benchmark: our instruction-tuning setup against the course's Trainer setup, and fp32 against bf16 autocast, on the real offline model, on this CPU.

Every setup fine-tunes SmolLM2-135M (`load_model('smollm2-135m-instruct', for_training=True)`, full fine-tuning, fp32
master weights) on the same first `--records` Alpaca records, truncated at `--max-length` tokens, with the same
TrainingArguments (`training_arguments`, batch `--batch-size`, no accumulation) for `--steps` optimizer steps:

  course   `course_tokenize` (whole Alpaca text, no EOS, no masking) + `DataCollatorForLanguageModeling(mlm=False)`
           + a plain `transformers.Trainer` with its random batches, fp32;
  ours     `tokenize_instructions` (prompt masked, EOS labelled) + `PadCollator` + `SherlockTrainer` with
           length-grouped batches (`make_trainer`), once in fp32 and once in bf16: `FinetuneParams(precision='bf16')`,
           i.e. `TrainingArguments(bf16=True, use_cpu=True)` = CPU autocast to bf16 around fp32 master weights,
           fp32 gradients and AdamW states. Both precisions train on the same batches (same seed).

Each setup runs in its own process (so peak RSS is its own) and reports: tokens/s (non-padding tokens; the first
step is a warm-up and not timed), the padding fraction of the batches it trained on, the peak RSS, and the
model-FLOPs utilisation MFU = 6 x params x tokens/s / matmul rate of the setup's own dtype (fp32 for fp32, bf16
for bf16 autocast). The matmul rate is `sherlock_instruct.load.matmul_rate(dtype, n=2048, reps=3)` (a 2048^3
product, the size of a batch of 8 x 256 tokens through a layer; best of 3 after a warm-up), measured right after
every step, outside the step's time, and each step's MFU uses the rate measured next to it: on a CPU shared with
other jobs the available speed drifts, and this keeps numerator and denominator under the same load. Where one
such product takes over 2 s (bf16 on a CPU without native bf16), the rate is measured once before training
instead (one product after the warm-up). `matmul_rate` multiplies two row-major matrices (`a @ b`); an
`nn.Linear` computes `x @ W.T`, and on some CPUs the two layouts take different kernels (without native bf16,
PyTorch's bf16 `a @ b` falls back to a far slower loop than `a @ b.T`), so the x @ W.T rate (same size) and the
MFU against it are printed too. The median over the timed steps is printed (and the range). "hw" MFU counts the
padding tokens too (the work the CPU did, useful or not); attention FLOPs are not counted (small at these lengths).

The line `bf16 speedup over fp32: N.NNx` is the tokens/s of ours in bf16 over ours in fp32. On a CPU where
`cpu_bf16_probe()` finds bf16 slow, bf16 training steps are so slow that both precisions are compared at a smaller
shape instead (`--slow-bf16-batch-size`, `--slow-bf16-steps`: an fp32 and a bf16 run of ours at that shape), and a
note says that `precision='auto'` keeps fp32 there.

It also prints the padding fraction of one whole epoch of both batchings over all `--records` records, and a
memory estimate for full fine-tuning of GPT-2 Medium on a 16 GB T4 (computed from the parameter count and the
activation sizes; printed with the settings that fit).

Usage: python bench/finetune.py [--steps 6] [--batch-size 8] [--records 5000] [--max-length 256] [--threads N]
                                [--precisions fp32,bf16] [--slow-bf16-batch-size 1] [--slow-bf16-steps 3]
The machine's load average is printed: on a shared, busy CPU the absolute numbers are noisy, the ratio less so.
"""
from __future__ import annotations
import argparse, json, os, resource, subprocess, sys, tempfile, time

MODEL = 'smollm2-135m-instruct'


def rss_mib() -> float:
    "Peak resident set size of this process so far, in MiB."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


MATMUL_N = 2048   # matmul size for the MFU denominators: a batch of 8 x 256 tokens through a 2048-wide layer


def linear_rate(dtype:str='fp32', n:int=MATMUL_N, reps:int=3) -> float:
    "Best GFLOP/s of an n x n x n product in `nn.Linear`'s layout, `x @ W.T` (`matmul_rate` times `a @ b`)."
    from sherlock_instruct.load import matmul_rate
    return matmul_rate(dtype, n, reps, linear=True)


def rates(dtype:str, reps:int=3) -> tuple[float, float]:
    "(a @ b rate from `matmul_rate`, x @ W.T rate), GFLOP/s, n = MATMUL_N."
    from sherlock_instruct.load import matmul_rate
    return matmul_rate(dtype, n=MATMUL_N, reps=reps), linear_rate(dtype, reps=reps)


class Counting:
    "Wrap a collator and record (real tokens, all tokens) of every batch it builds."
    def __init__(self, collator): self.collator, self.batches = collator, []
    def __call__(self, features):
        b = self.collator(features)
        self.batches.append((int(b['attention_mask'].sum()), b['attention_mask'].numel()))
        return b


def step_timer(dtype:str, per_step:bool, fixed:tuple[float, float]):
    "A TrainerCallback timing every optimizer step, then (`per_step`) measuring the `dtype` matmul rates right after it (not inside the step time)."
    from transformers import TrainerCallback
    class StepTimer(TrainerCallback):
        def __init__(self): self.steps = []   # (seconds, (a @ b GFLOP/s, x @ W.T GFLOP/s) measured just after)
        def on_step_begin(self, args, state, control, **kw): self.t0 = time.perf_counter()
        def on_step_end(self, args, state, control, **kw):
            dt = time.perf_counter() - self.t0
            self.steps.append((dt, rates(dtype) if per_step else fixed))
    return StepTimer()


def median(xs): xs = sorted(xs); return xs[len(xs) // 2]


def watch_autocast(trainer, model, fix:bool) -> dict:
    """Record whether autocast is on when the trainer's `compute_loss` starts (`on_entry`) and the dtype of the first
    `nn.Linear`'s output (`linear_out`); with `fix`, run `compute_loss` under `trainer.accelerator.autocast()`.
    accelerate applies mixed precision by wrapping `model.forward` in autocast, and `SherlockTrainer.compute_loss`
    (`labelled_loss` -> `scored_logits`) calls the decoder and the LM head directly, so without the fix its layers run
    in fp32 even with `bf16=True`."""
    import torch
    seen = {'on_entry': set(), 'linear_out': set()}
    lin = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    lin.register_forward_hook(lambda m, i, o: seen['linear_out'].add(str(o.dtype).replace('torch.', '')))
    inner = trainer.compute_loss
    def compute_loss(*args, **kw):
        seen['on_entry'].add(torch.is_autocast_enabled('cpu') or torch.is_autocast_enabled('cuda'))
        if not fix: return inner(*args, **kw)
        with trainer.accelerator.autocast(): return inner(*args, **kw)
    trainer.compute_loss = compute_loss
    return seen


def run_setup(which:str, a) -> dict:
    "Train `a.steps` steps with one setup in `a.precision` in this process; return its measurements."
    import torch
    from transformers import Trainer
    from sherlock_instruct.load import load_model, load_alpaca, find_data_dir
    from sherlock_instruct.finetune import (PadCollator, course_collator, course_tokenize, make_trainer, resolve_params,
                                            tokenize_instructions, training_arguments)
    if a.threads: torch.set_num_threads(a.threads)
    tok, model = load_model(MODEL, for_training=True)
    n_params = sum(p.numel() for p in model.parameters())
    recs = load_alpaca(count=a.records, data_dir=find_data_dir())
    p = resolve_params(max_steps=a.steps, batch_size=a.batch_size, grad_accum=1, lr=1e-5, warmup_steps=0, save_steps=10**6,
                       logging_steps=a.steps, seed=0, precision=a.precision)
    t = time.perf_counter(); fixed = rates(a.precision, reps=1)     # 4 products: a warm-up and one timed, per layout
    per_step = time.perf_counter() - t < 4 * 2.0                      # measure after every step unless a product takes over 2 s
    timer = step_timer(a.precision, per_step, fixed)
    with tempfile.TemporaryDirectory() as d:
        args = training_arguments(p, d)
        args.save_strategy = 'no'
        if which == 'ours':
            exs, _ = tokenize_instructions(recs, tok, a.max_length)
            coll = Counting(PadCollator(tok.pad_token_id))
            trainer = make_trainer(model, tok, exs, [], args, collator=coll, callbacks=[timer])
        else:
            exs = course_tokenize(recs, tok, a.max_length)
            coll = Counting(course_collator(tok))
            trainer = Trainer(model=model, args=args, train_dataset=exs, data_collator=coll, callbacks=[timer])
        seen = watch_autocast(trainer, model, fix=a.precision != 'fp32' and not a.no_autocast_fix)
        trainer.train()
        mixed = bool(trainer.args.bf16 or trainer.args.fp16)
    master = sorted({str(q.dtype).replace('torch.', '') for q in model.parameters()})
    steps = list(zip(timer.steps, coll.batches))[1:a.steps]           # step 1 is a warm-up
    dt = sum(t for (t, _), _ in steps)
    real, total = sum(r for _, (r, _) in steps), sum(n for _, (_, n) in steps)
    mfus = sorted(6 * n_params * r / t / (g * 1e9) for (t, (g, _)), (r, _) in steps)
    return {'setup': which, 'precision': a.precision, 'mixed_args': mixed, 'autocast_on_entry': sorted(seen['on_entry']),
            'linear_out': sorted(seen['linear_out']), 'autocast_fix': a.precision != 'fp32' and not a.no_autocast_fix, 'master_weights': master, 'batch_size': a.batch_size,
            'steps': a.steps, 'params': n_params, 'steps_timed': len(steps), 'tokens_per_s': real / dt, 'all_tokens_per_s': total / dt,
            'padding': 1 - real / total, 'rate_per_step': per_step,
            'matmul_gflops': median(g for (_, (g, _)), _ in steps), 'linear_gflops': median(l for (_, (_, l)), _ in steps),
            'mfu': median(mfus), 'mfu_range': (mfus[0], mfus[-1]),
            'mfu_linear': median(6 * n_params * r / t / (l * 1e9) for (t, (_, l)), (r, _) in steps),
            'hw_mfu': median(6 * n_params * n / t / (g * 1e9) for (t, (g, _)), (_, n) in steps),
            'peak_rss_mib': rss_mib(), 's_per_step': dt / len(steps)}


def epoch_padding(a) -> dict:
    "Padding of one whole epoch over all records: random batches vs length-grouped ones (our tokenization)."
    from transformers import AutoTokenizer
    from sherlock_instruct.load import convert_gguf, find_data_dir, load_alpaca, resolve_model
    from sherlock_instruct.finetune import BatchOrder, padding_fraction, tokenize_instructions
    tok = AutoTokenizer.from_pretrained(convert_gguf(*resolve_model(MODEL)))
    exs, dropped = tokenize_instructions(load_alpaca(count=a.records, data_dir=find_data_dir()), tok, a.max_length)
    lens = [len(e['input_ids']) for e in exs]
    out = {'examples': len(exs), 'dropped': dropped, 'mean_len': sum(lens) / len(lens)}
    for bs in sorted({a.batch_size, 12}):
        grp = BatchOrder(lens, bs, seed=0).batches()
        out[bs] = {'random': padding_fraction(lens, BatchOrder(lens, bs, seed=0, group=False).batches()),
                   'grouped': padding_fraction(lens, grp), 'grouped_worst_batch': max(padding_fraction(lens, [b]) for b in grp)}
    return out


GiB = 1024**3

def gpt2_medium_memory(batch:int, seq:int, checkpointing:bool=False, lora:bool=False, sdpa:bool=True) -> dict:
    "Estimated peak GPU memory (GiB) of fp16-AMP training of GPT-2 Medium with AdamW, from its parameter count and activations."
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config.from_dict(dict(n_embd=1024, n_layer=24, n_head=16, n_positions=1024, vocab_size=50257))
    with torch.device('meta'): P = sum(p.numel() for p in GPT2LMHeadModel(cfg).parameters())
    h, L, a, V = cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.vocab_size
    trainable = L * 16 * (4*h + 2*h + 5*h + 5*h) if lora else P     # LoRA r=16 on c_attn, c_proj, c_fc, mlp c_proj: 6.3M
    weights = 4 * P                                                  # fp32 master weights (frozen ones too, for LoRA)
    fp16_cache = 2 * P                                               # autocast's fp16 copies of the weights
    states = (4 + 8) * trainable                                     # fp32 grads + AdamW m, v
    # activations per layer, 16-bit (Korthikanti et al. 2022): s*b*h*(34 + 5*a*s/h) bytes; fused SDPA drops the a*s^2 term
    per_layer = seq * batch * h * (34 + (0 if sdpa else 5 * a * seq / h))
    acts = (L * 2 * seq * batch * h + per_layer) if checkpointing else L * per_layer
    logits = batch * seq * V * (2 + 4 + 4 + 4)                       # fp16 logits, fp32 upcast, log-softmax, its grad
    overhead = 0.6 * GiB                                             # CUDA context, cuBLAS workspace
    total = (weights + fp16_cache + states + acts + logits) * 1.1 + overhead   # +10% allocator fragmentation
    return {'params': P, 'weights': weights / GiB, 'fp16_cache': fp16_cache / GiB, 'grads_adam': states / GiB,
            'activations': acts / GiB, 'logits': logits / GiB, 'total': total / GiB}


def print_memory():
    T4 = 15.0  # GiB usable of a 16 GB T4 (15.1 GiB reported by torch, minus a margin)
    m = gpt2_medium_memory(8, 256)
    print(f"\nGPT-2 Medium ({m['params'] / 1e6:.1f}M params) full fine-tuning on a 16 GB T4 (fp16 AMP, AdamW), estimate in GiB:")
    print(f"  fixed: fp32 weights {m['weights']:.2f} + fp16 weight cache {m['fp16_cache']:.2f} + fp32 grads & Adam states "
          f"{m['grads_adam']:.2f} = {m['weights'] + m['fp16_cache'] + m['grads_adam']:.2f}")
    print(f"  {'batch':>5} {'seq':>5} {'ckpt':>5} {'attn':>6} {'acts':>6} {'logits':>6} {'total':>6}  fits (<= {T4} GiB)?")
    for batch, seq, ck, sdpa in [(8, 256, False, True), (8, 256, False, False), (12, 256, False, True), (16, 256, False, True),
                                 (32, 256, False, True), (32, 256, True, True), (8, 512, False, True), (8, 1024, False, True),
                                 (8, 1024, False, False), (8, 1024, True, True), (12, 1024, True, True)]:
        e = gpt2_medium_memory(batch, seq, ck, sdpa=sdpa)
        print(f"  {batch:>5} {seq:>5} {('yes' if ck else 'no'):>5} {('sdpa' if sdpa else 'eager'):>6} {e['activations']:6.2f} "
              f"{e['logits']:6.2f} {e['total']:6.2f}  {'FITS' if e['total'] <= T4 else 'too big'}")
    lo = gpt2_medium_memory(8, 256, lora=True)
    print(f"  LoRA r=16, batch 8, seq 256: {lo['total']:.2f} GiB (fp32 frozen weights; no Adam states for them)")
    print("  default domain stage = batch 8 x 256 tokens, accumulation 4; default instruct stage = batch 12 x <=256 tokens, accumulation 3:")
    print(f"  both fit without gradient checkpointing ({gpt2_medium_memory(8, 256)['total']:.1f} and {gpt2_medium_memory(12, 256)['total']:.1f} GiB);"
          " gradient accumulation keeps the effective batch without more memory.")


def pct(x:float, w:int=6) -> str:
    "A percentage in `w` characters (over 999%: the rate is no bound on this work; see the notes)."
    return f'{x:{w}.1%}' if x < 9.995 else f"{'>999%':>{w}}"


def run_child(which:str, precision:str, batch_size:int, steps:int, a) -> dict:
    "One setup in its own process; its result dict."
    cmd = [sys.executable, __file__, '--setup', which, '--precision', precision, '--steps', str(steps), '--batch-size', str(batch_size),
           '--records', str(a.records), '--max-length', str(a.max_length), '--threads', str(a.threads)] + \
          (['--no-autocast-fix'] if a.no_autocast_fix else [])
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    line = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
    if r.returncode or not line: sys.exit(f'{which} {precision} setup failed:\n{r.stderr[-3000:]}')
    return dict(json.loads(line[0][7:]), wall_s=time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=6, help='optimizer steps per setup (the first is not timed)')
    ap.add_argument('--batch-size', type=int, default=8)
    ap.add_argument('--records', type=int, default=5000)
    ap.add_argument('--max-length', type=int, default=256)
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0 = torch default)')
    ap.add_argument('--precisions', default='fp32,bf16', help="'fp32,bf16' (default) or 'fp32': train ours in bf16 autocast too?")
    ap.add_argument('--slow-bf16-batch-size', type=int, default=1,
                    help='batch size of the fp32/bf16 comparison on a CPU without fast bf16 (there a bf16 step of the full batch takes minutes)')
    ap.add_argument('--slow-bf16-steps', type=int, default=3, help='optimizer steps of that comparison (the first is not timed)')
    ap.add_argument('--no-autocast-fix', action='store_true',
                    help="train bf16 exactly as the project does (today: no autocast in ours' loss, so fp32 compute; see watch_autocast)")
    ap.add_argument('--setup', choices=['ours', 'course'], help=argparse.SUPPRESS)
    ap.add_argument('--precision', default='fp32', choices=['fp32', 'bf16'], help=argparse.SUPPRESS)
    ap.add_argument('--memory-only', action='store_true', help='only print the GPT-2 Medium memory estimate')
    a = ap.parse_args()
    if a.setup:
        print('RESULT ' + json.dumps(run_setup(a.setup, a))); return
    if a.memory_only: print_memory(); return
    import torch
    from sherlock_instruct.load import cpu_bf16_probe
    if a.threads: torch.set_num_threads(a.threads)
    print(f'load average at start: {os.getloadavg()}  cpus: {os.cpu_count()}  torch threads: {torch.get_num_threads()}')
    probe = cpu_bf16_probe()
    with_bf16 = 'bf16' in a.precisions.split(',')
    print(f"cpu_bf16_probe (cached per CPU): fp32 {probe['fp32_gflops']} GFLOP/s, bf16 {probe['bf16_gflops']} GFLOP/s, "
          f"fast bf16: {probe['fast']}")
    ep = epoch_padding(a)
    print(f"Alpaca first {a.records} records, max_length {a.max_length}: {ep['examples']} examples ({ep['dropped']} dropped), "
          f"mean {ep['mean_len']:.1f} tokens")
    for bs in sorted(k for k in ep if isinstance(k, int)):
        e = ep[bs]
        print(f"  one epoch at batch {bs:2d}: random batches {e['random']:.1%} padding; length-grouped {e['grouped']:.2%} "
              f"(worst batch {e['grouped_worst_batch']:.1%})")
    rows = [('course', 'fp32', a.batch_size, a.steps), ('ours', 'fp32', a.batch_size, a.steps)]
    pair = None
    if with_bf16:
        if probe['fast']:
            rows.append(('ours', 'bf16', a.batch_size, a.steps)); pair = (1, 2)
        else:
            b, n = a.slow_bf16_batch_size, a.slow_bf16_steps
            rows += [('ours', 'fp32', b, n), ('ours', 'bf16', b, n)]; pair = (2, 3)
    res = [run_child(w, prec, b, n, a) for w, prec, b, n in rows]
    print(f"\nSmolLM2-135M ({res[0]['params'] / 1e6:.1f}M params) full fine-tuning (fp32 master weights; bf16 = CPU autocast), "
          f"max_length {a.max_length}; MFU against the matmul rate of the row's dtype (n={MATMUL_N}):")
    print(f"  {'setup':6} {'prec':4} {'batch':>5} {'steps':>5} {'tok/s':>7} {'s/step':>7} {'padding':>8} {'a@b GF/s':>9} {'MFU':>6} "
          f"{'hw MFU':>7} {'x@W.T GF/s':>10} {'MFU':>6} {'peak RSS':>9}")
    for r in res:
        print(f"  {r['setup']:6} {r['precision']:4} {r['batch_size']:5d} {r['steps']:5d} {r['tokens_per_s']:7.0f} {r['s_per_step']:7.1f} "
              f"{r['padding']:8.1%} {r['matmul_gflops']:9.1f} {pct(r['mfu'])} {pct(r['hw_mfu'], 7)} {r['linear_gflops']:10.1f} "
              f"{pct(r['mfu_linear'])} {r['peak_rss_mib']:7.0f} MiB   (MFU per step {r['mfu_range'][0]:.0%}..{r['mfu_range'][1]:.0%}"
              f"{'' if r['rate_per_step'] else '; rate measured once, before training'}; {r['wall_s']:.0f} s in all)")
    for r in res:
        if r['precision'] == 'fp32': continue
        print(f"  {r['setup']} {r['precision']}: TrainingArguments bf16={r['mixed_args']}, master weights {r['master_weights']}, "
              f"autocast on when compute_loss starts: {r['autocast_on_entry']}, first Linear's output dtype {r['linear_out']}")
        if r['autocast_on_entry'] == [False]:
            print("  WARNING: the Trainer ran this setup's loss without autocast: SherlockTrainer.compute_loss (labelled_loss -> scored_logits) "
                  "calls the decoder directly, bypassing the autocast accelerate wraps around model.forward, so bf16=True "
                  "trains in fp32. " + ("The bench ran compute_loss under trainer.accelerator.autocast() so that the row measures "
                                        "bf16 autocast." if r['autocast_fix'] else "(--no-autocast-fix: the row measures that fp32 path.)"))
    print(f"  useful tokens/s, ours / course (fp32): {res[1]['tokens_per_s'] / res[0]['tokens_per_s']:.2f}x")
    print(f"  targets: padding <= 5% -> {'OK' if res[1]['padding'] <= 0.05 else 'MISSED'}; "
          f"MFU >= 45% -> {'OK' if res[1]['mfu'] >= 0.45 else 'MISSED'}")
    if pair:
        f32, b16 = res[pair[0]], res[pair[1]]
        speed = b16['tokens_per_s'] / f32['tokens_per_s']
        print(f"\nbf16 speedup over fp32: {speed:.2f}x")
        print(f"  (training tokens/s of ours, bf16 autocast {b16['tokens_per_s']:.0f} / fp32 {f32['tokens_per_s']:.0f}, batch "
              f"{f32['batch_size']}, {f32['steps'] - 1} timed step(s) each; target >= 1.7x -> {'OK' if speed >= 1.7 else 'MISSED'})")
        if not probe['fast']:
            print(f"  note: this CPU has no fast bf16 (cpu_bf16_probe: bf16 matmul {probe['speedup']}x fp32), so precision='auto' keeps fp32 "
                  f"here; the comparison ran at batch {a.slow_bf16_batch_size} x {a.slow_bf16_steps} steps, not the full batch")
    print_memory()
    print(f'\nload average at end: {os.getloadavg()}')


if __name__ == '__main__':
    main()
