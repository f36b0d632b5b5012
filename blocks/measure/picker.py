"""`blocks.pick`: the fastest configuration here (variant x execution x runtime), verified.

1. Candidates: every (variant, execution, runtime) asked for; a runtime that equals another here
   (TensorFlow's default is oneDNN on or off by CPU) is measured once. In inference the serving
   engines are candidates too, each converting one variant. Combinations that cannot run (an
   inference-only variant in training, a missing kernel, an engine not installed or whose
   converter fails) are listed with a one-line reason.
2. Screen: one worker process per runtime compiles its candidates; interleaved rounds across all
   workers (`race`) drop those clearly slower than the best (successive halving).
3. Final: the few best and the reference (subclassed, graph, default runtime) each get a fresh
   process of their own, since a model shares its process with no other in a user's program (and
   co-resident models were measured to shift each other by a few percent); interleaved rounds
   there decide, by the paired statistics of `stats`.
4. Verify: before it is named, the winner's own process checks that it computes the float64
   reference's function (`verify`); a candidate that fails is disqualified with its error.
`budget_s` bounds the whole run, start-up and compilation included; a decision from fewer rounds
than the statistics need is provisional, said so, and not cached.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import math
import time
from typing import Callable, Optional, Sequence

from blocks import _compat, checks, cpu
from blocks.executions import ENGINES, TF_EXECUTIONS, is_engine
from blocks.measure import cache, devices, lab, race, stats, workers
from blocks.measure.load import Load
from blocks.measure.result import PickResult, Ranked, how_to_apply
from blocks.measure.runtimes import RUNTIMES
from blocks.measure.runtimes import distinct as distinct_runtimes
from blocks.measure.runtimes import get as get_runtime
from blocks.measure.workload import EXECUTIONS, REFERENCE, STRATEGIES, Config, Workload, grid
from blocks.variants import VARIANTS, get_variant

# Seconds for a whole pick, start-up and compilation included. A training step compiles and runs
# several times longer than a forward pass.
DEFAULT_BUDGET_S = {"inference": 150.0, "train": 420.0}
# The least a pick can fit: a worker starting TensorFlow (3-5 s on a 2-core AMD EPYC), the
# reference and one candidate compiled, a few rounds, the winner verified; a training step
# compiles several times longer. Below it a run could only overrun or measure nothing.
MIN_BUDGET_S = {"inference": 20.0, "train": 40.0}
# Kept back from the budget for stopping the workers at the end.
CLOSE_S = 1.0
FINALISTS = 3  # besides the reference
# The final rounds fill what the budget leaves, up to this many, so that a fast step does not run
# on for the whole of a generous budget.
MAX_FINAL_ROUNDS = 60
SCREEN_RUNG = 3  # rounds between two successive-halving cuts
# Differences smaller than this are ties: two processes holding the same configuration were
# measured up to 4% apart here (tests/data/noise.json: 6 workloads x 6 pairs of processes), so a
# smaller gap between two processes is not the configurations'.
TIE_MARGIN = 0.04
# How much simpler one configuration is than another, for breaking ties: plain tf.function before
# eager and XLA, TensorFlow's default runtime before a setting the user must make.
EXECUTION_COST = {"graph": 0, "eager": 1, "xla": 2, **{name: 3 for name in ENGINES}}
RUNTIME_COST = {"default": 0}


class PickError(RuntimeError):
    """No candidate could run (or was left); the message gives the reasons."""


def complexity(config: Config) -> float:
    return (
        VARIANTS[config.variant].complexity
        + EXECUTION_COST[config.execution]
        + RUNTIME_COST.get(config.runtime, 1)
    )


def make_key(workload: Workload, configs: Sequence[Config]) -> dict:
    """The cache key: device identity, TF and Keras versions, the workload and the candidates
    (variant x execution x runtime x strategy)."""
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
    return key


def default_device() -> str:
    names = devices.list_devices()
    return next((n for n in names if n.startswith("GPU")), "CPU:0")


def plan(
    device=None,
    *,
    mode="inference",
    batch_size=64,
    dtype_policy="float32",
    arch="seed",
    input_shape=None,
    image_size=None,
    variants=None,
    executions=None,
    runtimes=None,
    strategy="none",
    replicas=None,
) -> tuple:
    """(workload, candidate configs, {runtime: the one it equals here}), all arguments checked."""
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
    workload = Workload(mode, batch_size, dtype_policy, arch, image_size, device)
    names = list(VARIANTS) if variants is None else [get_variant(v).name for v in variants]
    if not names:
        raise ValueError("Invalid variants. Expected at least one; Received: variants=[]")
    if executions is None:  # the serving engines run inference only
        executions = EXECUTIONS if workload.mode == "inference" else TF_EXECUTIONS
    executions = checks.choices(executions, EXECUTIONS, "execution")
    runtime_names = list(RUNTIMES) if runtimes is None else [get_runtime(r).name for r in runtimes]
    if not runtime_names:
        raise ValueError("Invalid runtimes. Expected at least one; Received: runtimes=[]")
    measured, equal = distinct_runtimes(runtime_names)
    checks.choice(strategy, STRATEGIES, "strategy", what="Unknown strategy")
    if strategy == "none":
        if replicas not in (None, 1):
            raise ValueError(
                "Invalid replicas. Expected 1 (or None) without a distribution strategy; "
                f"Received: replicas={replicas!r}"
            )
        replicas = 1
    else:
        if workload.mode != "train":
            raise ValueError(
                "Invalid strategy. A distribution strategy is for training (mode='train'); "
                f"Received: strategy={strategy!r} with mode={workload.mode!r}"
            )
        replicas = checks.positive_int(2 if replicas is None else replicas, "replicas")
    in_tf = [e for e in executions if not is_engine(e)]
    configs = grid(names, in_tf, measured, strategy, replicas) if in_tf else []
    engines = [e for e in executions if is_engine(e)]
    if engines:
        # An engine converts the function, which every variant computes in the same ops (their
        # exports run the same op counts: layout audit), so one variant stands for all: the
        # reference if it is asked for, else the first asked. TensorFlow's runtime settings do
        # not reach an engine: one runtime.
        variant = REFERENCE.variant if REFERENCE.variant in names else names[0]
        runtime = "default" if "default" in measured else measured[0]
        configs += grid([variant], engines, [runtime])
    return workload, configs, equal


def cached_pick(device=None, **options) -> Optional[PickResult]:
    """The cached result of `pick(device, **options)` (same options but budget), or None."""
    workload, configs, _ = plan(device, **options)
    entry = cache.load(make_key(workload, configs))
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


def cached_pick_for(workload: Workload) -> Optional[PickResult]:
    """The cached pick for `workload` here whatever candidates it raced: of several, the one
    that raced the most, then the newest."""
    hits = [r for r in cached_picks(workload.device) if r.workload == workload.to_json()]
    return max(hits, key=lambda r: len(r.key.get("candidates", ())), default=None)


@dataclasses.dataclass
class _Candidate:
    config: Config
    anchor: bool = False  # measured as the reference only; not a candidate
    status: str = "pending"
    reason: Optional[str] = None
    detail: str = ""
    compile_s: Optional[float] = None
    layout: Optional[dict] = None
    engine: Optional[dict] = None
    entrant: Optional[race.Entrant] = None  # while it races
    screen: dict = dataclasses.field(default_factory=dict)
    final: dict = dataclasses.field(default_factory=dict)


class _Clock:
    def __init__(self, budget_s: float, progress: Optional[Callable]):
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.progress = progress or (lambda *a: None)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def at(self, fraction: float) -> float:
        """The monotonic time when `fraction` of the budget is spent."""
        return self.start + fraction * self.budget_s

    def left(self) -> float:
        return max(0.0, self.budget_s - self.elapsed())

    def timeout(self, wanted: float) -> float:
        """A request's timeout: `wanted`, but never past the budget (less CLOSE_S)."""
        return max(0.1, min(wanted, self.left() - CLOSE_S))

    def report(self, fraction: float, message: str) -> None:
        self.progress(fraction, message, self.elapsed(), self.left())


def budget_for(mode: str, budget_s: Optional[float]) -> float:
    """The seconds a pick in `mode` may take: `budget_s` checked against the least one fits, or
    the default."""
    checks.positive_number(budget_s, "budget_s", allow_none=True)
    budget = DEFAULT_BUDGET_S[mode] if budget_s is None else float(budget_s)
    least = MIN_BUDGET_S[mode]
    if budget < least:
        raise ValueError(
            f"Invalid budget_s. A pick needs at least {least:g} s in {mode} (a worker to start "
            "TensorFlow, the reference and a candidate to compile, rounds, a verification); "
            f"Received: budget_s={budget_s!r}"
        )
    return budget


def pick(
    device: Optional[str] = None,
    *,
    mode: str = "inference",
    batch_size: int = 64,
    dtype_policy: str = "float32",
    arch: str = "seed",
    input_shape: Optional[Sequence[int]] = None,
    image_size: Optional[int] = None,
    variants: Optional[Sequence[str]] = None,
    executions: Optional[Sequence[str]] = None,
    runtimes: Optional[Sequence[str]] = None,
    strategy: str = "none",
    replicas: Optional[int] = None,
    budget_s: Optional[float] = None,
    progress: Optional[Callable] = None,
    use_cache: bool = True,
) -> PickResult:
    """Find the fastest configuration of ResNet18 for a workload here (see the module docstring).

    Args:
        device: "CPU:0", "GPU:0", ... (default: the first GPU, else the CPU).
        mode: "inference" (forward, training=False) or "train" (forward, loss, gradients, SGD).
        batch_size, dtype_policy, arch: the workload.
        input_shape / image_size: square images, (size, size, 3) or size (default: the arch's).
        variants, executions, runtimes: the candidate space (default: every registered variant,
            every execution, every runtime).
        strategy, replicas: data-parallel training over `replicas` (default 2) with
            "mirrored" (local GPUs, or logical CPUs) or "multiworker" (worker processes on this
            host); `batch_size` is then per replica. Default "none": one device.
        budget_s: seconds for the whole run, start-up and compilation included (default: 150 for
            inference, 420 for training).
        progress: called as progress(fraction, message, elapsed_s, remaining_s).
        use_cache: store a decided (not provisional) result in the per-user cache.

    Returns:
        A PickResult: every candidate's figures or reason, the verified winner, the decision, the
        winner's speedup over (subclassed, graph, default) with its paired 95% CI, how to apply it.

    Raises:
        ValueError: an unknown device, mode, policy, arch, variant, execution or runtime.
        PickError: no candidate could run.
    """
    workload, configs, equal = plan(
        device,
        mode=mode,
        batch_size=batch_size,
        dtype_policy=dtype_policy,
        arch=arch,
        input_shape=input_shape,
        image_size=image_size,
        variants=variants,
        executions=executions,
        runtimes=runtimes,
        strategy=strategy,
        replicas=replicas,
    )
    if progress is not None and not callable(progress):  # else a TypeError mid-race
        raise ValueError(
            "Invalid progress. Expected None or a callable progress(fraction, message, "
            f"elapsed_s, remaining_s); Received: progress={progress!r}"
        )
    budget = budget_for(workload.mode, budget_s)
    imports = workers.variant_modules({c.variant for c in configs})
    with workers.Pool(imports) as pool:
        return _Pick(pool, workload, configs, equal, _Clock(budget, progress)).run(use_cache)


class _Pick:
    """One run of the algorithm in the module docstring, with its workers in `pool`."""

    def __init__(self, pool, workload: Workload, configs: list, equal: dict, clock: _Clock):
        self.pool, self.workload, self.clock = pool, workload, clock
        self.configs = configs
        # Execution order: graph first, eager last, so that a short budget compiles the likelier
        # winners; the reference always runs, as the anchor every speedup is measured against.
        rank = {e: i for i, e in enumerate(("graph", *ENGINES, "xla", "eager"))}
        ordered = sorted(configs, key=lambda c: (rank[c.execution], configs.index(c)))
        self.candidates = [_Candidate(c) for c in ordered]
        self.reference = next((c for c in self.candidates if c.config == REFERENCE), None)
        if self.reference is None:
            self.reference = _Candidate(REFERENCE, anchor=True)
            self.candidates.insert(0, self.reference)
        self.notes = [
            f"runtime {same!r} is TensorFlow's default on this CPU: measured once, as 'default'"
            for same in equal
        ]
        self.versions: dict = {}
        self.unverified = "every finalist failed its verification"
        self.load = Load()  # others' CPU use over the pick's races

    # --- phase 1: compile ---------------------------------------------------------------------

    def _refuse_statically(self) -> None:
        for c in self.candidates:
            execution = c.config.execution
            if self.workload.mode == "train" and not VARIANTS[c.config.variant].trainable:
                c.status, c.reason = "could not run", f"{c.config.variant}: inference-only"
            elif is_engine(execution) and self.workload.mode != "inference":
                c.status, c.reason = "could not run", f"{execution}: runs inference only"
            elif is_engine(execution) and ENGINES[execution].missing():
                c.status, c.reason = "could not run", ENGINES[execution].missing()

    def _start(self, name: str, config: Config):
        worker = self.pool.start_for(name, config)
        info = worker.hello(timeout_s=self.clock.timeout(max(60.0, self.clock.left())))
        self.versions = {k: info[k] for k in ("tf", "keras", "cpu")}
        return worker

    def _prepare(self, worker, c: _Candidate, deadline: float) -> None:
        timeout = self.clock.timeout(max(10.0, deadline - time.monotonic()))
        try:
            reply = worker.call(
                "prepare",
                timeout,
                key=c.config.label,
                workload=self.workload.to_json(),
                config=c.config.to_json(),
                min_sample_s=self._min_sample_s(),
            )
        except workers.RequestFailed as e:
            c.status, c.reason, c.detail = "could not run", str(e), e.detail
            return
        except workers.WorkerError:
            if self.clock.left() > CLOSE_S:
                raise
            c.status, c.reason = "not measured", "the budget ran out while it compiled"
            return
        c.compile_s, c.layout, c.engine = reply["compile_s"], reply["layout"], reply.get("engine")
        c.entrant = race.Entrant(
            c.config.label, worker, c.config.label, reply["calls"], reply["call_s"]
        )
        c.status = "ready"

    def _min_sample_s(self) -> float:
        return lab.MIN_SAMPLE_S

    def _compile_all(
        self, candidates: list, per_process: bool, until: float, base: float, span: float
    ) -> None:
        """Compile `candidates`: in one worker (or cluster) per runtime and strategy, or
        (per_process) one each; two at a time, one per core, until the monotonic time `until`."""
        groups: dict = {}
        for c in candidates:
            shared = "screen-" + "-".join(map(str, c.config.process))
            groups.setdefault(c.config.label if per_process else shared, []).append(c)
        total = max(1, len(candidates))
        done = [0]

        def work(name, members):
            if time.monotonic() >= until:
                for c in members:
                    c.status, c.reason = "not measured", "the budget ran out before it compiled"
                return
            try:
                worker = self.pool.workers.get(name) or self._start(name, members[0].config)
            except workers.WorkerError as e:
                out = self.clock.left() <= CLOSE_S
                for c in members:
                    c.status = "not measured" if out else "could not run"
                    c.reason = "the budget ran out while its worker started" if out else str(e)
                return
            for i, c in enumerate(members):
                # Once its worker is up, a group's first member compiles whatever the clock says
                # (its request has a deadline of its own): a worker started in vain measures
                # nothing, and that member is the reference when the reference is in the group.
                if i > 0 and time.monotonic() >= until:
                    c.status, c.reason = "not measured", "the budget ran out before it compiled"
                    continue
                self.clock.report(base + span * done[0] / total, f"compiling {c.config.label}")
                try:
                    self._prepare(worker, c, until + 0.25 * self.clock.budget_s)
                except workers.WorkerError as e:
                    for other in members:
                        if other.status in ("pending", "ready"):
                            other.status, other.reason = "could not run", str(e)
                    return
                done[0] += 1

        def first(item):  # the reference's group, then the engines' (one candidate each, the
            # likeliest winners at small batches), then the rest, each in candidate order
            members = item[1]
            if any(c is self.reference for c in members):
                return 0
            return 1 if is_engine(members[0].config.execution) else 2

        ex = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        futures = [ex.submit(work, n, m) for n, m in sorted(groups.items(), key=first)]
        try:
            for f in futures:
                f.result()
        except BaseException:  # Ctrl-C: stop the workers, and do not wait for the threads
            ex.shutdown(wait=False, cancel_futures=True)
            self.pool.close()
            raise
        ex.shutdown()

    # --- phase 2: screen ----------------------------------------------------------------------

    def _score(self, c: _Candidate, times: str) -> float:
        """Median per-round time ratio to the reference (lower is faster); inf without pairs."""
        if self.reference is None or self.reference.entrant is None:
            values = list(getattr(c, times).values())
            return float(sorted(values)[len(values) // 2]) if values else math.inf
        r = stats.ratio(getattr(self.reference, times), getattr(c, times))
        return r.median if r.rounds else math.inf

    def _screen(self, ready: list, until: float) -> None:
        live = [c for c in ready if c.entrant is not None]
        rounds = 0
        while len(live) > FINALISTS + 1 and time.monotonic() < until:
            n = race.run_rounds(
                [c.entrant for c in live], SCREEN_RUNG, first_round=rounds, seed=1, deadline=until
            )
            rounds += n
            for c in live:
                c.screen = dict(c.entrant.times)
                if c.entrant.error:
                    c.status, c.reason = "could not run", c.entrant.error
            live = [c for c in live if c.status == "ready"]
            self.clock.report(0.45 + 0.2 * min(1, rounds / 12), f"screening round {rounds}")
            if n < SCREEN_RUNG:
                break
            scores = {id(c): self._score(c, "screen") for c in live}
            best = min(scores.values())
            keep = sorted(live, key=lambda c: scores[id(c)])
            # Halve, but never below the finalists, and never drop the reference.
            cut = max(FINALISTS + 1, math.ceil(len(keep) / 2))
            for c in keep[cut:]:
                if c is not self.reference:
                    c.status = "screened out"
                    c.reason = (
                        f"{scores[id(c)] / best:.2f}x the best time after {rounds} screening rounds"
                    )
            live = [c for c in live if c.status == "ready"]

    # --- phase 3: final -----------------------------------------------------------------------

    def run(self, use_cache: bool) -> PickResult:
        clock = self.clock
        self._refuse_statically()
        pending = [c for c in self.candidates if c.status == "pending"]
        many = len(pending) > FINALISTS + 1
        clock.report(0.0, "starting workers")
        if many:
            self._compile_all(pending, per_process=False, until=clock.at(0.40), base=0.0, span=0.40)
            ready = [c for c in self.candidates if c.status == "ready"]
            if not ready:
                raise self._nothing_ran()
            self._screen(ready, until=clock.at(0.60))
            ranked = sorted(
                (c for c in self.candidates if c.status == "ready"),
                key=lambda c: self._score(c, "screen"),
            )
            finalists = [c for c in ranked if c is not self.reference and not c.anchor]
            finalists = finalists[:FINALISTS]
            for c in ranked:
                if c not in finalists and c is not self.reference:
                    c.status, c.reason = "screened out", "not among the fastest screened"
            # The reference first: every speedup is measured against it.
            finals = ([self.reference] if self.reference else []) + finalists
            self.load += self._race_load(ready)
            self._fresh_processes(finals)
            pending = [c for c in finals if c.status == "pending"]
            self._compile_all(pending, per_process=True, until=clock.at(0.75), base=0.65, span=0.1)
        else:
            self._compile_all(pending, per_process=True, until=clock.at(0.6), base=0.0, span=0.6)
        finals = [c for c in self.candidates if c.status == "ready"]
        if not finals:
            raise self._nothing_ran()
        verify_reserve = 2.5 * max(c.compile_s or 0 for c in finals) + 5
        per_round = sum(c.entrant.call_s * c.entrant.calls for c in finals) + 0.01 * len(finals)
        # A round in flight at `until` finishes: it comes out of the budget too.
        end = clock.start + clock.budget_s - CLOSE_S - verify_reserve - per_round
        until = max(time.monotonic() + 1, end)
        window = int((until - time.monotonic()) / per_round)
        rounds = max(stats.MIN_ROUNDS, min(MAX_FINAL_ROUNDS, window))
        base = clock.elapsed() / clock.budget_s

        def after(r):
            clock.report(
                min(0.95, base + (0.9 - base) * (r + 1) / rounds), f"final round {r + 1}/{rounds}"
            )

        race.run_rounds(
            [c.entrant for c in finals], rounds, seed=2, deadline=until, after_round=after
        )
        for c in finals:
            c.final = dict(c.entrant.times)
            if c.entrant.error:
                c.status, c.reason = "could not run", c.entrant.error
        self.load += self._race_load(finals)
        result = self._decide_and_verify([c for c in finals if c.status == "ready"])
        clock.report(1.0, "done")
        if use_cache and not result.provisional and result.winner is not None and not result.busy:
            cache.store(result.key, result.to_json())
        return result

    @staticmethod
    def _race_load(entered: list) -> Load:
        """The load of the race just run by `entered`: the one that raced longest saw all of it."""
        loads = [c.entrant.load for c in entered if c.entrant is not None]
        return max(loads, key=lambda load: load.wall_s, default=Load())

    def _fresh_processes(self, finals: list) -> None:
        """Finalists get a process of their own: a screening worker that held one candidate only
        (an engine's) keeps it and its compiled step; every other screening worker goes."""
        holders: dict = {}
        for c in self.candidates:
            if c.entrant is not None:
                holders.setdefault(id(c.entrant.worker), []).append(c)
        keep = set()
        for c in finals:
            if c.entrant is not None and len(holders[id(c.entrant.worker)]) == 1:
                keep.add(id(c.entrant.worker))
                c.entrant.reset()
            else:
                c.status, c.entrant = "pending", None
        for name, worker in list(self.pool.workers.items()):
            if id(worker) not in keep:
                self.pool.close(name)

    def _nothing_ran(self) -> PickError:
        reasons = [f"{c.config.label}: {c.reason}" for c in self.candidates if c.reason]
        if reasons and all("the budget ran out" in r for r in reasons):
            # Not the candidates' fault: say what to change.
            return PickError(
                f"The budget of {self.clock.budget_s:g} s ran out before any candidate was "
                f"measured on {self.workload.device} (compiling took longer on this machine now); "
                f"give a larger --budget-s. {'; '.join(reasons)}"
            )
        return PickError(f"No candidate could run on {self.workload.device}. {'; '.join(reasons)}")

    def _decide_and_verify(self, finals: list) -> PickResult:
        verification = None
        remaining = [c for c in finals if not c.anchor]
        if not remaining:
            raise self._nothing_ran()
        decision = None
        while remaining:
            samples = {c.config.label: c.final for c in remaining}
            order = {c.config.label: self._score(c, "final") for c in remaining}
            decision = stats.decide(
                samples,
                order=order,
                complexity={c.config.label: complexity(c.config) for c in remaining},
                margin=TIE_MARGIN,
            )
            winner = next(c for c in remaining if c.config.label == decision.winner)
            self.clock.report(0.96, f"verifying {winner.config.label}")
            try:
                verification = winner.entrant.worker.call(
                    "verify", self.clock.timeout(120.0), key=winner.entrant.key
                )
            except (workers.WorkerError, workers.RequestFailed) as e:
                if isinstance(e, workers.WorkerError) and self.clock.left() <= CLOSE_S:
                    winner.status = "not measured"
                    winner.reason = "the budget ran out while it was verified"
                    self.unverified = (
                        f"the budget ran out before {winner.config.label} was verified"
                    )
                    decision = None
                    break
                verification = {"passed": False, "checks": {}, "text": f"could not verify: {e}"}
            if verification["passed"]:
                winner.status = "winner"
                break
            winner.status, winner.reason = "disqualified", verification["text"]
            remaining.remove(winner)
            decision = None
        for c in finals:
            if c.status == "ready":
                c.status = "reference" if c.anchor else "finalist"
        return self._result(decision, verification)

    def _ranked(self, c: _Candidate) -> Ranked:
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
        )
        if times:
            t = stats.throughput(list(times.values()), self.workload.batch_size * c.config.replicas)
            row.images_per_sec = round(t["images_per_sec"], 2)
            row.q1_images_per_sec = round(t["q1_images_per_sec"], 2)
            row.q3_images_per_sec = round(t["q3_images_per_sec"], 2)
            row.rounds = t["rounds"]
            ref = self.reference
            ref_times = (ref.final if c.final else ref.screen) if ref else {}
            if ref_times:
                r = stats.ratio(ref_times, times)
                paired = [ref_times[k] for k in times if k in ref_times]
                if paired:
                    t_ref = stats.throughput(paired, self.workload.batch_size)
                    row.reference_images_per_sec = round(t_ref["images_per_sec"], 2)
                if r.rounds:
                    # In throughput: a strategy's step takes `replicas` times the images.
                    s = [c.config.replicas * x for x in r.speedup()]
                    row.speedup, row.speedup_rounds = round(s[0], 3), r.rounds
                    row.speedup_ci = [round(s[1], 3), round(s[2], 3)] if r.decided else None
        return row

    def _result(self, decision, verification) -> PickResult:
        # Final-round figures first (each candidate alone in its process), fastest first; then the
        # screened out (screening rounds, several candidates per process); then the rest.
        order = {"winner": 0, "finalist": 0, "reference": 0, "screened out": 1, "disqualified": 2}
        rows = [self._ranked(c) for c in self.candidates]
        rows.sort(key=lambda r: (order.get(r.status, 3), -(r.images_per_sec or 0)))
        winner = next((c for c in self.candidates if c.status == "winner"), None)
        machine = {**cpu.describe(), "device": self.workload.device}
        key = make_key(self.workload, self.configs)
        speedup = None
        provisional = decision is None or decision.provisional
        text = decision.text if decision else self.unverified
        if winner is not None:
            w = next(r for r in rows if r.status == "winner")
            if w.speedup is not None:
                speedup = [w.speedup, *(w.speedup_ci or [None, None])]
            if not w.speedup_ci and winner is not self.reference:
                # The decision among candidates may stand (the only candidate), but its gain over
                # the reference rests on too few paired rounds for an interval.
                provisional = True
                text += (
                    f"; its speedup over the reference rests on {w.speedup_rounds} paired "
                    f"round(s), fewer than the {stats.MIN_ROUNDS} an interval needs: provisional"
                )
        return PickResult(
            workload=self.workload.to_json(),
            key=key,
            ranking=rows,
            winner=None if winner is None else winner.config.to_json(),
            decision=text,
            clearly_ahead=bool(decision and decision.clearly_ahead),
            provisional=bool(provisional),
            speedup=speedup,
            apply=how_to_apply(winner.config, self.workload, winner.engine) if winner else {},
            verification=verification,
            machine={**machine, **self.versions},
            measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            elapsed_s=round(self.clock.elapsed(), 1),
            notes=self.notes,
            load=self.load.to_json(),
        )
