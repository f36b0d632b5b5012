"""Variants that misbehave on purpose, for the pick tests. The tests register them for the
length of a test (`registered()`); a worker process started meanwhile imports this module
(blocks.measure.workers.IMPORTS_VAR names it) and registers them at import, so the faults happen
in real workers and never in the test process's own registry for other tests.

- `crashing`: building it kills its process (SIGSEGV);
- `hanging`: building it never returns, and holds the GIL while it waits (as a deadlocked
  TensorFlow call can), so no thread of its process runs;
- `wrong`: fast and wrong (its block skips conv2 and bn2), so a pick must disqualify it;
- `onednn_only`: the reference block, but it refuses to build where oneDNN is off, so every
  candidate of a no-oneDNN runtime fails;
- `slow`: the reference block, but every call of a block sleeps SLOW_BLOCK_S first, so a step
  takes at least blocks x SLOW_BLOCK_S on any host (a budget test's rounds are long everywhere);
- `noisy`: the reference block, plus fixed noise of NOISY_SCALE x its output's largest magnitude
  (a stateless normal of a fixed seed, in the block's compute dtype), so it runs at the
  reference's speed in any precision while its logits are far from float64's (relative logit
  error of order 0.1 or more): a reduced precision's accuracy check must disqualify it.
"""

import contextlib
import ctypes
import os
import signal
import time

import tensorflow as tf

from blocks import cpu
from blocks.kernels import DeviceError
from blocks.measure.workers import IMPORTS_VAR
from blocks.registry import Variant
from blocks.variants import VARIANTS, register
from blocks.variants.subclassed import BasicBlock


class CrashingBlock(BasicBlock):
    def build(self, input_shape):
        os.kill(os.getpid(), signal.SIGSEGV)


class HangingBlock(BasicBlock):
    def build(self, input_shape):
        ctypes.PyDLL(None).sleep(3600)  # libc's sleep, called without releasing the GIL


class WrongBlock(BasicBlock):
    def call(self, inputs, training=None):
        leaves = self.leaves
        x = inputs if leaves.pad1 is None else leaves.pad1(inputs)
        x = tf.nn.relu(leaves.bn1(leaves.conv1(x), training=training))
        shortcut = inputs if leaves.downsample_conv is None else leaves.downsample_conv(inputs)
        if leaves.downsample_bn is not None:
            shortcut = leaves.downsample_bn(shortcut, training=training)
        return tf.nn.relu(x + shortcut)


SLOW_BLOCK_S = 0.05


class SlowBlock(BasicBlock):
    def call(self, inputs, training=None):
        slept = tf.numpy_function(lambda: time.sleep(SLOW_BLOCK_S) or 0.0, [], tf.float64)
        slept = tf.ensure_shape(tf.cast(slept, inputs.dtype), [])
        return super().call(inputs + slept, training=training)


# Noise of 0.3% of each block's largest output: through eight blocks the seed arch's logits at
# 8x8 (seeded weights, 256 random images) end up 0.11 off float64's in batches of 2, 0.15 in one
# batch (the noise has the batch's shape), relative to each image's largest logit: several times
# bfloat16's roundoff (0.017), with ~5% of the top-1 classes changed (measured on an AMD EPYC;
# tests/test_pick_precision.py holds a pick to a budget between the two).
NOISY_SCALE = 0.003
NOISY_SEED = (23, 1)


class NoisyBlock(BasicBlock):
    def call(self, inputs, training=None):
        y = super().call(inputs, training=training)
        noise = tf.random.stateless_normal(tf.shape(y), seed=NOISY_SEED, dtype=y.dtype)
        return y + tf.cast(NOISY_SCALE, y.dtype) * tf.reduce_max(tf.abs(y)) * noise


class OnednnOnlyBlock(BasicBlock):
    """The reference block, defined here so that workers import this module for it."""


def _needs_onednn(compute_dtype):
    if not cpu.onednn_on():
        raise DeviceError("onednn_only: oneDNN is off in this process")


_FAULTY = [
    Variant("crashing", CrashingBlock, "subclassed", summary="crashes", wins="never"),
    Variant("hanging", HangingBlock, "subclassed", summary="hangs", wins="never"),
    Variant("wrong", WrongBlock, "subclassed", summary="fast and wrong", wins="never"),
    Variant(
        "slow", SlowBlock, "subclassed", summary="sleeps in every block", wins="never", complexity=9
    ),
    Variant("noisy", NoisyBlock, "subclassed", summary="adds noise", wins="never"),
    Variant(
        "onednn_only",
        OnednnOnlyBlock,
        "subclassed",
        summary="needs oneDNN",
        wins="with oneDNN",
        check_device=_needs_onednn,
    ),
]


@contextlib.contextmanager
def registered():
    """The misbehaving variants in the registry inside the `with` block only."""
    added = [v for v in _FAULTY if v.name not in VARIANTS]
    for v in added:
        register(v)
    try:
        yield
    finally:
        for v in added:
            VARIANTS.unregister(v.name)


if __name__ in os.environ.get(IMPORTS_VAR, "").split(","):  # a worker, or a command line
    for _v in _FAULTY:
        if _v.name not in VARIANTS:
            register(_v)
