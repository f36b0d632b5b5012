"""A user's mistake gets one line naming the bad value and what is accepted: an exit status of 2
from the command line, a ValueError from the library; never a traceback, and nothing started."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import blocks
from blocks import cli
from blocks.measure import distributed

SHAPE = (16, 16, 3)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


@pytest.fixture(scope="module")
def model():
    return blocks.resnet18("subclassed", input_shape=SHAPE, seed=0)


IMAGES = np.zeros((2, *SHAPE), np.float32)


@pytest.mark.parametrize("execution", ["graph", "eager"])
def test_a_training_step_without_labels_says_so_in_one_line(model, execution):
    step = blocks.compiled_step(model, "train", execution)
    with pytest.raises(ValueError) as e:
        step(IMAGES)
    message = str(e.value)
    assert message.startswith("Missing labels for the 'train' step")
    assert "shape (2,)" in message and "\n" not in message and len(message) < 300


@pytest.mark.parametrize(
    "labels, words",
    [
        ([0, 1], "Received: labels of type list"),
        (np.zeros((3,), np.int32), "Received: labels with shape (3,)"),
        (np.zeros((2, 1), np.int32), "Received: labels with shape (2, 1)"),
        (np.zeros((2,), np.float32), "Received: labels with dtype float32"),
    ],
)
def test_bad_labels_are_refused_before_tensorflow_sees_them(model, labels, words):
    step = blocks.compiled_step(model, "train", "graph")
    with pytest.raises(ValueError, match="Invalid labels for the 'train' step") as e:
        step(IMAGES, labels)
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_a_list_of_images_is_refused_naming_its_type(model, mode):
    """A nested list is not converted: tf.function would trace it value by value and Keras take
    it for several inputs; the message says how to convert it."""
    step = blocks.compiled_step(model, mode, "graph")
    with pytest.raises(ValueError) as e:
        step(IMAGES.tolist(), np.zeros((2,), np.int32))
    message = str(e.value)
    assert message.startswith(f"Invalid images for the {mode!r} step (graph).")
    assert "Received: images of type list" in message and "np.asarray(images" in message
    assert "\n" not in message


def test_a_checked_step_is_still_the_compiled_function(model):
    step = blocks.compiled_step(model, "inference", "graph")
    assert step(tf.constant(IMAGES)).shape == (2, 10)
    assert step.get_concrete_function(tf.constant(IMAGES)) is not None


@pytest.mark.parametrize("holds", [[], ["run-b.json", "run-a.json"]], ids=["empty", "with-runs"])
def test_pick_from_a_directory_says_which_file_to_give(tmp_path, holds, capsys):
    for name in holds:
        (tmp_path / name).write_text("{}")
    args = cli.build_parser().parse_args(["pick", "--from-json", str(tmp_path)])
    assert cli.cmd_pick(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {str(tmp_path)!r} is a directory; give ")
    assert err.count("\n") == 1 and "load_runs" not in err
    if holds:  # a file the user can pass as it is
        assert f"e.g. {str(tmp_path / 'run-a.json')!r}" in err


def test_two_refusals_of_one_model_count_the_keys_save_weights_writes(tmp_path):
    """A file without a head is imported without it (the head left as initialised), so its
    refusal once counted the keys less the head's: 108 against 110 for the same model."""
    model = blocks.resnet18("subclassed", seed=0)
    path = tmp_path / "w.npz"
    blocks.save_weights(model, path)
    written = len(np.load(path).files)
    wrong = {k: v for k, v in blocks.export_weights(model).items() if k != "stem.conv.kernel"}
    headless = {k: v for k, v in wrong.items() if not k.startswith("fc.")}
    counts = []
    for weights in (wrong, headless):
        with pytest.raises(ValueError, match="missing keys: 'stem.conv.kernel'") as e:
            blocks.import_weights(model, weights)
        counts.append(int(re.search(r"The model expects (\d+) canonical keys", str(e.value))[1]))
    assert counts == [written, written] == [110, 110]
    assert f"or {written - 2} without fc.kernel, fc.bias" in str(e.value)


def _readme_block(after: str) -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("```python\n", text.index(after)) + len("```python\n")
    return text[start : text.index("```", start)]


@pytest.mark.exhaustive  # a fresh TensorFlow process and an imagenet ResNet18: 7 s
def test_the_readmes_serving_snippet_runs_as_written_with_no_pick_cached(tmp_path):
    """Until `python -m blocks pick --arch imagenet` has run, the snippet serves the reference
    and a warning names that command; it once died of 'NoneType' has no 'winner_config'."""
    snippet = _readme_block("**Serving a pretrained ResNet18 with the fastest variant:**")
    blocks.save_weights(
        blocks.resnet18("subclassed", arch="imagenet"), tmp_path / "resnet18.safetensors"
    )
    prelude = "import numpy as np\nimages = np.zeros((1, 224, 224, 3), np.float32)\n"
    env = {**os.environ, "RESNET_BLOCKS_CACHE": str(tmp_path / "no-cache-yet")}
    out = subprocess.run(
        [sys.executable, "-c", prelude + snippet + "print(tuple(logits.shape))\n"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stdout.strip() == "(1, 1000)"
    assert (
        "AutoVariantWarning" in out.stderr and "python -m blocks pick --arch imagenet" in out.stderr
    )


@pytest.mark.parametrize("command", ["pick", "cluster"])
def test_images_too_small_for_the_stem_are_refused_before_any_worker(
    command, tmp_path, monkeypatch, capsys
):
    """Once every worker found it, and `pick` exited 1 "no candidate could run"; `cluster` called
    it TensorFlow's refusal."""
    monkeypatch.setenv("RESNET_BLOCKS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TF_CONFIG", _tf_config(workers=("localhost:12345",), index=0))
    budget = ["--budget-s", "30"] if command == "pick" else []  # were the check gone
    args = cli.build_parser().parse_args([command, "--image-size", "2", *budget])
    assert getattr(cli, f"cmd_{command}")(args) == 2
    err = capsys.readouterr().err
    assert "Invalid image_size. The 'seed' stem needs images of at least 3x3 pixels" in err
    assert err.count("\n") == 1 and "TensorFlow" not in err
    assert not os.path.exists(tmp_path / "cache") and distributed._strategy is None
