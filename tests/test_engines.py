"""Serving engines: what `blocks.export` writes loads and runs with the engine's own API alone,
and computes the NumPy float64 network's function; bad input is refused before anything is
written; a converter's failure is one line and leaves nothing behind."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import blocks
from blocks import engines
from blocks.executions import ENGINES, INSTALL_HINT, Engine
from blocks.measure import picker
from blocks.measure.result import how_to_apply
from blocks.measure.workload import Config, Workload
from tests.helpers import numpy_resnet
from tests.helpers.tree import snapshot

BATCH = 2
SUFFIX = {name: spec.suffixes[0] for name, spec in ENGINES.items()}


def installed(name: str) -> None:
    reason = ENGINES[name].missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def seeded():
    """The seed ResNet18 with random weights, images, and the NumPy float64 network's logits."""
    rng = np.random.default_rng(7)
    params = numpy_resnet.random_params(numpy_resnet.param_shapes("seed"), rng)
    model = blocks.resnet18("subclassed")
    blocks.import_weights(model, {k: v.astype(np.float32) for k, v in params.items()})
    images = rng.normal(size=(BATCH, 32, 32, 3)).astype(np.float32)
    logits, _ = numpy_resnet.resnet_forward(params, images, "seed")
    return model, images, logits


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run_alone(lines: list, images: np.ndarray, cwd) -> np.ndarray:
    """Run an engine's serving lines in a fresh Python where `blocks` cannot be imported."""
    np.save(cwd / "images.npy", images)
    script = "\n".join(
        [
            "import sys",
            "sys.modules['blocks'] = None  # nothing of this project may be used",
            "import numpy as np",
            "images = np.load('images.npy')",
            *lines,
            "np.save('logits.npy', np.asarray(logits))",
            "try:\n    import blocks\nexcept ImportError:\n    print('no blocks')",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "no blocks" in out.stdout
    return np.load(cwd / "logits.npy")


def export_and_run_alone(name, model, images, tmp_path) -> np.ndarray:
    """`blocks.export` to a folder of its own, then the engine's serving lines on it alone."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    path = out_dir / f"resnet18{SUFFIX[name]}"
    written = blocks.export(model, name, path, batch_size=BATCH)
    assert written == [str(path.with_suffix(s)) for s in ENGINES[name].suffixes]
    # Exactly those files: no temporary directory or SavedModel left beside them.
    assert sorted(os.listdir(out_dir)) == sorted(os.path.basename(p) for p in written)
    serving = engines.implementation(name).serving_code(str(path), threads=2)
    assert len(serving) <= 6
    alone = run_alone(serving, images, tmp_path)
    assert alone.shape == (BATCH, 10) and alone.dtype == np.float32
    return alone


# OpenVINO's conversion is the slowest (14 s here); on every TensorFlow the suite runs ONNX's and
# LiteRT's, and CI runs OpenVINO's once, on the newest.
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[pytest.mark.exhaustive] if n == "openvino" else []) for n in ENGINES],
)
def test_an_export_runs_in_the_engine_alone_and_computes_the_network(name, seeded, tmp_path):
    installed(name)
    model, images, reference = seeded
    alone = export_and_run_alone(name, model, images, tmp_path)
    assert rel(alone, reference) <= 1e-5  # the NumPy float64 network, not TensorFlow's
    graph = blocks.compiled_step(model, "inference", "graph")(images).numpy()
    assert rel(graph, alone) <= 1e-5


@pytest.mark.exhaustive  # a whole conversion to fail
def test_a_failing_converter_is_one_line_and_leaves_nothing(tmp_path):
    """tf2onnx cannot inline the xla variant's jit_compile'd blocks: said, and nothing written."""
    installed("onnx")
    model = blocks.resnet18("xla", seed=0)
    with pytest.raises(engines.EngineError) as e:
        blocks.export(model, "onnx", tmp_path / "m.onnx", batch_size=1)
    message = str(e.value)
    assert "\n" not in message and len(message) < 200
    assert message.startswith("ONNX Runtime conversion failed: tf2onnx")
    assert "StatefulPartitionedCall" in message
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def small():
    return blocks.resnet18("subclassed", seed=0)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(format="tensorrt"), ValueError, "Unknown export format. Expected one of"),
        (dict(format="onnx", path="m.tflite"), ValueError, "ending in '.onnx'"),
        (dict(format="openvino", path="m.onnx"), ValueError, "ending in '.xml'"),
        (dict(format="onnx", batch_size=0), ValueError, "Received: batch_size=0"),
        (dict(format="onnx", path=3), ValueError, "Expected a file path; Received: path=3"),
        (dict(format="litert", path="missing/m.tflite"), FileNotFoundError, "does not exist"),
    ],
)
def test_bad_export_arguments_are_refused_before_anything_is_written(
    small, tmp_path, kwargs, error, words
):
    kwargs = {"path": "m.onnx", **kwargs}
    if isinstance(kwargs["path"], str):
        kwargs["path"] = str(tmp_path / kwargs["path"])
    with pytest.raises(error, match=None) as e:
        blocks.export(small, **kwargs)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert os.listdir(tmp_path) == []


def test_export_never_replaces_what_it_did_not_write(small, tmp_path):
    decoy = tmp_path / "m.onnx"
    decoy.mkdir()
    (decoy / "keep.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="m.onnx"):
            blocks.export(small, "onnx", decoy, overwrite=overwrite)
    assert (decoy / "keep.txt").read_text() == "mine"
    folder = tmp_path / "not_a_saved_model"
    folder.mkdir()
    with pytest.raises(FileExistsError, match="not a SavedModel directory"):
        blocks.export(small, "saved_model", folder, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "not_a_saved_model"]


# The first bytes of what each converter wrote here (tf2onnx 1.17, OpenVINO, TFLiteConverter).
EXPORT_HEADS = {
    "m.onnx": b"\x08\x08\x12\x07tf2onnx\x1a\x0b1.17.0 None:",
    "m.xml": b'<?xml version="1.0"?>\n<net name="TensorFlow_Frontend_IR" version="11">\n',
    "m.bin": b"\x00" * 8 + b"\x03" + b"\x00" * 7,
    "m.tflite": b"\x1c\x00\x00\x00TFL3\x14\x00 \x00\x1c\x00",
}
FORMAT_OF = {"m.onnx": "onnx", "m.xml": "openvino", "m.tflite": "litert", "sm": "saved_model"}


def _foreign(at, kind):
    if kind == "directory":
        at.mkdir()
        (at / "keep.txt").write_text("mine")
    elif kind == "text":
        at.write_text("my notes")
    else:  # another format's bytes under this name
        at.write_bytes(b"PK\x03\x04" + bytes(range(200)))


@pytest.mark.parametrize("kind", ["directory", "text", "another format"])
@pytest.mark.parametrize("name", ["m.onnx", "m.xml", "m.bin", "m.tflite", "sm"])
def test_export_refuses_what_is_not_an_earlier_export_and_leaves_it(small, tmp_path, name, kind):
    """A directory or another file at a target is refused in one line, overwrite or not,
    before any conversion, and every path is left as it was."""
    fmt = FORMAT_OF.get(name, "openvino")  # m.bin: an IR's weights, with no IR beside them
    _foreign(tmp_path / name, kind)
    path = tmp_path / ("m.xml" if name == "m.bin" else name)
    before = snapshot(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(FileExistsError) as raised:
            blocks.export(small, fmt, path, overwrite=overwrite)
        message = str(raised.value)
        assert "\n" not in message and message.startswith("Cannot export to ")
        assert "it exists and is not " in message and "It was left as it is" in message
        assert snapshot(tmp_path) == before


@pytest.mark.parametrize("names", [["m.onnx"], ["m.xml", "m.bin"], ["m.tflite"]])
def test_an_earlier_export_is_recognised_and_replaced_only_with_overwrite(small, tmp_path, names):
    for name in names:
        (tmp_path / name).write_bytes(EXPORT_HEADS[name] + bytes(100))
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError) as raised:
        blocks.export(small, FORMAT_OF[names[0]], tmp_path / names[0])
    assert str(raised.value) == (
        f"Cannot export to {str(tmp_path / names[0])!r}: it exists. Choose another path, or "
        "pass overwrite=True to replace it."
    )
    assert snapshot(tmp_path) == before


@pytest.mark.exhaustive  # two conversions
def test_overwrite_replaces_an_earlier_export(small, tmp_path):
    installed("onnx")
    path = tmp_path / "m.onnx"
    blocks.export(small, "onnx", path)
    first = path.stat().st_mtime_ns
    assert blocks.export(small, "onnx", path, overwrite=True) == [str(path)]
    assert path.stat().st_mtime_ns != first and os.listdir(tmp_path) == ["m.onnx"]


def test_an_engine_runs_float32_inference_only(small):
    name = next(iter(ENGINES))
    with pytest.raises(ValueError, match="A serving engine runs inference only"):
        blocks.compiled_step(small, "train", name)
    installed(name)
    bf16 = blocks.resnet18("subclassed", dtype_policy="mixed_bfloat16")
    with pytest.raises(ValueError, match="Expected dtype_policy='float32'; Received: dtype_pol"):
        blocks.compiled_step(bf16, "inference", name)
    with pytest.raises(ValueError, match="Expected dtype_policy='float32'"):
        blocks.export(bf16, name, f"m{SUFFIX[name]}")
    with pytest.raises(ValueError, match="Unknown execution. Expected one of"):
        blocks.compiled_step(small, "inference", "tensorrt")


def test_an_engine_step_checks_its_images_like_the_model(small):
    name = next((n for n in ENGINES if not ENGINES[n].missing()), None)
    if name is None:
        pytest.skip(f"no serving engine installed: {INSTALL_HINT}")
    step = blocks.compiled_step(small, "inference", name)
    for bad, words in [
        (np.zeros((2, 16, 16, 3), np.float32), "Invalid input size"),
        (np.zeros((2, 32, 32), np.float32), "Invalid input rank"),
        (np.zeros((2, 32, 32, 3), np.int32), "Invalid input dtype"),
        ([["a"]], r"Invalid images for \w+ step.*Received: images of type list"),
    ]:
        with pytest.raises(ValueError, match=words) as e:
            step(bad)
        assert "\n" not in str(e.value)
    assert step.runners == {}  # nothing was converted for a refused batch


def test_a_missing_engine_is_one_line_naming_the_install():
    absent = Engine("x", "Absent Engine", ("no_such_package_here",), ("no-such-dist",), (".x",))
    reason = absent.missing()
    assert reason == f"Absent Engine is not installed (no no_such_package_here): {INSTALL_HINT}"
    assert absent.versions() == {"no-such-dist": None}


def test_pick_races_the_engines_in_inference_with_the_reference_variant():
    def plan(device, **options):
        return picker.plan(*picker.split_options(device, **options))

    configs, _ = plan("CPU:0", batch_size=1, runtimes=["default"])
    engines_raced = {c.execution: c.variant for c in configs if c.execution in ENGINES}
    assert engines_raced == {name: "subclassed" for name in ENGINES}
    configs, _ = plan("CPU:0", variants=["folded", "xla"], executions=["onnx"])
    assert [c.label for c in configs] == ["folded · onnx · default"]  # one variant stands for all
    configs, _ = plan("CPU:0", mode="train", runtimes=["default"])
    assert not [c for c in configs if c.execution in ENGINES]
    with pytest.raises(ValueError, match="A serving engine runs inference on one device"):
        Config("subclassed", "onnx", strategy="mirrored", replicas=2)


@pytest.mark.parametrize("name", list(ENGINES))
def test_how_to_apply_an_engine_is_an_export_and_the_engines_own_code(name):
    installed(name)
    workload = Workload("inference", 1)
    apply = how_to_apply(Config("subclassed", name), workload, {"threads": 2})
    assert apply["environment"] == [] and apply["unset"] == []
    assert apply["python"][2] == (
        f'blocks.export(model, "{name}", "resnet18-seed-b1{SUFFIX[name]}", batch_size=1)'
    )
    assert 3 <= len(apply["serve"]) <= 6
    assert not any("blocks" in line for line in apply["serve"])
    json.dumps(apply)  # cached as JSON


@pytest.mark.exhaustive
@pytest.mark.parametrize("name", list(ENGINES))
def test_the_printed_lines_run_the_engine_in_fresh_processes(name, tmp_path):
    """What a pick prints for an engine, pasted as it is: the export in one process, the serving
    lines in another where nothing of this project can be imported."""
    installed(name)
    apply = how_to_apply(Config("subclassed", name), Workload("inference", 1), {"threads": 2})
    export = subprocess.run(
        [sys.executable, "-c", "\n".join(apply["python"])],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert export.returncode == 0, export.stderr[-2000:]
    images = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
    logits = run_alone(apply["serve"], images, tmp_path)
    assert logits.shape == (1, 10) and np.all(np.isfinite(logits))


# Under -m exhaustive (conversions take seconds each). nchw builds only where oneDNN gives NCHW
# kernels; its engine exports are not checked here.
@pytest.mark.exhaustive
@pytest.mark.parametrize("name", list(ENGINES))
def test_compiled_step_runs_what_export_writes_for_every_variant(name, seeded, tmp_path):
    """compiled_step and export go through the same conversion; every variant converts to the
    reference's function and to exactly its ops (the layout audit: folded's per-call BN fold
    becomes constants)."""
    installed(name)
    model, images, reference = seeded
    alone = export_and_run_alone(name, model, images, tmp_path)
    step = blocks.compiled_step(model, "inference", name)
    assert rel(step(images), alone) <= 1e-6  # one conversion, two artifacts
    assert step.threads >= 1 and step.convert_s[BATCH] > 0 and list(step.runners) == [BATCH]
    for variant in ("functional", "folded", "xla"):
        other = blocks.resnet18(variant)
        blocks.import_weights(other, blocks.export_weights(model))
        if (name, variant) == ("onnx", "xla"):
            continue  # tf2onnx 1.17 cannot: test_a_failing_converter_is_one_line_and_leaves_nothing
        converted = blocks.compiled_step(other, "inference", name)
        assert rel(converted(images), reference) <= 1e-5, variant
        assert converted.runners[BATCH].ops == step.runners[BATCH].ops, variant


@pytest.mark.exhaustive
@pytest.mark.parametrize("name", list(ENGINES))
def test_the_imagenet_arch_exports(name):
    installed(name)
    rng = np.random.default_rng(3)
    params = numpy_resnet.random_params(
        numpy_resnet.param_shapes("imagenet", num_classes=1000), rng
    )
    model = blocks.resnet18("subclassed", arch="imagenet")
    blocks.import_weights(model, {k: v.astype(np.float32) for k, v in params.items()})
    images = rng.normal(size=(1, 224, 224, 3)).astype(np.float32)
    reference, _ = numpy_resnet.resnet_forward(params, images, "imagenet")
    assert rel(blocks.compiled_step(model, "inference", name)(images), reference) <= 1e-5


@pytest.mark.parametrize("name", list(ENGINES))
def test_on_paper_each_engine_says_what_it_has_for_a_gpu(name):
    """No machine here has a GPU: each engine names its GPU providers where installed, else why
    there are none, in one line (what a pick on a GPU device lists)."""
    installed(name)
    note = engines.implementation(name).gpu_note()
    assert "GPU" in note and "\n" not in note
