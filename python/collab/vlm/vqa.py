"""A visual question answering set from Fashion-MNIST: templated questions, exact-match answers.

Training questions use Fashion-MNIST's train images, the held-out split its test images (no
image is shared). Answers are short lowercase words; :func:`normalise_answer` is the exact
match rule (case, surrounding whitespace and a final period ignored).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InvalidArgument

NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
FOOTWEAR = {5, 7, 9}
UPPER_BODY = {0, 2, 4, 6}
TEMPLATES = ("what", "footwear", "upper", "is_a", "which")


@dataclass
class Sample:
    image: int          # index into the split's images
    label: int
    template: str
    question: str
    answer: str

    def to_dict(self) -> dict:
        return asdict(self)


def _article(name: str) -> str:
    return "an" if name[0] in "aeiou" else "a"


def make_question(label: int, template: str, rng: np.random.Generator) -> tuple[str, str]:
    if not 0 <= label < len(NAMES):
        raise InvalidArgument(f"label {label} out of range [0, {len(NAMES)})")
    name = NAMES[label]
    if template == "what":
        return "What is this item?", name
    if template == "footwear":
        return "Is this footwear?", "yes" if label in FOOTWEAR else "no"
    if template == "upper":
        return "Is this worn on the upper body?", "yes" if label in UPPER_BODY else "no"
    if template == "is_a":
        other = label if rng.random() < 0.5 else int(rng.choice([c for c in range(len(NAMES)) if c != label]))
        n = NAMES[other]
        return f"Is this {_article(n)} {n}?", "yes" if other == label else "no"
    if template == "which":
        other = int(rng.choice([c for c in range(len(NAMES)) if c != label]))
        a, b = (label, other) if rng.random() < 0.5 else (other, label)
        return f"Is this {_article(NAMES[a])} {NAMES[a]} or {_article(NAMES[b])} {NAMES[b]}?", name
    raise InvalidArgument(f"unknown template {template!r}; known: {TEMPLATES}")


def make_set(labels: np.ndarray, n: int, seed: int, templates=TEMPLATES) -> list[Sample]:
    """n samples over images drawn from labels (one question per image, round-robin templates)."""
    labels = np.asarray(labels)
    if n <= 0 or n > len(labels):
        raise InvalidArgument(f"n must be in [1, {len(labels)}], got {n}")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(labels))[:n]
    out = []
    for k, i in enumerate(idx):
        t = templates[k % len(templates)]
        q, a = make_question(int(labels[i]), t, rng)
        out.append(Sample(image=int(i), label=int(labels[i]), template=t, question=q, answer=a))
    return out


def normalise_answer(text: str) -> str:
    t = text.strip().lower()
    if t.endswith("."):
        t = t[:-1].rstrip()
    return t


def exact_match(pred: str, gold: str) -> bool:
    return normalise_answer(pred) == normalise_answer(gold)
