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

from blocks.measure import race, stats, workers
from blocks.measure.workload import REFERENCE, Config, Workload

# Each sample runs enough calls to last this long: the per-round ratio of two samples of 0.05 s
# (batch 1) scattered with a standard deviation of 18% in log terms here, of 0.25 s 8%, of 1 s 5%.
MIN_SAMPLE_S = 0.25


class Unrunnable(RuntimeError):
    """The configuration cannot run here: one line, and TensorFlow's words in `detail`."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


@dataclasses.dataclass
class Prepared:
    entrant: race.Entrant
    compile_s: float
    layout: Optional[dict]
    output_shape: tuple
    finite: bool
    onednn: Optional[bool]
    flop_per_image: int  # counted in the worker from the model's own layers


@dataclasses.dataclass
class Measurement:
    config: Prepared
    reference: Prepared
    times: dict  # round -> seconds per call
    reference_times: dict

    def ratio(self) -> stats.Ratio:
        """Time ratio config / reference over paired rounds (speedup = 1 / ratio)."""
        return stats.ratio(self.reference_times, self.times)


class Lab:
    def __init__(self, imports=(), min_sample_s: float = MIN_SAMPLE_S):
        self.pool = workers.Pool(imports)
        self.min_sample_s = min_sample_s
        self._held: dict = {}  # worker name -> (key, Prepared)

    def close(self) -> None:
        self.pool.close()
        self._held.clear()

    def _worker(self, name: str, runtime: str) -> "workers.Worker":
        worker = self.pool.workers.get(name)
        if worker is None or not worker.alive:
            self.pool.close(name)
            self._held.pop(name, None)
            worker = self.pool.start(name, runtime)
            worker.hello()
        return worker

    def _hold(self, name: str, runtime: str, workload: Workload, config: Config) -> Prepared:
        key = f"{workload.label} | {config.label}"
        held = self._held.get(name)
        if held is not None and held[0] == key and held[1].entrant.error is None:
            return held[1]
        worker = self._worker(name, runtime)
        if held is not None:
            try:
                worker.call("drop", 60, key=held[0])
            except workers.RequestFailed:
                pass
            self._held.pop(name, None)
        try:
            reply = worker.call(
                "prepare",
                1800,
                key=key,
                workload=workload.to_json(),
                config=config.to_json(),
                min_sample_s=self.min_sample_s,
            )
        except workers.RequestFailed as e:
            raise Unrunnable(str(e), e.detail) from None
        except workers.WorkerError as e:
            self.pool.close(name)
            raise Unrunnable(str(e)) from None
        prepared = Prepared(
            race.Entrant(config.label, worker, key, reply["calls"], reply["call_s"]),
            reply["compile_s"],
            reply["layout"],
            tuple(reply["output_shape"]),
            reply["finite"],
            worker.info.get("onednn"),
            reply["flop_per_image"],
        )
        self._held[name] = (key, prepared)
        return prepared

    def prepare(self, workload: Workload, config: Config) -> Prepared:
        """`config` compiled in its runtime's worker (the one it held before is dropped)."""
        return self._hold(f"config-{config.runtime}", config.runtime, workload, config)

    def reference(self, workload: Workload) -> Prepared:
        return self._hold("reference", REFERENCE.runtime, workload, REFERENCE)

    def measure(self, workload: Workload, config: Config, target_s: float, seed: int = 0):
        """Interleaved rounds of `config` and the reference, about `target_s` seconds in all."""
        this, ref = self.prepare(workload, config), self.reference(workload)
        # The same calls per sample for both, so that their samples span the same time scale.
        calls = max(this.entrant.calls, ref.entrant.calls)
        this.entrant.calls = ref.entrant.calls = calls
        this.entrant.times, ref.entrant.times = {}, {}
        per_round = calls * (this.entrant.call_s + ref.entrant.call_s)
        rounds = max(stats.MIN_ROUNDS, min(200, math.ceil(target_s / max(per_round, 1e-6))))
        race.run_rounds([this.entrant, ref.entrant], rounds, seed=seed)
        for prepared in (this, ref):
            if prepared.entrant.error:
                raise Unrunnable(prepared.entrant.error)
        return Measurement(this, ref, dict(this.entrant.times), dict(ref.entrant.times))

    def ceiling(self, workload: Workload, target_s: float) -> float:
        """The device's matmul GFLOP/s in the workload's compute dtype (reference worker)."""
        worker = self._worker("reference", REFERENCE.runtime)
        reply = worker.call(
            "ceiling",
            600,
            device=workload.device,
            dtype_policy=workload.dtype_policy,
            target_s=target_s,
        )
        return reply["gflops_per_sec"]
