"""What the devices TensorFlow sees can run, asked once and remembered."""

from __future__ import annotations

import os

import tensorflow as tf

from blocks import _compat, cpu


def list_devices() -> list:
    """Short names ("CPU:0", "GPU:0", ...) of the devices TF lists, CPU first."""
    names = [d.name.split("device:")[-1] for d in tf.config.list_logical_devices()]
    return sorted(set(names), key=lambda n: (not n.startswith("CPU"), n))


def resolve(device: str) -> str:
    """Validate a device name ("CPU:0", "GPU:1", "/device:GPU:0") against what TF lists."""
    available = list_devices()
    short = str(device).split("device:")[-1].upper() if device else ""
    if ":" not in short and short:
        short += ":0"
    if short not in available:
        raise ValueError(
            f"Unknown device. Expected one of {available} (the devices TensorFlow "
            f"{_compat.TF_VERSION} lists here); Received: device={device!r}"
        )
    return short


def describe(device: str) -> dict:
    """Identity of a device for reports and cache keys: kind, name, compute capability."""
    short = resolve(device)
    if short.startswith("CPU"):
        return {
            "device": short,
            "kind": "CPU",
            "name": cpu.cpu_model_name(),
            "cores": os.cpu_count(),
        }
    physical = [d for d in tf.config.list_physical_devices("GPU")]
    index = int(short.split(":")[1])
    details = {}
    if index < len(physical):
        try:
            details = tf.config.experimental.get_device_details(physical[index])
        except (ValueError, RuntimeError):
            details = {}
    cc = details.get("compute_capability")
    return {
        "device": short,
        "kind": "GPU",
        "name": details.get("device_name", "unknown GPU"),
        "compute_capability": ".".join(map(str, cc)) if cc else None,
    }


def native_dtype_policies(device: str) -> dict:
    """{policy: None if the device runs it natively, else why not}, for the benchmark defaults."""
    info = describe(device)
    reasons = {"float32": None}
    if info["kind"] == "CPU":
        flags = cpu.cpu_flags()
        bf16 = set(cpu.BF16_FLAGS) & flags
        reasons["mixed_bfloat16"] = (
            None
            if bf16
            else (f"{info['name']} has no AVX512_BF16 or AMX: bfloat16 would be emulated")
        )
        reasons["mixed_float16"] = (
            "float16 on the CPU is emulated by TensorFlow (mixed_float16 is a GPU policy)"
        )
    else:
        cc = tuple(int(p) for p in (info["compute_capability"] or "0.0").split("."))
        reasons["mixed_bfloat16"] = (
            None
            if cc >= (8, 0)
            else (
                f"{info['name']} (compute capability {info['compute_capability']}) has no bfloat16 "
                "tensor cores (needs 8.0+)"
            )
        )
        reasons["mixed_float16"] = (
            None
            if cc >= (7, 0)
            else (
                f"{info['name']} (compute capability {info['compute_capability']}) has no float16 "
                "tensor cores (needs 7.0+)"
            )
        )
    return reasons
