"""Each default of a pick is written once, in `Workload`, `SearchSpace`, `Budget` and `Accuracy`:
the command line, `blocks.pick`'s keywords and `pytest bench/`'s options read them."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import pathlib

from blocks import cli
from blocks.archs import ARCHS
from blocks.measure import picker
from blocks.measure.workload import STRATEGY_REPLICAS, Accuracy, Budget, SearchSpace, Workload

_OWN = {  # what the command line does not take, or takes under another name
    "device",
    "input_shape",
    "progress",
    "use_cache",
}


def _defaults() -> dict:
    """Every default of the three objects, by the name `blocks.pick` takes it under."""
    out = {f.name: f.default for f in dataclasses.fields(Workload) if f.name != "device"}
    out.update({f.name: f.default for f in dataclasses.fields(SearchSpace)})
    out.update({f.name: f.default for f in dataclasses.fields(Accuracy)})
    out["budget_s"] = Budget.seconds
    return out


def test_the_command_line_parses_to_the_objects_defaults():
    args = cli.build_parser().parse_args(["pick"])
    for name, default in _defaults().items():
        assert getattr(args, name) == default, name
    fields, space, accuracy = cli._pick_options(args)
    assert space == SearchSpace()
    assert accuracy == Accuracy()
    assert picker.workload_for("CPU:0", **fields) == Workload()


def test_pick_keywords_default_to_the_objects_defaults():
    signature = inspect.signature(picker.pick).parameters
    keywords = {n: p.default for n, p in signature.items() if n not in _OWN}
    assert keywords == _defaults()


def _bench_option_defaults() -> dict:
    path = pathlib.Path(__file__).parents[1] / "bench" / "conftest.py"
    spec = importlib.util.spec_from_file_location("bench_conftest_defaults", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = {}

    class Group:
        def addoption(self, flag, default=None, help="", **kwargs):
            found[flag] = (default, help)

    class Parser:
        def getgroup(self, name):
            return Group()

    module.pytest_addoption(Parser())
    return found


def test_bench_options_read_the_same_defaults():
    options = _bench_option_defaults()
    assert options["--replicas"][0] == STRATEGY_REPLICAS
    assert f"(default: {STRATEGY_REPLICAS})" in options["--replicas"][1]
    assert f"of {','.join(ARCHS)} (default: {Workload.arch})" in options["--arch"][1]


def test_the_help_states_the_defaults():
    text = cli.build_parser()._subparsers._group_actions[0].choices["pick"].format_help()
    text = " ".join(text.split())
    budget = Budget.DEFAULT_S
    assert f"{budget['inference']:g} for inference, {budget['train']:g} for training" in text
    assert f"replicas of a strategy (default: {STRATEGY_REPLICAS})" in text
    assert f"(default: {Accuracy.max_top1_disagreement:.0%})" in text
