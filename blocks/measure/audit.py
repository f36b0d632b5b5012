"""What TensorFlow actually runs: op counts of the graphs after Grappler, for the layout audit."""

from __future__ import annotations

import collections
import contextlib

TRANSPOSES = ("Transpose", "_MklTranspose", "ConjugateTranspose")


def op_counts(metadata) -> collections.Counter:
    """Op types over every partition graph of a RunMetadata (see `_compat.run_metadata`)."""
    counts: collections.Counter = collections.Counter()
    for function_graph in metadata.function_graphs:
        for graph in function_graph.partition_graphs:
            for node in graph.node:
                counts[node.op] += 1
                if "_XlaMustCompile" in node.attr and node.attr["_XlaMustCompile"].b:
                    counts["<xla cluster>"] += 1
    return counts


def layout(counts) -> dict:
    """Transposes, fused and unfused convolutions, and XLA clusters in the executed graphs.

    A fused convolution (`_FusedConv2D` and oneDNN's variants) carries its bias, BN or activation
    in the same kernel; work inside an XLA cluster is XLA's and is counted as the cluster.
    """
    fused = sum(c for op, c in counts.items() if "FusedConv2D" in op or "Conv2DWithBias" in op)
    plain = sum(
        c
        for op, c in counts.items()
        if op.endswith("Conv2D") and "Fused" not in op and "Backprop" not in op
    )
    return {
        "transposes": sum(counts.get(op, 0) for op in TRANSPOSES),
        "fused_convs": fused,
        "unfused_convs": plain,
        "xla_clusters": counts.get("<xla cluster>", 0),
    }


@contextlib.contextmanager
def run_metadata():
    """Record the graphs TF runs inside the block (after Grappler and placement).

    Yields a dict whose "metadata" (a RunMetadata proto) is filled on exit. Uses TF's eager
    context, which every supported version has but does not export publicly.
    """
    from tensorflow.python.eager import context

    box = {}
    context.enable_run_metadata()
    try:
        yield box
    finally:
        box["metadata"] = context.export_run_metadata()
        context.disable_run_metadata()


def engine_layout(engine: str, ops: dict) -> dict:
    """What a serving engine runs: its op count, convolutions and transposes (by the engine's own
    op names: ONNX Runtime's optimised graph, OpenVINO's executed layers, LiteRT's ops)."""
    return {
        "engine": engine,
        "ops": sum(ops.values()),
        "convs": sum(c for op, c in ops.items() if "conv" in op.lower()),
        "transposes": sum(c for op, c in ops.items() if "transpose" in op.lower()),
        "op_types": dict(sorted(ops.items())),
    }
