"""The CPU, and the oneDNN switch TensorFlow decides from it, read without importing TensorFlow.

The model library reads these to say why a kernel is missing; the measuring side to describe a
run and to predict what a runtime setting does (each worker also reports what TensorFlow did).
"""

from __future__ import annotations

import os
import platform

ONEDNN_VAR = "TF_ENABLE_ONEDNN_OPTS"
# TensorFlow's x86 wheels turn oneDNN on by default only where the CPU has one of these
# (tensorflow/core/util/util.cc, IsMKLEnabled); elsewhere its own Eigen kernels run.
ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16")
# Native bfloat16 arithmetic on the CPU.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo_field(field: str):
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model_name() -> str:
    """The CPU's marketing name, e.g. 'AMD EPYC 7R13 Processor', or the best the platform says."""
    return (
        _cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown CPU"
    )


def cpu_flags() -> set:
    """The CPU's feature flags (Linux), e.g. {'avx2', 'avx512_bf16', ...}; empty elsewhere."""
    return set((_cpuinfo_field("flags") or "").split())


def is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def onednn_on_by_default(flags=None) -> bool:
    """Whether TensorFlow's default on this CPU is oneDNN on (x86-64 with an ONEDNN_DEFAULT_FLAGS
    feature)."""
    flags = cpu_flags() if flags is None else flags
    return is_x86_64() and any(f in flags for f in ONEDNN_DEFAULT_FLAGS)


def onednn_setting(environ=None) -> str:
    """How TF_ENABLE_ONEDNN_OPTS is set in `environ` (default: this process): "on", "off", or
    "default" (TensorFlow then decides from the CPU)."""
    flag = (os.environ if environ is None else environ).get(ONEDNN_VAR)
    if flag is None or not flag.strip():
        return "default"
    return "off" if flag.strip().lower() in ("0", "false", "no", "off") else "on"


def onednn_on(environ=None) -> bool:
    """Whether a TensorFlow process started with `environ` runs oneDNN's kernels."""
    setting = onednn_setting(environ)
    return setting == "on" or (setting == "default" and onednn_on_by_default())


def simd_summary(flags=None) -> str:
    """The vector extensions that decide TensorFlow's speed here, e.g. 'AVX2' or
    'AVX-512, AVX512_BF16, AMX'."""
    flags = cpu_flags() if flags is None else flags
    parts = []
    if "avx512f" in flags:
        parts.append("AVX-512")
    elif "avx2" in flags:
        parts.append("AVX2")
    if "avx512_bf16" in flags:
        parts.append("AVX512_BF16")
    if "amx_tile" in flags:
        parts.append("AMX")
    return ", ".join(parts) or platform.machine()


def describe() -> dict:
    return {
        "cpu": cpu_model_name(),
        "simd": simd_summary(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
    }


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; all of them where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
