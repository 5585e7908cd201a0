"""collab.planner.quality: the measured quality table (validation) and the row-policy chooser
on synthetic tables, including the cases where it must refuse."""
import json
import math

import pytest

from collab.planner.quality import (SCHEMA, BoundError, NoTableError, QualityError, QualityTable, choose,
                                    load_quality_table, merge_tables)

SHA = "ab" * 32


def table_dict(**over):
    d = {"schema": SCHEMA, "system": "llm", "model": {"name": "m.gguf", "sha256": SHA},
         "metric": {"name": "tf_top1", "unit": "fraction", "higher_is_better": True}, "item": "early row",
         "measured": {"by": "test"},
         "entries": [
             {"split": 4, "policy": "exact", "config": {}, "reference": True, "bytes_per_item": 2304, "quality": 0.98},
             {"split": 4, "policy": "fc", "config": {"ratio": 8, "dtype": "int8"}, "bytes_per_item": 76,
              "quality": 0.96},
             {"split": 4, "policy": "slicer", "config": {"sparsity": 0.9, "qbits": 8}, "bytes_per_item": 300,
              "quality": 0.90},
             {"split": 4, "policy": "slicer", "config": {"sparsity": 0.5, "qbits": 8}, "bytes_per_item": 1200,
              "quality": 0.975}]}
    d.update(over)
    return d


def write(tmp_path, d):
    p = tmp_path / "q.json"
    p.write_text(json.dumps(d))
    return p


def test_roundtrip_and_loss(tmp_path):
    t = QualityTable.from_dict(table_dict())
    p = tmp_path / "t.json"
    t.save(p)
    u = load_quality_table(p, system="llm", model_sha256=SHA)
    assert [e.label() for e in u.at(4)] == [e.label() for e in t.at(4)]
    fc = [e for e in u.at(4) if e.policy == "fc"][0]
    assert u.loss(fc) == pytest.approx(2.0)  # percentage points against the reference


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d.update(schema="collab.quality/2"), "schema"),
    (lambda d: d.update(schema=None), "schema"),
    (lambda d: d["model"].update(sha256="xyz"), "sha256"),
    (lambda d: d["entries"][1].update(quality=math.nan), "finite"),
    (lambda d: d["entries"][1].update(bytes_per_item=math.inf), "finite"),
    (lambda d: d["entries"][1].update(bytes_per_item=-1), "bytes_per_item"),
    (lambda d: d["entries"][1].update(quality=1.5), "fraction"),
    (lambda d: d["entries"][0].update(reference=False), "reference"),
    (lambda d: d["entries"][1].update(reference=True), "two reference"),
    (lambda d: d["entries"].append(dict(d["entries"][1])), "duplicate"),
    (lambda d: d.update(entries=[]), "at least one"),
    (lambda d: d["entries"][1].update(split="4"), "split"),
    (lambda d: d["metric"].pop("higher_is_better"), "higher_is_better"),
])
def test_bad_tables_are_refused(tmp_path, mutate, msg):
    d = table_dict()
    mutate(d)
    with pytest.raises(QualityError, match=msg):
        load_quality_table(write(tmp_path, d))


def test_nan_in_json_text_is_refused(tmp_path):
    p = tmp_path / "q.json"
    p.write_text(json.dumps(table_dict()).replace('"quality": 0.96', '"quality": NaN'))
    with pytest.raises(QualityError, match="finite"):
        load_quality_table(p)


def test_wrong_model_or_system_is_refused(tmp_path):
    p = write(tmp_path, table_dict())
    with pytest.raises(QualityError, match="measured on m.gguf"):
        load_quality_table(p, model_sha256="cd" * 32)
    with pytest.raises(QualityError, match="system"):
        load_quality_table(p, system="vit")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(QualityError, match="not JSON"):
        load_quality_table(tmp_path / "bad.json")


def test_chooser_picks_fastest_within_bound():
    t = QualityTable.from_dict(table_dict())
    # slow link: bytes dominate; fc loses 2 pp, slicer s0.5 loses 0.5 pp
    assert choose(t, split=4, items=100, bandwidth_bps=1e6, max_loss=3).entry.policy == "fc"
    c = choose(t, split=4, items=100, bandwidth_bps=1e6, max_loss=1)
    assert (c.entry.policy, c.entry.config["sparsity"]) == ("slicer", 0.5)
    assert choose(t, split=4, items=100, bandwidth_bps=1e6, max_loss=0).entry.policy == "exact"
    # the caller can restrict the policies it can run
    assert choose(t, split=4, items=100, bandwidth_bps=1e6, max_loss=3, policies=("exact", "slicer")).entry.config[
        "sparsity"] == 0.5
    assert "chose fc" in choose(t, split=4, items=100, bandwidth_bps=1e6, max_loss=3).describe()


def test_codec_time_can_outweigh_bytes():
    d = table_dict()
    d["entries"][1]["encode_ms_per_item"] = 1.0  # a slow encoder on a fast link
    t = QualityTable.from_dict(d)
    c = choose(t, split=4, items=100, bandwidth_bps=1e10, max_loss=3)
    assert c.entry.policy == "slicer" and c.latency_ms < 1.0  # fewest bytes among the codecs that cost nothing
    assert [x[3] for x in c.considered if x[0].policy == "fc"] == [pytest.approx(100.0, rel=1e-3)]


def test_chooser_can_fail():
    t = QualityTable.from_dict(table_dict())
    with pytest.raises(NoTableError, match="cannot be bounded"):
        choose(None, split=4, items=10, bandwidth_bps=1e6, max_loss=1)
    with pytest.raises(BoundError, match="latency"):
        choose(t, split=4, items=100, bandwidth_bps=1e3, max_loss=5, latency_target_ms=10)
    with pytest.raises(BoundError):
        choose(t, split=4, items=100, bandwidth_bps=1e6, max_loss=1, policies=("fc",))
    with pytest.raises(QualityError, match="no entries for split 8"):
        choose(t, split=8, items=100, bandwidth_bps=1e6, max_loss=1)
    d = table_dict()
    d["entries"][0]["quality"] = 0.5  # reference worse than... every lossy entry "gains": still fine
    assert choose(QualityTable.from_dict(d), split=4, items=1, bandwidth_bps=1e6, max_loss=0).entry.policy == "fc"
    for bad in (dict(bandwidth_bps=0), dict(max_loss=-1), dict(max_loss=math.nan), dict(items=-1)):
        kw = dict(split=4, items=10, bandwidth_bps=1e6, max_loss=1)
        kw.update(bad)
        with pytest.raises(ValueError):
            choose(t, **kw)


def test_cli_plan_with_a_quality_table(tmp_path, capsys):
    from collab import cli

    p = write(tmp_path, table_dict())
    base = ["plan", "--quality-table", str(p), "--split", "4", "--items", "100", "--link", "fixed:1"]
    assert cli.main(base + ["--max-loss", "1"]) == 0
    assert "chose slicer(qbits=8,sparsity=0.5)" in capsys.readouterr().out
    assert cli.main(base + ["--max-loss", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entry"]["policy"] == "fc"
    assert cli.main(base + ["--max-loss", "3", "--deadline-ms", "1"]) == 2  # nothing that fast
    assert "no row policy at split 4" in capsys.readouterr().err
    assert cli.main(base) == 2  # no --max-loss
    assert "--max-loss" in capsys.readouterr().err
    assert cli.main(["plan"]) == 2  # neither a profile nor a table


def test_merge_keeps_other_splits_and_replaces_remeasured_ones():
    old = QualityTable.from_dict(table_dict(measured={"by": "test", "command": "old run"}))
    e15 = [{"split": 15, "policy": "exact", "config": {}, "reference": True, "bytes_per_item": 2304, "quality": 0.97},
           {"split": 15, "policy": "fc", "config": {"ratio": 8, "dtype": "int8"}, "bytes_per_item": 76,
            "quality": 0.93}]
    old = merge_tables(old, QualityTable.from_dict(table_dict(entries=e15, measured={"command": "run 15"})))
    assert old.splits() == [4, 15] and len(old.at(4)) == 4 and len(old.at(15)) == 2
    assert old.measured["splits"]["4"]["command"] == "old run" and old.measured["splits"]["15"]["command"] == "run 15"
    e4 = [{"split": 4, "policy": "exact", "config": {}, "reference": True, "bytes_per_item": 2304, "quality": 0.99},
          {"split": 4, "policy": "fc", "config": {"ratio": 8, "dtype": "int8"}, "bytes_per_item": 76, "quality": 0.5}]
    m = merge_tables(old, QualityTable.from_dict(table_dict(entries=e4, measured={"command": "run 4"})))
    assert m.splits() == [4, 15]
    assert [(e.policy, e.quality) for e in m.at(4)] == [("exact", 0.99), ("fc", 0.5)]  # re-measured: replaced
    assert [e.quality for e in m.at(15)] == [0.97, 0.93]                               # not re-measured: kept
    assert m.measured["command"] == "run 4"
    assert m.measured["splits"] == {"4": {"command": "run 4"}, "15": {"command": "run 15"}}
    assert QualityTable.from_dict(json.loads(json.dumps(m.as_dict()))).splits() == [4, 15]  # valid as a file


@pytest.mark.parametrize("over", [{"system": "vlm"}, {"model": {"name": "x", "sha256": "cd" * 32}},
                                  {"metric": {"name": "ppl", "unit": "value", "higher_is_better": False}},
                                  {"item": "patch"}])
def test_merge_refuses_a_different_table(over):
    with pytest.raises(QualityError, match="cannot merge"):
        merge_tables(QualityTable.from_dict(table_dict()), QualityTable.from_dict(table_dict(**over)))
