"""A pick's cache key, and the cached picks of this device: what `blocks.cached_pick` and
`variant="auto"` read (the file itself is `cache`)."""

from __future__ import annotations

from typing import Optional, Sequence

from blocks import _compat, cpu, fileio
from blocks.executions import ENGINES, is_engine
from blocks.measure import cache, devices
from blocks.measure.result import PickResult
from blocks.measure.workload import Accuracy, Config, Workload


def make_key(
    workload: Workload, configs: Sequence[Config], accuracy: Optional[Accuracy] = None
) -> dict:
    """The cache key: device identity, TF and Keras versions, the workload and the candidates
    (variant x execution x runtime x strategy x precision); where a candidate runs a precision
    other than float32, its accuracy budget and the contents of the files it is checked on."""
    identity = devices.describe(workload.device)
    key = {
        "device": {k: identity[k] for k in ("kind", "name", "compute_capability") if k in identity},
        "tf": _compat.TF_VERSION,
        "keras": _compat.KERAS_VERSION,
        "workload": workload.to_json(),
        "candidates": sorted(c.label for c in configs),
    }
    used = sorted({c.execution for c in configs if is_engine(c.execution)})
    if used:  # another engine version or thread count is another measurement
        key["engines"] = {name: ENGINES[name].versions() for name in used}
        key["engine_threads"] = cpu.usable_cores()
    if any(workload.at(c).dtype_policy != "float32" for c in configs):
        a = accuracy or Accuracy()
        key["accuracy"] = {
            "max_top1_disagreement": a.max_top1_disagreement,
            "max_logit_error": a.max_logit_error,
            "weights": fileio.digest(a.weights) if a.weights else None,
            "images": fileio.digest(a.images) if a.images else None,
        }
    return key


def default_device() -> str:
    names = devices.list_devices()
    return next((n for n in names if n.startswith("GPU")), "CPU:0")


def lookup(
    workload: Workload, configs: Sequence[Config], accuracy: Optional[Accuracy] = None
) -> Optional[PickResult]:
    """The cached pick of `configs` for `workload` (checked within `accuracy`), or None."""
    entry = cache.load(make_key(workload, configs, accuracy))
    if entry is None:
        return None
    try:
        result = PickResult.from_json(entry)
    except (TypeError, KeyError, ValueError):
        return None  # an entry of an older format: measure again
    result.source = "cache"
    return result


def _same_place(key: dict, mine: dict) -> bool:
    """Measured on this device with these TF and Keras versions."""
    return all(key.get(k) == mine.get(k) for k in ("device", "tf", "keras"))


def cached_picks(device=None) -> list:
    """Every decided pick cached for this device and TF/Keras versions, whatever its workload
    and candidate space, newest first."""
    mine = make_key(Workload(device=devices.resolve(device or default_device())), [])
    found = []
    for key, entry in cache.entries():
        if not _same_place(key, mine):
            continue
        try:
            result = PickResult.from_json(entry)
        except (TypeError, KeyError, ValueError):
            continue  # an entry of an older format
        if result.winner is not None and not result.provisional:
            result.source = "cache"
            found.append(result)
    return sorted(found, key=lambda r: r.measured_at, reverse=True)


def cached_pick_for(
    workload: Workload, precisions: Optional[Sequence[str]] = None
) -> Optional[PickResult]:
    """The cached pick for `workload` here whatever candidates it raced, whose winner runs a
    precision of `precisions` (default: the workload's): of several, the one that raced the
    most, then the newest."""
    allowed = set(precisions or [workload.dtype_policy])
    hits = [
        r
        for r in cached_picks(workload.device)
        if r.workload == workload.to_json() and workload.at(r.winner_config).dtype_policy in allowed
    ]
    return max(hits, key=lambda r: len(r.key.get("candidates", ())), default=None)
