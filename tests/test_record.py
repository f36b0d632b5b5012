"""The results record: committed runs (those written before the record had a version field and
those written with it) read through `record.Run`, every figure of a row kept, and a row written and read back unchanged."""

import glob
import json
import os

import pytest

from blocks.measure import record, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = sorted(
    p
    for p in glob.glob(os.path.join(ROOT, "bench", "results", "**", "*.json"), recursive=True)
    if "benchmarks" in json.load(open(p, encoding="utf-8"))
)


def test_there_are_committed_runs():
    assert len(COMMITTED) >= 3


@pytest.mark.parametrize("path", COMMITTED, ids=os.path.basename)
def test_a_committed_run_reads_with_every_figure_kept(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    entries = [b for b in data["benchmarks"] if record.is_row(b)]
    run = report.load(path)
    assert run.version == 1 and run.header == data["resnet_blocks"]
    assert len(run.rows) == len(entries) > 0
    for row, entry in zip(run.rows, entries):
        written = row.info()
        assert written["version"] == record.VERSION  # files before the field read as version 1
        # Keys newer than the file read as their defaults; every key of the file is kept.
        newer = {
            k: v for k, v in written.items() if k not in entry["extra_info"] and k != "version"
        }
        assert set(newer.values()) <= {None}, row.label
        assert {k: written[k] for k in entry["extra_info"]} == entry["extra_info"], row.label
        assert (row.group, row.median, row.rounds) == (
            entry["group"],
            entry["stats"]["median"],
            entry["stats"]["rounds"],
        )


def test_a_row_and_a_run_round_trip(tmp_path):
    path = COMMITTED[0]
    run = report.load(path)
    again = record.Run.from_json(json.loads(json.dumps(run.to_json())), path)
    assert again == run


def test_figures_a_row_does_not_have_are_not_written():
    """A row without a strategy has no scaling keys, one not checked against float64 no error
    key: readers tell them apart by the keys' presence."""
    row = report.load(COMMITTED[0]).rows[0]
    row.scaling_efficiency = row.verified = None
    info = row.info()
    assert not {"scaling_efficiency", "scaling_ci", "single_replica_images_per_sec"} & set(info)
    assert not {"error_vs_float64", "verified"} & set(info)
    row.verified = True
    assert {"error_vs_float64", "verified"} <= set(row.info())
