"""The one timing path (`race`): the recordings in bench/ time through it as the pick does."""

import importlib.util
import json
import os

from blocks.measure import lab, race
from blocks.measure.workload import Workload

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "bench", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_noise_recording_times_through_the_race(monkeypatch):
    """bench/record_noise.py prepares its workers and runs its rounds with `race` (real workers,
    a tiny model, two rounds), and writes what it always wrote: the keys of the committed
    recording, every worker's times in round order at one number of calls per sample."""
    record_noise = _script("record_noise")
    monkeypatch.setattr(lab, "MIN_SAMPLE_S", 0.01)
    races = []
    run_rounds = race.run_rounds

    def spy(entrants, rounds, **kwargs):
        races.append((entrants, rounds, kwargs))
        return run_rounds(entrants, rounds, **kwargs)

    monkeypatch.setattr(race, "run_rounds", spy)
    run = record_noise.record(Workload("inference", 1, image_size=16), "default", 2, 2, seed=3)

    [(entrants, rounds, kwargs)] = races
    assert rounds == 2 and kwargs == {"seed": 3}
    assert [e.label for e in entrants] == ["p0", "p1"]
    assert run["seconds"] == [[e.times[0], e.times[1]] for e in entrants]
    assert {e.calls for e in entrants} == {run["calls_per_sample"]}
    assert run["min_sample_s"] == 0.01
    with open(os.path.join(ROOT, "tests", "data", "noise.json")) as f:
        committed = json.load(f)["runs"][0]
    assert list(run) == list(committed)
