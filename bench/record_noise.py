"""Record the noise of identical configurations in separate processes, for the statistics tests.

    python bench/record_noise.py tests/data/noise.json [--rounds 30] [--processes 4]

Starts N worker processes that each hold the same configuration (subclassed, tf.function) and
times them in interleaved rounds, in random order within a round (`race.run_rounds`, the one
timing path), for a few workloads and both oneDNN settings. The file keeps every per-round time
with the machine and versions it came from; tests/test_stats.py draws synthetic races from it:
the pick's rule must call identical configurations a tie, and find a real difference.
"""

from __future__ import annotations

import argparse
import datetime
import json

from blocks import cpu
from blocks.fileio import atomic_write, check_replaceable, json_with_keys
from blocks.measure import lab, race, runtimes
from blocks.measure.workers import Pool
from blocks.measure.workload import REFERENCE, Workload

WORKLOADS = (Workload("inference", 64), Workload("inference", 1), Workload("train", 64))


def record(workload: Workload, runtime: str, processes: int, rounds: int, seed: int) -> dict:
    with Pool() as pool:
        started = [pool.start(f"p{i}", runtime) for i in range(processes)]
        info = [w.hello() for w in started][0]
        entrants = [
            race.prepare(w, "ref", workload, REFERENCE, lab.MIN_SAMPLE_S, 900, label=w.name)[0]
            for w in started
        ]
        calls = race.one_scale(entrants)
        race.run_rounds(entrants, rounds, seed=seed)
    for e in entrants:
        if e.error is not None:
            raise RuntimeError(e.error)
    times = [[e.times[r] for r in sorted(e.times)] for e in entrants]
    return {
        "workload": workload.to_json(),
        "runtime": runtime,
        "onednn": info["onednn"],
        "calls_per_sample": calls,
        "min_sample_s": lab.MIN_SAMPLE_S,
        "seconds": times,
        "tf": info["tf"],
        "keras": info["keras"],
        "cpu": info["cpu"],
    }


RECORDING_KEYS = ("recorded", "machine", "runs")
RECORDING = "an earlier recording (JSON with 'recorded', 'machine' and 'runs')"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    try:  # before an hour of recording, not after it
        check_replaceable(args.out, "the recording", RECORDING, json_with_keys(*RECORDING_KEYS))
    except OSError as e:
        parser.error(str(e))
    names, _ = runtimes.distinct(["onednn", "no-onednn"])
    runs = [
        record(w, r, args.processes, args.rounds, seed)
        for seed, (w, r) in enumerate((w, r) for w in WORKLOADS for r in names)
    ]
    data = {
        "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": cpu.describe(),
        "runs": runs,
    }
    text = (json.dumps(data, indent=1) + "\n").encode("utf-8")
    atomic_write(args.out, lambda f: f.write(text), "the recording")


if __name__ == "__main__":
    main()
