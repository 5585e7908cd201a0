"""--rows auto: the LLM's early-row policy chosen from a measured quality table (collab.llm.rowplan)."""
from types import SimpleNamespace

import pytest

from _llm_common import require_llama, tiny_model, tiny_split
from collab.errors import InvalidArgument
from collab.planner.quality import SCHEMA, BoundError, NoTableError, QualityError, QualityTable


def _table(tmp_path, sha, entries):
    t = QualityTable.from_dict({"schema": SCHEMA, "system": "llm", "model": {"name": "tiny", "sha256": sha},
                                "metric": {"name": "tf_top1", "unit": "fraction", "higher_is_better": True},
                                "entries": entries})
    p = tmp_path / "tiny.quality.json"
    t.save(p)
    return p


ENTRIES = [
    {"split": 2, "policy": "exact", "reference": True, "bytes_per_item": 256, "quality": 0.9},
    {"split": 2, "policy": "slicer", "config": {"sparsity": 0.75, "qbits": 8}, "bytes_per_item": 40, "quality": 0.89},
    {"split": 2, "policy": "fc", "config": {"ratio": 8, "dtype": "int8"}, "bytes_per_item": 12, "quality": 0.85},
]


def _args(path, **kw):
    a = dict(context="the quick brown fox jumps over the lazy dog " * 3, prompt="what does the fox do?", keep_last=None, max_loss=2.0, link_mbps=1.0,
             rtt_ms=20.0, latency_target_ms=None, quality_table=str(path) if path else None)
    a.update(kw)
    return SimpleNamespace(**a)


@pytest.fixture(scope="module")
def tiny():
    require_llama()
    from collab.llm.artifact import model_digest

    full = tiny_model(4)
    head, _ = tiny_split(4, 2)
    return full, head, model_digest(full).hex()


def test_auto_picks_within_the_bound(tmp_path, tiny, capsys):
    from collab.llm.protocol import RowPolicy
    from collab.llm.rowplan import auto_policy

    full, head, sha = tiny
    p = _table(tmp_path, sha, ENTRIES)
    pol = auto_policy(_args(p, max_loss=2.0), head=head, full=full, at=2)
    assert isinstance(pol, RowPolicy) and pol.sparsity == 0.75 and pol.qbits == (8,)
    assert "chose slicer" in capsys.readouterr().out
    assert auto_policy(_args(p, max_loss=0.0), head=head, full=full, at=2) == RowPolicy.exact()
    # no context and no chat template: no row before the question, nothing to compress
    assert auto_policy(_args(p, context=""), head=head, full=full, at=2) == RowPolicy.exact()
    assert "0 early rows" in capsys.readouterr().out
    # FC would be chosen at 5 pp, but no codec is trained for the tiny model: a clear error, not a crash
    with pytest.raises(InvalidArgument, match="FC codec"):
        auto_policy(_args(p, max_loss=5.0), head=head, full=full, at=2)


def test_auto_refuses_what_it_cannot_bound(tmp_path, tiny, monkeypatch):
    import collab.llm.fcnet as fcnet
    from collab.llm.rowplan import auto_policy

    full, head, sha = tiny
    monkeypatch.setattr(fcnet, "find_shipped", lambda name: None)
    with pytest.raises(NoTableError, match="cannot be bounded"):
        auto_policy(_args(None), head=head, full=full, at=2)
    with pytest.raises(QualityError, match="not on the model in use"):
        auto_policy(_args(_table(tmp_path, "0" * 64, ENTRIES)), head=head, full=full, at=2)
    p = _table(tmp_path, sha, ENTRIES)
    with pytest.raises(QualityError, match="no entries for split 3"):
        auto_policy(_args(p), head=head, full=full, at=3)
    with pytest.raises(BoundError, match="latency"):
        auto_policy(_args(p, latency_target_ms=1.0), head=head, full=full, at=2)
    with pytest.raises(InvalidArgument, match="--max-loss"):
        auto_policy(_args(p, max_loss=None), head=head, full=full, at=2)
    with pytest.raises(InvalidArgument, match="--link-mbps"):
        auto_policy(_args(p, link_mbps=0.0), head=head, full=full, at=2)


def test_early_rows_stop_at_the_question(tiny):
    """--rows auto compresses the rows before the question only (the span the table was measured
    on): a context adds exactly its rows to the early span, the question's rows stay exact."""
    from collab.llm.rowplan import _early_rows, question_rows

    full, head, sha = tiny
    q = "what is the colour of the sky? "
    ctx = "the sky is blue and the grass is green. " * 4
    n0, q00 = question_rows(head, q)
    n1, q01 = question_rows(head, q, ctx)
    assert n1 > n0 and q01 > q00
    # the question's rows are the same either way, up to the one token BPE may merge at the boundary
    assert abs((n1 - q01) - (n0 - q00)) <= 1
    early, exact, keep = _early_rows(head, q, None, ctx)
    assert keep == n1 - q01 and early == q01 - 1 and early + exact == n1
    # an explicit keep_last still wins (int rows or a fraction of the prompt)
    assert _early_rows(head, q, 2, ctx)[2] == 2
    assert _early_rows(head, q, 0.5, ctx)[2] == round(0.5 * n1)


def test_early_rows_when_the_template_rewrites_the_message(tiny, monkeypatch):
    """A chat template that changes the message text: the question cannot be located, so
    nothing is compressed (never a crash, never the question's rows)."""
    from collab.llm import runtime
    from collab.llm.rowplan import _early_rows

    full, head, sha = tiny
    monkeypatch.setattr(runtime.Model, "chat_prompt", lambda self, u: "<sys>" + u.upper() + "<end>")
    early, exact, keep = _early_rows(head, "what colour is the sky?", None, "the sky is blue. ")
    assert early == 0 and exact > 0
