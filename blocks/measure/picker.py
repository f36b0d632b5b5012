"""`blocks.pick`: the fastest configuration here (variant x execution x runtime), verified.

1. Plan: every (variant, execution, runtime) asked for; a runtime that equals another here
   (TensorFlow's default is oneDNN on or off by CPU) is measured once. In inference the serving
   engines are candidates too, each converting one variant. Combinations that cannot run (an
   inference-only variant in training, a missing kernel, an engine not installed or whose
   converter fails) are listed with a one-line reason.
2. Compile and screen: one worker process per runtime compiles its candidates; interleaved rounds
   across all workers (`race`) drop those clearly slower than the best (successive halving).
3. Final: the few best and the reference (subclassed, graph, default runtime) each get a fresh
   process of their own, since a model shares its process with no other in a user's program (and
   co-resident models were measured to shift each other by a few percent); interleaved rounds
   there decide, by the paired statistics of `stats`.
4. Verify: before it is named, the winner's own process checks that it computes the float64
   reference's function (`verify`); a candidate that fails is disqualified with its error.
5. Result: every candidate's figures or reason, cached when decided.
The `Budget` bounds the whole run, start-up and compilation included, shared out between the
phases by `budget.PHASES`; a decision from fewer rounds than the statistics need is
provisional, said so, and not cached.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

from blocks import checks
from blocks.executions import TF_EXECUTIONS, is_engine
from blocks.measure import cache, compiling, devices, final, numerics, screening, workers
from blocks.measure.budget import Clock
from blocks.measure.candidates import PickError, Run
from blocks.measure.final import TIE_MARGIN, complexity
from blocks.measure.outcome import result as outcome
from blocks.measure.pickcache import cached_pick_for, cached_picks, default_device, lookup, make_key
from blocks.measure.result import PickResult
from blocks.measure.runtimes import RUNTIMES
from blocks.measure.runtimes import distinct as distinct_runtimes
from blocks.measure.runtimes import get as get_runtime
from blocks.measure.workload import (
    EXECUTIONS,
    REFERENCE,
    STRATEGIES,
    STRATEGY_REPLICAS,
    Accuracy,
    Budget,
    SearchSpace,
    Workload,
    grid,
)
from blocks.variants import VARIANTS, get_variant

__all__ = [
    "PickError",
    "TIE_MARGIN",
    "cached",
    "cached_pick",
    "cached_pick_for",
    "cached_picks",
    "complexity",
    "make_key",
    "measure",
    "pick",
    "plan",
    "split_options",
    "workload_for",
]
_SPACE = {f.name for f in dataclasses.fields(SearchSpace)}
_ACCURACY = {f.name for f in dataclasses.fields(Accuracy)}


def workload_for(device=None, *, input_shape=None, image_size=None, **fields) -> Workload:
    """The workload of a pick's options, checked: `fields` of `Workload`, the device (default:
    the first GPU, else the CPU) and a square `input_shape` or `image_size`."""
    if input_shape is not None:
        if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3):
            raise ValueError(
                f"Invalid input_shape. Expected (size, size, 3); Received: {input_shape!r}"
            )
        h, w, c = input_shape
        if h != w or c != 3:
            raise ValueError(
                f"pick times square RGB images; Received: input_shape={tuple(input_shape)!r}"
            )
        if image_size is not None and image_size != h:  # else one of them is silently dropped
            raise ValueError(
                f"Invalid image_size. Expected None or {h}, the size input_shape gives; "
                f"Received: image_size={image_size!r} with input_shape={tuple(input_shape)!r}"
            )
        image_size = h
    device = devices.resolve(device if device is not None else default_device())
    return Workload(image_size=image_size, device=device, **fields)


def split_options(device=None, **options) -> tuple:
    """(workload, search space) of `pick`'s keyword options (all but the budget's)."""
    space = SearchSpace(**{k: options.pop(k) for k in list(options) if k in _SPACE})
    return workload_for(device, **options), space


def plan(workload: Workload, space: SearchSpace) -> tuple:
    """(candidate configs, {runtime: the one it equals here}), the space checked."""
    names = (
        list(VARIANTS) if space.variants is None else [get_variant(v).name for v in space.variants]
    )
    if not names:
        raise ValueError("Invalid variants. Expected at least one; Received: variants=[]")
    executions = space.executions
    if executions is None:  # the serving engines run inference only
        executions = EXECUTIONS if workload.mode == "inference" else TF_EXECUTIONS
    executions = checks.choices(executions, EXECUTIONS, "execution")
    asked = space.runtimes
    runtime_names = list(RUNTIMES) if asked is None else [get_runtime(r).name for r in asked]
    if not runtime_names:
        raise ValueError("Invalid runtimes. Expected at least one; Received: runtimes=[]")
    measured, equal = distinct_runtimes(runtime_names)
    replicas = _replicas(workload, space)
    # The workload's own precision is every configuration's by default (None), so a pick that
    # races no other names its candidates as every pick before the axis did.
    precisions = [None if p == workload.dtype_policy else p for p in space.precisions_for(workload)]
    in_tf = [e for e in executions if not is_engine(e)]
    configs = grid(names, in_tf, measured, space.strategy, replicas, precisions) if in_tf else []
    engines = [e for e in executions if is_engine(e)]
    if engines:
        # An engine converts the function, which every variant computes in the same ops (their
        # exports run the same op counts: layout audit), so one variant stands for all: the
        # reference if it is asked for, else the first asked. TensorFlow's runtime settings do
        # not reach an engine: one runtime.
        variant = REFERENCE.variant if REFERENCE.variant in names else names[0]
        runtime = "default" if "default" in measured else measured[0]
        configs += grid([variant], engines, [runtime], precisions=precisions)
    return configs, equal


def _replicas(workload: Workload, space: SearchSpace) -> int:
    """The replicas of the space's strategy, checked against the workload."""
    strategy, replicas = space.strategy, space.replicas
    checks.choice(strategy, STRATEGIES, "strategy", what="Unknown strategy")
    if strategy == "none":
        if replicas not in (None, 1):
            raise ValueError(
                "Invalid replicas. Expected 1 (or None) without a distribution strategy; "
                f"Received: replicas={replicas!r}"
            )
        return 1
    if workload.mode != "train":
        raise ValueError(
            "Invalid strategy. A distribution strategy is for training (mode='train'); "
            f"Received: strategy={strategy!r} with mode={workload.mode!r}"
        )
    return checks.positive_int(STRATEGY_REPLICAS if replicas is None else replicas, "replicas")


def cached_pick(device=None, **options) -> Optional[PickResult]:
    """The cached result of `pick(device, **options)` (same options but budget), or None."""
    accuracy = Accuracy(**{k: options.pop(k) for k in list(options) if k in _ACCURACY})
    return cached(*split_options(device, **options), accuracy)


def cached(
    workload: Workload, space: SearchSpace, accuracy: Optional[Accuracy] = None
) -> Optional[PickResult]:
    """The cached pick of `space` for `workload` (checked within `accuracy`), or None."""
    configs, _ = plan(workload, space)
    accuracy = accuracy or Accuracy()
    numerics.check_files(workload, accuracy)  # its files' contents are in the key
    return lookup(workload, configs, accuracy)


def pick(
    device: Optional[str] = None,
    *,
    mode: str = Workload.mode,
    batch_size: int = Workload.batch_size,
    dtype_policy: str = Workload.dtype_policy,
    arch: str = Workload.arch,
    input_shape: Optional[Sequence[int]] = None,
    image_size: Optional[int] = Workload.image_size,
    variants: Optional[Sequence[str]] = SearchSpace.variants,
    executions: Optional[Sequence[str]] = SearchSpace.executions,
    runtimes: Optional[Sequence[str]] = SearchSpace.runtimes,
    strategy: str = SearchSpace.strategy,
    replicas: Optional[int] = SearchSpace.replicas,
    precisions: Optional[Sequence[str]] = SearchSpace.precisions,
    max_top1_disagreement: float = Accuracy.max_top1_disagreement,
    max_logit_error: Optional[float] = Accuracy.max_logit_error,
    weights: Optional[str] = Accuracy.weights,
    images: Optional[str] = Accuracy.images,
    budget_s: Optional[float] = Budget.seconds,
    progress: Optional[Callable] = None,
    use_cache: bool = True,
) -> PickResult:
    """Find the fastest configuration of ResNet18 for a workload here (see the module docstring).

    Args:
        device: "CPU:0", "GPU:0", ... (default: the first GPU, else the CPU).
        mode, batch_size, dtype_policy, arch, input_shape / image_size: the `Workload`
            (input_shape: square, (size, size, 3); default: the arch's).
        variants, executions, runtimes, strategy, replicas, precisions: the `SearchSpace`
            (default: every variant, execution and runtime, one device, the dtype_policy alone).
        max_top1_disagreement, max_logit_error, weights, images: the `Accuracy` a precision other
            than float32 is held to, and the files it is checked on.
        budget_s: seconds for the whole run, start-up and compilation included (default:
            `Budget.DEFAULT_S` of the mode, times the precisions raced).
        progress: called as progress(fraction, message, elapsed_s, remaining_s).
        use_cache: store a decided (not provisional) result in the per-user cache.

    Returns:
        A PickResult: every candidate's figures or reason, the verified winner, the decision, the
        winner's speedup over (subclassed, graph, default) with its paired 95% CI, how to apply it.

    Raises:
        ValueError: an unknown device, mode, policy, arch, variant, execution, runtime or
            precision, a budget out of range, or images or weights the check cannot use.
        PickError: no candidate could run.
    """
    workload = workload_for(
        device,
        input_shape=input_shape,
        image_size=image_size,
        mode=mode,
        batch_size=batch_size,
        dtype_policy=dtype_policy,
        arch=arch,
    )
    space = SearchSpace(variants, executions, runtimes, strategy, replicas, precisions)
    accuracy = Accuracy(max_top1_disagreement, max_logit_error, weights, images)
    return measure(workload, space, Budget(budget_s), progress, use_cache, accuracy)


def measure(
    workload: Workload,
    space: SearchSpace,
    budget: Budget,
    progress: Optional[Callable] = None,
    use_cache: bool = True,
    accuracy: Optional[Accuracy] = None,
) -> PickResult:
    """`pick` of the objects: plan, then run the pipeline in a pool of workers."""
    configs, equal = plan(workload, space)
    numerics.check_files(workload, accuracy)  # refused before any timing
    if progress is not None and not callable(progress):  # else a TypeError mid-race
        raise ValueError(
            "Invalid progress. Expected None or a callable progress(fraction, message, "
            f"elapsed_s, remaining_s); Received: progress={progress!r}"
        )
    seconds = budget.for_mode(workload.mode, len(space.precisions_for(workload)))
    clock = Clock(seconds, progress)
    imports = workers.variant_modules({c.variant for c in configs})
    with workers.Pool(imports) as pool:
        run = Run(pool, workload, configs, equal, clock, accuracy)
        finalists = compile_and_screen(run)
        decision, verification = final_and_verify(run, finalists)
        result = outcome(run, decision, verification)
        clock.report(1.0, "done")
        if use_cache and not result.provisional and result.winner is not None and not result.busy:
            cache.store(result.key, result.to_json())
        return result


def compile_and_screen(run: Run) -> list:
    """The finalists, compiled: with more candidates than finalists, all compile in shared
    screening workers and the screen keeps the fastest; else each compiles in its own."""
    run.refuse_statically()
    pending = run.with_status("pending")
    run.clock.report(0.0, "starting workers")
    if len(pending) <= screening.FINALISTS + 1:
        compiling.compile_all(run, pending, per_process=True, phase="compile few")
        numerics.check(run)
        return run.with_status("ready")
    compiling.compile_all(run, pending, per_process=False, phase="compile")
    numerics.check(run)  # the candidates beyond the accuracy budget race no round
    ready = run.with_status("ready")
    if not ready:
        raise run.nothing_ran()
    screening.screen(run, ready)
    run.add_race_load(ready)
    finals = screening.finals(run)
    pending = [c for c in finals if c.status == "pending"]
    compiling.compile_all(run, pending, per_process=True, phase="compile finalists")
    return run.with_status("ready")


def final_and_verify(run: Run, finals: list) -> tuple:
    """(decision, verification) from the final rounds of `finals`, the winner verified."""
    if not finals:
        raise run.nothing_ran()
    final.final_rounds(run, finals)
    return final.decide_and_verify(run, [c for c in finals if c.status == "ready"])
