"""`python -m blocks <command>` (or `resnet-blocks <command>`): the project's command line.

Arguments are parsed, and usage errors reported, before TensorFlow is imported; each command
imports what it needs. TensorFlow's log lines stay off unless `--verbose` (see `blocks.logs`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from blocks.archs import ARCHS
from blocks.checks import DTYPE_POLICIES
from blocks.measure.runtimes import RUNTIMES
from blocks.measure.workload import (
    EXECUTIONS,
    MODES,
    STRATEGIES,
    STRATEGY_REPLICAS,
    Accuracy,
    Budget,
    SearchSpace,
    Workload,
)


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def cmd_list(args) -> int:
    import blocks

    print(f"TensorFlow {blocks.TF_VERSION}, Keras {blocks.KERAS_VERSION}")
    print(f"{'variant':<12} {'model':<11} {'layout':<15} what it is / where it should win")
    for name, v in blocks.VARIANTS.items():
        print(f"{name:<12} {v.model:<11} {v.data_format:<15} {v.summary}")
        print(f"{'':<40} wins: {v.wins}")
    print(f"{'engine':<12} {'runs':<27} installed (inference only; float32 or a native precision)")
    for name, e in blocks.ENGINES.items():
        versions = ", ".join(f"{k} {v}" for k, v in e.versions().items() if v)
        print(f"{name:<12} {e.title:<27} {e.missing() or versions}")
    return 0


def cmd_info(args) -> int:
    import blocks
    from blocks.measure import flops

    print(f"TensorFlow {blocks.TF_VERSION}, Keras {blocks.KERAS_VERSION}")
    print("\n".join(flops.table()))
    return 0


def cmd_report(args) -> int:
    from blocks.measure import report

    try:
        runs = report.load_runs(args.results)
        text = report.markdown(runs, baseline=args.baseline)
        if args.png:
            report.check_chart_path(args.png)  # refused before the tables, not after them
        print(text)
        if args.png:
            print(f"chart: {report.plot(runs, args.png, baseline=args.baseline)}")
    except (ValueError, OSError, RuntimeError) as e:
        return _fail(str(e))
    return 0


def _workload_fields(args) -> dict:
    """The workload's options `_workload_arguments` added, as `Workload` names them."""
    return {k: getattr(args, k) for k in ("batch_size", "dtype_policy", "arch", "image_size")}


def _pick_options(args) -> tuple:
    """(the workload's options, the search space, the accuracy budget) of `pick`'s command
    line."""

    def csv(value):
        return None if value is None else [v.strip() for v in value.split(",") if v.strip()]

    fields = dict(mode=args.mode, **_workload_fields(args))
    space = SearchSpace(
        csv(args.variants),
        csv(args.executions),
        csv(args.runtimes),
        args.strategy,
        args.replicas,
        csv(args.precisions),
    )
    accuracy = Accuracy(args.max_top1_disagreement, args.max_logit_error, args.weights, args.images)
    return fields, space, accuracy


def cmd_pick(args) -> int:
    from blocks.measure import picker, render, saved, workers

    try:
        fields, space, accuracy = _pick_options(args)
        if args.from_json:
            result = saved.pick_from_benchmarks(
                args.from_json, device=args.device, space=space, **fields
            )
        else:
            budget = Budget(args.budget_s)
            budget.for_mode(args.mode)  # refused before the cache is read
            workload = picker.workload_for(args.device, **fields)
            result = None if args.refresh else picker.cached(workload, space, accuracy)
            if result is None:
                progress = None if args.json else render.Progress()
                result = picker.measure(workload, space, budget, progress, accuracy=accuracy)
    except picker.PickError as e:
        return _fail(str(e), 1)
    except (ValueError, OSError, workers.WorkerError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        # The pool has stopped every worker; a thread still waiting on one must not hold the exit
        # (the interpreter joins such threads), so the process ends here.
        print("\ninterrupted: every worker process was stopped", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        render.print_pick(result, args.verbose)
    return 0


def cmd_cluster(args) -> int:
    from blocks.measure import cluster

    try:
        line = cluster.run(args.variant, args.execution, args.steps, **_workload_fields(args))
    except cluster.REFUSALS as e:
        return _fail(f"cluster: {e}")
    if line is not None:
        print(line)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _csv_of(allowed):
    def parse(text: str) -> str:
        bad = [v for v in (p.strip() for p in text.split(",")) if v and v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, bad))}; expected some of {', '.join(allowed)}"
            )
        return text

    return parse


def _option(p, flag: str, default, **kwargs) -> None:
    """An option whose help is its default."""
    p.add_argument(flag, default=default, help=f"default: {default}", **kwargs)


def _workload_arguments(p) -> None:
    """The options every command that builds a workload takes (`blocks.measure.workload`)."""
    w = Workload
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=w.batch_size,
        help=f"per replica (default: {w.batch_size})",
    )
    _option(p, "--dtype-policy", w.dtype_policy, choices=DTYPE_POLICIES)
    _option(p, "--arch", w.arch, choices=list(ARCHS))
    p.add_argument("--image-size", type=_positive_int, help="square size (default: the arch's)")


def _prog() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m blocks" if name in ("", "__main__.py", "-c") else name


def _add_pick(sub) -> None:
    p = sub.add_parser(
        "pick",
        help="find the fastest configuration here (variant x execution x runtime), cached",
        description="Time every configuration of ResNet18 here - block variant, execution "
        "(tf.function, whole-step XLA, eager, and in inference the serving engines ONNX Runtime, "
        "OpenVINO and LiteRT where installed) and runtime (oneDNN on/off) - in worker processes, "
        "in interleaved rounds, drop the clearly slower, decide between the best from paired "
        "rounds, verify the winner against a float64 reference, and cache it. A tie goes to the "
        "simplest configuration.",
    )
    p.add_argument("--device", help="CPU:0, GPU:0, ... (default: the first GPU, else the CPU)")
    _option(p, "--mode", Workload.mode, choices=MODES)
    _workload_arguments(p)
    p.add_argument("--variants", help="comma-separated variants (default: all registered)")
    p.add_argument(
        "--executions",
        type=_csv_of(EXECUTIONS),
        help=f"comma-separated, of {','.join(EXECUTIONS)} (default: all; the engines in "
        "inference only, with the reference variant unless --variants names others)",
    )
    p.add_argument(
        "--runtimes",
        type=_csv_of(list(RUNTIMES)),
        help=f"comma-separated, of {','.join(RUNTIMES)} (default: all)",
    )
    p.add_argument(
        "--strategy",
        default=SearchSpace.strategy,
        choices=STRATEGIES,
        help="data-parallel training: mirrored (local GPUs or logical CPUs) or multiworker "
        "(worker processes on this host); --batch-size is then per replica "
        f"(default: {SearchSpace.strategy})",
    )
    p.add_argument(
        "--replicas",
        type=_positive_int,
        default=SearchSpace.replicas,
        help=f"replicas of a strategy (default: {STRATEGY_REPLICAS})",
    )
    _add_precision_options(p)
    p.add_argument(
        "--budget-s",
        type=_positive_float,
        default=Budget.seconds,
        help="seconds for the whole run, start-up and compilation included (default: "
        f"{Budget.DEFAULT_S['inference']:g} for inference, {Budget.DEFAULT_S['train']:g} for "
        "training, times the number of --precisions)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--refresh", action="store_true", help="measure even if a result is cached")
    p.add_argument(
        "--from-json",
        metavar="RESULTS.json",
        help="pick from a saved `pytest bench/` run instead of measuring",
    )
    p.set_defaults(func=cmd_pick)


def _share(text: str) -> float:
    """A share of the images: 0.01 or 1%."""
    value = text.strip()
    try:
        share = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"expected a share such as 0.01 or 1%, got {text!r}")
    return share


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):  # no bound is the option left out
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _add_precision_options(p) -> None:
    """The precision axis and its accuracy budget (`SearchSpace.precisions`, `Accuracy`)."""
    a = Accuracy
    p.add_argument(
        "--precisions",
        type=_csv_of(DTYPE_POLICIES),
        help=f"comma-separated, of {','.join(DTYPE_POLICIES)}: race every candidate in each "
        "the device runs natively (default: --dtype-policy alone)",
    )
    p.add_argument(
        "--max-top1-disagreement",
        metavar="SHARE",
        type=_share,
        default=a.max_top1_disagreement,
        help="a precision other than float32 may change the top-1 class of this share of the "
        f"verification images against float64 (default: {a.max_top1_disagreement * 100:g}%%)",
    )
    p.add_argument(
        "--max-logit-error",
        metavar="ERROR",
        type=_non_negative_float,
        default=a.max_logit_error,
        help="and its largest logit error, relative to each image's largest logit, may reach "
        "this (default: no bound)",
    )
    p.add_argument(
        "--weights",
        metavar="FILE",
        help="the weights that accuracy is checked with: anything blocks.load_weights reads "
        "(default: the seeded weights; the cost is then indicative only)",
    )
    p.add_argument(
        "--images",
        metavar="FILE.npz",
        help="the images it is checked on: `images` NHWC float32, normalised as the weights "
        "expect, optional integer `labels` (default: random images; indicative only)",
    )


def _add_cluster(sub) -> None:
    p = sub.add_parser(
        "cluster",
        help="run on every host of a multi-worker cluster (TF_CONFIG): time the training step",
        description="One member of a MultiWorkerMirroredStrategy cluster: run the same command "
        "on every host, each with TF_CONFIG naming the cluster and its own task index; the chief "
        "(index 0) prints images/s of the distributed training step.",
    )
    _option(p, "--variant", "subclassed")
    _option(p, "--execution", "graph", choices=EXECUTIONS)
    _workload_arguments(p)
    p.add_argument("--steps", type=_positive_int, default=20, help="timed steps (20)")
    p.set_defaults(func=cmd_cluster)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="Interchangeable ResNet BasicBlock implementations: which is fastest here?",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show TensorFlow's log lines and full error texts (also: RESNET_BLOCKS_VERBOSE=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    p = sub.add_parser("list", help="list the registered block variants")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("info", help="FLOPs per image and parameters of each arch and depth")
    p.set_defaults(func=cmd_info)
    _add_pick(sub)
    _add_cluster(sub)
    p = sub.add_parser(
        "report",
        help="tables (and with --png a chart) of benchmark runs (several: a column per TF version)",
    )
    p.add_argument(
        "results",
        nargs="+",
        help="files written by `pytest bench/ --benchmark-json=FILE`, or directories of them",
    )
    p.add_argument(
        "--png",
        metavar="PATH",
        help="also write a chart there, a new file (an existing one is never replaced)",
    )
    p.add_argument("--baseline", help="the TF version the ratios are against (default: the oldest)")
    p.set_defaults(func=cmd_report, tensorflow=False)  # reads files: no TensorFlow, no variants
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "tensorflow", True):
        from blocks import logs

        logs.quiet_tensorflow(args.verbose)
        from blocks.registry import import_user_modules

        try:
            import_user_modules()
        except ImportError as e:
            return _fail(f"RESNET_BLOCKS_IMPORTS: {e}")
    return args.func(args)
