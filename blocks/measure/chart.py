"""The chart of benchmark runs (PNG)."""

from __future__ import annotations

import io
import os
import textwrap

from blocks.causes import shorten
from blocks.fileio import atomic_write, check_replaceable
from blocks.measure import changes, runs
from blocks.measure.workload import REFERENCE

CHART_TITLE = "resnet-blocks benchmark report"  # in the PNG's metadata: a chart of ours
CHART_EXPECTED = "a resnet-blocks chart (a PNG it wrote)"


def _is_chart(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)  # matplotlib writes its text chunks before the image data
    except OSError:
        return False
    return head.startswith(b"\x89PNG\r\n\x1a\n") and CHART_TITLE.encode() in head


def check_chart_path(path) -> None:
    """Refuse a chart path holding anything but a chart of ours (a directory, another file)."""
    check_replaceable(path, "the chart", CHART_EXPECTED, _is_chart)


def default_chart_path(paths) -> str:
    first = os.fspath(paths[0] if isinstance(paths, (list, tuple)) else paths)
    if os.path.isdir(first):
        return os.path.join(first, "report.png")
    return os.path.splitext(first)[0] + ".png"


def plot(all_runs: list, path) -> str:
    """A PNG bar chart: per workload, images/s of each configuration (values on the bars; the
    reference marked), one bar per run where there are several; CPU and versions in the titles;
    configurations that could not run listed under the chart."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError(f"The chart needs matplotlib ({e}): pip install matplotlib") from e
    check_chart_path(path)
    panels = []  # (title, [(label, [values per run]), ...], run labels, not run lines)
    for machine, machine_runs in runs.by_machine(all_runs).items():
        for group, configs in runs.across(machine_runs).items():
            not_run = runs.not_run_lines(machine_runs, group)
            versions = ", ".join(r.versions for r in machine_runs)
            title = "\n".join([group, *textwrap.wrap(f"{machine}; {versions}", 110)])
            panels.append((title, configs, machine_runs, not_run))
    if not panels:
        raise ValueError("No model benchmarks in the results: nothing to plot.")
    # Inches: the bars, plus room under the axes for the x label and the not-run lines.
    bars_in = [0.6 + 0.22 * len(c) * len(rs) for _, c, rs, _ in panels]
    under_in = [0.7 + 0.13 * len(n) for *_, n in panels]
    heights = [b + u + 0.5 for b, u in zip(bars_in, under_in)]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(10, sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    colors = ["#3b75af", "#e1812c", "#3a923a", "#c03d3e", "#9372b2", "#845b53", "#d684bd"]
    for ax, (title, configs, machine_runs, not_run) in zip(axes[:, 0], panels):
        labels = list(configs)[::-1]
        n = len(machine_runs)
        bar = 0.8 / n
        for j, run in enumerate(machine_runs):
            ys = [i + (j - (n - 1) / 2) * bar for i in range(len(labels))]
            rows = [configs[lb].get(j) for lb in labels]
            values = [r.throughput()[0] if r else 0 for r in rows]
            scaling = [r.scaling_efficiency if r else None for r in rows]
            shades = [
                "#999999" if lb == REFERENCE.label and n == 1 else colors[j % len(colors)]
                for lb in labels
            ]
            bars = ax.barh(ys, values, height=bar, color=shades, label=changes.column(run))
            for b, v, sc in zip(bars, values, scaling):
                if v:
                    text = f" {v:,.1f}" + (f"  (scaling {sc:.2f})" if sc is not None else "")
                    ax.text(v, b.get_y() + b.get_height() / 2, text, va="center", fontsize=7)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(
            [f"{lb}  (reference)" if lb == REFERENCE.label else lb for lb in labels], fontsize=7
        )
        ax.set_title(title, fontsize=8, loc="left")
        ax.set_xlabel("images / s (median)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.margins(x=0.15)
        if n > 1:
            ax.legend(fontsize=7, loc="lower right")
        else:
            from matplotlib.patches import Patch

            ax.legend(
                handles=[
                    Patch(color="#999999", label=f"reference: {REFERENCE.label}"),
                    Patch(color=colors[0], label="configuration"),
                ],
                fontsize=7,
                loc="lower right",
            )
        if not_run:
            text = "\n".join(shorten(f"not run: {line}", 150) for line in not_run)
            # Below the x label, in points from the axes' bottom edge, whatever the panel height.
            ax.annotate(
                text,
                (0, 0),
                xycoords="axes fraction",
                xytext=(0, -30),
                textcoords="offset points",
                fontsize=6,
                va="top",
            )
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110, metadata={"Title": CHART_TITLE})
    plt.close(fig)
    atomic_write(path, lambda f: f.write(png.getvalue()), "the chart")
    return os.fspath(path)
