"""Reading benchmark results: speedups within each group, tables, and a bar chart.

Works on pytest-benchmark's JSON (`--benchmark-json`, `--benchmark-autosave`) and on the live
session (the benchmarks' terminal summary), so both show the same numbers.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections import OrderedDict

REFERENCE = "subclassed"


def load(path) -> list:
    """The benchmark rows of a pytest-benchmark JSON file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"No benchmark results at {os.fspath(path)!r}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"Invalid results file {os.fspath(path)!r}: not JSON ({e}); expected the output of "
            "pytest bench/ --benchmark-json=FILE."
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ValueError(
            f"Invalid results file {os.fspath(path)!r}: no 'benchmarks' list; expected the output "
            "of pytest bench/ --benchmark-json=FILE."
        )
    return data["benchmarks"]


def _is_model_row(row) -> bool:
    info = row.get("extra_info", {})
    return "variant" in info and row.get("stats")


def groups(rows) -> "OrderedDict[str, list]":
    """Model rows by group, in first-seen order, fastest first within each group."""
    out: OrderedDict = OrderedDict()
    for row in rows:
        if _is_model_row(row):
            out.setdefault(row["group"], []).append(row)
    for members in out.values():
        members.sort(key=lambda r: r["stats"]["median"])
    return out


def annotate(rows) -> None:
    """Add `images_per_sec`, `speedup_vs_subclassed` (ratio of medians) to every model row."""
    for members in groups(rows).values():
        ref = next((r for r in members if r["extra_info"]["variant"] == REFERENCE), None)
        for r in members:
            info = r["extra_info"]
            info["images_per_sec"] = round(info["batch_size"] / r["stats"]["median"], 2)
            if ref is not None:
                info["speedup_vs_subclassed"] = round(
                    ref["stats"]["median"] / r["stats"]["median"], 3
                )


def _ips_spread(row) -> tuple:
    """(median, q1, q3) in images/s: the time quartiles turned into throughput."""
    s, batch = row["stats"], row["extra_info"]["batch_size"]
    return batch / s["median"], batch / s["q3"], batch / s["q1"]


def _cells(row) -> list:
    info = row["extra_info"]
    med, lo, hi = _ips_spread(row)
    eff = info.get("efficiency")
    return [
        info["variant"],
        f"{med:,.1f}",
        f"{lo:,.1f}-{hi:,.1f}",
        f"{info['speedup_vs_subclassed']:.2f}x" if "speedup_vs_subclassed" in info else "-",
        f"{100 * eff:.0f}%" if eff is not None else "-",
        f"{info['compile_s']:.1f}",
        str(row["stats"]["rounds"]),
        _layout(info),
    ]


def _layout(info) -> str:
    """The audit in a few characters: transposes, fused/all convs, XLA clusters."""
    if "transposes" not in info:
        return "-"
    convs = info["fused_convs"] + info["unfused_convs"]
    text = f"T{info['transposes']} F{info['fused_convs']}/{convs}"
    return text + (f" X{info['xla_clusters']}" if info.get("xla_clusters") else "")


HEADER = ["variant", "img/s", "IQR img/s", "speedup", "eff.", "compile s", "rounds", "layout"]
LEGEND = (
    "layout: T = Transpose ops, F = fused/all Conv2D ops, X = XLA clusters, in the graph TF ran "
    "after Grappler (a cluster's own ops are XLA's)"
)


def markdown(rows) -> str:
    """A Markdown table per group: variant, img/s median with IQR, speedup, efficiency, compile."""
    parts = []
    for group, members in groups(rows).items():
        ceiling = members[0]["extra_info"].get("ceiling_gflops_per_sec")
        note = f" (ceiling {ceiling:.0f} GFLOP/s)" if ceiling else ""
        parts.append(f"**{group}**{note}\n")
        parts.append("| " + " | ".join(HEADER) + " |")
        parts.append("|" + "|".join(["---"] + ["---:"] * (len(HEADER) - 1)) + "|")
        for r in members:
            parts.append("| " + " | ".join(_cells(r)) + " |")
        parts.append("")
    if parts:
        parts.append(LEGEND + "\n")
    return "\n".join(parts)


def text_tables(rows, width: int = 100) -> list:
    """The same tables as aligned text lines, no wider than `width`."""
    lines = []
    for group, members in groups(rows).items():
        lines.append(group[:width])
        table = [HEADER] + [_cells(r) for r in members]
        widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
        for row in table:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
            lines.append(("  " + "  ".join(cells))[:width])
        lines.append("")
    if lines:
        lines.extend(textwrap.wrap(LEGEND, width))
    return lines


def plot(rows, path) -> str:
    """Bar chart of img/s per group (error bars: IQR) written to `path` as PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("The chart needs matplotlib: pip install matplotlib") from e
    grouped = groups(rows)
    if not grouped:
        raise ValueError("No model benchmarks in the results: nothing to plot.")
    n = len(grouped)
    fig, axes = plt.subplots(
        n,
        1,
        figsize=(9, 1.2 + 0.45 * sum(len(m) for m in grouped.values()) + 0.6 * n),
        squeeze=False,
    )
    for ax, (group, members) in zip(axes[:, 0], grouped.items()):
        names = [r["extra_info"]["variant"] for r in members][::-1]
        spread = [_ips_spread(r) for r in members][::-1]
        med = [m for m, _, _ in spread]
        err = [[m - lo for m, lo, _ in spread], [hi - m for m, _, hi in spread]]
        colors = ["#999999" if nm == REFERENCE else "#3b75af" for nm in names]
        ax.barh(names, med, xerr=err, color=colors, capsize=3)
        ax.set_title(group, fontsize=9, loc="left")
        ax.set_xlabel("images / s (median, IQR)", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)
