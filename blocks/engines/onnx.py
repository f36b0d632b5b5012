"""ONNX Runtime: converted by tf2onnx, run by onnxruntime's CPU execution provider.

It runs float32 only here. Its CPU provider has no float16 convolution on x86: a float16 model
loads with Cast nodes around a float32 Conv (onnxruntime 1.32 here; microsoft/onnxruntime#11831),
and ONNX's Conv takes no bfloat16 at all (the model is refused as invalid).
"""

from __future__ import annotations

import collections
import os
import tempfile

import onnx
import onnxruntime as ort
import tf2onnx

from blocks.engines import EngineError, Runner, _refuse_precision

OPSET = 17
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider")


# tf2onnx converts the traced function itself (what its command line does after loading a
# SavedModel), so no SavedModel is written for it.
FROM_SAVED_MODEL = False

PRECISIONS = {"float32": "float32"}
REFUSALS = {
    "mixed_bfloat16": "ONNX's Conv takes no bfloat16 (such a model is refused as invalid)",
    "mixed_float16": "ONNX Runtime's CPU provider has no float16 Conv on x86: it casts to float32",
}


def precision_refusal(policy: str):
    """None where ONNX Runtime computes in `policy` here (float32 only), else why not."""
    if policy in PRECISIONS:
        return None
    return f"ONNX Runtime {ort.__version__} does not run {policy} natively: {REFUSALS[policy]}"


def versions() -> dict:
    return {"onnxruntime": ort.__version__, "tf2onnx": tf2onnx.__version__, "opset": OPSET}


def convert(exported, target: str) -> None:
    proto, _ = tf2onnx.convert.from_function(
        exported.function, input_signature=[exported.spec], opset=OPSET
    )
    # A TensorFlow call tf2onnx could not inline (a jit_compile'd function) stays in the graph as
    # an op no ONNX runtime has: refuse it here, before anything is written.
    foreign = sorted(
        {n.op_type for n in proto.graph.node if not onnx.defs.has(n.op_type, n.domain or "")}
    )
    if foreign:
        raise EngineError(
            f"tf2onnx {tf2onnx.__version__} left TensorFlow ops it could not convert: "
            f"{', '.join(foreign)}"
        )
    onnx.save(proto, target)


def load(path: str, threads: int, precision: str = "float32") -> Runner:
    _refuse_precision("onnx", precision)  # it has no hint: another name would be float32
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # What ONNX Runtime runs is its optimised graph (BN and ReLU fused into the convolutions),
    # not the file: it writes that graph once, for the layout audit.
    with tempfile.TemporaryDirectory(prefix="blocks-ort-") as scratch:
        options.optimized_model_filepath = os.path.join(scratch, "optimized.onnx")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
    name = session.get_inputs()[0].name
    ops = collections.Counter(n.op_type for n in optimized.graph.node)

    def run(x):
        return session.run(None, {name: x})[0]

    return Runner(run, dict(ops), threads, precision)


def serving_code(path: str, threads: int, precision: str = "float32") -> list:
    _refuse_precision("onnx", precision)  # it has no hint: another name would be float32
    return [
        "import onnxruntime as ort",
        f"options = ort.SessionOptions(); options.intra_op_num_threads = {threads}",
        f'session = ort.InferenceSession("{path}", options, providers=["CPUExecutionProvider"])',
        "logits = session.run(None, {session.get_inputs()[0].name: images})[0]",
    ]


def gpu_note() -> str:
    found = [p for p in ort.get_available_providers() if p in GPU_PROVIDERS]
    if found:
        return f"ONNX Runtime GPU providers installed: {', '.join(found)}"
    return (
        "ONNX Runtime has no GPU provider here (installed: "
        f"{', '.join(ort.get_available_providers())}); onnxruntime-gpu brings CUDA and TensorRT"
    )
