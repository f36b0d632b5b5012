"""How busy the machine was during a race (`blocks.measure.load`), measured with real processes.

The machine is shared (other people's work runs beside these tests), so the tests compare two
samplers over the same interval, which differ only in what they count as the race's own: the
difference is the process in question, whatever else ran. A process's CPU time is checked against
what the kernel reports when it is reaped (`os.wait4`), another interface than /proc.
"""

import os
import resource
import subprocess
import sys
import time

import pytest

from blocks.measure import load, race
from blocks.measure.load import Load, Sampler

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux /proc only")

SPIN = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end: pass"


def spinner(seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SPIN.format(s=seconds)])


def reap(proc: subprocess.Popen) -> float:
    """CPU seconds of a finished child, from the kernel's accounting at reaping."""
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped here: Popen must not wait for it again
    return usage.ru_utime + usage.ru_stime


def spin_here(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_others_are_what_the_machine_did_besides_the_race_own_processes():
    """A busy child that exits mid-race: counted as the race's own it vanishes from others' time
    (its last reading kept after it exits and is reaped); not counted, it is others' time. The
    parent's own busy thread is never others' time."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        child = spinner(1.0)
        own = Sampler([child.pid]).start()  # parent: this process
        not_own = Sampler([]).start()
        stranger = Sampler([], parent_pid=sleeper.pid).start()  # this process is not its own
        here = resource.getrusage(resource.RUSAGE_SELF)
        end = time.monotonic() + 1.6
        while time.monotonic() < end:  # the child ends within this time; samples meanwhile
            spin_here(0.05)
            own.sample()
            not_own.sample()
            stranger.sample()
        child_s = reap(child)
        readings = own.stop(), not_own.stop(), stranger.stop()
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        sleeper.kill()
        sleeper.wait()
    with_child, without, with_parent = readings
    assert child_s > 0.05, "the busy child never ran"
    for reading in readings:
        assert reading.cores == os.cpu_count() and reading.unknown is None
        assert 1.5 < reading.wall_s < 3.0
        assert 0 <= reading.share <= 1.0
    # The child's CPU time is the difference, to a few ticks and the last 50 ms between samples.
    assert without.others_s - with_child.others_s == pytest.approx(child_s, abs=0.12)
    # This process spun meanwhile: its own time, never others'.
    parent_s = (after.ru_utime + after.ru_stime) - (here.ru_utime + here.ru_stime)
    assert parent_s > 0.05
    assert with_parent.others_s - without.others_s == pytest.approx(parent_s, abs=0.12)


def test_a_busy_process_is_others_time_and_the_warning_says_so():
    """A busy process that runs wholly inside the sampled second is in others' time (with
    whatever else the machine did), up to one core; the one-line warning names it."""
    sampler = Sampler([]).start()
    hog = spinner(1.0)
    hog_s = reap(hog)
    reading = sampler.stop()
    cores = reading.cores
    assert 0.05 < hog_s <= reading.wall_s
    assert reading.others_s >= hog_s - 0.03  # a few ticks of rounding
    assert reading.share <= 1.0
    if reading.share > load.BUSY_SHARE:
        text = reading.warning()
        assert text.startswith("busy machine: others used") and "\n" not in text
        assert f"of {cores} cores" in text and "not cached" in text


def test_without_proc_the_load_is_unknown_not_guessed(tmp_path):
    reading = Sampler([], proc=str(tmp_path)).start().stop()
    assert reading.unknown and reading.share is None and not reading.busy
    assert reading.warning() is None and "unknown" in reading.text()
    assert Load.from_json(reading.to_json()).unknown == reading.unknown


def test_loads_add_up_over_races_and_round_trip():
    a, b = Load(1.0, 4.0, 2), Load(3.0, 4.0, 2)
    total = Load() + a + b
    assert (total.others_s, total.wall_s, total.cores) == (4.0, 8.0, 2)
    assert total.share == pytest.approx(0.25)
    assert Load.from_json(total.to_json()) == total
    assert Load(0.2, 1.0, 2).warning() is None  # 10%
    assert Load(1.8, 1.0, 2).busy and "others used 1.8 of 2 cores (90%)" in Load(1.8, 1, 2).text()


class _Sleeper:
    """A worker that answers `time` by sleeping (no TensorFlow): a cheap race entrant, whose
    process is a real one that the race counts as its own."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    def call(self, op, timeout_s, **fields):
        if op == "verify":
            return {"passed": True, "checks": {}, "text": "not checked (a test's sleeper)"}
        time.sleep(self.seconds)
        return {"seconds": self.seconds}

    def close(self):
        self.proc.kill()
        self.proc.wait()


def test_every_race_records_the_load_on_its_entrants():
    """run_rounds measures the load without being asked; a busy process beside it is others'."""
    workers = [_Sleeper(0.05), _Sleeper(0.05)]
    hog = spinner(5)
    try:
        entrants = [race.Entrant(f"e{i}", w, f"e{i}") for i, w in enumerate(workers)]
        race.run_rounds(entrants, 8)
        first = entrants[0].load
        race.run_rounds(entrants, 2, first_round=8)
    finally:
        hog.kill()
        hog.wait()
        for w in workers:
            w.close()
    total = entrants[0].load
    assert entrants[1].load == total
    assert 0.75 < first.wall_s < 3 and total.wall_s > first.wall_s  # added up over both races
    assert total.others_s > 0.1  # the busy loop, at least
    entrants[0].reset()
    assert entrants[0].load == Load() and entrants[0].times == {}
