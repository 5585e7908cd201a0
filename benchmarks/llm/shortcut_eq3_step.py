"""Eq. 3 step cost: the whole sequence through the tail (before) vs the answer rows only with the
prompt's tail K/V cached (collab.llm.train.shortcut.eq3_loss), and the largest loss difference.

    python benchmarks/llm/shortcut_eq3_step.py DATA_DIR [N_PROMPTS]     (one torch thread)
"""
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)
from collab.llm.train import common
from collab.llm.train.data import load
from collab.llm.train.nets import Shortcut
from collab.llm.train.shortcut import PromptCache, eq3_loss, eq3_loss_whole_sequence
m = common.mirror()
recs = [r for r in load(sys.argv[1], 'train') if len(r['answer']) > 1][:int(sys.argv[2]) if len(sys.argv) > 2 else 8]
d = m.n_embd
for at in (1, 15):
    net = Shortcut(d, (torch.zeros(d), torch.ones(d)), (torch.zeros(d), torch.ones(d)))
    pc = PromptCache(); to, tn, dl = [], [], []
    for r in recs: eq3_loss(m, net, r, at, pc)  # fill
    for r in recs:
        t = time.perf_counter(); a = eq3_loss_whole_sequence(m, net, r, at)[0]; a.backward(); to.append(time.perf_counter() - t)
        t = time.perf_counter(); b = eq3_loss(m, net, r, at, pc)[0]; b.backward(); tn.append(time.perf_counter() - t)
        dl.append(abs(float(a) - float(b)))
    print(f"l={at}: {len(recs)} prompts (mean prompt {np.mean([len(r['tokens']) for r in recs]):.0f} tok, answer {np.mean([len(r['answer']) for r in recs]):.0f}): "
          f"step median old {np.median(to):.3f} s, new {np.median(tn):.3f} s, ratio {np.median(to)/np.median(tn):.1f}x; sum old {sum(to):.2f} s new {sum(tn):.2f} s; max |dloss| {max(dl):.1e}")
