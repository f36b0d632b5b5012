"""`blocks.pick` with real worker processes: the race, faults in workers, verification, the
budget, the cache, `variant="auto"`, the command line and applying a pick in a fresh process.

Misbehaving variants (tests/helpers/faulty.py) crash, hang or compute the wrong function inside
real workers. After every test, no process of the test's own is left.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest

import blocks
from blocks import cpu
from blocks.executions import ENGINES
from blocks.measure import cache, final, lab, picker, saved, stats
from blocks.measure.result import PickResult, how_to_apply
from blocks.measure.workload import REFERENCE, Budget, Config
from tests.helpers import faulty

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(batch_size=2, image_size=8)
TAG_VAR = "RESNET_BLOCKS_TEST_TAG"


def faulty_env() -> dict:
    """The environment of a command line that knows the misbehaving variants (it imports their
    module, as its workers do) and carries this test's tag."""
    return {**os.environ, "RESNET_BLOCKS_IMPORTS": "tests.helpers.faulty", "PYTHONPATH": ROOT}


def tagged_processes(tag: str) -> list:
    """PIDs of live processes whose environment carries `tag` (workers inherit it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().split(b")")[-1].split()[0]
        except OSError:
            continue
        if f"{TAG_VAR}={tag}".encode() in env and state != b"Z":
            found.append(int(pid))
    return found


# A budget that these tests' runs never reach on this machine, loaded or not: each worker takes
# ~5 s to start TensorFlow here (two at once on two cores, while another test does the same) and a
# few more to compile, and the phases of a pick get fixed shares of its budget. A run ends as soon
# as its final rounds are done, so a roomy budget costs no time; the budget's own effect is
# tested by test_a_short_budget_bounds_the_run_and_is_provisional_not_cached.
ROOMY_S = 90


@pytest.fixture(autouse=True)
def short_samples(monkeypatch):
    """These tests check what a pick does, not its figures: samples of 20 ms and at most 12 final
    rounds (twice what a decision needs) keep them short."""
    monkeypatch.setattr(lab, "MIN_SAMPLE_S", 0.02)
    monkeypatch.setattr(final, "MAX_FINAL_ROUNDS", 2 * stats.MIN_ROUNDS)


@pytest.fixture(autouse=True)
def private_cache_and_tag(tmp_path, monkeypatch):
    """Every test gets its own cache file, a tag that its worker processes inherit, and the
    misbehaving variants in the registry for its length."""
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "cache" / "picks.json"))
    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG_VAR, tag)
    with faulty.registered():
        yield tag
    assert tagged_processes(tag) == [], "a worker process outlived its test"


def _row(result, label):
    return next(r for r in result.ranking if r.label == label)


def test_a_pick_races_configurations_and_verifies_the_winner():
    result = picker.pick(
        variants=["subclassed", "functional"],
        executions=["graph", "eager"],
        runtimes=["default"],
        budget_s=ROOMY_S,
        **TINY,
    )
    labels = {r.label for r in result.ranking}
    assert labels == {
        f"{v} · {e} · default" for v in ("subclassed", "functional") for e in ("graph", "eager")
    }
    winner = _row(result, result.winner_label)
    assert winner.status == "winner" and winner.images_per_sec > 0
    assert result.verification["passed"] and "inference output" in result.verification["checks"]
    ref = _row(result, REFERENCE.label)
    assert ref.speedup == 1.0 and ref.rounds >= 1
    for r in result.ranking:
        assert r.rounds >= 1 and r.q1_images_per_sec <= r.images_per_sec <= r.q3_images_per_sec
    # Throughput is batch / median time of the samples kept for that row.
    assert result.apply["python"][1].startswith(
        f'model = blocks.resnet18("{result.winner_config.variant}"'
    )
    assert result.elapsed_s <= ROOMY_S + 15
    if not result.provisional and not result.busy:  # a test suite beside it makes it busy
        again = picker.cached_pick(
            variants=["subclassed", "functional"],
            executions=["graph", "eager"],
            runtimes=["default"],
            **TINY,
        )
        assert again is not None and again.source == "cache"
        assert again.winner == result.winner
    other = picker.cached_pick(variants=["subclassed"], runtimes=["default"], **TINY)
    assert other is None  # another candidate space is another key


@pytest.mark.exhaustive  # an engine's conversion takes seconds
def test_a_pick_races_a_serving_engine_in_a_worker_and_verifies_it():
    name = next((n for n in ENGINES if ENGINES[n].missing() is None), None)
    if name is None:
        pytest.skip("no serving engine installed: pip install 'resnet-blocks[serve]'")
    result = picker.pick(
        variants=["subclassed"],
        executions=["graph", name],
        runtimes=["default"],
        budget_s=ROOMY_S,
        batch_size=1,
        image_size=8,
    )
    row = _row(result, f"subclassed · {name} · default")
    assert row.status in ("winner", "finalist") and row.rounds >= 1
    assert row.engine["threads"] == cpu.usable_cores() and row.compile_s > 0
    assert row.layout["engine"] == name and row.layout["convs"] == 20
    assert result.key["engines"][name] == ENGINES[name].versions()
    assert result.verification["passed"]
    if result.winner_config.execution == name:
        assert result.apply["serve"] and result.apply["environment"] == []


@pytest.mark.exhaustive  # process faults: the same on every TensorFlow, so checked once
def test_crashing_and_hanging_workers_get_their_reason_and_the_others_go_on():
    result = picker.pick(
        # Compiled two at a time in this order: `hanging` starts at once and is stopped when the
        # compile phase's share of the budget and a quarter more are spent (25.5 s of 30);
        # `crashing` starts when `subclassed` is compiled, well before the phase ends (18 s).
        variants=["subclassed", "hanging", "crashing"],
        executions=["graph"],
        runtimes=["default"],
        budget_s=30,
        **TINY,
    )
    crashed = _row(result, "crashing · graph · default")
    assert crashed.status == "could not run"
    assert re.match(r"worker .* died \(SIGSEGV\) during 'prepare'", crashed.reason), crashed.reason
    hung = _row(result, "hanging · graph · default")
    assert hung.status == "could not run"
    assert re.match(r"worker .* did not finish 'prepare' .* in time; it was stopped", hung.reason)
    assert result.winner_label == "subclassed · graph · default"


@pytest.mark.exhaustive  # worker faults: the same on every TensorFlow
@pytest.mark.skipif(not cpu.is_x86_64(), reason="oneDNN's on/off switch is x86-64's")
def test_a_runtime_whose_candidates_all_fail():
    result = picker.pick(
        variants=["onednn_only"],
        executions=["graph"],
        runtimes=["onednn", "no-onednn"],
        budget_s=ROOMY_S,
        **TINY,
    )
    failed = _row(result, "onednn_only · graph · no-onednn")
    assert failed.status == "could not run"
    assert failed.reason == "onednn_only: oneDNN is off in this process"
    assert result.winner_config.runtime == "onednn"
    assert result.apply["environment"] == ["TF_ENABLE_ONEDNN_OPTS=1"]


def test_a_wrong_winner_is_disqualified_with_its_error():
    result = picker.pick(
        variants=["subclassed", "wrong"],
        executions=["graph"],
        runtimes=["default"],
        budget_s=ROOMY_S,
        **TINY,
    )
    wrong = _row(result, "wrong · graph · default")
    assert wrong.status == "disqualified"
    assert re.match(r"disqualified: inference output off by [\d.e+-]+ \(> 1e-05\)", wrong.reason)
    assert result.winner_label == "subclassed · graph · default"
    assert result.verification["passed"]


@pytest.mark.exhaustive  # a crash again, now of every candidate
def test_no_candidate_can_run():
    with pytest.raises(picker.PickError, match=r"No candidate could run on CPU:0\..*crashing"):
        picker.pick(
            variants=["crashing"],
            executions=["graph"],
            runtimes=["default"],
            budget_s=ROOMY_S,
            **TINY,
        )


@pytest.mark.exhaustive  # the budget's arithmetic, the same on every TensorFlow
def test_a_short_budget_bounds_the_run_and_is_provisional_not_cached(monkeypatch):
    # `slow` sleeps 8 x 50 ms per call, so with samples of >= 2 s every round lasts >= 2 s on any
    # host; its compile time (two warm-up calls) reserves >= 7 s for the verification and a round
    # in flight >= 2 s, so the final rounds of the least budget fit in < 11 s: fewer than
    # MIN_ROUNDS.
    monkeypatch.setattr(lab, "MIN_SAMPLE_S", 2.0)
    budget = Budget.MIN_S["inference"]
    assert budget - (2.5 * 8 * faulty.SLOW_BLOCK_S * 2 + 5) - 2.0 < 2.0 * stats.MIN_ROUNDS
    t0 = time.monotonic()
    result = picker.pick(
        variants=["subclassed", "slow"],
        executions=["graph"],
        runtimes=["default"],
        budget_s=budget,
        **TINY,
    )
    wall = time.monotonic() - t0
    assert result.provisional and "provisional" in result.decision
    assert 1 <= _row(result, REFERENCE.label).rounds < stats.MIN_ROUNDS
    # A bound, measured by the wall clock around the call: workers stopped, result returned (a
    # timing round in flight at the deadline finishes, and CI runs another test beside it).
    assert wall <= budget + 3.0, f"a pick of budget {budget} s took {wall:.1f} s"
    assert (
        picker.cached_pick(
            variants=["subclassed", "slow"],
            executions=["graph"],
            runtimes=["default"],
            **TINY,
        )
        is None
    )


@pytest.mark.exhaustive  # the budget's arithmetic, the same on every TensorFlow
def test_the_least_budget_bounds_a_pick_of_many_candidates_by_the_wall_clock():
    # Six candidates: screening in shared workers, then fresh processes for the finalists, each
    # starting TensorFlow again: the phases that overran a short budget by seconds.
    budget = Budget.MIN_S["inference"]
    t0 = time.monotonic()
    try:
        result = picker.pick(
            variants=["subclassed", "functional", "folded"],
            executions=["graph", "eager"],
            runtimes=["default"],
            budget_s=budget,
            **TINY,
        )
    except picker.PickError as e:
        # CI runs this beside another test: compiling six candidates in two shared workers can
        # take the whole screening share. The pick must then say so, in time.
        assert str(e).startswith(f"The budget of {budget:g} s ran out before any candidate")
        assert "--budget-s" in str(e)
        result = None
    wall = time.monotonic() - t0
    assert wall <= budget + 3.0, f"a pick of budget {budget} s took {wall:.1f} s"
    if result is None:
        return
    if not result.provisional:
        # A fast CPU can reach the rounds a decision needs even in the least budget, or leave one
        # finalist after screening; a decision that is not provisional rests on one of the two.
        winner = next(r for r in result.ranking if r.status == "winner")
        only = result.decision.startswith("the only candidate")
        assert only or winner.rounds >= stats.MIN_ROUNDS, (result.decision, winner)
    if result.winner is None:  # honest about what the budget did not reach
        assert "the budget ran out" in result.decision
    else:
        assert result.verification["passed"]


@pytest.mark.exhaustive  # a whole pick: the rule is the same on every TensorFlow
def test_a_gain_without_an_interval_is_provisional_and_not_cached(monkeypatch):
    # One candidate besides the reference: the decision among candidates is trivial ("the only
    # candidate"), but two paired rounds give its speedup no interval.
    monkeypatch.setattr(final, "MAX_FINAL_ROUNDS", 2)
    monkeypatch.setattr(stats, "MIN_ROUNDS", 2)
    options = dict(variants=["functional"], executions=["graph"], runtimes=["default"], **TINY)
    result = picker.pick(budget_s=ROOMY_S, **options)
    winner = _row(result, result.winner_label)
    assert winner.speedup_ci is None and winner.speedup_rounds == 2
    assert result.provisional and "provisional" in result.decision
    assert winner.speedup_text().endswith("x provisional (2 rounds)")
    assert picker.cached_pick(**options) is None


BAD_ARGUMENTS = [
    (
        dict(device="TPU:0"),
        r"Unknown device\. Expected one of \[.*'CPU:0'.*\] \(the devices TensorFlow .* lists here\); Received: device='TPU:0'",
    ),
    (
        dict(mode="predict"),
        r"Unknown mode\. Expected one of \['inference', 'train'\]; Received: mode='predict'",
    ),
    (dict(dtype_policy="float16"), r"Received: dtype_policy='float16'"),
    (dict(batch_size=0), r"Invalid batch_size\. Expected a positive int; Received: batch_size=0"),
    (dict(variants=["fast"]), r"Unknown variant.*Received: variant='fast'"),
    (
        dict(executions=["jit"]),
        r"Invalid execution\. Expected one of \['graph', 'xla', 'eager', 'onnx', 'openvino', "
        r"'litert'\]; Received: execution='jit'",
    ),
    (
        dict(runtimes=["mkl"]),
        r"Unknown runtime\. Expected one of \['default', 'onednn', 'no-onednn'\]; Received: runtime='mkl'",
    ),
    (dict(arch="resnet"), r"Unknown arch"),
    (
        dict(budget_s=0),
        r"Invalid budget_s\. Expected a positive number of seconds; Received: budget_s=0",
    ),
    (
        dict(budget_s=6),
        r"Invalid budget_s\. A pick needs at least 20 s in inference \(.*; Received: budget_s=6$",
    ),
]


@pytest.mark.parametrize(
    "kwargs, message", BAD_ARGUMENTS, ids=[next(iter(k)) for k, _ in BAD_ARGUMENTS]
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        picker.pick(**kwargs)


def test_a_speedup_is_printed_with_its_interval_or_as_provisional_with_its_rounds():
    from blocks.measure.result import Ranked

    row = Ranked(config={}, label="functional · graph · default", status="winner", speedup=1.46)
    row.speedup_rounds = 1
    assert row.speedup_text() == "1.46x provisional (1 round)"
    row.speedup_ci, row.speedup_rounds = [1.31, 1.6], 12
    assert row.speedup_text() == "1.46x (1.31-1.60)"


# --- variant="auto" and applying a pick -------------------------------------------------------


def _store(winner: Config, **options):
    """A cache entry naming `winner` for `pick(**options)` (as a real pick stores it)."""
    workload, space = picker.split_options(**options)
    configs, _ = picker.plan(workload, space)
    result = PickResult(
        workload=workload.to_json(),
        key=picker.make_key(workload, configs),
        ranking=[],
        winner=winner.to_json(),
        decision="stored by a test",
        clearly_ahead=True,
        provisional=False,
        speedup=None,
        apply=how_to_apply(winner, workload),
        verification={"passed": True, "checks": {}, "text": "-"},
        machine={},
        measured_at="2026-01-01T00:00:00+00:00",
    )
    cache.store(result.key, result.to_json())
    return result


AUTO = dict(
    mode="inference", batch_size=64, dtype_policy="float32", arch="seed", input_shape=(16, 16, 3)
)
# What "auto" looks up in a fresh process: the package's own variants (this one registered more).
BUILT_IN = [n for n, v in blocks.VARIANTS.items() if v.block.__module__.startswith("blocks.")]


def test_auto_uses_the_cached_winner_and_warns_on_another_runtime():
    _store(Config("functional", "xla", "default"), **AUTO)
    model = blocks.resnet18("auto", input_shape=(16, 16, 3), dtype_policy="float32")
    assert model.variant == "functional" and model.picked.execution == "xla"
    other = "no-onednn" if cpu.onednn_on() else "onednn"
    _store(Config("xla", "graph", other), **AUTO)
    with pytest.warns(
        blocks.AutoVariantWarning,
        match=r"was fastest with oneDNN (on|off), but this process has it (on|off): set",
    ):
        blocks.resnet18("auto", input_shape=(16, 16, 3), dtype_policy="float32")


def test_auto_on_a_miss_warns_and_uses_the_reference():
    with pytest.warns(
        blocks.AutoVariantWarning,
        match=r"no cached pick .*using 'subclassed'.*python -m blocks pick --arch seed --image-size 16",
    ):
        model = blocks.resnet18("auto", input_shape=(16, 16, 3), dtype_policy="float32")
    assert model.variant == "subclassed"


def test_auto_finds_a_pick_of_any_candidate_space_and_lists_the_others_on_a_miss():
    narrowed = dict(variants=["subclassed", "functional"], executions=["graph"])
    _store(Config("functional", "graph", "default"), **{**AUTO, "batch_size": 1}, **narrowed)
    with pytest.warns(
        blocks.AutoVariantWarning,
        match=r"no cached pick .*Cached here: CPU:0 seed 16x16 inference float32 b1$",
    ):
        model = blocks.resnet18("auto", input_shape=(16, 16, 3), dtype_policy="float32")
    assert model.variant == "subclassed"
    _store(Config("functional", "graph", "default"), **AUTO, **narrowed)
    model = blocks.resnet18("auto", input_shape=(16, 16, 3), dtype_policy="float32")
    assert model.variant == "functional" and model.picked.execution == "graph"
    _store(Config("xla", "graph", "default"), **AUTO)  # the widest candidate space wins
    model = blocks.resnet18("auto", input_shape=(16, 16, 3), dtype_policy="float32")
    assert model.variant == "xla"


def test_auto_survives_a_corrupt_cache(tmp_path):
    path = tmp_path / "cache" / "picks.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00\xff garbage")
    with pytest.warns(blocks.AutoVariantWarning):
        model = blocks.resnet18("auto", input_shape=(16, 16, 3), dtype_policy="float32")
    assert model.variant == "subclassed"


def test_the_readme_lines_apply_a_pick_in_a_fresh_process():
    """The three lines the README shows, run in a new process with the pick's environment."""
    stored = _store(
        Config("functional", "xla", "default"),
        **{**AUTO, "input_shape": None, "variants": BUILT_IN},
    )
    env = dict(os.environ)
    for line in stored.apply["environment"]:
        k, _, v = line.partition("=")
        env[k] = v
    code = (
        "import blocks\n"
        'model = blocks.resnet18("auto")\n'
        "step = blocks.compiled_step(model)\n"
        "import numpy as np\n"
        "logits = step(np.zeros((2, 32, 32, 3), np.float32))\n"
        "print(model.variant, model.picked.execution, tuple(logits.shape), step._jit_compile)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["functional", "xla", "(2,", "10)", "True"]
    assert "Warning" not in out.stderr, out.stderr


# --- the command line -----------------------------------------------------------------------


def _cli(*args, timeout=600, **popen):
    return subprocess.run(
        [sys.executable, "-m", "blocks", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        **popen,
    )


@pytest.mark.exhaustive  # the command line's rendering and cache: the same on every TensorFlow
def test_cli_pick_then_cached():
    # Samples of 0.25 s here (a command line has its own process): a budget of 20 s leaves room
    # for several seconds of final rounds, 0.5 s each, after the two workers start and compile.
    args = [
        "pick",
        "--batch-size",
        "2",
        "--image-size",
        "8",
        "--variants",
        "subclassed,functional",
        "--executions",
        "graph",
        "--runtimes",
        "default",
        "--budget-s",
        "20",
    ]
    first = _cli(*args, "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    data = json.loads(first.stdout)
    assert data["source"] == "measured"
    assert {r["label"] for r in data["ranking"]} == {
        "subclassed · graph · default",
        "functional · graph · default",
    }
    busy = bool(data["load"].get("busy"))  # CI runs this beside another test
    said = [ln for ln in first.stderr.splitlines() if not ln.startswith("warning: busy machine")]
    assert said == [], "nothing but the result: no TensorFlow log line, no progress bar with --json"
    second = _cli(*args)
    assert second.returncode == 0, second.stderr[-2000:]
    if not data["provisional"] and not busy:
        assert "[cache," in second.stdout
    assert f"winner: {data['winner']['variant']} · graph · default" in second.stdout
    assert "blocks.compiled_step(model" in second.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["pick", "--mode", "predict"], "argument --mode: invalid choice: 'predict'"),
        (["pick", "--batch-size", "0"], "argument --batch-size: expected a positive int, got '0'"),
        (
            ["pick", "--executions", "graph,jit"],
            "argument --executions: unknown 'jit'; expected some of graph, xla, eager",
        ),
        (
            ["pick", "--budget-s", "-3"],
            "argument --budget-s: expected a positive number of seconds, got '-3'",
        ),
        (["fly"], "invalid choice: 'fly'"),
    ],
)
def test_cli_usage_errors_before_tensorflow_loads(args, message):
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "blocks", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 2 and message in out.stderr
    assert " tensorflow" not in out.stderr, "TensorFlow was imported for a usage error"


def test_a_worker_whose_parent_is_already_gone_exits_at_once():
    """A pick killed while its workers were still starting: each worker compares its parent with
    the PID the pick gave it, before TensorFlow loads (getppid() alone would name whoever adopted
    the orphan, and the worker would load TensorFlow for nobody)."""
    from blocks.measure.worker import PARENT_VAR

    env = dict(os.environ, **{PARENT_VAR: "1"})  # not this worker's parent: it is gone
    done = subprocess.run(
        [sys.executable, "-m", "blocks.measure.worker"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 3 and done.stdout == b""


@pytest.mark.exhaustive  # signals and process groups: the same on every TensorFlow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_stopping_a_pick_leaves_no_worker(sig, private_cache_and_tag):
    tag = private_cache_and_tag
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "blocks",
            "pick",
            "--batch-size",
            "2",
            "--image-size",
            "8",
            "--variants",
            "subclassed,hanging",
            "--executions",
            "graph",
            "--runtimes",
            "default",
            "--budget-s",
            "120",
            "--refresh",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=faulty_env(),
    )
    deadline = time.monotonic() + 120
    while len(tagged_processes(tag)) < 3 and time.monotonic() < deadline:  # the CLI + 2 workers
        time.sleep(0.2)
    assert len(tagged_processes(tag)) >= 3, "the workers never started"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted: every worker process was stopped" in err
    deadline = time.monotonic() + 10  # orphaned workers notice their parent is gone within ~1 s
    while tagged_processes(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tagged_processes(tag) == []


def test_pick_from_a_saved_benchmark_run(tmp_path):
    from tests.test_report import run_file

    path = run_file(tmp_path)
    result = saved.pick_from_benchmarks(path, mode="inference", batch_size=64)
    assert [r.label for r in result.ranking][:2] == [
        "xla · graph · default",
        "functional · graph · default",
    ]
    assert result.winner_label == "xla · graph · default" and not result.clearly_ahead
    assert result.measured_at == "2026-11-30T08:00:00+00:00"
    out = _cli("pick", "--from-json", str(path))
    assert out.returncode == 0 and "winner: xla · graph · default" in out.stdout, out.stderr
    assert "[file " in out.stdout and "2026-11-30T08:00:00+00:00" in out.stdout
    missing = _cli("pick", "--from-json", str(path), "--batch-size", "8")
    assert (
        missing.returncode == 2
        and "No benchmark in" in missing.stderr
        and "Groups in the file" in missing.stderr
    )
