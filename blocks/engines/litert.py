"""LiteRT: converted by TensorFlow's TFLiteConverter from the SavedModel, run by `ai_edge_litert`'s
interpreter with its default XNNPACK delegate. Its Python interpreter uses one thread unless told.
"""

from __future__ import annotations

import collections
import importlib.metadata

import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from blocks import fileio
from blocks.engines import Runner

FROM_SAVED_MODEL = True


def versions() -> dict:
    return {"ai-edge-litert": importlib.metadata.version("ai-edge-litert"), "delegate": "XNNPACK"}


def convert(exported, target: str) -> None:
    flatbuffer = tf.lite.TFLiteConverter.from_saved_model(exported.path).convert()
    fileio.atomic_write(target, lambda f: f.write(flatbuffer), "a LiteRT model")


def load(path: str, threads: int) -> Runner:
    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    sink = interpreter.get_output_details()[0]["index"]
    ops = collections.Counter(op["op_name"] for op in interpreter._get_ops_details())

    def run(x):
        interpreter.set_tensor(source, x)
        interpreter.invoke()
        return interpreter.get_tensor(sink)

    return Runner(run, dict(ops), threads)


def serving_code(path: str, threads: int) -> list:
    return [
        "from ai_edge_litert.interpreter import Interpreter",
        f'interpreter = Interpreter(model_path="{path}", num_threads={threads})',
        "interpreter.allocate_tensors()",
        'interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)',
        "interpreter.invoke()",
        'logits = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])',
    ]


def gpu_note() -> str:
    return "LiteRT's GPU delegate is built for Android and iOS; its Python wheel runs on the CPU"
