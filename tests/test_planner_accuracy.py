"""The split planner with a measured quality table: --max-loss bounds the accuracy loss of the
chosen (split, codec) configuration; without a table it refuses to promise a bound."""
from __future__ import annotations

import json
import math
import pytest

from collab import net
from collab.planner import Budget, Planner, QualityTable, SearchSpace
from collab.planner.quality import NoTableError, QualityError

from planner_cases import calibration, single_shot_profile

SPACE = SearchSpace(sparsities=(0.5, 0.75, 0.9), blocks=((1, 1), (2, 2)), qbits=(8, 4), allow_raw=False)
SHAPES = [(1, 64, 32), (1, 32, 32), (1, 16, 32)]


def _profile():
    return single_shot_profile([10, 10, 10], SHAPES, [1000, 1000, 1000])


def _table(losses, model="synthetic"):
    """losses: {(split, s, blocks): loss pp}; reference accuracy 0.9 at every split."""
    entries = [{"split": l, "policy": "exact", "config": {}, "reference": True, "bytes_per_item": 1, "quality": 0.9}
               for l in sorted({k[0] for k in losses})]
    for (l, s, b), loss in losses.items():
        entries.append({"split": l, "policy": "slicer", "bytes_per_item": 1, "quality": 0.9 - loss / 100,
                        "config": {"sparsity": s, "blocks": list(b), "qbits": list(SPACE.qbits_for(b)), "delta": 0.0}})
    return QualityTable.from_dict({"schema": "collab.quality/1", "system": "vit",
                                   "model": {"name": model, "sha256": "cd" * 32},
                                   "metric": {"name": "top1", "unit": "fraction", "higher_is_better": True},
                                   "entries": entries})


def _all_configs():
    return [(l, s, b) for l in (1, 2, 3) for s in SPACE.sparsities for b in SPACE.blocks]


def test_bound_without_a_table_is_refused():
    with pytest.raises(NoTableError, match="cannot bound accuracy"):
        Planner(_profile(), calibration(), net.FixedRateLink(1e6), budget=Budget(max_loss=1.0), space=SPACE)
    # no bound asked: plans as before and says the loss is not bounded
    plan = Planner(_profile(), calibration(), net.FixedRateLink(1e6), space=SPACE).search()
    assert plan.loss_pp is None and "not bounded" in plan.describe()


def test_table_of_another_model_is_refused():
    t = _table({(3, 0.5, (1, 1)): 0.1}, model="another")
    with pytest.raises(QualityError, match="another"):
        Planner(_profile(), calibration(), net.FixedRateLink(1e6), budget=Budget(max_loss=1.0), space=SPACE,
                quality=t)


def test_bound_moves_the_plan_and_is_met():
    # The deepest split loses a lot unless the sparsity is low; split 2 is cheap in accuracy.
    losses = {c: 0.2 for c in _all_configs()}
    losses.update({(3, s, b): 3.0 for s in (0.5, 0.75, 0.9) for b in SPACE.blocks})
    t = _table(losses)
    free = Planner(_profile(), calibration(), net.FixedRateLink(1e6), budget=Budget(deadline_ms=1e4), space=SPACE,
                   quality=t).search()
    assert free.split == 3 and free.loss_pp == pytest.approx(3.0)
    bounded = Planner(_profile(), calibration(), net.FixedRateLink(1e6), budget=Budget(deadline_ms=1e4, max_loss=1.0),
                      space=SPACE, quality=t)
    plan = bounded.search()
    assert plan.feasible and plan.split == 2 and plan.loss_pp == pytest.approx(0.2)
    assert bounded.brute_force().key() == plan.key()
    assert "0.20 pp, measured" in plan.describe()


def test_unmeasured_configurations_are_infeasible_under_a_bound():
    t = _table({(1, 0.9, (2, 2)): 0.0})  # only one configuration was measured
    pl = Planner(_profile(), calibration(), net.FixedRateLink(1e6), budget=Budget(deadline_ms=1e4, max_loss=0.5),
                 space=SPACE, quality=t)
    plan = pl.search()
    assert plan.feasible and (plan.split, plan.sparsity, plan.blocks) == (1, 0.9, (2, 2))
    assert math.isinf(pl.loss_pp(3, 0.5, (1, 1)))


def test_fallback_keeps_the_bound_when_only_the_deadline_fails():
    losses = {c: (0.1 if c[1] == 0.5 else 9.0) for c in _all_configs()}
    pl = Planner(_profile(), calibration(), net.FixedRateLink(1e6), budget=Budget(deadline_ms=1.0, max_loss=1.0),
                 space=SPACE, quality=_table(losses))
    plan = pl.search()
    assert not plan.feasible and plan.sparsity == 0.5 and plan.loss_pp <= 1.0


def test_random_tables_search_equals_brute_force_and_meets_the_bound(rng):
    cal = calibration(rng=rng)
    for _ in range(30):
        measured = [c for c in _all_configs() if rng.random() < 0.7]
        t = _table({c: float(rng.uniform(0, 5)) for c in measured} | {(1, 0.5, (1, 1)): float(rng.uniform(0, 5))})
        bound = float(rng.uniform(0, 5))
        deadline = float(rng.uniform(5, 60))
        pl = Planner(_profile(), cal, net.FixedRateLink(float(rng.uniform(2e5, 5e6))),
                     budget=Budget(deadline_ms=deadline, max_loss=bound), space=SPACE, quality=t)
        a, b = pl.search(), pl.brute_force()
        assert a.key() == b.key()
        if a.feasible:
            assert a.loss_pp <= bound + 1e-9 and a.latency_ms <= deadline
        else:  # nothing feasible: check by enumeration
            ok = [c for c in _all_configs() if pl.loss_pp(*c) <= bound + 1e-9
                  and pl.evaluate(*c)["latency"][0] <= deadline]
            assert not ok


def test_cli_max_loss(tmp_path, capsys):
    from collab import cli
    prof, cal = tmp_path / "p.json", tmp_path / "c.json"
    _profile().save(prof)
    calibration().save(cal)
    losses = {c: 0.2 for c in _all_configs()}
    losses.update({(3, s, b): 3.0 for s in (0.5, 0.75, 0.9) for b in SPACE.blocks})
    q = tmp_path / "q.json"
    _table(losses).save(q)
    base = ["plan", "--profile", str(prof), "--calibration", str(cal), "--link", "fixed:1",
            "--sparsities", "0.5,0.75,0.9", "--blocks", "1x1,2x2", "--qbits", "8,4", "--no-raw", "--json"]
    capsys.readouterr()
    assert cli.main(base + ["--max-loss", "1"]) == 2
    assert "quality table" in capsys.readouterr().err
    assert cli.main(base + ["--max-loss", "1", "--quality-table", str(q)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["split"] == 2 and plan["loss_pp"] == pytest.approx(0.2)
    assert cli.main(base + ["--quality-table", str(q)]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == 3
