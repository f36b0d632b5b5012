"""The tables of one run: per workload, each configuration's images/s, its paired speedup over
the reference, efficiency, compile time, rounds and graph layout (Markdown, or aligned text for a
live `pytest bench/` session)."""

from __future__ import annotations

import textwrap

from blocks.measure import record, runs
from blocks.measure.workload import REFERENCE


def _speedup(row: record.Row) -> str:
    """The paired speedup, its interval (or provisional, with its rounds), and the reference's
    img/s in those same rounds (the reference's own row may come from other rounds)."""
    if row.speedup_vs_reference is None:
        return "-"
    text = row.speedup_text()
    ref = row.reference_images_per_sec
    return text + (f" vs {ref:,.1f}" if ref is not None else "")


def busy_lines(rows) -> list:
    """One line per benchmark measured while other processes took more of the machine than the
    threshold: its figures are unreliable."""
    out = []
    for row in rows:
        load = row.load or {}
        if load.get("busy"):
            out.append(f"BUSY MACHINE during {row.label}: {load['text']}; figures unreliable")
    return out


def _layout(row: record.Row) -> str:
    """The audit in a few characters: transposes, fused/all convs, XLA clusters."""
    layout = row.layout
    if row.config.execution == "xla":
        return "XLA step"
    if not layout:
        return "-"
    if "engine" in layout:  # a serving engine's own ops
        return f"{layout['ops']} ops, {layout['convs']} conv, T{layout['transposes']}"
    convs = layout["fused_convs"] + layout["unfused_convs"]
    text = f"T{layout['transposes']} F{layout['fused_convs']}/{convs}"
    return text + (f" X{layout['xla_clusters']}" if layout.get("xla_clusters") else "")


HEADER = ["configuration", "img/s", "IQR img/s", "speedup (95% CI)", "eff.", "compile s", "rounds"]
LEGEND = (
    f"speedup: over {REFERENCE.label}, from rounds interleaved with it in the same "
    "benchmark (Hodges-Lehmann estimate of the per-round ratios, Wilcoxon 95% CI), vs the "
    "reference's img/s in those rounds; eff.: GFLOP/s "
    "over the run's matmul ceiling; layout: T = Transpose ops, F = fused/all Conv2D ops, X = XLA "
    "clusters in the graph TF ran, or for a serving engine the ops (and convolutions) it runs; "
    "scaling (under a strategy): throughput with N replicas / (N x "
    "one replica's at the per-replica batch), from paired rounds"
)


def _scaling(row: record.Row) -> str:
    """Scaling efficiency: N replicas' throughput over N x one replica's, with its 95% CI."""
    if row.scaling_efficiency is None:
        return "-"
    ci = row.scaling_ci
    return f"{row.scaling_efficiency:.2f}" + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else "")


def _cells(row: record.Row) -> list:
    med, lo, hi = row.throughput()
    eff = row.efficiency
    return [
        row.label,
        f"{med:,.1f}",
        f"{lo:,.1f}-{hi:,.1f}",
        _speedup(row),
        f"{100 * eff:.0f}%" if eff is not None else "-",
        f"{row.compile_s:.1f}",
        str(row.rounds),
    ]


def single(run: record.Run) -> list:
    """Markdown lines: one run's table per workload, its configurations not run, the legend."""
    parts = [f"{run.machine}, {run.versions}\n"]
    for group, members in runs.groups(run.rows).items():
        ceiling = members[0].ceiling_gflops_per_sec
        note = f" (matmul ceiling {ceiling:.0f} GFLOP/s)" if ceiling else ""
        parts.append(f"**{group}**{note}\n")
        scaled = any(r.scaling_efficiency is not None for r in members)
        header = HEADER + (["scaling (95% CI)"] if scaled else []) + ["layout"]
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for r in members:
            cells = _cells(r) + ([_scaling(r)] if scaled else []) + [_layout(r)]
            parts.append("| " + " | ".join(cells) + " |")
        for n in run.not_run(group):
            parts.append(f"\nnot run: {runs.not_run_line(n)}")
        for line in busy_lines(members):
            parts.append(f"\n{line}")
        parts.append("")
    parts.append(LEGEND + "\n")
    return parts


def text_tables(rows, width: int = 100) -> list:
    """A live session's tables as aligned text lines, no wider than `width` (`rows`: its
    pytest-benchmark entries; the matmul ceilings' are left out)."""
    rows = [record.Row.from_json(r) for r in rows if record.is_row(r)]
    lines = []
    for group, members in runs.groups(rows).items():
        lines.append(group[:width])
        table = [HEADER] + [_cells(r) for r in members]
        widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
        for row in table:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
            lines.append(("  " + "  ".join(cells))[:width])
        for line in busy_lines(members):
            lines.extend(textwrap.wrap(line, width))
        lines.append("")
    if lines:
        lines.extend(textwrap.wrap(LEGEND, width))
    return lines
