"""Prompts that ship offline: lm-eval's MMLU chain-of-thought exemplars and templated questions.

Each prompt has a *context* part (the rows MindFusion's codec compresses: in a multimodal
model the image tokens, here an exemplar or a short passage placed before the question) and
a *question* part (kept exact). The split into train and held-out is by a hash of the
subject/template, so no held-out subject or template is ever trained on.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Prompt", "mmlu_items", "templated", "all_prompts", "extra_train_prompts", "is_heldout"]

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@dataclass
class Prompt:
    pid: str
    source: str       # "mmlu" | "templated"
    group: str        # subject / template family (the held-out split is per group)
    context: str      # compressible part, placed before the question
    question: str
    gold: str = ""    # MMLU answer letter

    def chat(self) -> tuple[str, int]:
        """SmolLM2 chat text and the character offset where the question starts."""
        head = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{self.context}"
        return head + f"{self.question}<|im_end|>\n<|im_start|>assistant\n", len(head)


def is_heldout(group: str, fraction: float = 0.25) -> bool:
    h = int.from_bytes(hashlib.sha256(group.encode()).digest()[:4], "little")
    return (h % 1000) < fraction * 1000


def _cot_path() -> Path:
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("lm-eval is not installed: pip install --no-deps lm-eval==0.4.13")
    return Path(spec.submodule_search_locations[0]) / "tasks" / "mmlu" / "flan_cot_fewshot" / "_cot_prompts.json"


_Q = re.compile(r"Q: (.*?)\nA: (.*?)(?=\n\nQ: |\Z)", re.S)


def mmlu_items():
    """{subject: [(question with options, worked answer, gold letter)]} from the CoT exemplars."""
    data = json.loads(_cot_path().read_text())
    out = {}
    for subject, text in sorted(data.items()):
        items = []
        for q, a in _Q.findall(text):
            m = re.search(r"answer is \(([A-D])\)", a)
            if m:
                items.append((q.strip(), a.strip(), m.group(1)))
        if items:
            out[subject] = items
    return out


def _mmlu_prompts():
    out = []
    for subject, items in mmlu_items().items():
        for i, (q, _, gold) in enumerate(items):
            j = (i + 1) % len(items)  # one other exemplar of the subject, with its worked answer, as context
            ctx = f"Example question about {subject.replace('_', ' ')}:\nQ: {items[j][0]}\nA: {items[j][1]}\n\n"
            out.append(Prompt(f"mmlu/{subject}/{i}", "mmlu", f"mmlu/{subject}", ctx,
                              f"Now answer this one. Q: {q}\nGive the letter of the answer first, then explain.",
                              gold))
    return out


_FACTS = [
    ("France", "Paris", "Europe"), ("Japan", "Tokyo", "Asia"), ("Kenya", "Nairobi", "Africa"),
    ("Peru", "Lima", "South America"), ("Canada", "Ottawa", "North America"), ("Egypt", "Cairo", "Africa"),
    ("Norway", "Oslo", "Europe"), ("India", "New Delhi", "Asia"), ("Chile", "Santiago", "South America"),
    ("Australia", "Canberra", "Oceania"), ("Spain", "Madrid", "Europe"), ("Vietnam", "Hanoi", "Asia"),
    ("Mexico", "Mexico City", "North America"), ("Ghana", "Accra", "Africa"), ("Poland", "Warsaw", "Europe"),
    ("Brazil", "Brasilia", "South America"), ("Italy", "Rome", "Europe"), ("Turkey", "Ankara", "Asia"),
]
_TOPICS = ["photosynthesis", "gravity", "the water cycle", "volcanoes", "rainbows", "electricity", "the moon",
           "earthquakes", "vaccines", "the internet", "batteries", "clouds", "magnets", "bees", "tides",
           "the heart", "computers", "bread", "airplanes", "glaciers", "coffee", "music", "chess", "soap"]
_TEMPLATES = {
    "explain": ("", "Explain {t} in a few sentences."),
    "kid": ("", "How would you describe {t} to a ten-year-old?"),
    "facts": ("", "Give three interesting facts about {t}."),
    "why": ("I am reading about {t} for a school project.\n", "Why does {t} matter in everyday life?"),
    "history": ("", "Write a short paragraph on the history of {t}."),
    "capital": ("{c} is a country in {r}.\n", "What is the capital of {c}? Answer in one sentence."),
    "travel": ("I am planning a trip to {c}.\n", "Suggest three things to see in {k}."),
    "continent": ("", "Which continent is {c} in, and what are its neighbours?"),
}


def _templated(facts=_FACTS, topics=_TOPICS):
    out = []
    for fam, (ctx, q) in sorted(_TEMPLATES.items()):
        if "{c}" in q or "{c}" in ctx or "{k}" in q:
            for c, k, r in facts:
                out.append(Prompt(f"tpl/{fam}/{c}", "templated", f"tpl/{fam}", ctx.format(c=c, k=k, r=r),
                                  q.format(c=c, k=k, r=r)))
        else:
            for t in topics:
                out.append(Prompt(f"tpl/{fam}/{t}", "templated", f"tpl/{fam}", ctx.format(t=t), q.format(t=t)))
    return out


def templated():
    return _templated()


def all_prompts():
    """(train, heldout) lists of Prompt."""
    ps = _mmlu_prompts() + _templated()
    train = [p for p in ps if not is_heldout(p.group)]
    held = [p for p in ps if is_heldout(p.group)]
    return train, held


# More training prompts for Eq. 3 (it overfits a few hundred): the same kinds as above, in groups
# that are NOT held out only, so the held-out split (all_prompts()[1]) stays exactly as it was.
_MORE_TOPICS = ["snow", "wind", "rivers", "deserts", "forests", "stars", "the sun", "oceans", "bridges", "trains",
                "cars", "bicycles", "paper", "glass", "steel", "plastic", "salt", "sugar", "tea", "rice",
                "cheese", "honey", "ants", "whales", "birds", "sharks", "trees", "flowers", "mushrooms", "bacteria",
                "the brain", "sleep", "exercise", "money", "banks", "maps", "clocks", "calendars", "libraries",
                "museums", "painting", "poetry", "football", "the olympics", "democracy", "taxes", "recycling",
                "solar panels", "wind turbines", "nuclear power", "rockets", "satellites", "telescopes",
                "microscopes", "robots", "smartphones", "email", "passwords", "printing", "radio"]
_MORE_FACTS = [
    ("Germany", "Berlin", "Europe"), ("China", "Beijing", "Asia"), ("Nigeria", "Abuja", "Africa"),
    ("Argentina", "Buenos Aires", "South America"), ("Cuba", "Havana", "North America"),
    ("Sweden", "Stockholm", "Europe"), ("Thailand", "Bangkok", "Asia"), ("Morocco", "Rabat", "Africa"),
    ("Colombia", "Bogota", "South America"), ("New Zealand", "Wellington", "Oceania"),
    ("Portugal", "Lisbon", "Europe"), ("Indonesia", "Jakarta", "Asia"), ("Ethiopia", "Addis Ababa", "Africa"),
    ("Greece", "Athens", "Europe"), ("Ireland", "Dublin", "Europe"), ("Pakistan", "Islamabad", "Asia"),
    ("Austria", "Vienna", "Europe"), ("Senegal", "Dakar", "Africa"), ("Ecuador", "Quito", "South America"),
    ("Finland", "Helsinki", "Europe"), ("South Korea", "Seoul", "Asia"), ("Hungary", "Budapest", "Europe"),
]
_MMLU_ASKS = ["Now answer this one. Q: {q}\nGive the letter of the answer first, then explain.",
              "Q: {q}\nWhich option is correct? Start with the letter.",
              "Answer the following question and briefly justify it.\nQ: {q}"]


def _more_mmlu():
    out = []
    for subject, items in mmlu_items().items():
        for i, (q, _, gold) in enumerate(items):
            for v, shift in ((1, 2), (2, 3)):  # another exemplar as context, another way of asking
                j = (i + shift) % len(items)
                if j == i:
                    continue
                ctx = f"Example question about {subject.replace('_', ' ')}:\nQ: {items[j][0]}\nA: {items[j][1]}\n\n"
                out.append(Prompt(f"mmlu-v{v}/{subject}/{i}", "mmlu", f"mmlu/{subject}", ctx,
                                  _MMLU_ASKS[v].format(q=q), gold))
    return out


def extra_train_prompts():
    """More training prompts (no pid of all_prompts(); only groups all_prompts() trains on)."""
    known = {p.pid for ps in all_prompts() for p in ps}
    return [p for p in _more_mmlu() + _templated(_MORE_FACTS, _MORE_TOPICS) if not is_heldout(p.group) and p.pid not in known]
