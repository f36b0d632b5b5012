"""The chart of benchmark runs (PNG), written only to a new path.

Several runs of one machine: one panel per workload, a heatmap of configurations x versions, each
cell the ratio of its images/s to the baseline run's (the baseline's own column gives its images/s),
a change beyond both runs' spread framed and marked `!` (`changes.compare`). One run: one panel per
workload, each configuration's paired speedup over the reference with its 95% interval, and its
images/s beside it. Configurations that could not run are listed under their panel.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import textwrap
from typing import Optional

from blocks.measure import changes, record, runs
from blocks.measure.workload import REFERENCE

CHART_TITLE = "resnet-blocks benchmark report"  # in the PNG's metadata
CHART_EXPECTED = "a new path (the chart never replaces a file)"
HEATMAP_KEY = (
    "Each cell: the configuration's images/s over the baseline run's (blue faster, red slower; "
    "the baseline's column gives its images/s); ! and a frame: a change beyond both runs' "
    "spread, raw and normalised by each run's matmul ceiling."
)
NBSP = "\u00a0"  # joins the words of a version name, which a title never wraps inside


def check_chart_path(path) -> None:
    """Refuse a path where the chart cannot be written as a new file, in one line.

    Raises:
        IsADirectoryError / FileExistsError / FileNotFoundError: nothing at `path` is changed.
    """
    path = os.fspath(path)
    where = f"Cannot write the chart to {path!r}"
    if os.path.isdir(path):
        raise IsADirectoryError(f"{where}: it is a directory; expected {CHART_EXPECTED}.")
    if os.path.lexists(path):
        raise FileExistsError(
            f"{where}: it exists; expected {CHART_EXPECTED}: remove it or choose another path. "
            "Nothing was changed."
        )
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{where}: there is no directory {parent!r}.")


@dataclasses.dataclass
class _Heatmap:
    title: str
    labels: list  # configurations, top to bottom
    columns: list  # one per run
    base: int  # the baseline run's column
    cells: list  # per label, per run: Row or None
    not_run: list

    @property
    def size(self) -> tuple:
        return 2.4 + 0.85 * len(self.columns), 1.3 + 0.3 * len(self.labels)


@dataclasses.dataclass
class _Bars:
    title: str
    rows: list  # Rows, fastest first
    not_run: list

    @property
    def size(self) -> tuple:
        return 10.0, 1.2 + 0.3 * len(self.rows)


def _panels(all_runs: list, baseline: Optional[str]) -> tuple:
    """(the figure's title, its panels): per machine, per workload."""
    machines = runs.by_machine(all_runs)
    titles, panels = [], []
    for machine, machine_runs in machines.items():
        versions = ", ".join(r.versions.replace(" ", NBSP) for r in machine_runs)
        titles.append(f"{machine}: {versions}.")
        prefix = f"{machine}\n" if len(machines) > 1 else ""
        if len(machine_runs) == 1:
            run = machine_runs[0]
            for group, members in runs.groups(run.rows).items():
                panels.append(_Bars(prefix + group, members, runs.not_run_lines([run], group)))
            continue
        base = changes.baseline_index(machine_runs, baseline)
        columns = [changes.column(r) for r in machine_runs]
        for group, configs in runs.across(machine_runs).items():
            cells = [
                [by_run.get(i) for i in range(len(machine_runs))] for by_run in configs.values()
            ]
            not_run = runs.not_run_lines(machine_runs, group)
            panels.append(_Heatmap(prefix + group, list(configs), columns, base, cells, not_run))
    if not panels:
        raise ValueError("No model benchmarks in the results: nothing to plot.")
    return "; ".join(titles), panels


def _label(label: str) -> str:
    return f"{label}  (reference)" if label == REFERENCE.label else label


def _footnote(text: str, not_run: list, width: int) -> str:
    """An axis label with the configurations not run under it, wrapped (never cut)."""
    lines = [text] if text else []
    for line in not_run:
        lines.extend(textwrap.wrap(f"not run: {line}", width, subsequent_indent="    "))
    return "\n".join(lines)


def _draw_heatmap(ax, panel: _Heatmap) -> None:
    import numpy as np

    ratios = np.full((len(panel.labels), len(panel.columns)), np.nan)
    for i, cells in enumerate(panel.cells):
        base = cells[panel.base]
        for j, row in enumerate(cells):
            if row is None:
                ax.text(j, i, "-", ha="center", va="center", fontsize=7, color="#777777")
                continue
            if j == panel.base or base is None:
                text = f"{row.throughput()[0]:,.1f}/s" if j == panel.base else "no base"
                ax.text(j, i, text, ha="center", va="center", fontsize=7)
                continue
            c = changes.compare(base, row)
            ratios[i, j] = math.log2(c["raw"])
            _cell(ax, i, j, c)
    ax.imshow(ratios, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(panel.columns)))
    ax.set_xticklabels(
        [f"{c}\n(baseline)" if j == panel.base else c for j, c in enumerate(panel.columns)],
        fontsize=7,
    )
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(panel.labels)))
    ax.set_yticklabels([_label(lb) for lb in panel.labels], fontsize=7)
    ax.tick_params(length=0)
    ax.set_title(panel.title, fontsize=8, loc="left")
    ax.set_xlabel(_footnote("", panel.not_run, 95), fontsize=6, loc="left")


def _cell(ax, i: int, j: int, c: dict) -> None:
    """One ratio: its value, dark text on light cells, light on dark; a real change framed."""
    from matplotlib.patches import Rectangle

    strong = abs(math.log2(c["raw"])) > 0.6
    color = "white" if strong else "black"
    ratio = c["raw"]
    text = (f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x") + ("!" if c["real"] else "")
    weight = "bold" if c["real"] else "normal"
    ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color, weight=weight)
    if c["real"]:
        ax.add_patch(Rectangle((j - 0.47, i - 0.45), 0.94, 0.9, fill=False, lw=1.2, ec="black"))


def _bar_text(row: record.Row) -> str:
    text = f" {row.speedup_text()} · {row.throughput()[0]:,.1f} img/s"
    if row.scaling_efficiency is not None:
        text += f" · scaling {row.scaling_efficiency:.2f}"
    return text


_UNDER = {"facecolor": "white", "edgecolor": "none", "pad": 0.5}  # hides the line behind a text


def _draw_bars(ax, panel: _Bars) -> None:
    rows = panel.rows[::-1]  # the fastest at the top
    ys = range(len(rows))
    mids = [r.speedup_vs_reference or 0.0 for r in rows]
    lows = [m - (r.speedup_ci or [m, m])[0] for m, r in zip(mids, rows)]
    highs = [(r.speedup_ci or [m, m])[1] - m for m, r in zip(mids, rows)]
    shades = ["#999999" if r.label == REFERENCE.label else "#3b75af" for r in rows]
    ax.barh(ys, mids, height=0.6, color=shades, xerr=[lows, highs], capsize=2, ecolor="black")
    for y, m, h, r in zip(ys, mids, highs, rows):
        if r.speedup_vs_reference is None:
            text = f" no paired speedup · {r.throughput()[0]:,.1f} img/s"
            ax.text(0, y, text, va="center", fontsize=7, bbox=_UNDER)
        else:
            ax.text(m + h, y, _bar_text(r), va="center", fontsize=7, bbox=_UNDER)
    ax.axvline(1.0, color="black", lw=0.8, ls="--", zorder=0)
    ax.set_xlim(0, max(m + h for m, h in zip(mids, highs)) * 1.6)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([_label(r.label) for r in rows], fontsize=7)
    ax.set_title(panel.title, fontsize=8, loc="left")
    ax.tick_params(axis="x", labelsize=7)
    text = (
        f"speedup over {REFERENCE.label} (dashed line), from paired rounds: bar the estimate, "
        "whisker the 95% interval; then the configuration's images/s"
    )
    ax.set_xlabel(_footnote(text, panel.not_run, 150), fontsize=6, loc="left")


def _figure(plt, title: str, panels: list):
    """The panels in a grid: heatmaps two to a row, bar panels one to a row."""
    ncols = 2 if all(isinstance(p, _Heatmap) for p in panels) and len(panels) > 1 else 1
    grid = [panels[i : i + ncols] for i in range(0, len(panels), ncols)]
    width = max(sum(p.size[0] for p in row) for row in grid)
    heights = [max(p.size[1] + 0.12 * len(p.not_run) for p in row) for row in grid]
    fig = plt.figure(figsize=(width, sum(heights) + 0.6), layout="constrained")
    specs = fig.add_gridspec(len(grid), ncols, height_ratios=heights)
    for r, row in enumerate(grid):
        for c, panel in enumerate(row):
            ax = fig.add_subplot(specs[r, c] if len(row) == ncols else specs[r, :])
            (_draw_heatmap if isinstance(panel, _Heatmap) else _draw_bars)(ax, panel)
    lines = textwrap.wrap(title, int(width * 13))
    if any(isinstance(p, _Heatmap) for p in panels):
        lines += textwrap.wrap(HEATMAP_KEY, int(width * 13))
    fig.suptitle("\n".join(lines), fontsize=8, x=0.01, ha="left")
    return fig


def plot(runs: list, path, baseline: Optional[str] = None) -> str:
    """Write the chart of `runs` to `path`, a new file (`check_chart_path`); `baseline` as in
    `report.markdown`. Returns the path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError(f"The chart needs matplotlib ({e}): pip install matplotlib") from e
    check_chart_path(path)
    title, panels = _panels(runs, baseline)
    fig = _figure(plt, title, panels)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110, metadata={"Title": CHART_TITLE})
    plt.close(fig)
    try:
        with open(path, "xb") as f:  # never over a file that appeared meanwhile
            f.write(png.getvalue())
    except FileExistsError:
        check_chart_path(path)
        raise
    return os.fspath(path)
