"""Pick from a saved `pytest bench/` run (`--benchmark-json=FILE`) instead of measuring."""

from __future__ import annotations

import os
from typing import Optional

from blocks.measure import runs
from blocks.measure.load import Load
from blocks.measure.picker import TIE_MARGIN, plan, workload_for
from blocks.measure.record import Row, Run
from blocks.measure.result import PickResult, Ranked, how_to_apply
from blocks.measure.workload import Config, SearchSpace


def pick_from_benchmarks(
    path, device=None, *, space: Optional[SearchSpace] = None, **fields
) -> PickResult:
    """Pick from a saved `pytest bench/` run (`--benchmark-json=FILE`) instead of measuring.

    Each configuration there was interleaved with the reference, not with the others, so the
    winner is the largest paired speedup over the reference, clearly ahead only if its interval
    lies above the runner-up's by more than TIE_MARGIN; nothing is verified or cached.
    `fields` are the workload's (`picker.workload_for`); without a device or an image size,
    any in the file; without a `space`, any configuration.
    """
    run = runs.load(path)
    rows = _matching(run, path, device, space or SearchSpace(), fields)
    ranked = [_ranked(r) for r in rows]
    best = ranked[0]
    clear, text = _decision(ranked)
    best.status = "winner"
    w = rows[0].workload
    header = run.header
    return PickResult(
        workload=w.to_json(),
        key={},
        ranking=ranked,
        winner=best.config,
        decision=text,
        clearly_ahead=clear,
        provisional=not best.speedup_ci,  # its gain over the reference has no interval
        speedup=[best.speedup, *(best.speedup_ci or [None, None])],
        apply=how_to_apply(Config.from_json(best.config), w, best.engine),
        verification=None,
        machine={**header.get("machine", {}), "tf": header.get("tf"), "keras": header.get("keras")},
        measured_at=header.get("recorded") or "unknown date",
        source=f"file {os.fspath(path)}",
        load=_load(rows),
    )


def _matching(run: Run, path, device, space: SearchSpace, fields: dict) -> list:
    """The rows of the asked workload (of one group) with a paired speedup, best first."""
    wanted = workload_for(device, **fields)
    configs, _ = plan(wanted, space)  # checks every option
    if space.precisions_for(wanted) != [wanted.dtype_policy]:
        # A run's tables are of one policy each, each against the reference in that policy: a
        # gain across policies was never paired, and no accuracy cost was measured.
        raise ValueError(
            "Invalid precisions for a saved run. Expected --dtype-policy alone (a saved run's "
            "policies were not raced against each other); Received: "
            f"precisions={space.precisions!r}"
        )
    mode, batch, policy, arch = wanted.mode, wanted.batch_size, wanted.dtype_policy, wanted.arch
    size = fields.get("image_size")
    rows = []
    for row in run.rows:
        w = row.workload
        if (w.mode, w.batch_size, w.dtype_policy, w.arch) != (mode, batch, policy, arch):
            continue
        if (size and w.size != size) or (device and w.device != wanted.device):
            continue
        if row.speedup_vs_reference is None:
            continue
        if space.restricted and row.config not in configs:
            continue
        rows.append(row)
    if not rows:
        raise ValueError(
            f"No benchmark in {os.fspath(path)!r} matches mode={mode!r}, batch_size={batch}, "
            f"dtype_policy={policy!r}, arch={arch!r}"
            + (f", image size {size}" if size else "")
            + f". Groups in the file: {sorted({r.group for r in run.rows})}"
        )
    if len({r.group for r in rows}) > 1:
        raise ValueError(
            "Several devices or image sizes match; choose one with --device / --image-size. "
            f"Groups: {sorted({r.group for r in rows})}"
        )
    return sorted(rows, key=lambda r: -r.speedup_vs_reference)


def _ranked(row: Row) -> Ranked:
    med, lo, hi = row.throughput()
    return Ranked(
        config=row.config.to_json(),
        label=row.label,
        status="finalist",
        images_per_sec=round(med, 2),
        q1_images_per_sec=round(lo, 2),
        q3_images_per_sec=round(hi, 2),
        speedup=row.speedup_vs_reference,
        speedup_ci=row.speedup_ci,
        speedup_rounds=row.rounds,  # each round paired with the reference's
        reference_images_per_sec=row.reference_images_per_sec,
        rounds=row.rounds,
        compile_s=row.compile_s,
        layout=row.layout,
        engine=row.engine,
    )


def _decision(ranked: list) -> tuple:
    """(clearly ahead, the sentence saying why) for the first of `ranked`."""
    best = ranked[0]
    if len(ranked) == 1:
        return False, f"{best.label} is the only configuration in the file"
    second = ranked[1]
    clear = False
    if best.speedup_ci and second.speedup_ci:
        clear = best.speedup_ci[0] > second.speedup_ci[1] * (1 + TIE_MARGIN)
    return clear, (
        f"{best.label}: {best.speedup:.2f}x the reference against {second.label}'s "
        f"{second.speedup:.2f}x; "
        + (
            "clearly ahead (their intervals do not overlap)"
            if clear
            else "not clearly ahead (configurations of a saved run were paired with the "
            "reference, not with each other)"
        )
    )


def _load(rows: list) -> dict:
    """The machine's load over the rows' benchmarks: busy if any one was."""
    loads = [r.load for r in rows]
    load = sum((Load.from_json(x) for x in loads), Load()).to_json() if any(loads) else {}
    busy = [x for x in loads if x and x.get("busy")]
    if busy and not load["busy"]:  # one benchmark measured on a busy machine is enough
        load.update(busy=True, warning=busy[0]["warning"])
    return load
