#!/usr/bin/env python3
"""Benchmark: our instruction-tuning setup against the course's Trainer setup, on the real offline model, on this CPU.

Both setups fine-tune SmolLM2-135M (`load_model('smollm2-135m-instruct', for_training=True)`, full fine-tuning, fp32)
on the same first `--records` Alpaca records, truncated at `--max-length` tokens, with the same TrainingArguments
(`training_arguments`, batch `--batch-size`, no accumulation) for `--steps` optimizer steps:

  course   `course_tokenize` (whole Alpaca text, no EOS, no masking) + `DataCollatorForLanguageModeling(mlm=False)`
           + a plain `transformers.Trainer` with its random batches;
  ours     `tokenize_instructions` (prompt masked, EOS labelled) + `PadCollator` + `SherlockTrainer` with
           length-grouped batches (`make_trainer`).

Each setup runs in its own process (so peak RSS is its own) and reports: tokens/s (non-padding tokens; the first
step is a warm-up and not timed), the padding fraction of the batches it trained on, the peak RSS, and the
model-FLOPs utilisation MFU = 6 x params x tokens/s / fp32 matmul rate. The matmul rate (a 2048^3 `torch.matmul`,
best of 3) is measured right after every step, outside the step's time, and each step's MFU uses the rate measured
next to it: on a CPU shared with other jobs the available speed drifts, and this keeps numerator and denominator
under the same load. The median over the timed steps is printed (and the range). "hw" MFU counts the padding
tokens too (the work the CPU did, useful or not); attention FLOPs are not counted (small at these lengths).

It also prints the padding fraction of one whole epoch of both batchings over all `--records` records, and a
memory estimate for full fine-tuning of GPT-2 Medium on a 16 GB T4 (computed from the parameter count and the
activation sizes; printed with the settings that fit).

Usage: python bench/finetune.py [--steps 6] [--batch-size 8] [--records 5000] [--max-length 256] [--threads N]
The machine's load average is printed: on a shared, busy CPU the absolute numbers are noisy, the ratio less so.
"""
from __future__ import annotations
import argparse, json, os, resource, subprocess, sys, tempfile, time

MODEL = 'smollm2-135m-instruct'


def rss_mib() -> float:
    "Peak resident set size of this process so far, in MiB."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops(n:int=2048, seconds:float=3.0, reps:int=0) -> float:
    "Best fp32 `torch.matmul` rate (GFLOP/s) over repeated n x n x n products (for `seconds`, or `reps` products)."
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best, t_end, i = 0.0, time.perf_counter() + seconds, 0
    while (i < reps) if reps else (time.perf_counter() < t_end):
        t = time.perf_counter(); a @ b; dt = time.perf_counter() - t
        best, i = max(best, 2 * n**3 / dt / 1e9), i + 1
    return best


class Counting:
    "Wrap a collator and record (real tokens, all tokens) of every batch it builds."
    def __init__(self, collator): self.collator, self.batches = collator, []
    def __call__(self, features):
        b = self.collator(features)
        self.batches.append((int(b['attention_mask'].sum()), b['attention_mask'].numel()))
        return b


def step_timer():
    "A TrainerCallback timing every optimizer step, then measuring the matmul rate right after it (not inside the step time)."
    from transformers import TrainerCallback
    class StepTimer(TrainerCallback):
        def __init__(self): self.steps = []   # (seconds, matmul GFLOP/s measured just after)
        def on_step_begin(self, args, state, control, **kw): self.t0 = time.perf_counter()
        def on_step_end(self, args, state, control, **kw):
            dt = time.perf_counter() - self.t0
            self.steps.append((dt, matmul_gflops(reps=3)))
    return StepTimer()


def run_setup(which:str, a) -> dict:
    "Train `a.steps` steps with one setup in this process; return its measurements."
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
                       logging_steps=a.steps, seed=0)
    timer = step_timer()
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
        trainer.train()
    steps = list(zip(timer.steps, coll.batches))[1:a.steps]           # step 1 is a warm-up
    dt = sum(t for (t, _), _ in steps)
    real, total = sum(r for _, (r, _) in steps), sum(n for _, (_, n) in steps)
    mfus = sorted(6 * n_params * r / t / (g * 1e9) for (t, g), (r, _) in steps)
    hw = sorted(6 * n_params * n / t / (g * 1e9) for (t, g), (_, n) in steps)
    return {'setup': which, 'params': n_params, 'steps_timed': len(steps), 'tokens_per_s': real / dt, 'all_tokens_per_s': total / dt,
            'padding': 1 - real / total, 'matmul_gflops': sorted(g for (_, g), _ in steps)[len(steps) // 2],
            'mfu': mfus[len(mfus) // 2], 'hw_mfu': hw[len(hw) // 2], 'mfu_range': (mfus[0], mfus[-1]),
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=6, help='optimizer steps per setup (the first is not timed)')
    ap.add_argument('--batch-size', type=int, default=8)
    ap.add_argument('--records', type=int, default=5000)
    ap.add_argument('--max-length', type=int, default=256)
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0 = torch default)')
    ap.add_argument('--setup', choices=['ours', 'course'], help=argparse.SUPPRESS)
    ap.add_argument('--memory-only', action='store_true', help='only print the GPT-2 Medium memory estimate')
    a = ap.parse_args()
    if a.setup:
        print('RESULT ' + json.dumps(run_setup(a.setup, a))); return
    if a.memory_only: print_memory(); return
    print(f'load average at start: {os.getloadavg()}  cpus: {os.cpu_count()}')
    ep = epoch_padding(a)
    print(f"Alpaca first {a.records} records, max_length {a.max_length}: {ep['examples']} examples ({ep['dropped']} dropped), "
          f"mean {ep['mean_len']:.1f} tokens")
    for bs in sorted(k for k in ep if isinstance(k, int)):
        e = ep[bs]
        print(f"  one epoch at batch {bs:2d}: random batches {e['random']:.1%} padding; length-grouped {e['grouped']:.2%} "
              f"(worst batch {e['grouped_worst_batch']:.1%})")
    res = {}
    for which in ('course', 'ours'):
        cmd = [sys.executable, __file__, '--setup', which, '--steps', str(a.steps), '--batch-size', str(a.batch_size),
               '--records', str(a.records), '--max-length', str(a.max_length), '--threads', str(a.threads)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        line = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
        if r.returncode or not line: sys.exit(f'{which} setup failed:\n{r.stderr[-3000:]}')
        res[which] = json.loads(line[0][7:])
    print(f"\nSmolLM2-135M ({res['ours']['params'] / 1e6:.1f}M params) full fine-tuning, fp32, batch {a.batch_size}, "
          f"{a.steps} steps ({a.steps - 1} timed):")
    print(f"  {'setup':7} {'tok/s':>7} {'s/step':>7} {'padding':>8} {'matmul GF/s':>11} {'MFU':>6} {'hw MFU':>7} {'peak RSS':>9}")
    for k in ('course', 'ours'):
        r = res[k]
        print(f"  {k:7} {r['tokens_per_s']:7.0f} {r['s_per_step']:7.1f} {r['padding']:8.1%} {r['matmul_gflops']:11.1f} "
              f"{r['mfu']:6.1%} {r['hw_mfu']:7.1%} {r['peak_rss_mib']:7.0f} MiB   (MFU per step {r['mfu_range'][0]:.0%}..{r['mfu_range'][1]:.0%})")
    print(f"  useful tokens/s, ours / course: {res['ours']['tokens_per_s'] / res['course']['tokens_per_s']:.2f}x")
    print(f"  targets: padding <= 5% -> {'OK' if res['ours']['padding'] <= 0.05 else 'MISSED'}; "
          f"MFU >= 45% -> {'OK' if res['ours']['mfu'] >= 0.45 else 'MISSED'}")
    print_memory()
    print(f'\nload average at end: {os.getloadavg()}')


if __name__ == '__main__':
    main()
