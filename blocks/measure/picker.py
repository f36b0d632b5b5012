"""`blocks.pick`: time every variant here, rank them, say whether the winner is really ahead.

Timing goes through `blocks.timing` (the benchmarks' path). Rounds are interleaved across the
variants, so a slow spell on a shared machine lands on all of them rather than on one. The
winner is "clearly ahead" when the 95% bootstrap confidence interval of the ratio of median step
times (runner-up / winner) lies above 1; otherwise it is a tie, and the simplest of the tied
variants is picked.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import time
from typing import Callable, Optional

import numpy as np

from blocks import _compat, checks
from blocks.archs import get_arch
from blocks.measure import cache, devices, report, timing
from blocks.models import input_shape_for, resolve_policy
from blocks.variants import VARIANTS, get_variant

DEFAULT_VARIANT = "subclassed"
DEFAULT_BUDGET_S = 45.0
MIN_ROUNDS, MAX_ROUNDS = 3, 200
CONFIDENCE = 0.95
BOOTSTRAP = 4000


class PickError(RuntimeError):
    """No variant could run; the message gives each one's reason."""


@dataclasses.dataclass
class Ranked:
    variant: str
    images_per_sec: Optional[float] = None
    q1_images_per_sec: Optional[float] = None
    q3_images_per_sec: Optional[float] = None
    speedup_vs_subclassed: Optional[float] = None
    rounds: int = 0
    compile_s: Optional[float] = None
    error: Optional[str] = None
    samples_s: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class PickResult:
    key: dict
    ranking: list
    winner: str
    fastest: str
    clearly_ahead: bool
    ratio_ci: Optional[tuple]
    decision: str
    measured_at: str
    source: str = "measured"

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["ranking"] = [dataclasses.asdict(r) for r in self.ranking]
        return out

    @classmethod
    def from_json(cls, data: dict) -> "PickResult":
        data = dict(data)
        data["ranking"] = [Ranked(**r) for r in data["ranking"]]
        data["ratio_ci"] = tuple(data["ratio_ci"]) if data.get("ratio_ci") else None
        return cls(**data)


def ratio_ci(faster_s, slower_s, *, confidence=CONFIDENCE, n=BOOTSTRAP, seed=0) -> tuple:
    """Bootstrap CI of median(slower) / median(faster): how many times faster `faster` is."""
    a = np.asarray(faster_s, float)
    b = np.asarray(slower_s, float)
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, len(a), (n, len(a)))], axis=1)
    mb = np.median(b[rng.integers(0, len(b), (n, len(b)))], axis=1)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(mb / ma, [tail, 1 - tail])
    return float(lo), float(hi)


def notch_ratio_ci(faster: dict, slower: dict) -> tuple:
    """Approximate 95% CI of median(slower)/median(faster) from summary statistics alone.

    Each median's interval is the box-plot notch, median +- 1.57 IQR / sqrt(n) (McGill, Tukey
    and Larsen, 1978); the ratio's interval divides the ends. For results saved without raw
    timings (pytest-benchmark's JSON without --benchmark-save-data).
    """

    def notch(s):
        return 1.57 * s["iqr"] / math.sqrt(max(s["rounds"], 1))

    lo = (slower["median"] - notch(slower)) / (faster["median"] + notch(faster))
    hi = (slower["median"] + notch(slower)) / max(faster["median"] - notch(faster), 1e-12)
    return float(lo), float(hi)


def decide(samples: dict, *, complexity: Optional[dict] = None, ci=None) -> tuple:
    """(winner, fastest, clearly_ahead, ci, decision) from {variant: timings}.

    `samples` maps each variant to its seconds per step (a list; `ci` defaults to the bootstrap)
    or to summary statistics (with `ci=notch_ratio_ci`). The fastest is the lowest median. If the
    runner-up's CI against it lies above 1, the fastest wins outright; otherwise every variant
    whose CI against the fastest reaches 1 is tied with it, and the simplest of those (lowest
    `complexity`, then name) wins.
    """
    if not samples:
        raise PickError("No variant produced timings.")
    complexity = complexity or {}
    ci = ci or ratio_ci

    def median(v):
        x = samples[v]
        return x["median"] if isinstance(x, dict) else float(np.median(x))

    order = sorted(samples, key=median)
    fastest = order[0]
    if len(order) == 1:
        return fastest, fastest, True, None, f"{fastest} is the only variant that ran"
    cis = {v: ci(samples[fastest], samples[v]) for v in order[1:]}
    runner_up = order[1]
    interval = cis[runner_up]
    level = f"{int(CONFIDENCE * 100)}% CI"
    if interval[0] > 1.0:
        return (
            fastest,
            fastest,
            True,
            interval,
            (
                f"{fastest} is clearly ahead: {interval[0]:.3f}-{interval[1]:.3f}x faster than "
                f"{runner_up} ({level})"
            ),
        )
    tied = [fastest] + [v for v in order[1:] if cis[v][0] <= 1.0]
    winner = min(tied, key=lambda v: (complexity.get(v, 99), v))
    why = (
        f"a tie within noise: {fastest} vs {runner_up} is {interval[0]:.3f}-{interval[1]:.3f}x "
        f"({level} includes 1); tied: {', '.join(tied)}; picking the simplest, {winner}"
    )
    return winner, fastest, False, interval, why


def make_key(device: str, *, mode, batch_size, dtype_policy, arch, input_shape, variants) -> dict:
    info = devices.describe(device)
    identity = {k: info[k] for k in ("kind", "name") if k in info}
    if info.get("compute_capability"):
        identity["compute_capability"] = info["compute_capability"]
    return {
        "device": identity,
        "tf": _compat.TF_VERSION,
        "keras": _compat.KERAS_VERSION,
        "arch": arch,
        "input_shape": list(input_shape),
        "batch_size": batch_size,
        "mode": mode,
        "dtype_policy": dtype_policy,
        "variants": sorted(variants),
    }


def default_device() -> str:
    names = devices.list_devices()
    return next((n for n in names if n.startswith("GPU")), "CPU:0")


def _validate(device, mode, batch_size, dtype_policy, arch, input_shape, variants, budget_s):
    device = devices.resolve(device if device is not None else default_device())
    timing.Workload("subclassed", mode=mode, batch_size=batch_size)  # mode and batch checks
    resolve_policy(dtype_policy)
    arch_spec = get_arch(arch)
    shape = input_shape_for(arch_spec, input_shape, "channels_last")
    if shape[0] != shape[1]:
        raise ValueError(f"pick times square images; Received: input_shape={input_shape!r}")
    names = list(VARIANTS) if variants is None else [get_variant(v).name for v in variants]
    if not names:
        raise ValueError("Expected at least one variant; Received: variants=[]")
    checks.positive_number(budget_s, "budget_s", allow_none=True)
    return device, arch_spec.name, shape, names


def pick(
    device=None,
    *,
    mode="inference",
    batch_size=64,
    dtype_policy="float32",
    arch="seed",
    input_shape=None,
    variants=None,
    budget_s=None,
    progress: Optional[Callable] = None,
    use_cache: bool = True,
) -> PickResult:
    """Time each variant's ResNet18 on `device` and pick the fastest (see the module docstring).

    Args:
        device: "CPU:0", "GPU:0", ... (default: the first GPU, else the CPU).
        mode: "inference" (forward, training=False) or "train" (forward, loss, gradients, SGD).
        batch_size, dtype_policy, arch, input_shape: the workload (input_shape (H, W, 3), square).
        variants: names to race (default: every registered variant).
        budget_s: seconds of timed work shared by all variants (default 45); compile and warm-up
            come on top.
        progress: called as progress(done, total, message, elapsed_s, remaining_s).
        use_cache: store the result in the per-user cache (`blocks.cache`).

    Returns:
        A PickResult: the ranking (median img/s, IQR, speedup over subclassed, or the reason a
        variant could not run), the winner and whether it is clearly ahead of the runner-up.

    Raises:
        ValueError: an unknown device, mode, dtype policy, arch or variant, or a bad batch size.
        PickError: no variant could run.
    """
    device, arch, shape, names = _validate(
        device, mode, batch_size, dtype_policy, arch, input_shape, variants, budget_s
    )
    budget_s = DEFAULT_BUDGET_S if budget_s is None else float(budget_s)
    report = progress or (lambda *a: None)
    start = time.perf_counter()
    steps, ranked = {}, {n: Ranked(n) for n in names}
    total = 2 * len(names)
    for i, name in enumerate(names):
        report(i, total, f"{name}: building and compiling", time.perf_counter() - start, None)
        workload = timing.Workload(name, mode, batch_size, dtype_policy, device, arch, shape[0])
        try:
            steps[name] = timing.prepare(workload)
            ranked[name].compile_s = round(steps[name].compile_s, 3)
        except timing.Unsupported as e:
            ranked[name].error = str(e)
        except Exception as e:  # a compile error, OOM, ...: rank it with its reason, go on
            ranked[name].error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not steps:
        reasons = "; ".join(f"{n}: {r.error}" for n, r in ranked.items())
        raise PickError(f"No variant could run on {device}. {reasons}")

    # Rounds from one call of each, so that all rounds together take about budget_s.
    per_round = sum(min(timing.time_calls(s.run, 2)) for s in steps.values())
    rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, math.floor(budget_s / max(per_round, 1e-6)))))
    samples = {n: [] for n in steps}
    timed_start = time.perf_counter()
    for r in range(rounds):
        for name, step in steps.items():  # interleaved: drift hits every variant alike
            samples[name].extend(timing.time_calls(step.run, 1))
        elapsed = time.perf_counter() - timed_start
        report(
            len(names) + int(len(names) * (r + 1) / rounds),
            total,
            f"timing round {r + 1}/{rounds}",
            time.perf_counter() - start,
            elapsed / (r + 1) * (rounds - r - 1),
        )

    complexity = {n: VARIANTS[n].complexity for n in steps if n in VARIANTS}
    winner, fastest, clear, ci, decision = decide(samples, complexity=complexity)
    ref = np.median(samples[DEFAULT_VARIANT]) if DEFAULT_VARIANT in samples else None
    for name, s in samples.items():
        stats = timing.summarize(s, batch_size)
        q1, q3 = np.percentile(s, [25, 75])
        ranked[name].images_per_sec = round(stats["images_per_sec"], 2)
        ranked[name].q1_images_per_sec = round(batch_size / q3, 2)
        ranked[name].q3_images_per_sec = round(batch_size / q1, 2)
        ranked[name].speedup_vs_subclassed = round(ref / stats["median_s"], 3) if ref else None
        ranked[name].rounds = len(s)
        ranked[name].samples_s = [round(x, 6) for x in s]
    order = sorted(
        ranked.values(), key=lambda r: (r.images_per_sec is None, -(r.images_per_sec or 0))
    )
    key = make_key(
        device,
        mode=mode,
        batch_size=batch_size,
        dtype_policy=dtype_policy,
        arch=arch,
        input_shape=shape,
        variants=names,
    )
    result = PickResult(
        key=key,
        ranking=order,
        winner=winner,
        fastest=fastest,
        clearly_ahead=clear,
        ratio_ci=ci,
        decision=decision,
        measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    report(total, total, "done", time.perf_counter() - start, 0.0)
    if use_cache:
        cache.store(key, result.to_json())
    return result


def cached(
    device=None,
    *,
    mode="inference",
    batch_size=64,
    dtype_policy="float32",
    arch="seed",
    input_shape=None,
    variants=None,
) -> Optional[PickResult]:
    """The cached PickResult for this configuration, or None."""
    device, arch, shape, names = _validate(
        device, mode, batch_size, dtype_policy, arch, input_shape, variants, None
    )
    key = make_key(
        device,
        mode=mode,
        batch_size=batch_size,
        dtype_policy=dtype_policy,
        arch=arch,
        input_shape=shape,
        variants=names,
    )
    entry = cache.load(key)
    if entry is None:
        return None
    try:
        result = PickResult.from_json(entry)
    except (TypeError, KeyError, ValueError):
        return None
    result.source = "cache"
    return result


def pick_from_benchmarks(
    path,
    device=None,
    *,
    mode="inference",
    batch_size=64,
    dtype_policy="float32",
    arch="seed",
    input_shape=None,
    variants=None,
) -> PickResult:
    """Pick from a saved pytest-benchmark JSON run (`pytest bench/ --benchmark-json=FILE`).

    Uses the raw timings when the run kept them (--benchmark-save-data: bootstrap, as `pick`),
    else each row's median, IQR and rounds (notch_ratio_ci).
    """
    rows = report.load(path)
    device = devices.resolve(device) if device else None
    size = input_shape[0] if input_shape else None
    names = None if variants is None else {get_variant(v).name for v in variants}
    found = {}
    groups = set()
    for row in rows:
        info = row.get("extra_info", {})
        if "variant" not in info or not row.get("stats"):
            continue
        groups.add(row["group"])
        if (
            info["mode"] != mode
            or info["batch_size"] != batch_size
            or info["dtype_policy"] != dtype_policy
            or info["arch"] != arch
            or (device and info["device"] != device)
            or (size and info["image_size"] != size)
            or info["variant"].endswith("[eager]")
            or (names and info["variant"] not in names)
        ):
            continue
        found[info["variant"]] = row
    if not found:
        raise ValueError(
            f"No benchmark in {os.fspath(path)!r} matches mode={mode!r}, batch_size={batch_size}, "
            f"dtype_policy={dtype_policy!r}, arch={arch!r}"
            + (f", device={device!r}" if device else "")
            + (f", image size {size}" if size else "")
            + f". Groups in the file: {sorted(groups)}"
        )
    first = next(iter(found.values()))["extra_info"]
    if (
        len({(r["extra_info"]["device"], r["extra_info"]["image_size"]) for r in found.values()})
        > 1
    ):
        raise ValueError(
            "Several devices or image sizes match; choose one with --device / --image-size. "
            f"Groups: {sorted({r['group'] for r in found.values()})}"
        )
    raw = all(r["stats"].get("data") for r in found.values())
    timings = {v: (r["stats"]["data"] if raw else r["stats"]) for v, r in found.items()}
    complexity = {v: VARIANTS[v].complexity for v in timings if v in VARIANTS}
    winner, fastest, clear, ci, decision = decide(
        timings, complexity=complexity, ci=None if raw else notch_ratio_ci
    )
    ref = found.get(DEFAULT_VARIANT)
    ranking = []
    for v, r in sorted(found.items(), key=lambda item: item[1]["stats"]["median"]):
        st = r["stats"]
        ranking.append(
            Ranked(
                variant=v,
                images_per_sec=round(batch_size / st["median"], 2),
                q1_images_per_sec=round(batch_size / st["q3"], 2),
                q3_images_per_sec=round(batch_size / st["q1"], 2),
                speedup_vs_subclassed=round(ref["stats"]["median"] / st["median"], 3)
                if ref
                else None,
                rounds=st["rounds"],
                compile_s=r["extra_info"].get("compile_s"),
            )
        )
    key = {
        "device": {"name": first.get("device_name"), "kind": first["device"].split(":")[0]},
        "tf": first.get("tf_version"),
        "keras": first.get("keras_version"),
        "arch": arch,
        "input_shape": [first["image_size"], first["image_size"], 3],
        "batch_size": batch_size,
        "mode": mode,
        "dtype_policy": dtype_policy,
        "variants": sorted(found),
    }
    return PickResult(
        key=key,
        ranking=ranking,
        winner=winner,
        fastest=fastest,
        clearly_ahead=clear,
        ratio_ci=ci,
        decision=decision + ("" if raw else " (from medians and IQRs)"),
        measured_at=str(first.get("datetime", "")) or "saved run",
        source=f"file {os.fspath(path)}",
    )
