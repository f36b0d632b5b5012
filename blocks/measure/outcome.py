"""The pick's last step: a finished run turned into its `PickResult` (see `result`): a row per
candidate, fastest first, the decision and the verified winner, and the machine it ran on."""

from __future__ import annotations

import datetime

from blocks import cpu
from blocks.measure import numerics, stats
from blocks.measure.candidates import Candidate, Run
from blocks.measure.pickcache import make_key
from blocks.measure.result import PickResult, Ranked, how_to_apply

# Final-round figures first (each candidate alone in its process), fastest first; then the
# screened out (screening rounds, several candidates per process); then the rest.
_ORDER = {"winner": 0, "finalist": 0, "reference": 0, "screened out": 1, "disqualified": 2}


def result(run: Run, decision, verification) -> PickResult:
    rows = [_ranked(run, c) for c in run.candidates]
    rows.sort(key=lambda r: (_ORDER.get(r.status, 3), -(r.images_per_sec or 0)))
    winner = next((c for c in run.candidates if c.status == "winner"), None)
    machine = {**cpu.describe(), "device": run.workload.device}
    speedup = None
    provisional = decision is None or decision.provisional
    text = decision.text if decision else run.unverified
    if winner is not None:
        w = next(r for r in rows if r.status == "winner")
        if w.speedup is not None:
            speedup = [w.speedup, *(w.speedup_ci or [None, None])]
        if not w.speedup_ci and winner is not run.reference:
            # The decision among candidates may stand (the only candidate), but its gain over
            # the reference rests on too few paired rounds for an interval.
            provisional = True
            text += (
                f"; its speedup over the reference rests on {w.speedup_rounds} paired "
                f"round(s), fewer than the {stats.MIN_ROUNDS} an interval needs: provisional"
            )
    return PickResult(
        workload=run.workload.to_json(),
        key=make_key(run.workload, run.configs, run.accuracy),
        ranking=rows,
        winner=None if winner is None else winner.config.to_json(),
        decision=text,
        clearly_ahead=bool(decision and decision.clearly_ahead),
        provisional=bool(provisional),
        speedup=speedup,
        apply=how_to_apply(winner.config, run.workload, winner.engine) if winner else {},
        accuracy=numerics.describe(run),
        verification=verification,
        machine={**machine, **run.versions},
        measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        elapsed_s=round(run.clock.elapsed(), 1),
        notes=run.notes,
        load=run.load.to_json(),
    )


def _ranked(run: Run, c: Candidate) -> Ranked:
    times = c.final or c.screen
    row = Ranked(
        config=c.config.to_json(),
        label=c.config.label,
        status=c.status,
        compile_s=None if c.compile_s is None else round(c.compile_s, 3),
        reason=c.reason,
        detail=c.detail or None,
        layout=c.layout,
        engine=c.engine,
        accuracy=c.cost,
    )
    if times:
        t = stats.throughput(list(times.values()), run.workload.batch_size * c.config.replicas)
        row.images_per_sec = round(t["images_per_sec"], 2)
        row.q1_images_per_sec = round(t["q1_images_per_sec"], 2)
        row.q3_images_per_sec = round(t["q3_images_per_sec"], 2)
        row.rounds = t["rounds"]
        ref = run.reference
        ref_times = (ref.final if c.final else ref.screen) if ref else {}
        if ref_times:
            _against_reference(row, c, times, ref_times, run.workload.batch_size)
    return row


def _against_reference(row: Ranked, c: Candidate, times: dict, ref_times: dict, batch: int):
    """The row's speedup over the reference, from their paired rounds."""
    r = stats.ratio(ref_times, times)
    paired = [ref_times[k] for k in times if k in ref_times]
    if paired:
        t_ref = stats.throughput(paired, batch)
        row.reference_images_per_sec = round(t_ref["images_per_sec"], 2)
    if r.rounds:
        # In throughput: a strategy's step takes `replicas` times the images.
        s = [c.config.replicas * x for x in r.speedup()]
        row.speedup, row.speedup_rounds = round(s[0], 3), r.rounds
        row.speedup_ci = [round(s[1], 3), round(s[2], 3)] if r.decided else None
