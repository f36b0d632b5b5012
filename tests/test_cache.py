"""The pick cache file: round trips, corrupt and unwritable files, and writers that really overlap."""

import json
import logging
import multiprocessing
import os

import pytest

from blocks.measure import cache
from tests.helpers.tree import snapshot

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
    assert private_cache.read_text().startswith('{\n "resnet-blocks": "pick cache",')


def _cut_short(private_cache) -> bytes:
    """A cache file of ours, truncated mid-entry (as a full disk or a crash under another
    writer could leave it)."""
    assert cache.store({"k": 0}, {"winner": "xla", "padding": "x" * 200})
    data = private_cache.read_bytes()[:150]
    private_cache.write_bytes(data)
    return data


def test_corrupt_cache_of_ours_is_set_aside_and_rebuilt(private_cache, caplog):
    data = _cut_short(private_cache)
    with caplog.at_level(logging.WARNING, logger="blocks"):
        assert cache.load({"k": 1}) is None
        assert cache.store({"k": 1}, {"winner": "functional"})
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "unreadable" in lines[0] and "moved to" in lines[0]
    assert "\n" not in lines[0]
    aside = [p for p in private_cache.parent.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == data
    assert cache.load({"k": 1}) == {"winner": "functional"}


def test_cache_of_another_format_is_set_aside(private_cache, caplog):
    private_cache.parent.mkdir(parents=True)
    private_cache.write_text(json.dumps({"format": 99, "entries": []}))
    with caplog.at_level(logging.WARNING, logger="blocks"):
        assert cache.store({"k": 1}, {"winner": "xla"})
    assert "not a format-1 pick cache" in caplog.text
    assert json.loads(private_cache.read_text())["format"] == cache.FORMAT


def test_cache_of_an_earlier_version_is_read_and_kept(private_cache):
    """Earlier versions wrote format 1 without the marker, keys sorted ("entries" first)."""
    private_cache.parent.mkdir(parents=True)
    old = {"format": 1, "entries": {cache.key_string({"k": 0}): {"winner": "xla"}}}
    private_cache.write_text(json.dumps(old, indent=1, sort_keys=True))
    assert cache.load({"k": 0}) == {"winner": "xla"}
    assert cache.store({"k": 1}, {"winner": "functional"})
    assert cache.load({"k": 0}) == {"winner": "xla"}
    assert cache.load({"k": 1}) == {"winner": "functional"}
    assert private_cache.read_text().startswith('{\n "resnet-blocks": "pick cache",')
    assert not [p for p in private_cache.parent.iterdir() if ".corrupt-" in p.name]


def _plant(kind, at):
    """Something of the user's at the cache's path."""
    if kind == "directory":
        at.mkdir(parents=True)
        (at / "notes.txt").write_text("mine")
        return "a directory"
    at.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(at)
        return "not a regular file"
    data = {
        "empty": b"",
        "text": b"{not json",
        "other JSON": json.dumps({"name": "my settings", "entries": []}).encode(),
        "binary": bytes(range(256)),
    }[kind]
    at.write_bytes(data)
    return "an empty file" if kind == "empty" else "a file without the pick cache marker"


@pytest.mark.parametrize("kind", ["directory", "fifo", "empty", "text", "other JSON", "binary"])
def test_what_is_not_a_cache_is_refused_and_left_as_it_is(private_cache, caplog, kind):
    """A path the project did not write is never renamed, replaced, read as a cache or given a
    .lock beside it: one warning per call, naming the path and what was expected."""
    what = _plant(kind, private_cache)
    before = snapshot(private_cache.parent.parent)
    for call in (lambda: cache.load({"k": 1}), lambda: cache.store({"k": 1}, {"w": 1})):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="blocks"):
            assert call() in (None, False)
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and "\n" not in lines[0], lines
        assert lines[0].startswith(
            f"resnet-blocks: pick cache {private_cache} is {what}; expected a resnet-blocks "
            "pick cache file. Left as it is: "
        )
        assert snapshot(private_cache.parent.parent) == before
    assert cache.store({"k": 1}, {"w": 1}) is False


def test_a_link_to_the_cache_stays_a_link(tmp_path, monkeypatch):
    real = tmp_path / "real" / "picks.json"
    real.parent.mkdir()
    link = tmp_path / "link.json"
    link.symlink_to(real)
    monkeypatch.setenv(cache.ENV_VAR, str(link))
    assert cache.store({"k": 1}, {"winner": "xla"})
    assert cache.store({"k": 2}, {"winner": "functional"})
    assert link.is_symlink() and cache.load({"k": 1}) == {"winner": "xla"}
    assert set(json.loads(real.read_text())["entries"]) == {
        cache.key_string({"k": 1}),
        cache.key_string({"k": 2}),
    }


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
