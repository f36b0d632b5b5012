"""Reading benchmark runs: tables and charts of one run, or of several (one column per TF version).

Works on pytest-benchmark's JSON (`pytest bench/ --benchmark-json=FILE`, or `--benchmark-autosave`)
as `pytest bench/` writes it: each benchmark's `extra_info` holds its workload, configuration,
images/s, the speedup over the reference from paired rounds, and the per-round times; the run's
`resnet_blocks` header holds the machine, versions, ceilings and the configurations that could not
run. Runs of different processes are not interleaved, so comparisons across runs are also shown
normalised by each run's matmul ceiling, and a change is flagged only where it exceeds both runs'
spread raw and normalised. Runs of different machines are reported apart, never averaged.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import io
import json
import os
import platform
import re
import textwrap
from collections import OrderedDict
from typing import Optional

from blocks import cpu
from blocks.causes import shorten
from blocks.fileio import atomic_write, check_replaceable

REFERENCE_LABEL = "subclassed · graph · default"


def run_header(not_run=(), ceilings=None) -> dict:
    """What a benchmark run records about itself (see bench/conftest.py)."""
    from blocks import _compat

    return {
        "machine": cpu.describe(),
        "tf": _compat.TF_VERSION,
        "keras": _compat.KERAS_VERSION,
        "python": platform.python_version(),
        "onednn_default": cpu.onednn_on_by_default(),
        "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ceilings": ceilings or {},
        "not_run": list(not_run),
    }


RUN_EXPECTED = "a benchmark run of resnet-blocks (JSON with a 'resnet_blocks' header)"
CHART_TITLE = "resnet-blocks benchmark report"  # in the PNG's metadata: a chart of ours
CHART_EXPECTED = "a resnet-blocks chart (a PNG it wrote)"


def _is_run(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("resnet_blocks"), dict)


def _is_chart(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)  # matplotlib writes its text chunks before the image data
    except OSError:
        return False
    return head.startswith(b"\x89PNG\r\n\x1a\n") and CHART_TITLE.encode() in head


def check_run_path(path) -> None:
    """Refuse a path where a run cannot be written without replacing what is not one (see
    `fileio.check_replaceable`): a directory, or a file other than an earlier run."""
    check_replaceable(path, "a benchmark run", RUN_EXPECTED, _is_run)


def check_chart_path(path) -> None:
    """Refuse a chart path holding anything but a chart of ours (a directory, another file)."""
    check_replaceable(path, "the chart", CHART_EXPECTED, _is_chart)


def write_json(path, data: dict) -> None:
    """Write `data` to `path` atomically: a temporary file, flushed, then renamed over it, so a
    crash mid-write leaves the old file or the new one, never half of one. Only an earlier run
    is replaced (`check_run_path`). (Objects JSON does not know, such as a benchmark's
    parameters, are written as their text.)"""
    check_run_path(path)
    text = (json.dumps(data, indent=1, default=str) + "\n").encode("utf-8")
    atomic_write(path, lambda f: f.write(text), "a benchmark run")


def run_file_name(header: dict) -> str:
    """A run's file name: the machine, then the TF and Keras versions it ran."""
    machine = header.get("machine", {})
    cpu_name = "-".join(
        "".join(c if c.isalnum() else " " for c in machine.get("cpu", "cpu")).split()
    )
    return f"{cpu_name.lower()}-tf{header.get('tf')}-keras{header.get('keras')}.json"


@dataclasses.dataclass
class Run:
    path: str
    header: dict
    rows: list  # benchmark dicts of configurations (extra_info has "config")

    @property
    def machine(self) -> str:
        m = self.header.get("machine", {})
        return f"{m.get('cpu', 'unknown CPU')} ({m.get('simd', '?')})"

    @property
    def version(self) -> str:
        return f"TF {self.header.get('tf', '?')} / Keras {self.header.get('keras', '?')}"

    @property
    def tf_tuple(self) -> tuple:
        """The run's TF version as numbers, for sorting (read without importing TensorFlow)."""
        return tuple(int(p) for p in re.findall(r"\d+", str(self.header.get("tf", "0")))[:3])

    def groups(self) -> "OrderedDict[str, list]":
        """Configuration rows by workload group, fastest first."""
        out: OrderedDict = OrderedDict()
        for row in self.rows:
            out.setdefault(row["group"], []).append(row)
        for members in out.values():
            members.sort(key=lambda r: -r["extra_info"]["images_per_sec"])
        return out

    def not_run(self, group: str) -> list:
        return [n for n in self.header.get("not_run", []) if n.get("group") == group]


def _invalid(path, why: str) -> ValueError:
    return ValueError(
        f"Invalid results file {os.fspath(path)!r}: {why}; expected the output of "
        "pytest bench/ --benchmark-json=FILE."
    )


def load(path) -> Run:
    """One run from a pytest-benchmark JSON file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(path, "*.json")))
        which = f"one of the run files in it, e.g. {found[0]!r}" if found else "a run file"
        raise ValueError(
            f"{path!r} is a directory; give {which} (written by pytest bench/ "
            "--benchmark-json=FILE)."
        )
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"No benchmark results at {path!r}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _invalid(path, f"not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise _invalid(path, "no 'benchmarks' list")
    rows = [
        b
        for b in data["benchmarks"]
        if isinstance(b, dict) and "config" in b.get("extra_info", {}) and b.get("stats")
    ]
    header = data.get("resnet_blocks") or {}
    if not rows and not header:
        raise _invalid(path, "no ResNet benchmarks of this project in it")
    return Run(path, header, rows)


def load_runs(paths) -> list:
    """Runs from files, or from every *.json file in each directory given."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            found = sorted(glob.glob(os.path.join(p, "*.json")))
            if not found:
                raise ValueError(f"{p!r} is a directory with no .json benchmark runs in it.")
            files.extend(found)
        else:
            files.append(p)
    runs = [load(f) for f in files]
    return sorted(runs, key=lambda r: (r.machine, r.tf_tuple, r.header.get("keras", "")))


def default_chart_path(paths) -> str:
    first = os.fspath(paths[0] if isinstance(paths, (list, tuple)) else paths)
    if os.path.isdir(first):
        return os.path.join(first, "report.png")
    return os.path.splitext(first)[0] + ".png"


# --- one run ------------------------------------------------------------------------------------


def images_per_sec(row) -> tuple:
    """(median, q1, q3) in images/s: the time quartiles turned into throughput."""
    s, info = row["stats"], row["extra_info"]
    images = info["workload"]["batch_size"] * info["config"].get("replicas", 1)
    return images / s["median"], images / s["q3"], images / s["q1"]


def _speedup(row) -> str:
    """The paired speedup, its interval (or provisional, with its rounds), and the reference's
    img/s in those same rounds (the reference's own row may come from other rounds)."""
    info = row["extra_info"]
    if info.get("speedup_vs_reference") is None:
        return "-"
    text = f"{info['speedup_vs_reference']:.2f}x"
    ci = info.get("speedup_ci")
    if ci:
        text += f" ({ci[0]:.2f}-{ci[1]:.2f})"
    else:
        n = row["stats"]["rounds"]  # each round paired with the reference's
        text += f" provisional ({n} round{'s' if n != 1 else ''})"
    ref = info.get("reference_images_per_sec")
    return text + (f" vs {ref:,.1f}" if ref is not None else "")


def busy_lines(rows) -> list:
    """One line per benchmark measured while other processes took more of the machine than the
    threshold: its figures are unreliable."""
    out = []
    for row in rows:
        load = row["extra_info"].get("load") or {}
        if load.get("busy"):
            out.append(
                f"BUSY MACHINE during {row['extra_info']['label']}: {load['text']}; "
                "figures unreliable"
            )
    return out


def _layout(info) -> str:
    """The audit in a few characters: transposes, fused/all convs, XLA clusters."""
    layout = info.get("layout")
    if info["config"]["execution"] == "xla":
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
    "speedup: over subclassed · graph · default, from rounds interleaved with it in the same "
    "benchmark (Hodges-Lehmann estimate of the per-round ratios, Wilcoxon 95% CI), vs the "
    "reference's img/s in those rounds; eff.: GFLOP/s "
    "over the run's matmul ceiling; layout: T = Transpose ops, F = fused/all Conv2D ops, X = XLA "
    "clusters in the graph TF ran, or for a serving engine the ops (and convolutions) it runs; "
    "scaling (under a strategy): throughput with N replicas / (N x "
    "one replica's at the per-replica batch), from paired rounds"
)


def _scaling(info) -> str:
    """Scaling efficiency: N replicas' throughput over N x one replica's, with its 95% CI."""
    eff = info.get("scaling_efficiency")
    if eff is None:
        return "-"
    ci = info.get("scaling_ci")
    return f"{eff:.2f}" + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else "")


def _not_run_line(n) -> str:
    reason = n["reason"]
    return reason if reason.startswith(n["label"]) else f"{n['label']}: {reason}"


def _cells(row) -> list:
    info = row["extra_info"]
    med, lo, hi = images_per_sec(row)
    eff = info.get("efficiency")
    return [
        info["label"],
        f"{med:,.1f}",
        f"{lo:,.1f}-{hi:,.1f}",
        _speedup(row),
        f"{100 * eff:.0f}%" if eff is not None else "-",
        f"{info['compile_s']:.1f}",
        str(row["stats"]["rounds"]),
    ]


def _single(run: Run) -> list:
    parts = [f"{run.machine}, {run.version}\n"]
    for group, members in run.groups().items():
        ceiling = members[0]["extra_info"].get("ceiling_gflops_per_sec")
        note = f" (matmul ceiling {ceiling:.0f} GFLOP/s)" if ceiling else ""
        parts.append(f"**{group}**{note}\n")
        scaled = any("scaling_efficiency" in r["extra_info"] for r in members)
        header = HEADER + (["scaling (95% CI)"] if scaled else []) + ["layout"]
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for r in members:
            info = r["extra_info"]
            cells = _cells(r) + ([_scaling(info)] if scaled else []) + [_layout(info)]
            parts.append("| " + " | ".join(cells) + " |")
        for n in run.not_run(group):
            parts.append(f"\nnot run: {_not_run_line(n)}")
        for line in busy_lines(members):
            parts.append(f"\n{line}")
        parts.append("")
    parts.append(LEGEND + "\n")
    return parts


def text_tables(rows, width: int = 100) -> list:
    """A live session's tables as aligned text lines, no wider than `width`."""
    run = Run("", {}, [r for r in rows if "config" in r.get("extra_info", {})])
    lines = []
    for group, members in run.groups().items():
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


# --- several runs: one column per TF version ----------------------------------------------------


def _spread(row) -> float:
    """Relative spread of a row's throughput: IQR / median."""
    med, lo, hi = images_per_sec(row)
    return (hi - lo) / med


def _norm(row) -> Optional[float]:
    ceiling = row["extra_info"].get("ceiling_gflops_per_sec")
    return None if not ceiling else images_per_sec(row)[0] / ceiling


def compare(base: dict, other: dict) -> dict:
    """How `other` (a row of another run) differs from `base`: raw and ceiling-normalised ratios,
    and whether the change is real: beyond both runs' spread, raw and normalised alike."""
    raw = images_per_sec(other)[0] / images_per_sec(base)[0]
    nb, no = _norm(base), _norm(other)
    normalised = None if nb is None or no is None else no / nb
    noise = max(_spread(base), _spread(other))
    real = abs(raw - 1) > noise and (
        normalised is None or (abs(normalised - 1) > noise and (normalised > 1) == (raw > 1))
    )
    return {"raw": raw, "normalised": normalised, "noise": noise, "real": real}


def by_machine(runs: list) -> "OrderedDict[str, list]":
    out: OrderedDict = OrderedDict()
    for run in runs:
        out.setdefault(run.machine, []).append(run)
    return out


def _column(run: Run) -> str:
    keras = run.header.get("keras", "?").split(".")[0]
    return f"TF {run.header.get('tf', '?')} K{keras}"


def _across(runs: list, baseline: Optional[str]) -> list:
    if baseline is not None:
        base = next((r for r in runs if r.header.get("tf", "").startswith(baseline)), None)
        if base is None:
            raise ValueError(
                f"Unknown baseline. Expected one of {[r.header.get('tf') for r in runs]}; "
                f"Received: baseline={baseline!r}"
            )
    else:
        base = runs[0]
    parts = [
        f"{runs[0].machine}: images/s [normalised by the run's matmul ceiling, img/s per GFLOP/s]"
        f", and the ratio to {_column(base)}; ! marks a change beyond both runs' spread, raw and "
        "normalised\n"
    ]
    groups: OrderedDict = OrderedDict()
    for i, run in enumerate(runs):
        for group, members in run.groups().items():
            for row in members:
                groups.setdefault(group, OrderedDict()).setdefault(row["extra_info"]["label"], {})[
                    i
                ] = row
    for group, configs in groups.items():
        parts.append(f"**{group}**\n")
        parts.append("| configuration | " + " | ".join(_column(r) for r in runs) + " |")
        parts.append("|---|" + "---:|" * len(runs))
        for label, cells in configs.items():
            base_row = cells.get(runs.index(base))
            out = []
            for i in range(len(runs)):
                row = cells.get(i)
                if row is None:
                    out.append("-")
                    continue
                med = images_per_sec(row)[0]
                norm = _norm(row)
                text = f"{med:,.1f}" + (f" [{norm:.2f}]" if norm is not None else "")
                if base_row is not None and row is not base_row:
                    c = compare(base_row, row)
                    text += f" {c['raw']:.2f}x" + ("!" if c["real"] else "")
                out.append(text)
            parts.append(f"| {label} | " + " | ".join(out) + " |")
        parts.append("")
    return parts


def markdown(runs: list, baseline: Optional[str] = None) -> str:
    """Markdown: one run's tables per workload, or (several runs) one table per workload with a
    column per TF version, for each machine apart."""
    if not runs:
        raise ValueError("No benchmark runs to report.")
    parts = []
    machines = by_machine(runs)
    if len(machines) > 1:
        parts.append(
            f"Runs from {len(machines)} machines, reported apart (never averaged): "
            + "; ".join(f"{m} ({len(rs)} runs)" for m, rs in machines.items())
            + "\n"
        )
    for machine_runs in machines.values():
        if len(machine_runs) == 1:
            parts.extend(_single(machine_runs[0]))
        else:
            parts.extend(_across(machine_runs, baseline))
    return "\n".join(parts)


# --- charts ---------------------------------------------------------------------------------------


def plot(runs: list, path) -> str:
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
    for machine, machine_runs in by_machine(runs).items():
        groups: OrderedDict = OrderedDict()
        for i, run in enumerate(machine_runs):
            for group, members in run.groups().items():
                for row in members:
                    label = row["extra_info"]["label"]
                    groups.setdefault(group, OrderedDict()).setdefault(label, {})[i] = row
        for group, configs in groups.items():
            # One line per configuration and reason, however many runs list it.
            not_run = list(
                OrderedDict(
                    (_not_run_line(n), None) for run in machine_runs for n in run.not_run(group)
                )
            )
            versions = ", ".join(r.version for r in machine_runs)
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
            values = [images_per_sec(r)[0] if r else 0 for r in rows]
            scaling = [r["extra_info"].get("scaling_efficiency") if r else None for r in rows]
            shades = [
                "#999999" if lb == REFERENCE_LABEL and n == 1 else colors[j % len(colors)]
                for lb in labels
            ]
            bars = ax.barh(ys, values, height=bar, color=shades, label=_column(run))
            for b, v, sc in zip(bars, values, scaling):
                if v:
                    text = f" {v:,.1f}" + (f"  (scaling {sc:.2f})" if sc is not None else "")
                    ax.text(v, b.get_y() + b.get_height() / 2, text, va="center", fontsize=7)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(
            [f"{lb}  (reference)" if lb == REFERENCE_LABEL else lb for lb in labels], fontsize=7
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
                    Patch(color="#999999", label=f"reference: {REFERENCE_LABEL}"),
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
