"""Serving engines: a Keras model exported, converted by the engine's own tools, run by its runtime.

`export(model, format, path, batch_size=...)` writes what a deployment loads: a SavedModel
directory (`saved_model`, what every converter reads), an ONNX file (`onnx`, converted by
tf2onnx, run by ONNX Runtime), an OpenVINO IR pair `.xml` + `.bin` (`openvino`), or a `.tflite`
flatbuffer (`litert`, converted by TensorFlow's TFLiteConverter, run by LiteRT with XNNPACK).
`EngineStep` (what `compiled_step(model, "inference", engine)` returns) does the same into a
private temporary directory and runs the artifact.

Every engine converts a float32 model and runs it at a fixed batch (XNNPACK and OpenVINO re-plan
on every new shape, so an artifact is made per batch size), with as many intra-op threads as
TensorFlow uses unless told. It computes in float32 unless given `precision`, a dtype-policy name:
an engine takes a reduced precision only where it computes in it natively on this CPU, else
refuses it in one line saying why (`precision_refusal`). Here that is OpenVINO's bf16 hint on a
CPU with AVX512_BF16 or AMX (and f16 where its CPU plugin lists FP16); ONNX Runtime and LiteRT
run float32 only on x86 (each module says what it measured). Each engine module (`onnx`,
`openvino`, `litert`) has the same parts: `FROM_SAVED_MODEL` (does its converter read the
SavedModel, or the function), `PRECISIONS` ({policy: the engine's name for it}) and
`precision_refusal(policy)`, `convert(exported, target)`, `load(path, threads, precision)` (a
`Runner`), `serving_code(path, threads, precision)` (the lines a serving program needs),
`versions()` and `gpu_note()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import shutil
import tempfile
import time
import weakref
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from blocks import _compat, checks, cpu
from blocks.causes import cause
from blocks.errors import DetailedError
from blocks.executions import ENGINES, EXPORT_FORMATS, Engine
from blocks.layers import child_layers


class EngineError(DetailedError):
    """An engine cannot run this model here (not installed, a converter or compiler failed, an
    output off): a one-line message; `detail` keeps what the engine said."""


@dataclasses.dataclass
class Exported:
    """A model ready for conversion: the SavedModel directory (None where the converter reads the
    function), the inference function and its input signature (a fixed batch of float32 images)."""

    path: Optional[str]
    function: Callable
    spec: tf.TensorSpec


@dataclasses.dataclass
class Runner:
    """A loaded artifact: `run(images)` returns the logits; `ops` counts the op types the engine
    runs (the layout audit); `precision` is the dtype-policy name it computes in."""

    run: Callable[[np.ndarray], np.ndarray]
    ops: dict
    threads: int
    precision: str = "float32"


def engine(name: str) -> Engine:
    return ENGINES[checks.choice(name, list(ENGINES), "engine", what="Unknown engine")]


def implementation(name: str):
    """The engine's module, imported; EngineError in one line where it is not installed."""
    spec = engine(name)
    missing = spec.missing()
    if missing:
        raise EngineError(missing)
    return importlib.import_module(spec.module)


def check_precision(precision) -> str:
    """`precision` if it is a dtype-policy name a model can be built in, else ValueError."""
    return checks.choice(precision, checks.DTYPE_POLICIES, "precision", what="Unknown precision")


def precision_refusal(name: str, precision: str) -> Optional[str]:
    """None where engine `name` computes in `precision` natively on this CPU, else the one-line
    reason (not installed, no such kernels, or emulated): asked without converting anything."""
    spec = engine(name)
    check_precision(precision)
    if spec.missing():
        return spec.missing()
    return importlib.import_module(spec.module).precision_refusal(precision)


def _refuse_precision(name: str, precision: str) -> None:
    """EngineError (one line) unless engine `name` runs `precision` natively here."""
    reason = precision_refusal(name, precision)
    if reason:
        raise EngineError(reason)


def default_threads() -> int:
    """The intra-op threads TensorFlow uses: its setting, else every core this process may use."""
    return tf.config.threading.get_intra_op_parallelism_threads() or cpu.usable_cores()


def compute_policy(model) -> str:
    """The dtype policy of `model`'s layers: 'float32' unless one computes in another dtype."""
    stack, seen = [model], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        dtype = getattr(layer, "compute_dtype", "float32")
        if dtype not in ("float32", None):
            return getattr(model, "dtype_policy_name", None) or f"compute dtype {dtype}"
        stack.extend(child_layers(layer))
    return "float32"


def input_spec(model, batch_size: int) -> tf.TensorSpec:
    shape = tuple(getattr(model, "expected_input_shape", ()) or ())
    if len(shape) != 3 or any(d is None for d in shape):
        raise ValueError(
            "Invalid model for export. Expected a model of fixed image size, built with "
            f"input_shape=(height, width, channels); Received: input_shape={shape!r}"
        )
    return tf.TensorSpec((batch_size, *shape), tf.float32, name="images")


@contextlib.contextmanager
def _quiet():
    """Converters log pages of INFO and deprecation lines; keep warnings and errors."""
    loggers = [logging.getLogger(n) for n in ("tf2onnx", "tensorflow", "absl")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def save_tf(model, directory: Optional[str], batch_size: int) -> Exported:
    """The model's inference function at a fixed batch, written as a SavedModel at `directory`
    (which must not exist yet) unless that is None."""
    spec = input_spec(model, batch_size)

    def serve(images):
        return model(images, training=False)

    if directory is not None:
        with _quiet():
            _compat.write_saved_model(model, serve, [spec], directory)
    return Exported(directory, tf.function(serve, input_signature=[spec]), spec)


def _check_engine_model(model, name: str) -> None:
    policy = compute_policy(model)
    if policy != "float32":
        raise ValueError(
            f"Invalid dtype policy for engine {name!r}. The serving engines run float32 models; "
            f"Expected dtype_policy='float32'; Received: dtype_policy={policy!r}"
        )


def convert(model, name: str, workdir: str, batch_size: int) -> tuple:
    """(artifact path, seconds): `model` exported and converted by engine `name` inside
    `workdir` (a directory of the caller's). EngineError (one line) where the converter fails."""
    module = implementation(name)
    _check_engine_model(model, name)
    t0 = time.perf_counter()
    saved = os.path.join(workdir, f"saved_model_b{batch_size}") if module.FROM_SAVED_MODEL else None
    exported = save_tf(model, saved, batch_size)
    target = os.path.join(workdir, f"model_b{batch_size}{ENGINES[name].suffixes[0]}")
    try:
        with _quiet():
            module.convert(exported, target)
    except Exception as e:  # a converter's failure is the engine's, said in one line
        detail = getattr(e, "detail", "") or str(e)
        raise EngineError(f"{ENGINES[name].title} conversion failed: {cause(e)}", detail) from e
    return target, time.perf_counter() - t0


def load(name: str, path: str, threads: Optional[int] = None, precision="float32") -> Runner:
    module = implementation(name)
    _refuse_precision(name, precision)
    try:
        return module.load(path, threads or default_threads(), precision)
    except EngineError:
        raise
    except Exception as e:
        raise EngineError(f"{ENGINES[name].title} could not load it: {cause(e)}", str(e)) from e


class EngineStep:
    """`step(images)`: the logits of `model` run by a serving engine (see `compiled_step`).

    The model is exported and converted on the first call of each batch size, into a temporary
    directory removed with the step; the engine runs the weights the model had then, in
    `precision` (refused here, in one line, where the engine does not compute in it natively).
    """

    def __init__(self, model, name: str, threads: Optional[int] = None, precision: str = "float32"):
        implementation(name)  # not installed: one line, now rather than at the first call
        _check_engine_model(model, name)
        _refuse_precision(name, precision)
        if threads is not None:
            checks.positive_int(threads, "threads")
        self.model, self.engine, self.precision = model, name, precision
        self.threads = threads or default_threads()
        self.runners: dict = {}  # batch size -> Runner
        self.convert_s: dict = {}
        self._dir = tempfile.mkdtemp(prefix="blocks-engine-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, True)

    def runner(self, batch_size: int) -> Runner:
        if batch_size not in self.runners:
            path, seconds = convert(self.model, self.engine, self._dir, batch_size)
            self.runners[batch_size] = load(self.engine, path, self.threads, self.precision)
            self.convert_s[batch_size] = seconds
        return self.runners[batch_size]

    def images(self, images) -> np.ndarray:
        """`images` as a float32 NumPy batch, checked as the model checks its input."""
        checks.batch_array(
            images, "images", f"{self.engine} step", "of shape (batch, height, width, channels)"
        )
        x = np.asarray(images)
        checks.images(
            x,
            expected=tuple(self.model.expected_input_shape),
            input_format=getattr(self.model, "input_format", "channels_last"),
            who=f"{self.engine} step",
        )
        return np.ascontiguousarray(x, dtype=np.float32)

    def __call__(self, images, labels=None) -> np.ndarray:
        x = self.images(images)
        return self.runner(x.shape[0]).run(x)

    def close(self) -> None:
        self.runners.clear()
        self._cleanup()


def _targets(name: str, path: str) -> list:
    """The files (or the directory) `export` writes for `path`."""
    if name == "saved_model":
        return [path]
    suffixes = ENGINES[name].suffixes
    stem, suffix = os.path.splitext(path)
    if suffix.lower() != suffixes[0]:
        raise ValueError(
            f"Invalid path for format {name!r}. Expected a file name ending in {suffixes[0]!r}; "
            f"Received: path={path!r}"
        )
    return [stem + s for s in suffixes]


# How an earlier export is told from a file that only shares its name, by its first bytes: an
# ONNX ModelProto opens with its IR version (field 1) then the producer, tf2onnx; a .tflite
# flatbuffer has its identifier at byte 4; an IR's .xml is a <net>, and its .bin goes with it.
_EXPORT_HEADS = {
    ".onnx": lambda head: head[:1] == b"\x08" and b"\x12\x07tf2onnx" in head[:16],
    ".tflite": lambda head: head[4:8] == b"TFL3",
    ".xml": lambda head: head.startswith(b"<?xml") and b"<net " in head[:256],
}


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(256)
    except OSError:
        return b""


def _an_earlier_export(name: str, targets: list, target: str) -> bool:
    """Whether the existing `target` is what `export` writes in format `name`."""
    if name == "saved_model":
        return os.path.isdir(target) and os.path.isfile(os.path.join(target, "saved_model.pb"))
    if not os.path.isfile(target) or os.path.islink(target):
        return False
    suffix = os.path.splitext(target)[1].lower()
    if suffix == ".bin":  # an IR's weights: its .xml decides
        return os.path.isfile(targets[0]) and _EXPORT_HEADS[".xml"](_head(targets[0]))
    return _EXPORT_HEADS[suffix](_head(target))


def _check_targets(name: str, targets: list, overwrite: bool) -> None:
    """Only an earlier export of the same format is ever replaced, and only with `overwrite`:
    a directory or a file of anything else at a target is refused, overwrite or not."""
    directory = os.path.dirname(os.path.abspath(targets[0]))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Cannot export to {targets[0]!r}: the directory {directory!r} does not exist."
        )
    for target in targets:
        if not os.path.lexists(target):
            continue
        if not _an_earlier_export(name, targets, target):
            if name == "saved_model":
                what = "a SavedModel directory; only a SavedModel is replaced"
            elif os.path.isfile(target) and not os.path.islink(target):
                what = f"an earlier {name!r} export; only such a file is replaced"
            else:
                what = "a file; only an earlier export's file is replaced"
            raise FileExistsError(
                f"Cannot export to {target!r}: it exists and is not {what}. It was left as it "
                "is: choose another path."
            )
        if not overwrite:
            raise FileExistsError(
                f"Cannot export to {target!r}: it exists. Choose another path, or pass "
                "overwrite=True to replace it."
            )


def _check_export_precision(format: str, precision) -> None:
    check_precision(precision)
    if format == "saved_model" and precision != "float32":
        raise ValueError(
            "Invalid precision for format 'saved_model'. A SavedModel runs the model's own "
            f"policy; Expected precision='float32'; Received: precision={precision!r}"
        )


def export(
    model,
    format: str,
    path,
    *,
    batch_size: int = 1,
    overwrite: bool = False,
    precision: str = "float32",
) -> list:
    """Write what a deployment loads, atomically: nothing half-written is left at `path`.

    Args:
        model: a model built by `blocks.resnet18` / `blocks.resnet34` (float32 for an engine).
        format: "saved_model" (a SavedModel directory), "onnx" (`.onnx`), "openvino" (an IR,
            `.xml` and `.bin` beside it) or "litert" (`.tflite`).
        path: the directory (saved_model) or file to write; its directory must exist.
        batch_size: the fixed batch the artifact takes.
        overwrite: replace an earlier export at `path` (a SavedModel directory, or files).
        precision: the dtype-policy name the engine is to compute in, checked here: the
            artifact holds float32 weights either way, and the engine's `serving_code` with the
            same precision sets its hint (OpenVINO's INFERENCE_PRECISION_HINT).

    Returns:
        The paths written: [directory], [file] or, for openvino, [xml, bin].

    Raises:
        ValueError: an unknown format, precision, a bad batch size, path suffix or dtype policy.
        FileNotFoundError / FileExistsError: the directory is missing, or `path` exists.
        EngineError: the engine is not installed, does not run `precision` natively here, or
            its converter failed (one line).
    """
    checks.choice(format, EXPORT_FORMATS, "format", what="Unknown export format")
    checks.positive_int(batch_size, "batch_size")
    _check_export_precision(format, precision)
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"Invalid path. Expected a file path; Received: path={path!r}")
    path = os.fspath(path)
    targets = _targets(format, path)
    _check_targets(format, targets, overwrite)
    if format != "saved_model":
        implementation(format)
        _check_engine_model(model, format)
        _refuse_precision(format, precision)
    work = tempfile.mkdtemp(prefix=".blocks-export-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        if format == "saved_model":
            made = [save_tf(model, os.path.join(work, "saved_model"), batch_size).path]
        else:
            first, _ = convert(model, format, work, batch_size)
            made = [os.path.splitext(first)[0] + s for s in ENGINES[format].suffixes]
        # The last file named is the one a loader opens (an IR's .xml reads its .bin): it lands
        # last, so a reader never finds the new .xml beside the old .bin.
        for new, target in reversed(list(zip(made, targets))):
            if os.path.isdir(target) and not os.path.islink(target):
                old = os.path.join(work, "replaced")
                os.replace(target, old)
            os.replace(new, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return targets
