"""What this host and this process can run, decided from the platform and the environment (CPU
flags, TF_ENABLE_ONEDNN_OPTS), never by asking the code under test.

nchw on the CPU needs oneDNN's channels_first kernels. On an x86-64 CPU TensorFlow has them once
oneDNN is on, so there the nchw tests must pass, never skip: if this process runs with oneDNN off
(TensorFlow's default on CPUs without AVX512_VNNI/BF16/AMX, such as an AVX2-only EPYC), they are
skipped here with one reason and run by tests/test_nchw.py in a process with
TF_ENABLE_ONEDNN_OPTS=1, which fails if any of them fails or skips.
"""

from __future__ import annotations

from typing import Optional

from blocks import _compat, cpu


def onednn_on_here() -> bool:
    return cpu.onednn_on()


def avx2_only() -> bool:
    flags = cpu.cpu_flags()
    return cpu.is_x86_64() and "avx2" in flags and "avx512f" not in flags


NCHW_ELSEWHERE = cpu.is_x86_64() and not onednn_on_here()
NCHW_ELSEWHERE_REASON = (
    "nchw: oneDNN is off in this process (TF_ENABLE_ONEDNN_OPTS or TensorFlow's default for this "
    "CPU); its tests run in test_nchw.py's process with TF_ENABLE_ONEDNN_OPTS=1"
)


def nchw_dtype_reason(compute_dtype: str) -> Optional[str]:
    """Why NCHW in `compute_dtype` cannot run on this CPU even with oneDNN on, or None.

    oneDNN computes bfloat16 only with AVX512_BF16 or AMX, float16 only with AVX512_FP16, and
    TensorFlow registers oneDNN's float16 Conv2D from 2.16 (2.13, 2.14 and 2.15 on a Xeon with
    AVX512_FP16 and AMX, oneDNN on: "no channels_first float16 Conv2D"; 2.16 and 2.21 run it).
    """
    if not cpu.is_x86_64():
        return None
    flags = cpu.cpu_flags()
    if compute_dtype == "bfloat16" and not set(cpu.BF16_FLAGS) & flags:
        return "nchw bfloat16: oneDNN has no bfloat16 convolution without AVX512_BF16 or AMX"
    if compute_dtype == "float16" and "avx512_fp16" not in flags:
        return "nchw float16: oneDNN has no float16 convolution without AVX512_FP16"
    if compute_dtype == "float16" and _compat.TF_VERSION_TUPLE < (2, 16):
        return f"nchw float16: TensorFlow {_compat.TF_VERSION} has no oneDNN float16 convolution"
    return None
