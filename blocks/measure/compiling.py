"""A pick's compile phases: candidates compile in worker processes, two at a time (one per
core), in one worker per runtime and strategy (screening) or one each (the final)."""

from __future__ import annotations

import concurrent.futures
import time

from blocks.executions import is_engine
from blocks.measure import lab, numerics, race, workers
from blocks.measure.budget import CLOSE_S, COMPILE_GRACE
from blocks.measure.candidates import Candidate, Run
from blocks.measure.workload import Config

_LATE = "the budget ran out before it compiled"


def compile_all(run: Run, candidates: list, per_process: bool, phase: str) -> None:
    """Compile `candidates`: in one worker (or cluster) per runtime and strategy, or
    (per_process) one each, until `phase` of the budget (`budget.PHASES`) is spent."""
    groups: dict = {}
    for c in candidates:
        shared = "screen-" + "-".join(map(str, c.config.process))
        groups.setdefault(c.config.label if per_process else shared, []).append(c)
    progress = _Progress(run, phase, max(1, len(candidates)))

    def first(item):  # the reference's group, then the engines' (one candidate each, the
        # likeliest winners at small batches), then the rest, each in candidate order
        members = item[1]
        if any(c is run.reference for c in members):
            return 0
        return 1 if is_engine(members[0].config.execution) else 2

    until = run.clock.until(phase)
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    futures = [
        ex.submit(_compile_group, run, n, m, until, progress)
        for n, m in sorted(groups.items(), key=first)
    ]
    try:
        for f in futures:
            f.result()
    except BaseException:  # Ctrl-C: stop the workers, and do not wait for the threads
        ex.shutdown(wait=False, cancel_futures=True)
        run.pool.close()
        raise
    ex.shutdown()


class _Progress:
    """The candidates of a compile phase compiled so far, on the progress bar."""

    def __init__(self, run: Run, phase: str, total: int):
        self.run, self.phase, self.total, self.done = run, phase, total, 0

    def starting(self, c: Candidate) -> None:
        self.run.clock.report_in(self.phase, self.done / self.total, f"compiling {c.config.label}")


def _compile_group(run: Run, name: str, members: list, until: float, progress: _Progress) -> None:
    """Compile `members` in the worker `name`, started if it is not yet."""
    if time.monotonic() >= until:
        for c in members:
            c.status, c.reason = "not measured", _LATE
        return
    try:
        worker = run.pool.workers.get(name) or _start(run, name, members[0].config)
    except workers.WorkerError as e:
        out = run.clock.left() <= CLOSE_S
        for c in members:
            c.status = "not measured" if out else "could not run"
            c.reason = "the budget ran out while its worker started" if out else str(e)
        return
    for i, c in enumerate(members):
        # Once its worker is up, a group's first member compiles whatever the clock says (its
        # request has a deadline of its own): a worker started in vain measures nothing, and
        # that member is the reference when the reference is in the group.
        if i > 0 and time.monotonic() >= until:
            c.status, c.reason = "not measured", _LATE
            continue
        progress.starting(c)
        try:
            _prepare(run, worker, c, until + COMPILE_GRACE * run.clock.budget_s)
        except workers.WorkerError as e:
            for other in members:
                if other.status in ("pending", "ready"):
                    other.status, other.reason = "could not run", str(e)
            return
        progress.done += 1


def _start(run: Run, name: str, config: Config):
    worker = run.pool.start_for(name, config)
    info = worker.hello(timeout_s=run.clock.timeout(max(60.0, run.clock.left())))
    run.versions = {k: info[k] for k in ("tf", "keras", "cpu")}
    return worker


def _prepare(run: Run, worker, c: Candidate, deadline: float) -> None:
    timeout = run.clock.timeout(max(10.0, deadline - time.monotonic()))
    try:
        entrant, reply = race.prepare(
            worker, c.config.label, run.workload.at(c.config), c.config, _min_sample_s(), timeout
        )
    except workers.RequestFailed as e:
        c.status, c.reason, c.detail = "could not run", str(e), e.detail
        return
    except workers.WorkerError:
        if run.clock.left() > CLOSE_S:
            raise
        c.status, c.reason = "not measured", "the budget ran out while it compiled"
        return
    c.compile_s, c.layout, c.engine = reply["compile_s"], reply["layout"], reply.get("engine")
    c.entrant, c.status = entrant, "ready"
    numerics.candidate_logits(run, worker, c)


def _min_sample_s() -> float:
    return lab.MIN_SAMPLE_S
