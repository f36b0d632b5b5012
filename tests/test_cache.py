"""The pick cache file: round trips, corrupt and unwritable files, and writers that really overlap."""

import json
import logging
import multiprocessing
import os

import pytest

from blocks.measure import cache

WRITES = 150  # per process: each write is a locked read-merge-write of the whole file


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "picks.json"
    monkeypatch.setenv(cache.ENV_VAR, str(path))
    return path


def test_round_trip(private_cache):
    assert cache.load({"k": 1}) is None
    assert cache.store({"k": 1}, {"winner": "xla"})
    assert cache.load({"k": 1}) == {"winner": "xla"}
    assert cache.load({"k": 2}) is None
    assert json.loads(private_cache.read_text())["format"] == cache.FORMAT


def test_corrupt_cache_is_set_aside_and_rebuilt(private_cache, caplog):
    private_cache.parent.mkdir(parents=True)
    private_cache.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="blocks"):
        assert cache.load({"k": 1}) is None
        assert cache.store({"k": 1}, {"winner": "functional"})
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "unreadable" in lines[0] and "moved to" in lines[0]
    assert "\n" not in lines[0]
    aside = [p for p in private_cache.parent.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_text() == "{not json"
    assert cache.load({"k": 1}) == {"winner": "functional"}


def test_cache_of_another_format_is_set_aside(private_cache, caplog):
    private_cache.parent.mkdir(parents=True)
    private_cache.write_text(json.dumps({"format": 99, "entries": []}))
    with caplog.at_level(logging.WARNING, logger="blocks"):
        assert cache.store({"k": 1}, {"winner": "xla"})
    assert "not a format-1 pick cache" in caplog.text
    assert json.loads(private_cache.read_text())["format"] == cache.FORMAT


def test_unwritable_cache_is_reported_not_raised(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(cache.ENV_VAR, str(blocker / "picks.json"))
    with caplog.at_level(logging.WARNING, logger="blocks"):
        assert cache.store({"k": 1}, {"winner": "xla"}) is False
    assert "cannot be written" in caplog.text
    assert cache.load({"k": 1}) is None


def _writer(path, start, barrier, ready):
    """Import the cache (not TensorFlow), wait for the other writer, then write as fast as it can."""
    os.environ[cache.ENV_VAR] = path
    ready.set()
    barrier.wait(timeout=60)
    for i in range(start, start + WRITES):
        if not cache.store({"entry": i}, {"winner": f"v{i}"}):
            raise SystemExit(3)


def test_two_writers_at_once_lose_nothing(private_cache):
    """Both processes start, then a barrier releases them together, so their read-merge-write
    cycles overlap for their whole length: without the file lock, entries are lost."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    ready = [ctx.Event(), ctx.Event()]
    procs = [
        ctx.Process(target=_writer, args=(str(private_cache), start, barrier, r))
        for start, r in zip((0, 10_000), ready)
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(120)
            assert p.exitcode == 0, f"writer exit code {p.exitcode}"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    assert all(r.is_set() for r in ready)
    entries = json.loads(private_cache.read_text())["entries"]
    expected = set(range(WRITES)) | set(range(10_000, 10_000 + WRITES))
    assert {json.loads(k)["entry"] for k in entries} == expected
    assert not [p for p in private_cache.parent.iterdir() if p.suffix == ".tmp"]
