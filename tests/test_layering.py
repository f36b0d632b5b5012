"""The package's import graph: library <- measuring side <- command line, no cycles.

Read from the source with `ast` (every import statement, function-level ones included), so a
cycle cannot hide behind an import inside a function.
"""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "blocks")

# The package's layers, lowest first. A module may import modules of its own layer or below.
LIBRARY, MEASURE, TOP = 0, 1, 2
# Leaves: the argument checks, the error base and the host's description import nothing from the package, nor
# TensorFlow (the command line checks its arguments before TensorFlow loads).
LEAVES = ("blocks.causes", "blocks.checks", "blocks.cpu", "blocks.errors", "blocks.fileio")


def modules() -> dict:
    """{dotted module name: path} for every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                name = os.path.relpath(path[:-3], ROOT).replace(os.sep, ".")
                found[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return found


def layer(module: str) -> int:
    if module in ("blocks", "blocks.cli", "blocks.__main__"):
        return TOP
    return MEASURE if module.startswith("blocks.measure") else LIBRARY


def imports(module: str, path: str, known: dict) -> set:
    """The package modules `module` imports (`from blocks import x` counts as blocks.x if x is a
    module, else as the facade `blocks`), and third-party top-level names prefixed with '!'."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    is_package = path.endswith("__init__.py")
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for name in names:
            if not name.startswith("blocks"):
                out.add("!" + name.split(".")[0])
                continue
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name != module:
                out.add(name)
    return out


def graph() -> dict:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def test_imports_go_one_way():
    wrong = []
    for module, targets in graph().items():
        for target in targets:
            if target.startswith("!"):
                continue
            if target == "blocks" and layer(module) < TOP:
                wrong.append(f"{module} imports the package facade `blocks`: import the module")
            elif layer(target) > layer(module):
                wrong.append(f"{module} (layer {layer(module)}) imports {target} ({layer(target)})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    edges = {m: {t for t in ts if not t.startswith("!")} for m, ts in graph().items()}
    cycles = []
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            # A package importing its own submodules (variants/__init__) is how Python packages
            # gather their parts, not a cycle of dependencies.
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_leaves_import_nothing_of_the_package_nor_tensorflow():
    g = graph()
    for leaf in LEAVES:
        assert not {t for t in g[leaf] if not t.startswith("!")}, leaf
        assert "!tensorflow" not in g[leaf] and "!keras" not in g[leaf], leaf


def test_the_graph_reader_sees_what_it_must(tmp_path):
    """The checks above are only as good as the reader: a planted upward import is seen."""
    known = modules()
    planted = tmp_path / "archs.py"
    planted.write_text(
        "def f():\n    from blocks.measure import picker\n    from . import checks\n"
    )
    found = imports("blocks.archs", str(planted), known)
    assert {"blocks.measure.picker", "blocks.checks"} <= found


@pytest.mark.parametrize(
    "code",
    [
        "import blocks",
        "import blocks.cli",
        "import blocks.checks, blocks.logs, blocks.cpu, blocks.measure.workload",
        "from blocks.cli import build_parser; build_parser().parse_args(['list'])",
    ],
)
def test_importing_the_package_does_not_load_tensorflow(code):
    probe = f"{code}; import sys; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("plant", ["", "import blocks.measure.auto; "])
def test_the_library_builds_a_model_without_the_measuring_side(plant):
    """`blocks.resnet18` with a variant named loads nothing of blocks.measure ("auto" would)."""
    probe = (
        f'import sys, blocks; {plant}blocks.resnet18("subclassed"); '
        'print(sorted(m for m in sys.modules if m.startswith("blocks.measure")))'
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = out.stdout.strip().splitlines()[-1]
    assert (loaded == "[]") == (not plant), loaded
