"""How close a split model's predictions stay to the reference when hidden rows are compressed.

    prompts, source = mmlu_prompts(6)          # real text: lm-eval's MMLU CoT few-shot prompts
    m = compare(ref_logits, logits, targets)   # top-1 / top-5 agreement, perplexities

Used by benchmarks/llm/quality.py; kept in the library so tests and other experiments share it.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np

__all__ = ["compare", "mmlu_prompts"]


def mmlu_prompts(limit: int):
    """[(subject, text, question_start_char)] from lm-eval's shipped MMLU CoT few-shot prompts,
    and the path they came from (FileNotFoundError when lm-eval is not installed)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("lm-eval is not installed: pip install --no-deps lm-eval==0.4.13")
    path = Path(spec.submodule_search_locations[0]) / "tasks" / "mmlu" / "flan_cot_fewshot" / "_cot_prompts.json"
    data = json.loads(path.read_text())
    out = []
    for subject in sorted(data)[:: max(1, len(data) // max(1, limit))][:limit]:
        text = data[subject].rstrip() + "\n"
        q = text.rfind("\n\nQ:")
        out.append((subject, text, q + 2 if q >= 0 else 0))
    return out, str(path)


def _log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def compare(ref_logits, logits, targets):
    """Metrics over the rows given: logits[i] predicts targets[i] (targets may be one shorter)."""
    a1, b1 = ref_logits.argmax(-1), logits.argmax(-1)
    top5r = np.argpartition(-ref_logits, 5, axis=-1)[:, :5]
    top5c = np.argpartition(-logits, 5, axis=-1)[:, :5]
    overlap = np.array([len(set(x) & set(y)) / 5.0 for x, y in zip(top5r, top5c)])
    k = len(targets)
    idx = np.arange(k)
    nll_r = -_log_softmax(ref_logits[:k])[idx, targets]
    nll_c = -_log_softmax(logits[:k])[idx, targets]
    return {"top1": float(np.mean(a1 == b1)), "top5": float(np.mean(overlap)),
            "ppl_ref": float(math.exp(nll_r.mean())), "ppl": float(math.exp(nll_c.mean()))}
