"""Print docs/results.md: the tables of every committed benchmark run under bench/results/.

    python bench/results_docs.py > docs/results.md

The tables are what `python -m blocks report` prints for the same files, so a number in the
docs is always its file's; tests/test_docs.py checks the committed page against this output.
"""

from __future__ import annotations

import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from anywhere: the blocks of this checkout
    sys.path.insert(0, ROOT)

from blocks.measure import report  # noqa: E402

RESULTS = os.path.join(ROOT, "bench", "results")
DOCS = os.path.join(ROOT, "docs")
COMMAND = "python bench/results_docs.py > docs/results.md"
# Each purpose's directory (see docs/contributing.md): its title and the page that discusses it.
PURPOSES = {
    "versions": ("Across TensorFlow versions", "tf-versions.md"),
    "engines": ("Serving engines", "serving.md"),
    "strategies": ("Distribution strategies", "distributed.md"),
    "precision": ("Precision (dtype policies)", "measuring.md#precision"),
}
INTRO = f"""# Results: the committed benchmark runs

Generated from the runs under `bench/results/` by

```bash
{COMMAND}
```

so do not edit it by hand: record a run (`pytest bench/`, [measuring.md](measuring.md#benchmarks)),
commit it under `bench/results/<purpose>/`, and run the command again. The tables are those of
`python -m blocks report` on the same files. Runs of different machines are never averaged; a
figure holds for the machine, TensorFlow and Keras its run names.
"""


def _link(path: str) -> str:
    """A Markdown link from docs/ to a file of the repository, named by its path."""
    rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
    return f"[`{rel}`](../{rel})"


def _chart(path: str) -> str:
    png = os.path.splitext(path)[0] + ".png"
    return f", chart {_link(png)}" if os.path.exists(png) else ""


def run_line(run) -> str:
    """One run's file and what its header says it ran on."""
    header = run.header
    machine = header.get("machine", {})
    cores = machine.get("cores")
    cpu = f"{machine.get('cpu', 'unknown CPU')} ({machine.get('simd', '?')}"
    cpu += f", {cores} cores)" if cores else ")"
    return (
        f"- {_link(run.path)}{_chart(run.path)}: {cpu}, TF {header.get('tf', '?')}, "
        f"Keras {header.get('keras', '?')}, recorded {header.get('recorded', '?')}"
    )


def purpose_section(directory: str) -> list:
    """A purpose's runs: their files, then their tables (several runs: side by side, then each
    run's own)."""
    name = os.path.basename(directory)
    title, page = PURPOSES.get(name, (name, None))
    runs = report.load_runs([directory])
    lines = [f"## {title}", ""]
    if page:
        lines += [f"Discussed in [{page}]({page}).", ""]
    lines += [run_line(run) for run in runs]
    chart = os.path.join(directory, "report.png")
    if os.path.exists(chart):
        lines.append(f"- side by side: chart {_link(chart)}")
    lines += ["", report.markdown(runs)]
    if len(runs) > 1:
        for run in runs:
            lines += [f"### {run.versions}", "", _link(run.path), "", report.markdown([run])]
    return lines


def other_files() -> list:
    """The recorders' files and the kept picks: not benchmark runs, so linked, not tabulated."""
    files = sorted(glob.glob(os.path.join(RESULTS, "*.json")))
    files += sorted(glob.glob(os.path.join(RESULTS, "picks", "*.txt")))
    if not files:
        return []
    lines = [
        "## Other recordings",
        "",
        "Recorded by `bench/record_busy.py`, `bench/record_coresidency.py` and `python -m blocks "
        "pick`, and read in [measuring.md](measuring.md):",
        "",
    ]
    return lines + [f"- {_link(f)}" for f in files] + [""]


def purposes() -> list:
    """The directories of committed runs, those of `PURPOSES` first in its order."""
    found = [os.path.dirname(d) for d in glob.glob(os.path.join(RESULTS, "*", ""))]
    found = [d for d in found if glob.glob(os.path.join(d, "*.json"))]
    order = list(PURPOSES)

    def key(d):
        name = os.path.basename(d)
        return (order.index(name) if name in order else len(order), name)

    return sorted(found, key=key)


def page() -> str:
    lines = [INTRO]
    for directory in purposes():
        lines += purpose_section(directory)
    lines += other_files()
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    sys.stdout.write(page())


if __name__ == "__main__":
    main()
