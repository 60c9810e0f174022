"Tests of sherlock_instruct.finetune: label masking, EOS learning vs the course's recipe, resume, determinism, LoRA, bad input, CLI, torchrun."
import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest
import torch

from sherlock_instruct.load import SherlockError, write_json
from sherlock_instruct.finetune import (IGNORE_INDEX, BatchOrder, PadCollator, answer_lengths, apply_lora, course_collator,
                                        course_tokenize, finetune_stage, instruction_prompt, padding_fraction, tokenize_instruction,
                                        tokenize_instructions, tune_tiny, unwrap_for_save)

TOY = [{'instruction': 'Name a colour.', 'input': '', 'output': 'Blue.'},
       {'instruction': 'Say hello.', 'input': '', 'output': 'Hello there!'},
       {'instruction': 'Count to three.', 'input': '', 'output': 'One, two, three.'},
       {'instruction': 'Who wrote Hamlet?', 'input': '', 'output': 'William Shakespeare.'}]
RUN = dict(alpaca_count=0, max_steps=4, lr=1e-2, batch_size=2, grad_accum=1, warmup_steps=0, save_steps=2, logging_steps=1)


@pytest.fixture
def toy(tmp_path):
    f = tmp_path / 'toy.json'
    write_json(f, TOY)
    return dict(RUN, extra_data=[str(f)])


def weights(folder):
    from safetensors.torch import load_file
    return load_file(Path(folder) / 'model.safetensors')


def same_weights(a, b, atol=0.0):
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=atol, rtol=0) for k in wa)


def test_label_masking_hand_checked(tiny):
    tok, _ = tiny
    ex = {'instruction': 'Name a colour.', 'input': '', 'output': 'Blue.'}
    t = tokenize_instruction(ex, tok, max_length=256)
    prompt = ('Below is an instruction that describes a task.\nWrite a response that appropriately completes the request.\n\n'
              '### Instruction:\nName a colour.\n\n### Response:\n')
    assert instruction_prompt(ex) == prompt
    p = tok(prompt)['input_ids']
    r = tok('Blue.', add_special_tokens=False)['input_ids']
    assert t['input_ids'] == p + r + [tok.eos_token_id]
    assert t['labels'] == [IGNORE_INDEX] * len(p) + r + [tok.eos_token_id]
    assert t['attention_mask'] == [1] * len(t['input_ids'])
    assert tok.decode([x for x in t['labels'] if x != IGNORE_INDEX]) == 'Blue.<|im_end|>'
    # truncation keeps the whole prompt and cuts the response (no EOS after a cut response); no room -> dropped, counted
    cut = tokenize_instruction(ex, tok, max_length=len(p) + 1)
    assert cut['input_ids'] == p + r[:1] and cut['labels'] == [IGNORE_INDEX] * len(p) + r[:1]
    assert tokenize_instruction(ex, tok, max_length=len(p)) is None
    kept, dropped = tokenize_instructions([ex, {**ex, 'instruction': 'x ' * 300}], tok, max_length=64)
    assert (len(kept), dropped) == (1, 1)


def test_eos_labelled_when_pad_is_eos(tiny):
    tok, _ = tiny
    assert tok.pad_token_id == tok.eos_token_id
    a, b = tokenize_instruction(TOY[0], tok), tokenize_instruction(TOY[3], tok)
    batch = PadCollator(tok.pad_token_id)([a, b])
    n = len(a['input_ids'])
    assert batch['labels'][0, n - 1].item() == tok.eos_token_id          # our EOS is a target
    assert (batch['labels'][0, n:] == IGNORE_INDEX).all() and (batch['attention_mask'][0, n:] == 0).all()
    assert batch['labels'][1, -1].item() == tok.eos_token_id
    course = course_collator(tok)([{'input_ids': a['input_ids']}, {'input_ids': b['input_ids']}])
    assert course['labels'][0, n - 1].item() == IGNORE_INDEX               # the course's collator hides it
    assert course['labels'][0, 0].item() != IGNORE_INDEX                   # and trains on the prompt


def test_learns_to_stop_unlike_course():
    tr, tok, m = tune_tiny(TOY, 'ours', steps=20)
    ours = answer_lengths(m, tok, TOY, max_new_tokens=20)
    _, tok_c, m_c = tune_tiny(TOY, 'course', steps=20)
    course = answer_lengths(m_c, tok_c, TOY, max_new_tokens=20)
    print('ours', ours, 'course', course)
    assert max(ours) < 20, ours           # every answer ends with EOS
    assert min(course) == 20, course      # the course's recipe never learns to stop
    losses = [h['loss'] for h in tr.state.log_history if 'loss' in h]
    assert losses[-1] < losses[0] / 2


def test_length_grouping_padding(tiny, data_dir):
    from sherlock_instruct.load import load_alpaca
    tok, _ = tiny
    exs, _ = tokenize_instructions(load_alpaca(count=5000, data_dir=data_dir), tok, 256)
    lens = [len(e['input_ids']) for e in exs]
    rnd = padding_fraction(lens, BatchOrder(lens, 8, seed=0, group=False).batches())
    batches = BatchOrder(lens, 8, seed=0).batches()
    grp, worst = padding_fraction(lens, batches), max(padding_fraction(lens, [b]) for b in batches)
    print(f'padding: random {rnd:.1%}, length-grouped {grp:.2%} (worst batch {worst:.1%})')
    assert grp <= 0.05 and worst <= 0.05 and rnd > 0.3
    assert BatchOrder(lens, 8, seed=0).batches(1) != batches                # reshuffled each epoch


def test_resume_gives_same_weights_and_rerun_is_deterministic(tmp_path, toy):
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3: raise KeyboardInterrupt('simulated kill')

    a = finetune_stage(out=str(tmp_path / 'a'), **toy)
    log = json.loads((a / 'training_log.json').read_text())
    losses = [s['loss'] for s in log['steps']]
    assert len(losses) == 4 and losses[-1] < losses[0]                     # loss goes down
    assert all('tokens_per_s' in s and 'padding_fraction' in s for s in log['steps'])
    with pytest.raises(KeyboardInterrupt):
        finetune_stage(out=str(tmp_path / 'b'), callbacks=[Interrupt()], **toy)
    assert not (tmp_path / 'b').exists()                                  # nothing half-published
    assert (tmp_path / 'b.partial' / 'checkpoints' / 'checkpoint-2').is_dir()
    with pytest.raises(SherlockError, match='other settings'):              # a resume must use the same settings
        finetune_stage(out=str(tmp_path / 'b'), **dict(toy, lr=5e-3))
    b = finetune_stage(out=str(tmp_path / 'b'), **toy)
    assert json.loads((b / 'training_log.json').read_text())['resumed_from'].endswith('checkpoint-2')
    assert same_weights(a, b, atol=1e-6), 'resumed run differs from the uninterrupted one'
    assert not (tmp_path / 'b.partial').exists()
    c = finetune_stage(out=str(tmp_path / 'c'), **toy)
    assert same_weights(a, c), 'same seed, different weights'


def test_lora_merge_matches_adapter(tiny, tmp_path, toy):
    from sherlock_instruct.load import tiny_model
    from transformers import AutoModelForCausalLM
    tok, _ = tiny
    lm = apply_lora(tiny_model()[1], r=4)
    for n, w in lm.named_parameters():
        if 'lora_B' in n: torch.nn.init.normal_(w, std=0.05)
    lm.eval()
    x = torch.tensor([tok('Elementary, my dear Watson.')['input_ids']])
    with torch.no_grad(): adapter = lm(x).logits
    merged = unwrap_for_save(lm)
    with torch.no_grad(): assert torch.allclose(merged(x).logits, adapter, atol=1e-5)
    # a LoRA run (with gradient checkpointing) saves an ordinary, merged model
    out = finetune_stage(out=str(tmp_path / 'lora'), lora=True, lora_r=4, gradient_checkpointing=True, **toy)
    assert not (out / 'adapter_config.json').exists()
    m = AutoModelForCausalLM.from_pretrained(out)
    assert not any('lora' in k for k in m.state_dict())
    assert not torch.equal(m.state_dict()['model.layers.0.self_attn.q_proj.weight'],
                           tiny_model()[1].state_dict()['model.layers.0.self_attn.q_proj.weight'])


def test_bad_input_fails_cleanly(tmp_path, toy):
    bad = tmp_path / 'bad.json'
    cases = [([{'instruction': 'x', 'input': ''}], "no 'output'"), ([{'instruction': 'x', 'input': '', 'output': 3}], 'is a int'),
             ([{'instruction': 'x', 'input': '', 'output': '  '}], "empty 'output'"), ([{'instruction': 1, 'input': '', 'output': 'y'}], 'is a int'),
             ({'instruction': 'x'}, 'JSON list')]
    for records, msg in cases:
        write_json(bad, records)
        with pytest.raises(SherlockError, match=msg):
            finetune_stage(out=str(tmp_path / 'o'), **dict(toy, extra_data=[str(bad)]))
    with pytest.raises(SherlockError, match='empty'):
        finetune_stage(stage='domain', books=[], out=str(tmp_path / 'o'), max_steps=1)
    with pytest.raises(SherlockError, match='larger than the model'):
        finetune_stage(stage='domain', block_size=4096, out=str(tmp_path / 'o'), max_steps=1)
    with pytest.raises(SherlockError, match='does not exist'):
        finetune_stage(model=str(tmp_path / 'no_such_model'), out=str(tmp_path / 'o'), **toy)
    with pytest.raises(SherlockError, match='no instruction data'):
        finetune_stage(out=str(tmp_path / 'o'), **dict(toy, extra_data=[]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.json', 'toy.json']   # nothing written
    (tmp_path / 'o').mkdir(); (tmp_path / 'o' / 'notes.txt').write_text('mine')
    with pytest.raises(SherlockError, match='not empty'):
        finetune_stage(out=str(tmp_path / 'o'), **toy)
    assert (tmp_path / 'o' / 'notes.txt').read_text() == 'mine'


def test_overwrite_refused_then_forced(tmp_path, toy):
    out = finetune_stage(out=str(tmp_path / 'm'), **dict(toy, max_steps=1))
    before = (out / 'model.safetensors').read_bytes()
    with pytest.raises(SherlockError, match='already holds a finished model'):
        finetune_stage(out=str(out), **dict(toy, max_steps=1))
    assert (out / 'model.safetensors').read_bytes() == before
    finetune_stage(out=str(out), overwrite=True, gradient_checkpointing=True, **dict(toy, max_steps=2))
    assert json.loads((out / 'training_log.json').read_text())['global_step'] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ['m', 'toy.json']


def test_domain_stage_perplexity(tmp_path, data_dir):
    out = finetune_stage(stage='domain', model='tiny', out=str(tmp_path / 'd'), books=[2097], block_size=64, max_train_tokens=64 * 16,
                         val_fraction=0.02, max_steps=3, lr=1e-2, batch_size=4, grad_accum=1, warmup_steps=0, data_dir=str(data_dir))
    log = json.loads((out / 'training_log.json').read_text())
    assert log['data']['train_blocks'] == 16 and log['data']['val_blocks'] > 10
    assert log['perplexity_after'] < log['perplexity_before']
    assert log['padding_fraction'] == 0


def sherlock(*args, **kw):
    exe = shutil.which('sherlock-instruct') or str(Path(sys.executable).parent / 'sherlock-instruct')
    return subprocess.run([exe, *args], capture_output=True, text=True, **kw)


def test_cli_errors_and_run(tmp_path, toy):
    r = sherlock('finetune', '--model', str(tmp_path / 'missing'), '--out', str(tmp_path / 'o'), '--alpaca-count', '0',
                 '--extra-data', *toy['extra_data'], '--max-steps', '1')
    assert r.returncode == 2 and r.stderr.startswith('error:') and 'does not exist' in r.stderr and 'Traceback' not in r.stderr
    finetune_stage(out=str(tmp_path / 'o'), **dict(toy, max_steps=1))
    r = sherlock('finetune', '--model', 'tiny', '--out', str(tmp_path / 'o'), '--alpaca-count', '0', '--extra-data', *toy['extra_data'])
    assert r.returncode == 2 and 'already holds a finished model' in r.stderr and '--force' in r.stderr
    r = sherlock('finetune', '--stage', 'pretrain')
    assert r.returncode == 2 and 'invalid choice' in r.stderr
    # a successful CLI run (and its printout) is covered by test_torchrun_two_processes_cpu


def test_torchrun_two_processes_cpu(tmp_path, toy):
    exe = shutil.which('sherlock-instruct') or str(Path(sys.executable).parent / 'sherlock-instruct')
    torchrun = shutil.which('torchrun') or str(Path(sys.executable).parent / 'torchrun')
    cmd = [torchrun, '--nproc_per_node', '2', '--no-python', exe, 'finetune', '--stage', 'instruct', '--model', 'tiny',
           '--out', str(tmp_path / 'ddp'), '--alpaca-count', '0', '--extra-data', *toy['extra_data'], '--max-steps', '2',
           '--batch-size', '2', '--grad-accum', '1', '--warmup-steps', '0']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    log = json.loads((tmp_path / 'ddp' / 'training_log.json').read_text())
    assert log['world_size'] == 2 and log['global_step'] == 2
    assert log['steps'][0]['epoch'] == 1.0     # 4 records, 2 per process: one step is a whole epoch (1 process: half)
    assert not (tmp_path / 'ddp.partial').exists()
    assert 'instruct model saved to' in r.stdout and r.stdout.count('saved to') == 1   # printed by rank 0 only
