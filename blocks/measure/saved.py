"""Pick from a saved `pytest bench/` run (`--benchmark-json=FILE`) instead of measuring."""

from __future__ import annotations

import os
from typing import Optional

from blocks.measure import report
from blocks.measure.load import Load
from blocks.measure.picker import TIE_MARGIN, plan, workload_for
from blocks.measure.result import PickResult, Ranked, how_to_apply
from blocks.measure.workload import Config, SearchSpace, Workload


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
    run = report.load(path)
    space = space or SearchSpace()
    wanted = workload_for(device, **fields)
    configs, _ = plan(wanted, space)  # checks every option
    mode, batch, policy, arch = wanted.mode, wanted.batch_size, wanted.dtype_policy, wanted.arch
    size = fields.get("image_size")
    rows, groups = [], set()
    for row in run.rows:
        info = row["extra_info"]
        w = Workload.from_json(info["workload"])
        groups.add(row["group"])
        if (w.mode, w.batch_size, w.dtype_policy, w.arch) != (mode, batch, policy, arch):
            continue
        if (size and w.size != size) or (device and w.device != wanted.device):
            continue
        if info.get("speedup_vs_reference") is None:
            continue
        if space.restricted and Config.from_json(info["config"]) not in configs:
            continue
        rows.append(row)
    if not rows:
        raise ValueError(
            f"No benchmark in {os.fspath(path)!r} matches mode={mode!r}, batch_size={batch}, "
            f"dtype_policy={policy!r}, arch={arch!r}"
            + (f", image size {size}" if size else "")
            + f". Groups in the file: {sorted(groups)}"
        )
    if len({r["group"] for r in rows}) > 1:
        raise ValueError(
            "Several devices or image sizes match; choose one with --device / --image-size. "
            f"Groups: {sorted({r['group'] for r in rows})}"
        )
    rows.sort(key=lambda r: -r["extra_info"]["speedup_vs_reference"])
    ranked = []
    for r in rows:
        info = r["extra_info"]
        med, lo, hi = report.images_per_sec(r)
        ranked.append(
            Ranked(
                config=info["config"],
                label=info["label"],
                status="finalist",
                images_per_sec=round(med, 2),
                q1_images_per_sec=round(lo, 2),
                q3_images_per_sec=round(hi, 2),
                speedup=info["speedup_vs_reference"],
                speedup_ci=info.get("speedup_ci"),
                speedup_rounds=r["stats"]["rounds"],  # each round paired with the reference's
                reference_images_per_sec=info.get("reference_images_per_sec"),
                rounds=r["stats"]["rounds"],
                compile_s=info.get("compile_s"),
                layout=info.get("layout"),
                engine=info.get("engine"),
            )
        )
    best = ranked[0]
    clear = False
    text = f"{best.label} is the only configuration in the file"
    if len(ranked) > 1:
        second = ranked[1]
        if best.speedup_ci and second.speedup_ci:
            clear = best.speedup_ci[0] > second.speedup_ci[1] * (1 + TIE_MARGIN)
        text = (
            f"{best.label}: {best.speedup:.2f}x the reference against {second.label}'s "
            f"{second.speedup:.2f}x; "
            + (
                "clearly ahead (their intervals do not overlap)"
                if clear
                else "not clearly ahead (configurations of a saved run were paired with the "
                "reference, not with each other)"
            )
        )
    best.status = "winner"
    loads = [r["extra_info"].get("load") for r in rows]
    load = sum((Load.from_json(x) for x in loads), Load()).to_json() if any(loads) else {}
    busy = [x for x in loads if x and x.get("busy")]
    if busy and not load["busy"]:  # one benchmark measured on a busy machine is enough
        load.update(busy=True, warning=busy[0]["warning"])
    w = Workload.from_json(rows[0]["extra_info"]["workload"])
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
        load=load,
    )
