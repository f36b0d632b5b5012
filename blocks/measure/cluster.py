"""`python -m blocks cluster`: one member of a multi-worker cluster (one per host, TF_CONFIG naming
all of them) times the distributed training step; the chief (task 0) says the figures."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from blocks.measure import distributed, stats, steps, timing
from blocks.measure.workload import Config, Workload
from blocks.variants import get_variant

# What a member refuses with a one-line message (its arguments, TF_CONFIG, the configuration).
REFUSALS = (ValueError, steps.Unsupported)


def run(variant: str, execution: str, n_steps: int, **workload_fields) -> Optional[str]:
    """Time `n_steps` training steps of `variant` in `execution` across the cluster (a `Workload`
    of `workload_fields` in training): the chief's line of figures, None on the other members.
    Raises one of REFUSALS for a bad TF_CONFIG, workload or variant, or a configuration the
    cluster cannot run."""
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        raise ValueError("TF_CONFIG is not set; every host needs the cluster and its index")
    # Everything is checked before the strategy exists: TensorFlow's own refusals are tracebacks.
    workers, index = distributed.read_tf_config(tf_config)
    workload = Workload("train", **workload_fields)
    config = Config(variant, execution, "default", "multiworker", len(workers))
    get_variant(variant)
    os.environ[distributed.STRATEGY_VAR] = "multiworker"
    distributed.configure_process()
    step = distributed.prepare(workload, config)
    times = [timing.sample(step.run) for _ in range(n_steps)]
    if index != 0:
        return None
    batch = workload.batch_size * len(workers)
    t = stats.throughput(times, batch)
    return (
        f"{config.label}: {t['images_per_sec']:,.1f} img/s "
        f"(IQR {t['q1_images_per_sec']:,.1f}-{t['q3_images_per_sec']:,.1f}), global batch "
        f"{batch}, {len(workers)} workers, median step "
        f"{1000 * float(np.median(times)):.1f} ms over {n_steps} steps"
    )
