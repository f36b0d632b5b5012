"""Data-parallel training on tf.distribute, in real worker processes: MirroredStrategy over two
logical CPUs, and MultiWorkerMirroredStrategy over two processes in a private network namespace.

One step of each, from the same weights, is checked against the same step computed by hand on
one device (each replica's slice of the global batch, BN statistics per replica, gradients summed
over the replicas); a combination TensorFlow refuses gives a one-line reason; a cluster whose
member dies is stopped whole.
"""

import os
import subprocess

import pytest

from blocks import _compat
from blocks.measure import workers
from blocks.measure.workload import Config, Workload
from tests.test_pick import TAG_VAR, tagged_processes

WORKLOAD = Workload("train", batch_size=4, image_size=16)


@pytest.fixture
def tag(monkeypatch):
    import uuid

    value = uuid.uuid4().hex
    monkeypatch.setenv(TAG_VAR, value)
    yield value
    assert tagged_processes(value) == [], "a worker process outlived its test"


def _check(worker, config):
    key = config.label
    worker.call("prepare", 600, key=key, workload=WORKLOAD.to_json(), config=config.to_json())
    seconds = worker.call("time", 120, key=key)["seconds"]
    assert seconds > 0
    return worker.call("verify", 600, key=key)


# Per-block XLA compiles every block three times over here (the timed step, the checked step and
# the step by hand, on two replicas): 40 s of a 2-core machine, so it runs with the exhaustive
# checks (CI: once, on the newest TensorFlow).
MIRRORED = [
    pytest.param("subclassed", "graph", id="subclassed-graph"),
    pytest.param("xla", "graph", id="xla-graph", marks=pytest.mark.exhaustive),
    pytest.param("functional", "eager", id="functional-eager"),
    pytest.param("nchw", "graph", id="nchw-graph", marks=pytest.mark.exhaustive),
    pytest.param("functional", "graph", id="functional-graph", marks=pytest.mark.exhaustive),
    pytest.param("subclassed", "eager", id="subclassed-eager", marks=pytest.mark.exhaustive),
]


@pytest.fixture(scope="module")
def mirrored_worker():
    with workers.Pool() as pool:
        config = Config("subclassed", "graph", "default", "mirrored", 2)
        worker = pool.start_for("mirrored", config)
        info = worker.hello()
        assert info["devices"][:2] == ["CPU:0", "CPU:1"], info["devices"]
        yield worker


@pytest.mark.parametrize("variant, execution", MIRRORED)
def test_mirrored_step_is_the_step_by_hand(mirrored_worker, variant, execution, errors):
    config = Config(variant, execution, "default", "mirrored", 2)
    result = _check(mirrored_worker, config)
    for name, (err, tol) in result["checks"].items():
        errors.record("float32", f"mirrored x2: {name}", err, tol)
    assert result["passed"], result["text"]


def test_whole_step_xla_under_a_strategy_is_refused_in_one_line(mirrored_worker):
    config = Config("subclassed", "xla", "default", "mirrored", 2)
    with pytest.raises(workers.RequestFailed) as refused:
        mirrored_worker.call(
            "prepare", 600, key=config.label, workload=WORKLOAD.to_json(), config=config.to_json()
        )
    message = str(refused.value)
    assert message.startswith("subclassed · xla · default · mirroredx2: TensorFlow ")
    assert "\n" not in message
    if _compat.XLA_STEP_UNDER_STRATEGY_DEADLOCKS:  # refused before it hangs
        assert "hangs in jit_compile under a strategy; use execution graph" in message
    else:  # TensorFlow's cause whole, not the graph traceback before it; all of it in `detail`
        assert "refuses it: Trying to access resource" in message
        assert message.endswith("located in device CPU:1 from device CPU:0")
        assert "most recent call" not in message and "Detected at node" in refused.value.detail


def test_inference_only_variants_have_no_distributed_step(mirrored_worker):
    config = Config("folded", "graph", "default", "mirrored", 2)
    with pytest.raises(workers.RequestFailed, match=r"^folded: inference-only, no training step$"):
        mirrored_worker.call(
            "prepare", 60, key=config.label, workload=WORKLOAD.to_json(), config=config.to_json()
        )


needs_netns = pytest.mark.skipif(
    os.geteuid() != 0, reason="a local cluster needs a private network namespace (root)"
)


@pytest.mark.exhaustive  # two TensorFlow processes and a cluster: 32 s on 2 cores
@needs_netns
def test_multiworker_cluster_of_two_processes(tag, errors):
    config = Config("subclassed", "graph", "default", "multiworker", 2)
    with workers.Pool() as pool:
        group = pool.start_for("cluster", config)
        namespace = group.netns.name
        info = group.hello()
        assert info["devices"] == ["CPU:0"]
        result = _check(group, config)
        for name, (err, tol) in result["checks"].items():
            errors.record("float32", f"multiworker x2: {name}", err, tol)
        assert result["passed"], result["text"]
        listening = subprocess.run(
            ["ip", "netns", "exec", namespace, "ss", "-ltn"], capture_output=True, text=True
        ).stdout
        assert ":20000" in listening and ":20001" in listening
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert namespace not in listed, "the cluster's network namespace was left behind"


@needs_netns
@pytest.mark.exhaustive  # process management, the same on every TensorFlow: checked once
def test_a_cluster_member_that_dies_stops_the_cluster(tag):
    config = Config("subclassed", "graph", "default", "multiworker", 2)
    with workers.Pool() as pool:
        group = pool.start_for("cluster", config)
        group.hello()
        group.members[1].kill()
        with pytest.raises(workers.WorkerError, match=r"worker cluster/1 died \(SIGKILL\)"):
            group.call(
                "prepare", 120, key="k", workload=WORKLOAD.to_json(), config=config.to_json()
            )
        assert not any(m.alive for m in group.members)


@pytest.mark.exhaustive
def test_pick_for_mirrored_training(tag):
    from blocks.measure import picker

    result = picker.pick(
        mode="train",
        batch_size=4,
        image_size=16,
        variants=["subclassed", "functional"],
        executions=["graph"],
        runtimes=["default"],
        strategy="mirrored",
        budget_s=60,
    )
    assert {r.label for r in result.ranking} >= {
        "subclassed · graph · default · mirroredx2",
        "functional · graph · default · mirroredx2",
    }
    assert result.winner["strategy"] == "mirrored" and result.verification["passed"]


def _run_members(argv: list, members: int, timeout_s: float, namespace=None) -> list:
    """`argv` as `members` processes, member i with TF_CONFIG naming loopback ports and index i
    (when more than one), in `namespace` if given (then closed); every process reaped.
    Returns [(returncode, stdout, stderr)] in member order."""
    from blocks.measure import distributed

    ports = [distributed.CLUSTER_PORT + i for i in range(members)]
    procs = []
    try:
        for i in range(members):
            env = dict(os.environ)
            if members > 1:
                env["TF_CONFIG"] = distributed.tf_config(ports, i)
            procs.append(
                subprocess.Popen(
                    [*(namespace.prefix if namespace else []), *argv],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outs = [p.communicate(timeout=timeout_s) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if namespace is not None:
            namespace.close()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


@needs_netns
@pytest.mark.exhaustive  # the cluster of test_multiworker_cluster_of_two_processes, by command
def test_the_multi_host_command_on_two_local_hosts(tag, tmp_path):
    """`python -m blocks cluster` as the README runs it on each host, here as two processes in
    one private network namespace (loopback only)."""
    import sys

    outs = _run_members(
        [
            sys.executable,
            "-m",
            "blocks",
            "cluster",
            "--batch-size",
            "2",
            "--image-size",
            "16",
            "--steps",
            "3",
        ],
        2,
        300,
        workers.NetworkNamespace(),
    )
    assert [rc for rc, _, _ in outs] == [0, 0], outs
    chief, other = outs[0][1], outs[1][1]
    assert (
        "subclassed · graph · default · multiworkerx2:" in chief
        and "global batch 4, 2 workers" in chief
    )
    assert other == ""


@pytest.mark.exhaustive  # fresh TensorFlow processes: 10-20 s each on 2 cores
@pytest.mark.parametrize("strategy", ["mirrored", pytest.param("multiworker", marks=needs_netns)])
def test_a_strategy_picks_lines_run_as_printed_in_fresh_processes(strategy, tag):
    """The "to use it" lines of a strategy's winner, as `pick` prints them, in new processes
    (for multiworker one per member, TF_CONFIG naming loopback ports, in a private network
    namespace, since TensorFlow's gRPC servers listen on every interface): one step of the
    global batch over both replicas, the weights updated."""
    import json
    import sys

    from blocks.measure.result import how_to_apply

    config = Config("subclassed", "graph", "default", strategy, 2)
    apply = how_to_apply(config, WORKLOAD)
    assert apply["strategy"] == strategy and apply["replicas"] == 2
    assert f'blocks.distribute_strategy("{strategy}", 2)' in "\n".join(apply["python"])
    n = 2 * WORKLOAD.batch_size
    code = "\n".join(
        [
            *apply["python"],
            "import json, numpy as np",
            "before = model.trainable_variables[0].numpy().copy()",
            f"x = np.random.default_rng(0).uniform(size=({n}, 16, 16, 3)).astype(np.float32)",
            f"y = np.arange({n}) % 10",
            "logits = np.asarray(step(x, y))",
            "moved = float(np.abs(model.trainable_variables[0].numpy() - before).max())",
            "print(json.dumps({'replicas': strategy.num_replicas_in_sync, "
            "'shape': list(logits.shape), 'finite': bool(np.isfinite(logits).all()), "
            "'moved': moved}))",
        ]
    )
    members = 2 if strategy == "multiworker" else 1
    netns = workers.NetworkNamespace() if strategy == "multiworker" else None
    for rc, out, err in _run_members([sys.executable, "-c", code], members, 240, netns):
        assert rc == 0, err[-2000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["replicas"] == 2 and result["finite"] and result["moved"] > 0
        # Mirrored: both replicas' logits here; multiworker: this member's replica's.
        assert result["shape"] == [n // members, 10]
