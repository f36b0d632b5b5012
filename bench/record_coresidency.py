"""Do serving engines and TensorFlow disturb each other when they share a worker process?

    python bench/record_coresidency.py bench/results/ [--batch-sizes 1,64] [--rounds 15]

Each configuration (the reference in tf.function and each installed serving engine) is compiled
twice: alone in a worker process of its own, and in one shared worker that holds all of them. All
entrants then race in the same interleaved rounds (`race.run_rounds`, the one timing path), so
for each configuration the per-round ratio shared / alone is paired and its drift cancels. A ratio
above 1 means the company slows it down. `pick` and `pytest bench/` give every engine a process of
its own (`Config.process`) on the strength of this record. The file
`coresidency-<cpu>-tf<version>.json` keeps the per-round times, the machine and the versions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re

from blocks import _compat, cpu
from blocks.executions import ENGINES
from blocks.fileio import atomic_write, check_replaceable, json_with_keys
from blocks.measure import lab, race, stats, workers
from blocks.measure.workload import REFERENCE, Config, Workload


def configs() -> list:
    found = [REFERENCE]
    for name, spec in ENGINES.items():
        if spec.missing() is None:
            found.append(Config(REFERENCE.variant, name))
    return found


def record(workload: Workload, rounds: int, seed: int) -> dict:
    candidates = configs()
    with workers.Pool() as pool:
        shared = pool.start("shared")
        info = shared.hello()
        entrants = []
        for c in candidates:
            alone = pool.start(f"alone-{c.execution}")
            alone.hello()
            for where, worker in (("alone", alone), ("shared", shared)):
                entrant, reply = race.prepare(
                    worker, c.label, workload, c, lab.MIN_SAMPLE_S, 900, label=f"{where} {c.label}"
                )
                entrant.engine = reply.get("engine")
                entrants.append(entrant)
        for e in entrants:  # one scale: the same calls per sample for the same configuration
            e.calls = max(o.calls for o in entrants if o.key == e.key)
        race.run_rounds(entrants, rounds, seed=seed)
    by_label = {e.label: e for e in entrants}
    rows = []
    for c in candidates:
        alone, together = by_label[f"alone {c.label}"], by_label[f"shared {c.label}"]
        r = stats.ratio(alone.times, together.times)  # time shared / time alone, per round
        rows.append(
            {
                "label": c.label,
                "engine": alone.engine,
                "alone_images_per_sec": stats.throughput(
                    list(alone.times.values()), workload.batch_size
                )["images_per_sec"],
                "shared_images_per_sec": stats.throughput(
                    list(together.times.values()), workload.batch_size
                )["images_per_sec"],
                "shared_over_alone_time": [r.median, r.low, r.high],
                "alone_times": [alone.times[k] for k in sorted(alone.times)],
                "shared_times": [together.times[k] for k in sorted(together.times)],
            }
        )
    return {"workload": workload.to_json(), "tf": info["tf"], "keras": info["keras"], "rows": rows}


_CHECK = (
    "the recording",
    "an earlier recording (JSON with 'recorded', 'machine' and 'runs')",
    json_with_keys("recorded", "machine", "runs"),
)


def _path(out_dir: str, machine: dict, tf: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", machine.get("cpu", "cpu").lower()).strip("-")
    return os.path.join(out_dir, f"coresidency-{name}-tf{tf}.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if not os.path.isdir(args.out_dir):
        parser.error(f"out_dir {args.out_dir!r} is not a directory")
    try:  # before the recording, not after it
        check_replaceable(_path(args.out_dir, cpu.describe(), _compat.TF_VERSION), *_CHECK)
    except OSError as e:
        parser.error(str(e))
    runs = []
    for seed, batch in enumerate(int(b) for b in args.batch_sizes.split(",")):
        run = record(Workload("inference", batch), args.rounds, seed)
        runs.append(run)
        print(f"inference b{batch}: time shared / alone, per round (95% CI)")
        for row in run["rows"]:
            m, lo, hi = row["shared_over_alone_time"]
            ci = f"({lo:.2f}-{hi:.2f})" if lo is not None else ""
            print(
                f"  {row['label']:<32} alone {row['alone_images_per_sec']:7.1f} img/s, shared "
                f"{row['shared_images_per_sec']:7.1f} img/s, ratio {m:.2f} {ci}"
            )
    machine = cpu.describe()
    data = {
        "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "runs": runs,
    }
    path = _path(args.out_dir, machine, runs[0]["tf"])
    text = (json.dumps(data, indent=1) + "\n").encode("utf-8")
    check_replaceable(path, *_CHECK)
    atomic_write(path, lambda f: f.write(text), "the recording")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
