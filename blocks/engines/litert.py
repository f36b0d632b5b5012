"""LiteRT: converted by TensorFlow's TFLiteConverter from the SavedModel, run by `ai_edge_litert`'s
interpreter with its default XNNPACK delegate. Its Python interpreter uses one thread unless told.

It runs float32 only here. The converter's float16 option (`target_spec.supported_types =
[tf.float16]`) stores float16 weights that XNNPACK turns back into float32 at load and computes
in float32 (google/XNNPACK#1508): measured on the seed ResNet18, 2-core AMD EPYC (AVX-512,
AVX512_BF16), 2 threads, 9 interleaved rounds, it ran at 1.004x float32 at batch 1 and 0.994x
at batch 64 (0.989x and 0.997x with float16 accumulation asked as well), its logits within 4e-4
of float32's: float32 arithmetic on float16-rounded weights. XNNPACK computes float16 only on
CPUs with float16 arithmetic (Arm v8.2, AVX512-FP16). Asked for `supported_types =
[tf.bfloat16]`, TFLiteConverter (TF 2.21) writes an all-float32 model without a word.
"""

from __future__ import annotations

import collections
import importlib.metadata

import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from blocks import fileio
from blocks.engines import Runner, _refuse_precision

FROM_SAVED_MODEL = True

PRECISIONS = {"float32": "float32"}
REFUSALS = {
    "mixed_bfloat16": "its converter has no bfloat16 target (asked for one, it writes float32)",
    "mixed_float16": (
        "its float16 weights are computed in float32 by XNNPACK on x86 "
        "(measured 1.00x and 0.99x float32 at batch 1 and 64, seed ResNet18, 2-core AMD EPYC)"
    ),
}


def precision_refusal(policy: str):
    """None where LiteRT computes in `policy` here (float32 only), else why not."""
    if policy in PRECISIONS:
        return None
    return f"LiteRT does not run {policy} natively: {REFUSALS[policy]}"


def versions() -> dict:
    return {"ai-edge-litert": importlib.metadata.version("ai-edge-litert"), "delegate": "XNNPACK"}


def convert(exported, target: str) -> None:
    flatbuffer = tf.lite.TFLiteConverter.from_saved_model(exported.path).convert()
    fileio.atomic_write(target, lambda f: f.write(flatbuffer), "a LiteRT model")


def load(path: str, threads: int, precision: str = "float32") -> Runner:
    _refuse_precision("litert", precision)  # it has no hint: another name would be float32
    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    sink = interpreter.get_output_details()[0]["index"]
    ops = collections.Counter(op["op_name"] for op in interpreter._get_ops_details())

    def run(x):
        interpreter.set_tensor(source, x)
        interpreter.invoke()
        return interpreter.get_tensor(sink)

    return Runner(run, dict(ops), threads, precision)


def serving_code(path: str, threads: int, precision: str = "float32") -> list:
    _refuse_precision("litert", precision)  # it has no hint: another name would be float32
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
