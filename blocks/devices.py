"""What the devices TensorFlow sees can run, asked once and remembered."""

from __future__ import annotations

import functools
import os

import tensorflow as tf

from blocks import _compat


class DeviceError(RuntimeError):
    """The current device lacks a kernel a variant needs."""


def current_device() -> str:
    """The full name of the device an op runs on here (honours an enclosing `tf.device`)."""
    return tf.zeros([1]).device


@functools.lru_cache(maxsize=None)
def _nchw_probe(device: str, dtype: str):
    """None if NCHW Conv2D and its gradients run in `dtype` on `device`, else TF's error text.

    (Pools of channels_first input run in NHWC in every Keras version; see _compat.)
    """
    try:
        with tf.device(device):
            x = tf.ones([1, 2, 4, 4], dtype)
            k = tf.ones([3, 3, 2, 2], dtype)
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                y = tf.nn.conv2d(x, k, strides=1, padding="SAME", data_format="NCHW")
            for g in tape.gradient(y, [x, k]):
                g.numpy()
    except (
        tf.errors.InvalidArgumentError,
        tf.errors.UnimplementedError,
        tf.errors.NotFoundError,
    ) as e:
        return e.message.strip().splitlines()[0]
    return None


def check_nchw_support(compute_dtype: str = "float32", device=None) -> None:
    """Raise DeviceError naming the TF version, device and dtype if NCHW conv cannot run there."""
    device = device or current_device()
    error = _nchw_probe(device, compute_dtype)
    if error is None:
        return
    hint = ""
    if "CPU" in device.upper():
        setting = _compat.onednn_setting()
        cpu = _compat.cpu_model_name()
        if setting == "on":
            hint = (
                f" oneDNN is on (TF_ENABLE_ONEDNN_OPTS=1) but has no channels_first {compute_dtype}"
                f" convolution for this CPU ({cpu})."
            )
        else:
            cause = (
                "TF_ENABLE_ONEDNN_OPTS=0 turns it off"
                if setting == "off"
                else "TensorFlow leaves it off by default on CPUs without "
                "AVX512_VNNI/AVX512_BF16/AMX"
            )
            hint = (
                " On the CPU, TensorFlow's channels_first convolution comes from oneDNN, and "
                f"{cause}"
                f" (CPU: {cpu}); set TF_ENABLE_ONEDNN_OPTS=1 before importing TensorFlow to run"
                " this variant."
            )
    raise DeviceError(
        f"Variant 'nchw' needs channels_first (NCHW) Conv2D kernels for "
        f"{compute_dtype}, which TensorFlow {_compat.TF_VERSION} lacks on {device}.{hint} Use a "
        f"channels_last variant instead. TensorFlow said: {error}"
    )


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
            "name": _compat.cpu_model_name(),
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
        flags = _compat.cpu_flags()
        bf16 = {"avx512_bf16", "amx_bf16"} & flags
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
