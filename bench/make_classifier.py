"""Train the seed ResNet18 on a synthetic 10-class task, and write its weights and held-out images.

    python bench/make_classifier.py OUT_DIR [--steps 160] [--images 256]

A pick's accuracy check (`pick --precisions ... --weights FILE --images FILE.npz`) means most on
weights that classify something, with images they classify confidently or not, and labels. No
dataset can be downloaded here, so this makes one: each class is a fixed smooth pattern (a random
low-frequency image), and an image is its class's pattern at a random contrast under unit noise,
from clear to buried in it, so some images lie near a decision boundary, where a precision's
rounding can change the class. The network trains with the
project's own training step (`blocks.compiled_step(model, "train")`), from a fixed seed.

It writes OUT_DIR/weights.npz (`blocks.save_weights`: what `--weights` reads) and
OUT_DIR/images.npz (`images`, NHWC float32, and `labels`: what `--images` reads), both new files
(an existing one is never replaced), and prints the held-out accuracy.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

CLASSES, SIZE, BATCH = 10, 32, 64


def patterns(rng: np.random.Generator) -> np.ndarray:
    """A smooth random image per class: 4x4x3 of noise, upsampled to 32x32 (nearest), unit
    variance."""
    coarse = rng.normal(size=(CLASSES, 4, 4, 3))
    fine = coarse.repeat(SIZE // 4, axis=1).repeat(SIZE // 4, axis=2)
    return (fine / fine.std()).astype(np.float32)


def draw(rng: np.random.Generator, templates: np.ndarray, n: int) -> tuple:
    """(images, labels): each its class's pattern at a contrast in [0.02, 0.5], plus unit
    noise."""
    labels = rng.integers(0, CLASSES, n)
    contrast = rng.uniform(0.02, 0.5, (n, 1, 1, 1))
    noise = rng.normal(size=(n, SIZE, SIZE, 3))
    return (templates[labels] * contrast + noise).astype(np.float32), labels.astype(np.int64)


def train(steps: int, seed: int = 0):
    from blocks import logs

    logs.quiet_tensorflow()
    import tensorflow as tf

    import blocks

    rng = np.random.default_rng(seed)
    templates = patterns(rng)
    model = blocks.resnet18("subclassed", seed=seed)
    step = blocks.compiled_step(model, "train", "graph")
    for i in range(steps):
        x, y = draw(rng, templates, BATCH)
        step(tf.constant(x), tf.constant(y.astype(np.int32)))
        if (i + 1) % 20 == 0:
            print(f"step {i + 1}/{steps}", file=sys.stderr, flush=True)
    return model, templates, rng


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--images", type=int, default=256)
    args = parser.parse_args(argv)
    weights = os.path.join(args.out_dir, "weights.npz")
    images = os.path.join(args.out_dir, "images.npz")
    for path in (weights, images):
        if os.path.exists(path):
            print(f"error: {path} exists; this script writes new files only", file=sys.stderr)
            return 2
    os.makedirs(args.out_dir, exist_ok=True)

    import blocks

    model, templates, rng = train(args.steps)
    x, y = draw(rng, templates, args.images)  # held out: drawn after training
    logits = blocks.compiled_step(model, "inference", "graph")(x)
    accuracy = float(np.mean(np.argmax(np.asarray(logits), axis=1) == y))
    blocks.save_weights(model, weights)
    from blocks.fileio import atomic_write

    atomic_write(images, lambda f: np.savez(f, images=x, labels=y), "the images")
    print(f"held-out accuracy {accuracy:.1%} on {args.images} images; wrote {weights}, {images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
