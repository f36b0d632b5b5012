"""OpenVINO: converted by `openvino.convert_model` from the SavedModel, run by its CPU plugin.

Precision is set, never left to the device: on CPUs with AVX512_BF16 or AMX OpenVINO otherwise
computes in bfloat16, and `save_model` otherwise stores float16 weights.
"""

from __future__ import annotations

import collections

import openvino as ov

from blocks.engines import Runner

PRECISION = "f32"


FROM_SAVED_MODEL = True


def versions() -> dict:
    return {"openvino": ov.get_version().split("-")[0], "precision_hint": PRECISION}


def config(threads: int) -> dict:
    return {
        "INFERENCE_PRECISION_HINT": PRECISION,
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",  # one synchronous request at a time, as timed
    }


def convert(exported, target: str) -> None:
    model = ov.convert_model(exported.path)
    ov.save_model(model, target, compress_to_fp16=False)


def load(path: str, threads: int) -> Runner:
    compiled = ov.Core().compile_model(path, "CPU", config(threads))
    request = compiled.create_infer_request()
    output = compiled.output(0)
    ops = collections.Counter(
        op.get_rt_info()["layerType"].astype(str)
        for op in compiled.get_runtime_model().get_ordered_ops()
    )

    def run(x):
        return request.infer({0: x})[output]

    return Runner(run, dict(ops), threads)


def serving_code(path: str, threads: int) -> list:
    return [
        "import openvino as ov",
        f'compiled = ov.Core().compile_model("{path}", "CPU", {config(threads)!r})',
        "logits = compiled(images)[0]",
    ]


def gpu_note() -> str:
    gpus = [d for d in ov.Core().available_devices if d.startswith("GPU")]
    if gpus:
        return f"OpenVINO GPU devices here: {', '.join(gpus)}"
    return "OpenVINO sees no GPU here (its GPU plugin runs on Intel GPUs only)"
