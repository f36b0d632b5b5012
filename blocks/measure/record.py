"""The results record: one benchmark row and one run, as `pytest bench/` writes them.

A run file is pytest-benchmark's JSON (`--benchmark-json=FILE`): a `benchmarks` list, in which
each row of a configuration carries its figures in `extra_info`, and the run's own header under
`resnet_blocks`. `Row` is one such row, `Run` the header and its rows; `bench/` writes through
them and `report`, `saved` and pick's `--from-json` read through them. Files written before the
record had a version field are version 1: they read as they are.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

from blocks.measure import stats
from blocks.measure.workload import Config, Workload

VERSION = 1

# Written only when the row has them: a strategy's scaling, an inference check's error.
_SCALING = ("scaling_efficiency", "scaling_ci", "single_replica_images_per_sec")
_CHECKED = ("error_vs_float64", "verified")


@dataclasses.dataclass
class Row:
    """One configuration's benchmark: what ran, its figures, and (read back) pytest-benchmark's
    group, name and time quartiles (`median`, `q1`, `q3` seconds per step over `rounds`)."""

    workload: Workload
    config: Config
    label: str = ""
    reference: str = ""
    images_per_sec: Optional[float] = None
    gflop_per_image: Optional[float] = None
    gflops_per_sec: Optional[float] = None
    ceiling_gflops_per_sec: Optional[float] = None
    efficiency: Optional[float] = None
    speedup_vs_reference: Optional[float] = None  # in throughput, paired with the reference
    speedup_ci: Optional[list] = None  # its 95% interval; None: provisional
    reference_images_per_sec: Optional[float] = None  # the reference in the same rounds
    load: Optional[dict] = None  # `load.Load.to_json()`
    times: list = dataclasses.field(default_factory=list)
    reference_times: list = dataclasses.field(default_factory=list)
    strategy: str = "none"
    replicas: int = 1
    global_batch: Optional[int] = None
    compile_s: Optional[float] = None
    layout: Optional[dict] = None
    engine: Any = None
    onednn: Any = None
    device_name: Optional[str] = None
    tf_version: Optional[str] = None
    keras_version: Optional[str] = None
    scaling_efficiency: Optional[float] = None
    scaling_ci: Optional[list] = None
    single_replica_images_per_sec: Optional[float] = None
    error_vs_float64: Optional[float] = None
    verified: Optional[bool] = None
    version: int = VERSION
    # pytest-benchmark's, not in extra_info:
    group: str = ""
    name: str = ""
    median: float = 0.0
    q1: float = 0.0
    q3: float = 0.0
    rounds: int = 0

    def info(self) -> dict:
        """The row's `extra_info`, as the bench writes it."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in _BENCHMARK:
                continue
            value = getattr(self, f.name)
            if f.name in _SCALING and self.scaling_efficiency is None:
                continue
            if f.name in _CHECKED and self.verified is None:
                continue
            out[f.name] = value.to_json() if hasattr(value, "to_json") else value
        return out

    def to_json(self) -> dict:
        """The row as a pytest-benchmark entry."""
        return {
            "group": self.group,
            "name": self.name,
            "stats": {"median": self.median, "q1": self.q1, "q3": self.q3, "rounds": self.rounds},
            "extra_info": self.info(),
        }

    @classmethod
    def from_json(cls, data: dict) -> "Row":
        """A row from a pytest-benchmark entry of a configuration (`is_row`)."""
        info, stats = data["extra_info"], data.get("stats") or {}
        known = {f.name for f in dataclasses.fields(cls)} - _BENCHMARK
        fields = {k: v for k, v in info.items() if k in known}
        fields.update(
            workload=Workload.from_json(info["workload"]),
            config=Config.from_json(info["config"]),
            group=data.get("group") or "",
            name=data.get("name") or "",
            **{k: stats[k] for k in ("median", "q1", "q3", "rounds") if k in stats},
        )
        return cls(**fields)

    @property
    def images(self) -> int:
        """Images of one timed step: the batch of each replica."""
        return self.workload.batch_size * self.config.replicas

    def throughput(self) -> tuple:
        """(median, q1, q3) in images/s: pytest-benchmark's time quartiles as throughput."""
        return stats.quartile_throughput(self.images, self.q1, self.median, self.q3)

    def speedup_text(self) -> str:
        """The paired speedup with its 95% interval, or labelled provisional with its rounds."""
        text = f"{self.speedup_vs_reference:.2f}x"
        if self.speedup_ci:
            return text + f" ({self.speedup_ci[0]:.2f}-{self.speedup_ci[1]:.2f})"
        n = self.rounds  # each round paired with the reference's
        return text + f" provisional ({n} round{'s' if n != 1 else ''})"


_BENCHMARK = {"group", "name", "median", "q1", "q3", "rounds"}


def is_row(data) -> bool:
    """Whether a pytest-benchmark entry is a configuration's row (not a ceiling's)."""
    return (
        isinstance(data, dict)
        and "config" in (data.get("extra_info") or {})
        and bool(data.get("stats"))
    )


@dataclasses.dataclass
class Run:
    """A benchmark run: its header (machine, versions, ceilings, configurations not run; see
    `header`) and its rows. `path` is where it was read from."""

    header: dict
    rows: list  # of Row
    path: str = ""

    @property
    def version(self) -> int:
        return self.header.get("version", 1)

    @property
    def machine(self) -> str:
        m = self.header.get("machine", {})
        return f"{m.get('cpu', 'unknown CPU')} ({m.get('simd', '?')})"

    @property
    def versions(self) -> str:
        return f"TF {self.header.get('tf', '?')} / Keras {self.header.get('keras', '?')}"

    @property
    def tf_tuple(self) -> tuple:
        """The run's TF version as numbers, for sorting (read without importing TensorFlow)."""
        return tuple(int(p) for p in re.findall(r"\d+", str(self.header.get("tf", "0")))[:3])

    def not_run(self, group: str) -> list:
        return [n for n in self.header.get("not_run", []) if n.get("group") == group]

    def to_json(self) -> dict:
        return {"benchmarks": [r.to_json() for r in self.rows], "resnet_blocks": self.header}

    @classmethod
    def from_json(cls, data: dict, path: str = "") -> "Run":
        """A run from pytest-benchmark's JSON; entries other than configurations' rows (the
        matmul ceilings) are left out."""
        rows = [Row.from_json(b) for b in data.get("benchmarks", []) if is_row(b)]
        return cls(data.get("resnet_blocks") or {}, rows, path)


def header(not_run=(), ceilings=None) -> dict:
    """What a benchmark run records about itself (see bench/conftest.py)."""
    import datetime
    import platform

    from blocks import _compat, cpu

    return {
        "version": VERSION,
        "machine": cpu.describe(),
        "tf": _compat.TF_VERSION,
        "keras": _compat.KERAS_VERSION,
        "python": platform.python_version(),
        "onednn_default": cpu.onednn_on_by_default(),
        "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ceilings": ceilings or {},
        "not_run": list(not_run),
    }
