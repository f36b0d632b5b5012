"""OpenVINO: converted by `openvino.convert_model` from the SavedModel, run by its CPU plugin.

Precision is set, never left to the device: on CPUs with AVX512_BF16 or AMX OpenVINO otherwise
computes in bfloat16, and `save_model` otherwise stores float16 weights. The IR always holds
float32 weights; a reduced precision is the compile hint (`INFERENCE_PRECISION_HINT`), given
only where the CPU computes in it natively: asked for f16 on a CPU without native float16 (this
AVX512_BF16 EPYC), OpenVINO 2026.4 silently compiles bf16 instead, and emulated bfloat16 is slower
than float32.
"""

from __future__ import annotations

import collections
import functools

import openvino as ov

from blocks import cpu
from blocks.engines import EngineError, Runner

# The dtype-policy names and the hint that computes in each.
PRECISIONS = {"float32": "f32", "mixed_bfloat16": "bf16", "mixed_float16": "f16"}
# What the CPU plugin lists in OPTIMIZATION_CAPABILITIES for each, and the x86 flags of the
# native arithmetic (on Arm the plugin's word is taken alone).
CAPABILITY = {"mixed_bfloat16": "BF16", "mixed_float16": "FP16"}
NATIVE_FLAGS = {"mixed_bfloat16": cpu.BF16_FLAGS, "mixed_float16": ("avx512_fp16", "amx_fp16")}
# What becomes of the hint without them.
WITHOUT = {
    "mixed_bfloat16": "the bf16 hint would be emulated or ignored",
    "mixed_float16": "the f16 hint would compile another precision (bf16 on an AVX512_BF16 CPU)",
}
DEFAULT = PRECISIONS["float32"]

FROM_SAVED_MODEL = True


def versions() -> dict:
    return {"openvino": ov.get_version().split("-")[0], "precision_hint": DEFAULT}


@functools.lru_cache(maxsize=1)
def capabilities() -> tuple:
    """What OpenVINO's CPU plugin says it computes in here, e.g. ('BF16', 'FP32', 'INT8', ...)."""
    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def precision_refusal(policy: str):
    """None where the CPU plugin computes in `policy` natively here, else the one-line reason."""
    if policy == "float32":
        return None
    where = f"on {cpu.cpu_model_name()} ({cpu.simd_summary()})"
    if cpu.is_x86_64() and not set(NATIVE_FLAGS[policy]) & cpu.cpu_flags():
        return (
            f"OpenVINO does not run {policy} natively {where}: the CPU has no "
            f"{' or '.join(NATIVE_FLAGS[policy])}, so {WITHOUT[policy]}"
        )
    if CAPABILITY[policy] not in capabilities():
        return (
            f"OpenVINO does not run {policy} natively {where}: its CPU plugin lists "
            f"{', '.join(capabilities())}, no {CAPABILITY[policy]}"
        )
    return None


def config(threads: int, precision: str = "float32") -> dict:
    return {
        "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",  # one synchronous request at a time, as timed
    }


def convert(exported, target: str) -> None:
    model = ov.convert_model(exported.path)
    ov.save_model(model, target, compress_to_fp16=False)


def load(path: str, threads: int, precision: str = "float32") -> Runner:
    compiled = ov.Core().compile_model(path, "CPU", config(threads, precision))
    # The plugin may substitute another precision for the hint without a word: read it back.
    ran = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if ran != PRECISIONS[precision]:
        raise EngineError(
            f"OpenVINO compiled {ran} when asked for {PRECISIONS[precision]} ({precision}) on "
            f"{cpu.cpu_model_name()}"
        )
    request = compiled.create_infer_request()
    output = compiled.output(0)
    ops = collections.Counter(
        op.get_rt_info()["layerType"].astype(str)
        for op in compiled.get_runtime_model().get_ordered_ops()
    )

    def run(x):
        return request.infer({0: x})[output]

    return Runner(run, dict(ops), threads, precision)


def serving_code(path: str, threads: int, precision: str = "float32") -> list:
    return [
        "import openvino as ov",
        f'compiled = ov.Core().compile_model("{path}", "CPU", {config(threads, precision)!r})',
        "logits = compiled(images)[0]",
    ]


def gpu_note() -> str:
    gpus = [d for d in ov.Core().available_devices if d.startswith("GPU")]
    if gpus:
        return f"OpenVINO GPU devices here: {', '.join(gpus)}"
    return "OpenVINO sees no GPU here (its GPU plugin runs on Intel GPUs only)"
