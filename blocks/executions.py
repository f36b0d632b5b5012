"""How a model can be run: the modes, the executions, and the serving engines among them.

An execution is how a step is compiled and run. TensorFlow's own three run the Keras model in
this process: `graph` (tf.function), `xla` (the whole step in one tf.function(jit_compile=True))
and `eager`. A serving engine runs the same model after export and conversion by the engine's own
tools, in the engine's own runtime, for inference only (`blocks/engines/`). A new engine is an
entry in ENGINES and a module of `blocks/engines/` with the same four functions as the others.

This module does not import TensorFlow (the command line checks its options with it) and tells
whether an engine is installed without importing it.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
from typing import Optional

MODES = ("inference", "train")
TF_EXECUTIONS = ("graph", "xla", "eager")
INSTALL_HINT = "pip install 'resnet-blocks[serve]'"


@dataclasses.dataclass(frozen=True)
class Engine:
    """A serving engine: what it is called, what must be installed, what it writes.

    Attributes:
        name: the execution's name (`compiled_step(model, "inference", name)`).
        title: the engine's own name, for people.
        modules: the importable packages it needs (converter and runtime).
        distributions: their pip names, whose versions go into results and the pick cache key.
        suffixes: the files `blocks.export` writes, by suffix.
    """

    name: str
    title: str
    modules: tuple
    distributions: tuple
    suffixes: tuple

    @property
    def module(self) -> str:
        return f"blocks.engines.{self.name}"

    def missing(self) -> Optional[str]:
        """None where every package the engine needs is installed, else a one-line reason."""
        absent = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if not absent:
            return None
        return f"{self.title} is not installed (no {', '.join(absent)}): {INSTALL_HINT}"

    def versions(self) -> dict:
        """{distribution: version} of what is installed, read without importing it."""
        found = {}
        for name in self.distributions:
            try:
                found[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                found[name] = None
        return found


ENGINES = {
    "onnx": Engine(
        "onnx", "ONNX Runtime", ("tf2onnx", "onnxruntime"), ("tf2onnx", "onnxruntime"), (".onnx",)
    ),
    "openvino": Engine("openvino", "OpenVINO", ("openvino",), ("openvino",), (".xml", ".bin")),
    "litert": Engine("litert", "LiteRT", ("ai_edge_litert",), ("ai-edge-litert",), (".tflite",)),
}
EXECUTIONS = TF_EXECUTIONS + tuple(ENGINES)
# What `blocks.export` writes: a SavedModel directory (what every engine converts from) or an
# engine's own artifact.
EXPORT_FORMATS = ("saved_model", *ENGINES)


def is_engine(execution: str) -> bool:
    return execution in ENGINES
