"""The Fashion-MNIST VQA generator: answers follow the labels, sets are reproducible, exact match."""
from __future__ import annotations

import numpy as np
import pytest

from collab.errors import InvalidArgument
from collab.vlm.vqa import FOOTWEAR, NAMES, TEMPLATES, exact_match, make_question, make_set


def test_answers_follow_labels():
    rng = np.random.default_rng(0)
    for label in range(10):
        assert make_question(label, "what", rng) == ("What is this item?", NAMES[label])
        assert make_question(label, "footwear", rng)[1] == ("yes" if label in FOOTWEAR else "no")
        for _ in range(20):
            q, a = make_question(label, "is_a", rng)
            asked = q[len("Is this a"):].strip(" n?")
            assert (a == "yes") == (asked == NAMES[label]), q
            q, a = make_question(label, "which", rng)
            assert a == NAMES[label] and NAMES[label] in q
    with pytest.raises(InvalidArgument):
        make_question(10, "what", rng)
    with pytest.raises(InvalidArgument):
        make_question(0, "nope", rng)


def test_sets_reproducible_and_balanced():
    labels = np.random.default_rng(1).integers(0, 10, 500)
    a, b = make_set(labels, 200, seed=3), make_set(labels, 200, seed=3)
    assert [s.to_dict() for s in a] == [s.to_dict() for s in b]
    assert len({s.image for s in a}) == 200  # one question per image
    assert {s.template for s in a} == set(TEMPLATES)
    yes = sum(s.answer == "yes" for s in a if s.template == "is_a")
    n = sum(s.template == "is_a" for s in a)
    assert 0.25 < yes / n < 0.75
    for s in a:
        assert s.label == labels[s.image]
    with pytest.raises(InvalidArgument):
        make_set(labels, 0, seed=0)
    with pytest.raises(InvalidArgument):
        make_set(labels, 501, seed=0)


def test_exact_match_rule():
    assert exact_match(" Sneaker.", "sneaker")
    assert exact_match("ankle boot", "Ankle boot")
    assert not exact_match("sneakers", "sneaker")
    assert not exact_match("yes, it is", "yes")
