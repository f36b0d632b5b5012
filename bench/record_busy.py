"""How busy may the machine be before identical configurations measure apart?

    python bench/record_busy.py bench/results/ [--loads 0,1,2] [--repeats 2] [--target-s 20]

The reference (subclassed, tf.function) races a second process holding the same configuration, so
the true ratio is 1.0, through the one timing path (`lab.measure`, hence `race.run_rounds`) while
0, 1, 2 ... busy-loop processes run beside it. For each race the file keeps what the load sampler
saw (`blocks.measure.load`: others' share of the machine), the spurious speedup with its paired
95% interval, and the per-round times. `load.BUSY_SHARE` is chosen from it. Other people's work
on the machine counts too: it is what the sampler is for, and it is recorded, not removed.
`busy-<cpu>-tf<version>.json` keeps the machine and versions; each run is added to its `runs`,
so that quiet and busy spells of a shared machine accumulate.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys

from blocks import cpu
from blocks.measure import lab
from blocks.measure.workload import REFERENCE, Workload

BUSY_LOOP = "while True: pass"


def race(bench: lab.Lab, workload: Workload, loops: int, target_s: float, seed: int) -> dict:
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(loops)]
    try:
        measured = bench.measure(workload, REFERENCE, target_s, seed=seed)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    r = measured.ratio()
    speedup, low, high = r.speedup()
    return {
        "busy_loops": loops,
        "load": measured.load.to_json(),
        "load_text": measured.load.text(),
        # Speedup of the second process over the reference: 1.0 is the truth.
        "speedup": [speedup, *((low, high) if r.decided else (None, None))],
        "rounds": r.rounds,
        "times": [measured.times[k] for k in sorted(measured.times)],
        "reference_times": [measured.reference_times[k] for k in sorted(measured.reference_times)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--loads", default="0,1,2", help="busy-loop processes per race")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--target-s", type=float, default=20.0, help="timed seconds per race")
    args = parser.parse_args()
    workload = Workload("inference", args.batch_size)
    loads = [int(n) for n in args.loads.split(",")]
    bench = lab.Lab()
    races = []
    try:
        bench.prepare(workload, REFERENCE)
        bench.reference(workload)
        for repeat in range(args.repeats):
            order = loads if repeat % 2 == 0 else loads[::-1]  # no load always first
            for loops in order:
                row = race(bench, workload, loops, args.target_s, seed=len(races))
                races.append(row)
                s, lo, hi = row["speedup"]
                ci = f"({lo:.2f}-{hi:.2f})" if lo is not None else "(no interval)"
                print(f"{loops} busy loops: {row['load_text']}; identical {s:.2f}x {ci}")
        info = bench.pool.workers["reference"].info
    finally:
        bench.close()
    machine = cpu.describe()
    name = re.sub(r"[^a-z0-9]+", "-", machine.get("cpu", "cpu").lower()).strip("-")
    suffix = "" if args.batch_size == 64 else f"-b{args.batch_size}"
    path = os.path.join(args.out_dir, f"busy-{name}-tf{info['tf']}{suffix}.json")
    data = {"machine": machine, "workload": workload.to_json(), "runs": []}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    data["runs"].append(
        {
            "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tf": info["tf"],
            "keras": info["keras"],
            "min_sample_s": lab.MIN_SAMPLE_S,
            "races": races,
        }
    )
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
