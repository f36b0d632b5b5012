"""What is measured and how: the two parameter objects every measuring tool passes around.

A `Workload` is the computation a user runs (a ResNet18 of an arch at an image size, in a mode,
batch size and dtype policy, on a device). A `Config` is one way of running it: a block variant,
how the step is compiled (execution), the process-level settings TensorFlow reads at import
(runtime) and, for training, a distribution strategy over several replicas. A candidate of
`blocks.pick` or a row of `pytest bench/` is a (workload, config) pair; the cache key and the
results files are made from these two objects.

What a pick searches and for how long are two more: a `SearchSpace` (the candidates asked for)
and a `Budget` (the seconds it may take). Every default of a pick is written once, in these
dataclasses; `blocks.pick`, the command line, `pytest bench/`, `saved` and `auto` read them.

This module does not import TensorFlow: the command line validates its options with it.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from blocks import checks
from blocks.archs import ARCHS, stem_output_size
from blocks.checks import DTYPE_POLICIES
from blocks.executions import EXECUTIONS, MODES, is_engine

__all__ = [
    "EXECUTIONS",
    "MODES",
    "STRATEGIES",
    "REFERENCE",
    "Accuracy",
    "Budget",
    "Config",
    "SearchSpace",
    "Workload",
    "grid",
    "group",
]
# none: one device; mirrored: MirroredStrategy over local devices (GPUs, or logical CPUs);
# multiworker: MultiWorkerMirroredStrategy over worker processes on this host.
STRATEGIES = ("none", "mirrored", "multiworker")

REFERENCE_VARIANT = "subclassed"
# Replicas of a distribution strategy when none are asked for: the least that is data-parallel.
STRATEGY_REPLICAS = 2


@dataclasses.dataclass(frozen=True)
class Workload:
    """The computation: ResNet18 of `arch` at `image_size` (None: the arch's), in `mode`, at
    `batch_size` images per replica, in `dtype_policy`, on `device` ("CPU:0", "GPU:0", ...)."""

    mode: str = "inference"
    batch_size: int = 64
    dtype_policy: str = "float32"
    arch: str = "seed"
    image_size: Optional[int] = None
    device: str = "CPU:0"

    def __post_init__(self):
        checks.choice(self.mode, MODES, "mode", what="Unknown mode")
        checks.positive_int(self.batch_size, "batch_size")
        checks.dtype_policy(self.dtype_policy)
        checks.choice(self.arch, sorted(ARCHS), "arch", what="Unknown arch")
        if self.image_size is None:  # one spelling per workload: the arch's size, explicitly
            object.__setattr__(self, "image_size", ARCHS[self.arch].input_shape[0])
        checks.positive_int(self.image_size, "image_size")
        stem = ARCHS[self.arch].stem
        if not stem_output_size(stem, self.image_size):  # else every worker finds it, later
            raise ValueError(
                f"Invalid image_size. The {self.arch!r} stem needs images of at least "
                f"{stem.kernel_size}x{stem.kernel_size} pixels; Received: "
                f"image_size={self.image_size!r}"
            )
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(
                f"Invalid device. Expected a name such as 'CPU:0'; Received: device={self.device!r}"
            )

    @property
    def size(self) -> int:
        return self.image_size

    @property
    def input_shape(self) -> tuple:
        return (self.size, self.size, 3)

    @property
    def label(self) -> str:
        """One line naming the workload (a benchmark group, a pick's title)."""
        return (
            f"{self.device} {self.arch} {self.size}x{self.size} {self.mode} {self.dtype_policy} "
            f"b{self.batch_size}"
        )

    def at(self, config: "Config") -> "Workload":
        """The workload `config` runs: this one, in the configuration's precision if it has one."""
        if config.precision is None or config.precision == self.dtype_policy:
            return self
        return dataclasses.replace(self, dtype_policy=config.precision)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Workload":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclasses.dataclass(frozen=True)
class Config:
    """One way of running a workload: a candidate of `blocks.pick`, a row of `pytest bench/`.

    Attributes:
        variant: a registered block variant.
        execution: "graph" (tf.function), "xla" (the whole step in one
            tf.function(jit_compile=True)), "eager", or a serving engine ("onnx", "openvino",
            "litert": inference only, see `blocks.executions`).
        runtime: a name of `blocks.measure.runtimes.RUNTIMES`: process-level settings
            TensorFlow reads at import ("default", "onednn", "no-onednn").
        strategy: "none", "mirrored" or "multiworker" (training only).
        replicas: devices (mirrored) or worker processes (multiworker); 1 with strategy "none".
        precision: a dtype policy other than the workload's, for a pick that races precisions
            (`SearchSpace.precisions`); None: the workload's own (`Workload.at` gives the
            workload a configuration runs).
    """

    variant: str
    execution: str = "graph"
    runtime: str = "default"
    strategy: str = "none"
    replicas: int = 1
    precision: Optional[str] = None

    def __post_init__(self):
        if not isinstance(self.variant, str) or not self.variant:
            raise ValueError(
                f"Invalid variant. Expected a name; Received: variant={self.variant!r}"
            )
        checks.choice(self.execution, EXECUTIONS, "execution", what="Unknown execution")
        checks.choice(self.strategy, STRATEGIES, "strategy", what="Unknown strategy")
        checks.positive_int(self.replicas, "replicas")
        if is_engine(self.execution) and self.strategy != "none":
            raise ValueError(
                f"Invalid strategy for execution {self.execution!r}. A serving engine runs "
                f"inference on one device; Expected strategy='none'; Received: {self.strategy!r}"
            )
        if self.precision is not None:
            checks.choice(self.precision, DTYPE_POLICIES, "precision", what="Unknown precision")
        if self.strategy == "none" and self.replicas != 1:
            raise ValueError(
                "Invalid replicas. Expected 1 without a distribution strategy; "
                f"Received: replicas={self.replicas!r} with strategy='none'"
            )

    @property
    def label(self) -> str:
        """The row name, e.g. 'xla · graph · default', with the strategy and the precision where
        there are any ('folded · graph · default · mixed_bfloat16')."""
        parts = [self.variant, self.execution, self.runtime]
        if self.strategy != "none":
            parts.append(f"{self.strategy}x{self.replicas}")
        if self.precision is not None:
            parts.append(self.precision)
        return " · ".join(parts)

    @property
    def process(self) -> tuple:
        """What needs a process of its own: the runtime and the strategy's device layout; and
        each serving engine's candidate, alone (engines start thread pools of their own, kept
        out of the processes that time TensorFlow and each other: bench/record_coresidency.py),
        which also lets a finalist keep the process it was screened in."""
        engine = (self.execution, self.variant) if is_engine(self.execution) else ()
        return (self.runtime, self.strategy, self.replicas, *engine)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        if self.precision is None:  # the workload's: as every result before the axis wrote it
            del out["precision"]
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Config":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    @classmethod
    def parse(cls, label: str) -> "Config":
        """The inverse of `label` ('xla · graph · default', or 'xla·graph·default')."""
        parts = [p.strip() for p in label.split("·")]
        precision = parts.pop() if len(parts) > 3 and parts[-1] in DTYPE_POLICIES else None
        if not 1 <= len(parts) <= 4:
            raise ValueError(
                "Invalid configuration. Expected 'variant · execution · runtime'; "
                f"Received: {label!r}"
            )
        strategy, replicas = "none", 1
        if len(parts) == 4:
            strategy, _, n = parts[3].rpartition("x")
            replicas = int(n) if n.isdigit() else -1
        return cls(*parts[:3], strategy=strategy, replicas=replicas, precision=precision)


REFERENCE = Config(REFERENCE_VARIANT, "graph", "default")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The candidates a pick races, checked by `picker.plan` against this machine.

    Attributes:
        variants: registered block variants (None: every one).
        executions: of `EXECUTIONS` (None: every one the mode runs; the serving engines run
            inference only).
        runtimes: names of `blocks.measure.runtimes.RUNTIMES` (None: every one).
        strategy: "none", "mirrored" or "multiworker" (training only).
        replicas: of the strategy (None: `STRATEGY_REPLICAS` with a strategy, 1 without).
        precisions: dtype policies every candidate is raced in (None: the workload's alone;
            changing the numbers a user gets is never silent). A precision other than float32
            has its accuracy cost measured and bounded (`Accuracy`).
    """

    variants: Optional[Sequence[str]] = None
    executions: Optional[Sequence[str]] = None
    runtimes: Optional[Sequence[str]] = None
    strategy: str = "none"
    replicas: Optional[int] = None
    precisions: Optional[Sequence[str]] = None

    @property
    def restricted(self) -> bool:
        """Whether the candidates were narrowed from the default (all of them)."""
        return any((self.variants, self.executions, self.runtimes))

    def precisions_for(self, workload: Workload) -> list:
        """The precisions raced, checked; the workload's own first if it is among them."""
        if self.precisions is None:
            return [workload.dtype_policy]
        asked = checks.choices(self.precisions, DTYPE_POLICIES, "precision")
        return sorted(dict.fromkeys(asked), key=lambda p: p != workload.dtype_policy)


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """What a precision other than float32 may cost, and what the cost is measured on.

    A candidate in such a precision is compared with float64 of the same weights on the
    verification images (`blocks.measure.accuracy`): it is disqualified, with its figures, if
    more than `max_top1_disagreement` of the images change their top-1 class, or if its largest
    logit error (relative to each image's largest logit) exceeds `max_logit_error` (None: no
    bound). The check runs on the user's `weights` (a file `blocks.load_weights` reads) and
    `images` (an .npz of NHWC float32 `images`, optional `labels`); without them, on the
    seeded weights and random images, and the cost is said to be indicative only.
    """

    max_top1_disagreement: float = 0.01
    max_logit_error: Optional[float] = None
    weights: Optional[str] = None
    images: Optional[str] = None

    def __post_init__(self):
        checks.share(self.max_top1_disagreement, "max_top1_disagreement")
        if self.max_logit_error is not None:
            checks.non_negative_number(self.max_logit_error, "max_logit_error")  # None: no bound
        for name in ("weights", "images"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(
                    f"Invalid {name}. Expected a file path or None; Received: {name}={value!r}"
                )

    @property
    def indicative(self) -> bool:
        """Measured on the seeded weights or random images, not the user's own."""
        return self.weights is None or self.images is None


@dataclasses.dataclass(frozen=True)
class Budget:
    """The seconds a pick may take, start-up and compilation included (None: the mode's
    default). A training step compiles and runs several times longer than a forward pass.

    The least a pick fits: a worker starting TensorFlow, the reference and one candidate
    compiled, a few rounds, the winner verified. Below it a run could only overrun or measure
    nothing. How a pick shares the seconds out is `blocks.measure.budget`.
    """

    seconds: Optional[float] = None

    DEFAULT_S = {"inference": 150.0, "train": 420.0}
    MIN_S = {"inference": 20.0, "train": 40.0}

    def for_mode(self, mode: str, precisions: int = 1) -> float:
        """The seconds a pick in `mode` racing `precisions` precisions may take: `seconds`
        checked against the least one fits, or the default, times the precisions (each is
        another set of candidates to compile and screen)."""
        checks.positive_number(self.seconds, "budget_s", allow_none=True)
        default = self.DEFAULT_S[mode] * precisions
        budget = default if self.seconds is None else float(self.seconds)
        least = self.MIN_S[mode]
        if budget < least:
            raise ValueError(
                f"Invalid budget_s. A pick needs at least {least:g} s in {mode} (a worker to "
                "start TensorFlow, the reference and a candidate to compile, rounds, a "
                f"verification); Received: budget_s={self.seconds!r}"
            )
        return budget


def grid(
    variants: Sequence[str],
    executions: Sequence[str] = ("graph",),
    runtimes: Sequence[str] = ("default",),
    strategy: str = "none",
    replicas: int = 1,
    precisions: Sequence[Optional[str]] = (None,),
) -> list:
    """Every combination, variants outermost, precisions innermost: the candidates of a pick or
    a benchmark run."""
    return [
        Config(v, e, r, strategy, replicas if strategy != "none" else 1, p)
        for v in variants
        for e in executions
        for r in runtimes
        for p in precisions
    ]


def group(workload: Workload, config: Config) -> str:
    """Which benchmarks race each other: one group per workload, and per distribution strategy
    (whose global batch is the per-replica batch x replicas; the name says both)."""
    if config.strategy == "none":
        return workload.label
    n = config.replicas
    return f"{workload.label} {config.strategy}x{n} (global b{workload.batch_size * n})"
