"""What a reduced precision costs in accuracy: a candidate's logits against float64 of the same
weights, on the verification images (the user's, or random ones).

A precision other than float32 changes the numbers a user gets; a pick may choose one only inside
a budget the user states. The cost is measured where it is paid, on the network's output: the
largest logit error relative to each image's largest reference logit, the share of images whose
top-1 class moves, and, where labels are given, the accuracy of each.

`cost`, `over_budget`, `load_images` and `default_images` are NumPy only (the command line refuses
a bad images file before TensorFlow loads). `weights_for`, `reference_logits` and `logits` run in
a worker and import TensorFlow when called.
"""

from __future__ import annotations

import numbers
import os
import zipfile
import zlib
from typing import Optional

import numpy as np

from blocks.archs import ARCHS

# Random verification images when the user gives none. The float64 reference costs ~15x more
# per image at 224x224 than at 32x32, so large images get fewer: 256 puts one changed prediction
# at 0.4% (under a 1% budget) where that is cheap; at 32 images one change is 3.1%, so a 1% budget
# there allows none (the user's own images set their own resolution).
DEFAULT_IMAGES_SMALL, DEFAULT_IMAGES_LARGE, SMALL_IMAGE_SIZE = 256, 32, 64
# Pixels per float64 reference call: bounds the first stage's activations (64 channels, 8 bytes)
# to about 130 MB whatever the image size.
REFERENCE_CHUNK_PIXELS = 2**18
KEYS = ("images", "labels")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _hits(predicted: np.ndarray, labels: np.ndarray, finite: np.ndarray) -> float:
    """Share of images whose top-1 class equals `labels`; a non-finite row is a miss."""
    return float(np.mean((np.argmax(predicted, axis=1) == labels) & finite))


def cost(logits, reference, labels=None) -> dict:
    """The accuracy cost of `logits` (n, classes) against the float64 `reference` of the same
    weights on the same images.

    Returns:
        {"images": n, "logit_error": max over images of max_j |z_ij - r_ij| / max_j |r_ij|
        (inf where any logit is not finite), "top1_agreement": share of images whose argmax
        agrees (an image with a non-finite candidate logit disagrees), "accuracy" and
        "reference_accuracy": share of argmax == labels (None without labels)}, plain floats.

    Raises:
        ValueError: arrays that are not 2-D of one shape with at least one image, or labels that
            are not integers in [0, classes) of length n.
    """
    z = np.asarray(logits, np.float64)
    r = np.asarray(reference, np.float64)
    if z.ndim != 2 or z.shape != r.shape or z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(
            "Invalid logits. Expected logits and reference of one shape (images >= 1, classes "
            f">= 1); Received: logits.shape={z.shape}, reference.shape={r.shape}"
        )
    n, classes = z.shape
    finite_z = np.all(np.isfinite(z), axis=1)
    finite_r = np.all(np.isfinite(r), axis=1)
    if finite_z.all() and finite_r.all():
        diff = np.max(np.abs(z - r), axis=1)
        scale = np.max(np.abs(r), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_image = np.where(diff == 0.0, 0.0, diff / scale)  # 0/0 is exact, x/0 is inf
        error = float(np.max(per_image))
    else:
        error = float("inf")
    agree = (np.argmax(z, axis=1) == np.argmax(r, axis=1)) & finite_z & finite_r
    out = {"images": int(n), "logit_error": error, "top1_agreement": float(np.mean(agree))}
    out["accuracy"] = out["reference_accuracy"] = None
    if labels is not None:
        y = np.asarray(labels)
        if y.shape != (n,) or y.dtype.kind not in "iu" or np.any(y < 0) or np.any(y >= classes):
            raise ValueError(
                f"Invalid labels. Expected {n} integers in [0, {classes}); Received: labels of "
                f"shape {y.shape}, dtype {y.dtype}"
            )
        out["accuracy"] = _hits(z, y, finite_z)
        out["reference_accuracy"] = _hits(r, y, finite_r)
    return out


def _percent(share: float) -> str:
    return f"{100.0 * share:.3g}%"


def _check_budget(max_top1_disagreement, max_logit_error) -> None:
    real = (numbers.Real,)
    if (
        not isinstance(max_top1_disagreement, real)
        or isinstance(max_top1_disagreement, bool)
        or not 0 <= max_top1_disagreement <= 1
    ):
        raise ValueError(
            "Invalid max_top1_disagreement. Expected a share of images in [0, 1]; Received: "
            f"max_top1_disagreement={max_top1_disagreement!r}"
        )
    if max_logit_error is not None and (
        not isinstance(max_logit_error, real)
        or isinstance(max_logit_error, bool)
        or not 0 <= max_logit_error < float("inf")
    ):
        raise ValueError(
            "Invalid max_logit_error. Expected a non-negative number or None; Received: "
            f"max_logit_error={max_logit_error!r}"
        )


def over_budget(cost: dict, max_top1_disagreement: float, max_logit_error=None) -> Optional[str]:
    """None if `cost` (from `cost()`) is inside the budget (bounds inclusive), else one line
    with the measured figure and the bound it passes.

    An infinite logit error is always out: non-finite logits are a broken candidate, not a
    precision's cost.
    A bound of 0 on both leaves only logits equal to the reference's.
    """
    _check_budget(max_top1_disagreement, max_logit_error)
    n, error = cost["images"], cost["logit_error"]
    if not np.isfinite(error):
        return "logit error inf (a non-finite logit, or an error over all-zero reference logits)"
    # Counted in images, so that 99 of 100 agreeing is exactly inside a 1% budget.
    disagreeing = n - int(round(cost["top1_agreement"] * n))
    if disagreeing > max_top1_disagreement * n + 1e-9:
        return (
            f"top-1 disagreement {_percent(disagreeing / n)} ({disagreeing} of {n} images) > "
            f"{_percent(max_top1_disagreement)} allowed"
        )
    if max_logit_error is not None and error > max_logit_error:
        return f"logit error {error:.2e} > {max_logit_error:.2e} allowed"
    return None


def default_images(arch: str, image_size: int, n: Optional[int] = None, seed: int = 0):
    """Standard normal float32 NHWC images: the verification images when the user gives none
    (the cost they give is indicative only: real images excite a network differently)."""
    _check_arch_size(arch, image_size)
    if n is None:
        small = image_size <= SMALL_IMAGE_SIZE
        n = DEFAULT_IMAGES_SMALL if small else DEFAULT_IMAGES_LARGE
    if not _is_int(n) or n < 1:
        raise ValueError(f"Invalid n. Expected a positive int; Received: n={n!r}")
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, image_size, image_size, 3), dtype=np.float32)


def _check_arch_size(arch, image_size) -> None:
    if arch not in ARCHS:
        raise ValueError(f"Unknown arch. Expected one of {sorted(ARCHS)}; Received: arch={arch!r}")
    if not _is_int(image_size) or image_size < 1:
        raise ValueError(
            f"Invalid image_size. Expected a positive int; Received: image_size={image_size!r}"
        )


def load_images(path, arch: str, image_size: int) -> tuple:
    """(images, labels) from the `.npz` a user gives (`--images FILE.npz`): key "images", NHWC
    float32 already normalised as the weights expect, and optional "labels", integers in
    [0, the arch's classes). Everything is checked before any timing starts.

    Returns:
        images float32 (n, image_size, image_size, 3) and labels int64 (n,) or None.

    Raises:
        ValueError: a missing, foreign or damaged file, keys other than "images" and "labels",
            images of another shape or dtype or holding NaN or inf, labels of another length or
            dtype or out of range; each in one line naming the value and what is accepted.
    """
    _check_arch_size(arch, image_size)
    arrays = _read_npz(path)
    x = arrays["images"]
    where = f"Invalid images in {os.fspath(path)!r}"
    shape = (image_size, image_size, 3)
    if x.ndim != 4 or x.shape[1:] != shape or x.shape[0] < 1:
        raise ValueError(
            f"{where}. Expected 'images' of shape (n, {image_size}, {image_size}, 3) with n >= 1 "
            f"(NHWC, the {arch!r} arch at image size {image_size}); Received: shape={x.shape}"
        )
    if x.dtype != np.float32:
        raise ValueError(
            f"{where}. Expected 'images' of dtype float32 (convert with .astype(np.float32)); "
            f"Received: dtype={x.dtype}"
        )
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise ValueError(
            f"{where}. Expected finite 'images'; Received: {bad} NaN or infinite values"
        )
    labels = arrays.get("labels")
    if labels is None:
        return x, None
    n, classes = x.shape[0], ARCHS[arch].num_classes
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{where}. Expected 'labels' of shape ({n},) (one per image), integers; Received: "
            f"shape={labels.shape}, dtype={labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        out = labels[(labels < 0) | (labels >= classes)]
        raise ValueError(
            f"{where}. Expected 'labels' in [0, {classes}) (the {arch!r} arch's classes); "
            f"Received: {out.size} outside, such as {int(out[0])}"
        )
    return x, labels.astype(np.int64)


_WHAT = "an .npz archive (np.savez) with 'images' (NHWC float32) and optional 'labels'"


def _foreign(head: bytes) -> str:
    """What a file that is not an .npz archive seems to be, from its first bytes."""
    if head.startswith(b"\x93NUMPY"):
        return "it holds a single .npy array (np.save)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if not text or not all(c.isprintable() or c.isspace() for c in text):
        return f"not an .npz archive (it starts with bytes {head[:8].hex(' ')})"
    return f"a text file, not an .npz archive (it starts with {' '.join(text.split())[:24]!r})"


def _read_npz(path) -> dict:
    """{key: array} of an images archive, every entry read, nothing unpickled."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"Invalid images file. Expected a path; Received: path={path!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        cause = "it is a directory" if os.path.isdir(path) else "no such file"
        raise ValueError(f"Invalid images file {path!r}: {cause}; expected {_WHAT}.")
    with open(path, "rb") as f:
        head = f.read(64)
    if not head.startswith(b"PK\x03\x04"):
        cause = _foreign(head) if head else "it is empty"
        raise ValueError(f"Invalid images file {path!r}: {cause}; expected {_WHAT}.")
    unreadable = (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, zlib.error)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except unreadable as e:
        detail = " ".join(str(e).split())
        raise ValueError(
            f"Invalid images file {path!r}: damaged or truncated, or holding pickled objects "
            f"(never loaded); expected {_WHAT}. Detail: {detail}"
        ) from e
    keys = sorted(arrays)
    if "images" not in keys or set(keys) - set(KEYS):
        raise ValueError(
            f"Invalid images file {path!r}. Expected keys 'images' and optionally 'labels'; "
            f"Received: keys={keys}"
        )
    return arrays


def weights_for(arch: str, image_size: int, weights_path=None) -> dict:
    """The canonical weights a cost is measured on: the user's file (anything `load_weights`
    reads: canonical npz, torchvision/timm safetensors, keras-hub keys), else the project's
    seeded weights (seed 0). A file without a classifier head leaves the seeded head in place
    (with the loader's warning), the same in the reference and in every candidate."""
    from blocks.models import resnet18
    from blocks.weights import export_weights, load_weights

    _check_arch_size(arch, image_size)
    model = resnet18("subclassed", arch=arch, input_shape=(image_size, image_size, 3), seed=0)
    if weights_path is not None:
        load_weights(model, weights_path)
    return export_weights(model)


def reference_logits(arch: str, image_size: int, images, weights: dict) -> np.ndarray:
    """float64 logits of `weights` on `images`: the `subclassed` network computed in float64,
    in chunks of REFERENCE_CHUNK_PIXELS."""
    import tensorflow as tf

    from blocks.models import resnet18
    from blocks.weights import import_weights

    _check_arch_size(arch, image_size)
    model = resnet18(
        "subclassed", arch=arch, input_shape=(image_size, image_size, 3), dtype_policy="float64"
    )
    import_weights(model, weights)
    chunk = max(1, REFERENCE_CHUNK_PIXELS // (image_size * image_size))
    out = [
        np.asarray(model(tf.constant(images[i : i + chunk], tf.float64), training=False))
        for i in range(0, len(images), chunk)
    ]
    return np.concatenate(out).astype(np.float64)


def logits(workload, config, images, weights: dict) -> np.ndarray:
    """The candidate's logits (float64 copy) of `weights` on `images`: `config` built in the
    workload's precision and run by the very step a pick times, `compiled_step(model,
    "inference", execution)`, on batches of exactly workload.batch_size (a compiled step, and an
    engine's artifact above all, has a fixed batch: the last batch is padded by repeating
    images, and the padded rows dropped).

    A serving engine converts a float32 model and is told the precision to run in.
    """
    import tensorflow as tf

    from blocks.executions import is_engine
    from blocks.measure import devices
    from blocks.models import resnet18
    from blocks.steps import compiled_step
    from blocks.weights import import_weights

    policy, engine = workload.dtype_policy, is_engine(config.execution)
    with tf.device(devices.resolve(workload.device)):
        model = resnet18(
            config.variant,
            arch=workload.arch,
            input_shape=workload.input_shape,
            dtype_policy="float32" if engine else policy,
        )
        import_weights(model, weights)
        if engine and policy != "float32":
            step = compiled_step(model, "inference", config.execution, precision=policy)
        else:
            step = compiled_step(model, "inference", config.execution)
        n, batch = len(images), workload.batch_size
        out = []
        for start in range(0, n, batch):
            rows = np.arange(start, start + batch) % n  # wraps round: the padding repeats images
            got = np.asarray(step(tf.constant(images[rows])), np.float64)
            out.append(got[: min(batch, n - start)])
        return np.concatenate(out)
