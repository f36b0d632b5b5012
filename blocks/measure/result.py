"""What a pick returns: a row per candidate (`Ranked`), the decision and the verified winner
(`PickResult`, cached as JSON), and how to run the winner in a user's program (`how_to_apply`)."""

from __future__ import annotations

import dataclasses
from typing import Optional

from blocks.archs import ARCHS
from blocks.executions import ENGINES, is_engine
from blocks.measure.load import Load
from blocks.measure.runtimes import get as get_runtime
from blocks.measure.workload import REFERENCE, Config, Workload


@dataclasses.dataclass
class Ranked:
    """One candidate's outcome: its figures, or why it has none."""

    config: dict
    label: str
    status: str  # winner, finalist, screened out, could not run, disqualified, not measured
    images_per_sec: Optional[float] = None
    q1_images_per_sec: Optional[float] = None
    q3_images_per_sec: Optional[float] = None
    speedup: Optional[float] = None  # over the reference, paired rounds
    speedup_ci: Optional[list] = None  # None: fewer paired rounds than an interval needs
    speedup_rounds: int = 0  # the paired rounds behind `speedup`
    # The reference's img/s in the rounds the speedup was paired from (not the reference's row,
    # which may come from other rounds): the speedup is this row's against these figures.
    reference_images_per_sec: Optional[float] = None
    rounds: int = 0
    compile_s: Optional[float] = None
    reason: Optional[str] = None
    detail: Optional[str] = None
    layout: Optional[dict] = None
    engine: Optional[dict] = None  # a serving engine's versions, threads and settings
    # A precision other than float32: its cost against float64 (`accuracy.cost`).
    accuracy: Optional[dict] = None

    def speedup_text(self) -> str:
        """The speedup as it may be printed: with its interval, or labelled provisional."""
        if self.speedup is None:
            return "-"
        if self.label == REFERENCE.label:
            return "1.00x (the reference)"
        if self.speedup_ci:
            return f"{self.speedup:.2f}x ({self.speedup_ci[0]:.2f}-{self.speedup_ci[1]:.2f})"
        n = self.speedup_rounds
        return f"{self.speedup:.2f}x provisional ({n} round{'s' if n != 1 else ''})"


@dataclasses.dataclass
class PickResult:
    workload: dict
    key: dict
    ranking: list
    winner: Optional[dict]
    decision: str
    clearly_ahead: bool
    provisional: bool
    speedup: Optional[list]  # [median, low, high] of the winner over the reference
    apply: dict
    verification: Optional[dict]
    machine: dict
    measured_at: str
    elapsed_s: float = 0.0
    notes: list = dataclasses.field(default_factory=list)
    source: str = "measured"
    load: dict = dataclasses.field(default_factory=dict)  # others' CPU use while it raced (Load)
    # What the accuracy check of a reduced precision ran on, and its budget (`numerics.describe`).
    accuracy: dict = dataclasses.field(default_factory=dict)

    @property
    def machine_load(self) -> Load:
        return Load.from_json(self.load)

    @property
    def busy(self) -> bool:
        """Measured while other processes took more of the machine than the threshold then."""
        return bool(self.load.get("busy"))

    @property
    def winner_config(self) -> Optional[Config]:
        return None if self.winner is None else Config.from_json(self.winner)

    @property
    def winner_label(self) -> str:
        return self.winner_config.label if self.winner else "-"

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["ranking"] = [dataclasses.asdict(r) for r in self.ranking]
        return out

    @classmethod
    def from_json(cls, data: dict) -> "PickResult":
        data = dict(data)
        data["ranking"] = [Ranked(**r) for r in data["ranking"]]
        return cls(**data)


def how_to_apply(config: Config, workload: Workload, engine: Optional[dict] = None) -> dict:
    """The environment and the lines of Python that run `config` in a user's program; for a
    serving engine, the export and the engine's own loading code (`serve`), which needs nothing
    of this project."""
    runtime = get_runtime(config.runtime)
    workload = workload.at(config)
    policy = workload.dtype_policy  # an engine's model stays float32; the engine takes a hint
    build = f'model = blocks.resnet18("{config.variant}"'
    if workload.arch != "seed":
        build += f', arch="{workload.arch}"'
    if workload.size != ARCHS[workload.arch].input_shape[0]:
        build += f", input_shape=({workload.size}, {workload.size}, 3)"
    if policy != "float32" and not is_engine(config.execution):
        build += f', dtype_policy="{policy}"'
    build += ")"
    call = "step(images)" if workload.mode == "inference" else "step(images, labels)"
    if config.strategy != "none":
        return _apply_strategy(config, workload, runtime, build)
    out = {
        "variant": config.variant,
        "execution": config.execution,
        "runtime": config.runtime,
        "dtype_policy": policy,
        "environment": runtime.exports(),
        "unset": [k for k, v in runtime.env.items() if v is None],
        "python": [
            "import blocks",
            build,
            f'step = blocks.compiled_step(model, "{workload.mode}", "{config.execution}")'
            f"  # then {call}",
        ],
    }
    if is_engine(config.execution):
        from blocks import engines

        spec = ENGINES[config.execution]
        path = f"resnet18-{workload.arch}-b{workload.batch_size}{spec.suffixes[0]}"
        threads = (engine or {}).get("threads") or 1
        out["environment"], out["unset"] = [], []  # TensorFlow's settings do not reach it
        out["python"] = [
            "import blocks",
            build + "  # and your weights: blocks.load_weights(model, path)",
            f'blocks.export(model, "{config.execution}", "{path}", '
            f"batch_size={workload.batch_size}"
            + ("" if policy == "float32" else f', precision="{policy}"')
            + ")",
        ]
        module = engines.implementation(config.execution)
        out["serve"] = module.serving_code(path, threads, policy)
    return out


def _apply_strategy(config: Config, workload: Workload, runtime, build: str) -> dict:
    """A strategy is made first in each process, the model built in its scope, and the step
    takes the global batch."""
    n, per = config.replicas, workload.batch_size
    where = {
        "mirrored": f"{n} local GPUs, else {n} logical CPUs made here",
        "multiworker": f"in each of the {n} processes TF_CONFIG names",
    }[config.strategy]
    return {
        "variant": config.variant,
        "execution": config.execution,
        "runtime": config.runtime,
        "strategy": config.strategy,
        "replicas": n,
        "environment": runtime.exports(),
        "unset": [k for k, v in runtime.env.items() if v is None],
        "python": [
            "import blocks",
            f'strategy = blocks.distribute_strategy("{config.strategy}", {n})  # {where}',
            "with strategy.scope():",
            f"    {build}",
            f'step = blocks.compiled_step(model, "train", "{config.execution}", '
            f"strategy=strategy)  # then step(images, labels): {n * per} images, {per} per replica",
        ],
    }
