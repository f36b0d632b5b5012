"""How busy the machine was during a race: the CPU time that processes other than the race's own
took, as a share of the machine's capacity over the race's wall time.

The machine's busy time comes from `/proc/stat` (user, nice, system, irq, softirq, steal; not
idle or iowait), the race's own from `/proc/<pid>/stat` of the parent and of every worker (a
process's figures cover all its threads; a worker's also its waited-for children). The parent's
waited-for children are left out: they are the workers, counted already. A worker that exits
mid-race keeps its last reading. Without /proc (macOS, Windows) the load is unknown, never
guessed.

Why it matters: identical configurations raced while a test suite ran beside them came out 1.32x
apart (1.26-1.36); quiet, 1.02x. Above `BUSY_SHARE` a result is labelled and a pick not cached.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Iterable, Optional

# Others' share of the machine above which a race's figures are unreliable. Measured here
# (bench/results/busy-amd-epyc-tf2.21.0.json, bench/record_busy.py: the reference against a second
# process of itself): at 0% and 16% others it measured 1.00x (0.98-1.02) and 0.98x (0.97-1.00);
# from 47% on, 0.95x (0.93-0.98) and 0.98x (0.96-0.99), intervals that exclude the truth; at 64-83%
# (other people's test suites) intervals 0.11-0.57 wide. 40% is below the lowest share that gave
# a spurious difference, with room for the sampler's resolution over a short race.
BUSY_SHARE = 0.40

PROC = "/proc"
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user, nice, system, irq, softirq, steal (guest is in user)


@dataclasses.dataclass
class Load:
    """Others' CPU seconds over `wall_s` seconds of a machine of `cores` cores; `unknown` says
    why it could not be measured. Adds up over several races."""

    others_s: float = 0.0
    wall_s: float = 0.0
    cores: int = 0
    unknown: Optional[str] = None

    def __add__(self, other: "Load") -> "Load":
        if not other.wall_s and not other.unknown:
            return self
        if not self.wall_s and not self.unknown:
            return other
        return Load(
            self.others_s + other.others_s,
            self.wall_s + other.wall_s,
            max(self.cores, other.cores),
            self.unknown or other.unknown,
        )

    @property
    def share(self) -> Optional[float]:
        """Others' CPU time over the capacity (wall time x cores), or None if unknown."""
        if self.unknown or not self.wall_s or not self.cores:
            return None
        return self.others_s / (self.wall_s * self.cores)

    @property
    def busy(self) -> bool:
        share = self.share
        return share is not None and share > BUSY_SHARE

    def text(self) -> str:
        if self.unknown:
            return f"machine load unknown ({self.unknown})"
        if self.share is None:
            return "machine load not measured (no rounds)"
        others = self.others_s / self.wall_s
        return (
            f"others used {others:.1f} of {self.cores} cores ({100 * self.share:.0f}%) "
            f"over {self.wall_s:.0f} s of racing"
        )

    def warning(self) -> Optional[str]:
        """One line when the machine was busy, else None."""
        if not self.busy:
            return None
        return (
            f"busy machine: {self.text()}, above {100 * BUSY_SHARE:.0f}%; figures unreliable "
            "(identical configurations measure apart), not cached: rerun on a quieter machine"
        )

    def to_json(self) -> dict:
        share = self.share
        return {
            "others_s": round(self.others_s, 3),
            "wall_s": round(self.wall_s, 3),
            "cores": self.cores,
            "share": None if share is None else round(share, 4),
            "busy": self.busy,
            "threshold": BUSY_SHARE,
            "unknown": self.unknown,
            "text": self.text(),
            "warning": self.warning(),
        }

    @classmethod
    def from_json(cls, data: Optional[dict]) -> "Load":
        if not data:
            return cls()
        return cls(data["others_s"], data["wall_s"], data["cores"], data.get("unknown"))


def _ticks(fields: list, indices) -> int:
    return sum(int(fields[i]) for i in indices)


class Sampler:
    """Samples the machine and the race's own processes: `start()`, `sample()` as often as
    convenient (each keeps a worker's last reading should it exit), `stop()` -> Load."""

    def __init__(
        self,
        worker_pids: Iterable[int],
        parent_pid: Optional[int] = None,
        proc: str = PROC,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.proc, self.clock = proc, clock
        self.parent = os.getpid() if parent_pid is None else parent_pid
        self.workers = [p for p in dict.fromkeys(worker_pids) if p != self.parent]
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.unknown: Optional[str] = None
        if not os.path.exists(os.path.join(proc, "stat")):
            self.unknown = f"no {proc}/stat on this system"
        self._first: dict = {}  # pid -> (start time, ticks) at start
        self._last: dict = {}  # pid -> (start time, ticks), the latest reading

    def _machine(self) -> tuple:
        """(busy ticks, cores) from /proc/stat."""
        with open(os.path.join(self.proc, "stat"), encoding="ascii") as f:
            lines = f.read().splitlines()
        total = next(line for line in lines if line.startswith("cpu "))
        cores = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        return _ticks(total.split()[1:], _BUSY_FIELDS), cores

    def _process(self, pid: int, children: bool) -> Optional[tuple]:
        """(start time, ticks) of a process, or None if it is gone."""
        try:
            with open(os.path.join(self.proc, str(pid), "stat"), encoding="ascii") as f:
                text = f.read()
        except OSError:
            return None
        fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and brackets
        # From the state (field 3): utime 14, stime 15, cutime 16, cstime 17, starttime 22.
        used = (11, 12, 13, 14) if children else (11, 12)
        return int(fields[19]), _ticks(fields, used)

    def _read_processes(self) -> None:
        for pid in [self.parent, *self.workers]:
            reading = self._process(pid, children=pid != self.parent)
            if reading is None:
                continue
            before = self._last.get(pid)
            if before is not None and before[0] != reading[0]:
                continue  # the number now belongs to another process: keep the worker's last
            self._first.setdefault(pid, reading)
            self._last[pid] = reading

    def _own(self) -> int:
        return sum(self._last[p][1] - self._first[p][1] for p in self._last)

    def start(self) -> "Sampler":
        self._t0 = self.clock()
        if self.unknown is None:
            try:
                self._busy0, self.cores = self._machine()
                self._read_processes()
            except (OSError, ValueError, StopIteration, IndexError) as e:
                self.unknown = f"{self.proc}/stat unreadable: {type(e).__name__}"
        return self

    def sample(self) -> None:
        if self.unknown is None:
            self._read_processes()

    def stop(self) -> Load:
        wall = self.clock() - self._t0
        if self.unknown is not None:
            return Load(wall_s=wall, unknown=self.unknown)
        try:
            self._read_processes()
            busy, cores = self._machine()
        except (OSError, ValueError, StopIteration, IndexError) as e:
            return Load(wall_s=wall, unknown=f"{self.proc}/stat unreadable: {type(e).__name__}")
        # Tick counts are rounded per CPU and per process: never below zero, nor above capacity.
        others = max(0, (busy - self._busy0) - self._own()) / self.tick
        return Load(min(others, wall * cores), wall, cores)
