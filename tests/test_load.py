"""How busy the machine was during a race (`blocks.measure.load`), measured with real processes.

The machine is shared (other people's work runs beside these tests), so the tests compare two
samplers over the same interval, which differ only in what they count as the race's own: the
difference is the process in question, whatever else ran. A process's CPU time is checked against
what the kernel reports when it is reaped (`os.wait4`), another interface than /proc.
"""

import json
import math
import os
import resource
import subprocess
import sys
import time

import pytest

from blocks.measure import cache, compiling, final, load, picker, race, render, stats
from blocks.measure.load import Load, Sampler
from blocks.measure.result import PickResult
from blocks.measure.workload import REFERENCE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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

    def __init__(self, seconds):
        self.seconds = seconds  # or {key: seconds}: a process shared by several candidates
        self.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    def call(self, op, timeout_s, **fields):
        if op == "verify":
            return {"passed": True, "checks": {}, "text": "not checked (a test's sleeper)"}
        s = self.seconds[fields["key"]] if isinstance(self.seconds, dict) else self.seconds
        time.sleep(s)
        return {"seconds": s}

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


@pytest.fixture
def stub_pick(tmp_path, monkeypatch):
    """`picker.pick` whose candidates 'compile' into sleeper workers (no TensorFlow): all of its
    own logic (screen, fresh processes, final, decision, cache) runs, in about a second. The
    reference sleeps 20 ms a round while it shares a screening process, 40 ms alone; the others
    10 ms to 60 ms by name, so every figure is known."""
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "picks.json"))
    monkeypatch.setattr(final, "MAX_FINAL_ROUNDS", 2 * stats.MIN_ROUNDS)
    sleepers = []
    seconds = {"functional": 0.01, "nchw": 0.03}

    def compile_all(run, candidates, per_process, phase):
        each = {}
        for c in candidates:
            if c.config == REFERENCE:
                each[c.config.label] = 0.04 if per_process else 0.02
            else:
                slower = 2 if c.config.execution == "eager" else 1
                each[c.config.label] = seconds.get(c.config.variant, 0.025) * slower
        shared = None if per_process else _Sleeper(each)  # one screening process for all
        for c in candidates:
            worker = _Sleeper(each[c.config.label]) if per_process else shared
            sleepers.append(worker)
            c.compile_s, c.status = 0.0, "ready"
            c.entrant = race.Entrant(
                c.config.label, worker, c.config.label, 1, each[c.config.label]
            )

    monkeypatch.setattr(compiling, "compile_all", compile_all)
    space = dict(
        variants=["subclassed", "functional", "nchw"],
        executions=["graph", "eager"],
        runtimes=["default"],
        batch_size=2,
        image_size=8,
    )
    try:
        yield lambda: picker.pick(budget_s=60, **space), lambda: picker.cached_pick(**space)
    finally:
        for w in set(sleepers):
            w.close()


def hogs(count: int) -> list:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def test_a_pick_on_a_busy_machine_warns_labels_and_is_not_cached(stub_pick, capsys):
    run, cached = stub_pick
    # Enough busy processes to exceed the threshold on their own, whatever else runs.
    running = hogs(math.ceil(os.cpu_count() * min(1.0, load.BUSY_SHARE + 0.3)))
    try:
        result = run()
    finally:
        for hog in running:
            hog.kill()
            hog.wait()
    assert result.winner is not None and not result.provisional
    assert result.busy and result.load["busy"] and result.load["share"] > load.BUSY_SHARE
    assert result.load["warning"].startswith("busy machine: others used")
    assert cached() is None, "a pick on a busy machine was cached"
    assert PickResult.from_json(json.loads(json.dumps(result.to_json()))).busy
    render.print_pick(result, verbose=False)
    out, err = capsys.readouterr()
    assert "BUSY MACHINE: others used" in out and "figures unreliable" in out
    assert err.count("\n") == 1 and err.startswith("warning: busy machine: others used")


def test_a_quiet_pick_is_cached_and_every_speedup_sits_beside_its_own_reference(
    stub_pick, monkeypatch, capsys
):
    """The same pick, with nothing counted as busy, is cached (the busy test above is not
    vacuous). Each row's img/s over the reference's img/s in the same rounds is its speedup, for
    the screened out (screening rounds: the reference at 100 img/s) as for the finalists (final
    rounds: 50 img/s), though the reference's own row shows 50."""
    monkeypatch.setattr(load, "BUSY_SHARE", 1.0)
    run, cached = stub_pick
    result = run()
    assert not result.busy and result.load["warning"] is None
    assert cached() is not None
    # The load covers every race of the pick: screening and final rounds, each row's sleeps.
    slept = sum(r.rounds * 2 / r.images_per_sec for r in result.ranking)
    assert slept < result.load["wall_s"] < slept + 1.5
    rows = {r.label: r for r in result.ranking}
    assert rows[REFERENCE.label].images_per_sec == pytest.approx(50)
    screened = [r for r in result.ranking if r.status == "screened out"]
    assert screened and all(r.reference_images_per_sec == pytest.approx(100) for r in screened)
    for r in result.ranking:
        assert r.images_per_sec / r.reference_images_per_sec == pytest.approx(r.speedup, rel=0.01)
    render.print_pick(result, verbose=False)
    out = capsys.readouterr().out
    assert "BUSY" not in out and "machine: others used" in out
    line = next(ln for ln in out.splitlines() if screened[0].label in ln)
    assert " 100.0 " in line


def test_reports_and_a_pick_from_saved_benchmarks_carry_the_load(tmp_path, capsys):
    """A benchmark run's tables put the reference's img/s of the same rounds beside each speedup
    and name the benchmarks measured on a busy machine; a pick from that run is labelled busy."""
    from blocks.measure import report, saved
    from tests.test_report import row, run_file

    quiet, busy = Load(0.2, 10.0, 2), Load(12.0, 10.0, 2)
    rows = [
        row("subclassed · graph · default", 0.50),
        row("xla · graph · default", 0.40, speedup=1.25),
    ]
    for r, reading, ref in zip(rows, (quiet, busy), (128.0, 114.5)):
        r["extra_info"].update(load=reading.to_json(), reference_images_per_sec=ref)
    path = run_file(tmp_path, rows=rows)
    text = report.markdown(report.load_runs([path]))
    assert "| 1.25x (1.23-1.27) vs 114.5 |" in text
    busy_lines = [ln for ln in text.splitlines() if "BUSY" in ln]
    assert busy_lines == [
        "BUSY MACHINE during xla · graph · default: others used 1.2 of 2 cores (60%) over 10 s "
        "of racing; figures unreliable"
    ]
    live = report.text_tables(rows, width=100)
    assert any(ln.startswith("BUSY MACHINE during xla") for ln in live)
    result = saved.pick_from_benchmarks(path)
    assert result.busy and result.load["warning"].startswith("busy machine")
    assert result.ranking[0].reference_images_per_sec == 114.5
    render.print_pick(result, verbose=False)
    out, err = capsys.readouterr()
    assert "BUSY MACHINE" in out and err.startswith("warning: busy machine")


@pytest.mark.exhaustive  # a whole pick in TensorFlow workers: tens of seconds
def test_a_whole_pick_beside_busy_processes_warns_and_caches_nothing(tmp_path):
    cache_file = tmp_path / "picks.json"
    env = {**os.environ, cache.ENV_VAR: str(cache_file), "PYTHONPATH": ROOT}
    # Two per core: the pick's own TensorFlow threads take their share too (one per core left
    # others 42% of a 2-core machine).
    running = hogs(2 * os.cpu_count())
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "blocks", "pick", "--variants", "subclassed,functional"]
            + ["--executions", "graph", "--runtimes", "default", "--batch-size", "2"]
            + ["--image-size", "8", "--budget-s", "120"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    finally:
        for hog in running:
            hog.kill()
            hog.wait()
    assert proc.returncode == 0, proc.stderr
    machine = [ln for ln in proc.stdout.splitlines() if ln.startswith("machine:")]
    assert "BUSY MACHINE: others used" in proc.stdout, machine
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: busy machine")]
    assert len(warnings) == 1 and "not cached" in warnings[0]
    entries = json.loads(cache_file.read_text()).get("entries", {}) if cache_file.exists() else {}
    assert not entries, "a pick on a busy machine was cached"
