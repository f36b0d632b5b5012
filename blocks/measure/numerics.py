"""A pick's accuracy check: what a precision other than float32 costs, measured before it races.

Right after a candidate in such a precision compiles, its worker computes its logits on the
verification images with the weights of `Accuracy` (`blocks.measure.accuracy.logits`); once the
compile phase is over, one worker computes the float64 reference's logits of the same weights,
and each such candidate gets its cost (largest relative logit error, top-1 agreement, accuracy
where labels are given). A candidate beyond the budget is disqualified with its figures before
any round is spent on it, so the winner is the fastest inside the budget, decided by the same
statistics as every other (at a tie the higher precision wins: `final.PRECISION_COST`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from blocks.measure import accuracy, workers
from blocks.measure.candidates import Candidate, Run

LOGITS_TIMEOUT_S = 300.0


def needs_cost(run: Run, c: Candidate) -> bool:
    """Whether `c` runs in a precision other than float32 (and is a candidate, not the anchor)."""
    return not c.anchor and run.workload.at(c.config).dtype_policy != "float32"


def request(run: Run, c: Candidate) -> dict:
    """The fields of a worker's logits requests: the images and weights the check runs on."""
    return {"images": run.accuracy.images, "weights": run.accuracy.weights}


def candidate_logits(run: Run, worker, c: Candidate) -> None:
    """Ask `c`'s worker for its logits, once (a finalist compiled again keeps them)."""
    if c.logits is not None or c.cost is not None or not needs_cost(run, c):
        return
    try:
        reply = worker.call(
            "logits", run.clock.timeout(LOGITS_TIMEOUT_S), key=c.config.label, **request(run, c)
        )
    except workers.RequestFailed as e:
        c.status, c.reason, c.detail = "could not run", f"its accuracy check failed: {e}", e.detail
        return
    c.logits = reply["logits"]


def check(run: Run) -> None:
    """Cost every candidate that has logits against the float64 reference's, and disqualify
    those beyond the budget. The reference's logits come from any live worker, once."""
    costed = [c for c in run.candidates if c.logits is not None and c.cost is None]
    if not costed:
        return
    reference, labels, why_not = _reference(run)
    if reference is None:
        for c in costed:
            c.status, c.reason, c.logits = "could not run", why_not, None
        return
    budget = run.accuracy
    for c in costed:
        c.cost = accuracy.cost(np.asarray(c.logits), reference, labels)
        c.logits = None  # the cost says what they showed
        why = accuracy.over_budget(c.cost, budget.max_top1_disagreement, budget.max_logit_error)
        if why is not None and c.status == "ready":
            c.status, c.reason = "disqualified", f"accuracy: {why}"


def _reference(run: Run) -> tuple:
    """(float64 logits, labels or None, None) of the reference network on the verification
    images, or (None, None, why not)."""
    holders = [c for c in run.candidates if c.entrant is not None]
    first = next((c for c in holders if c is run.reference), holders[0] if holders else None)
    if first is None:
        return None, None, "no worker was left to compute the float64 reference's logits"
    w = run.workload
    try:
        reply = first.entrant.worker.call(
            "reference_logits",
            run.clock.timeout(LOGITS_TIMEOUT_S),
            workload=w.to_json(),
            **request(run, first),
        )
    except (workers.RequestFailed, workers.WorkerError) as e:
        return None, None, f"the float64 reference's logits could not be computed: {e}"
    labels: Optional[np.ndarray] = None
    if reply.get("labels") is not None:
        labels = np.asarray(reply["labels"])
    return np.asarray(reply["logits"], np.float64), labels, None


def describe(run: Run) -> dict:
    """What the accuracy check ran on and its budget, for the result (empty: no check ran)."""
    if not any(c.cost for c in run.candidates):
        return {}
    a = run.accuracy
    first = next(c.cost for c in run.candidates if c.cost)
    return {
        "max_top1_disagreement": a.max_top1_disagreement,
        "max_logit_error": a.max_logit_error,
        "weights": a.weights or "the project's seeded weights",
        "images": f"{first['images']} "
        + (f"images of {a.images}" if a.images else "random images"),
        "labels": first.get("accuracy") is not None,
        "reference_accuracy": first.get("reference_accuracy"),
        "indicative": a.indicative,
    }


def check_files(workload, wanted) -> None:
    """Refuse the user's images (wrong shape, dtype or arch size) and weights (what
    `blocks.load_weights` refuses) with their one-line errors, before anything is timed."""
    if wanted.images is not None:
        accuracy.load_images(wanted.images, workload.arch, workload.size)
    if wanted.weights is not None:
        accuracy.weights_for(workload.arch, workload.size, wanted.weights)
