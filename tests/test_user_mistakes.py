"""A user's mistake gets one line naming the bad value and what is accepted: an exit status of 2
from the command line, a ValueError from the library; never a traceback, and nothing started."""

import json

import pytest

from blocks import cli
from blocks.measure import distributed


def _tf_config(workers=("localhost:12345", "localhost:12346"), **task):
    return json.dumps({"cluster": {"worker": list(workers)}, "task": {"type": "worker", **task}})


@pytest.mark.parametrize(
    "tf_config, words",
    [
        (_tf_config(index=5), "task index. Expected an int from 0 to 1 (the cluster has 2"),
        (_tf_config(index=-1), "Received: index=-1"),
        (_tf_config(index="0"), "Received: index='0'"),
        (_tf_config(index=True), "Received: index=True"),
        (_tf_config(), "Received: index=None"),
        (_tf_config(workers=(), index=0), "Expected one job, 'worker', listing 'host:port'"),
        (_tf_config(workers=("localhost",), index=0), "Received: 'localhost'"),
        ('{"cluster": {"worker": "a:1"}, "task": {"index": 0}}', "Received: cluster="),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"index": 0}}', "Received: type=None"),
        ('{"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {}}', "one job, 'worker'"),
        ("[1, 2]", "Expected an object with 'cluster' and 'task'"),
        ("{not json", "TF_CONFIG is not JSON"),
    ],
)
def test_cluster_refuses_a_bad_tf_config_before_tensorflow_starts(
    tf_config, words, monkeypatch, capsys
):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    args = cli.build_parser().parse_args(["cluster"])
    assert cli.cmd_cluster(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cluster: ") and words in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert distributed._strategy is None  # refused before any strategy (or server) existed


def test_cluster_refuses_an_unknown_variant_as_the_users_not_tensorflows(monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", _tf_config(workers=("localhost:12345",), index=0))
    args = cli.build_parser().parse_args(["cluster", "--variant", "resnet"])
    assert cli.cmd_cluster(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cluster: Unknown variant.") and "variant='resnet'" in err
    assert distributed._strategy is None
