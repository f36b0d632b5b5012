"""Workers for a series of measurements against one reference: the benchmarks' bench.

The reference configuration (subclassed, graph, default runtime) lives in a worker process of its
own; each configuration measured against it is compiled in the worker of its runtime (and device
layout), which holds one configuration at a time, so every model is alone in its process as in a
user's program. `measure` times a configuration and the reference in interleaved rounds through
the one timing path (`race`) and returns both series, paired by round.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from blocks.errors import DetailedError
from blocks.measure import race, stats, workers
from blocks.measure.load import Load
from blocks.measure.workload import REFERENCE, Config, Workload

# Each sample runs enough calls to last this long: shorter samples scatter more, longer ones buy
# fewer rounds (the spread measured per length: docs/measuring.md, "Sample length").
MIN_SAMPLE_S = 0.25


class Unrunnable(DetailedError):
    """The configuration cannot run here: one line, and TensorFlow's words in `detail`."""


@dataclasses.dataclass
class Prepared:
    entrant: race.Entrant
    compile_s: float
    layout: Optional[dict]
    output_shape: tuple
    finite: bool
    onednn: Optional[bool]
    flop_per_image: int  # counted in the worker from the model's own layers
    engine: Optional[dict] = None  # a serving engine's versions, threads and settings


@dataclasses.dataclass
class Measurement:
    config: Prepared
    reference: Prepared
    times: dict  # round -> seconds per call
    reference_times: dict
    single_times: Optional[dict] = None  # a strategy's configuration on one replica
    load: Load = dataclasses.field(default_factory=Load)  # others' CPU use during the rounds

    def ratio(self) -> stats.Ratio:
        """Time ratio config / reference over paired rounds (speedup = 1 / ratio)."""
        return stats.ratio(self.reference_times, self.times)

    def scaling(self) -> Optional[stats.Ratio]:
        """Scaling efficiency over paired rounds: throughput with N replicas over N x one
        replica's at the per-replica batch, which is the step-time ratio single / distributed."""
        if not self.single_times:
            return None
        return stats.ratio(self.times, self.single_times)


class Lab:
    def __init__(self, imports=(), min_sample_s: float = MIN_SAMPLE_S):
        self.pool = workers.Pool(imports)
        self.min_sample_s = min_sample_s
        self._held: dict = {}  # worker name -> (key, Prepared)

    def close(self) -> None:
        self.pool.close()
        self._held.clear()

    def _worker(self, name: str, config: Config):
        worker = self.pool.workers.get(name)
        if worker is None or not worker.alive:
            self.pool.close(name)
            self._held.pop(name, None)
            worker = self.pool.start_for(name, config)
            worker.hello()
        return worker

    def _hold(self, name: str, workload: Workload, config: Config) -> Prepared:
        key = f"{workload.label} | {config.label}"
        held = self._held.get(name)
        if held is not None and held[0] == key and held[1].entrant.error is None:
            return held[1]
        try:
            worker = self._worker(name, config)
        except workers.WorkerError as e:
            raise Unrunnable(str(e)) from None
        if held is not None:
            try:
                worker.call("drop", 60, key=held[0])
            except workers.RequestFailed:
                pass
            self._held.pop(name, None)
        try:
            entrant, reply = race.prepare(worker, key, workload, config, self.min_sample_s, 1800)
        except workers.RequestFailed as e:
            raise Unrunnable(str(e), e.detail) from None
        except workers.WorkerError as e:
            self.pool.close(name)
            raise Unrunnable(str(e)) from None
        prepared = Prepared(
            entrant,
            reply["compile_s"],
            reply["layout"],
            tuple(reply["output_shape"]),
            reply["finite"],
            worker.info.get("onednn"),
            reply["flop_per_image"],
            reply.get("engine"),
        )
        self._held[name] = (key, prepared)
        return prepared

    def prepare(self, workload: Workload, config: Config) -> Prepared:
        """`config` compiled in the worker (or cluster) of its runtime and strategy; the one that
        worker held before is dropped."""
        return self._hold("config-" + "-".join(map(str, config.process)), workload, config)

    def verify(self, workload: Workload, config: Config) -> dict:
        """The configuration checked against the float64 reference in its own worker
        (`verify.check`): {"passed", "checks": {name: [error, tolerance]}, "text"}."""
        prepared = self.prepare(workload, config)
        try:
            return prepared.entrant.worker.call("verify", 1800, key=prepared.entrant.key)
        except (workers.RequestFailed, workers.WorkerError) as e:
            return {"passed": False, "checks": {}, "text": f"could not verify: {e}"}

    def reference(self, workload: Workload) -> Prepared:
        return self._hold("reference", workload, REFERENCE)

    def single(self, workload: Workload, config: Config) -> Prepared:
        """A strategy's configuration without the strategy: one replica at the per-replica batch."""
        alone = Config(config.variant, config.execution, config.runtime)
        return self._hold(f"single-{config.runtime}", workload, alone)

    def measure(self, workload: Workload, config: Config, target_s: float, seed: int = 0):
        """Interleaved rounds of `config`, the reference (and, for a strategy, the configuration
        on one replica), about `target_s` seconds in all."""
        this, ref = self.prepare(workload, config), self.reference(workload)
        entrants = [this, ref]
        if config.strategy != "none":
            entrants.append(self.single(workload, config))
        calls = race.one_scale([p.entrant for p in entrants])
        for p in entrants:
            p.entrant.reset()
        per_round = calls * sum(p.entrant.call_s for p in entrants)
        rounds = max(stats.MIN_ROUNDS, min(200, math.ceil(target_s / max(per_round, 1e-6))))
        race.run_rounds([p.entrant for p in entrants], rounds, seed=seed)
        for prepared in entrants:
            if prepared.entrant.error:
                raise Unrunnable(prepared.entrant.error)
        single = dict(entrants[2].entrant.times) if len(entrants) == 3 else None
        times, ref_times = dict(this.entrant.times), dict(ref.entrant.times)
        return Measurement(this, ref, times, ref_times, single, ref.entrant.load)

    def ceiling(self, workload: Workload, target_s: float) -> float:
        """The device's matmul GFLOP/s in the workload's compute dtype (reference worker)."""
        worker = self._worker("reference", REFERENCE)
        reply = worker.call(
            "ceiling",
            600,
            device=workload.device,
            dtype_policy=workload.dtype_policy,
            target_s=target_s,
        )
        return reply["gflops_per_sec"]
