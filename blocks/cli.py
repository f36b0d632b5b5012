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
    print(f"{'engine':<12} {'runs':<27} installed (inference only, float32)")
    for name, e in blocks.ENGINES.items():
        versions = ", ".join(f"{k} {v}" for k, v in e.versions().items() if v)
        print(f"{name:<12} {e.title:<27} {e.missing() or versions}")
    return 0


def cmd_info(args) -> int:
    import blocks
    from blocks.measure import flops

    print(f"TensorFlow {blocks.TF_VERSION}, Keras {blocks.KERAS_VERSION}")
    print(
        f"{'model':<10} {'arch':<9} {'input':>11} {'classes':>7} {'GFLOP/img':>10} "
        f"{'train GFLOP':>11} {'params':>12} {'+BN stats':>10}"
    )
    for depth in sorted(blocks.STAGES):
        for name, arch in blocks.ARCHS.items():
            model = blocks.build_resnet("functional", depth, arch=name, dtype_policy="float32")
            fwd = flops.forward_flops_per_image(model) / 1e9
            n = flops.parameter_count(model)
            shape = "x".join(map(str, arch.input_shape))
            print(
                f"{'resnet' + str(depth):<10} {name:<9} {shape:>11} {arch.num_classes:>7} "
                f"{fwd:>10.3f} {fwd * flops.TRAIN_STEP_FACTOR:>11.3f} {n['trainable']:>12,} "
                f"{n['total'] - n['trainable']:>10,}"
            )
    print(
        "GFLOP/img: 2 x multiply-adds of every Conv2D and Dense layer, counted from the built "
        f"model's layer shapes; a training step counts {flops.TRAIN_STEP_FACTOR}x."
    )
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


class Progress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, stream=sys.stderr, width=24):
        self.stream, self.width, self.last = stream, width, None
        self.tty = stream.isatty()

    @staticmethod
    def _clock(seconds):
        return "--:--" if seconds is None else f"{int(seconds) // 60}:{int(seconds) % 60:02d}"

    def __call__(self, fraction, message, elapsed, remaining):
        filled = int(self.width * min(max(fraction, 0.0), 1.0))
        bar = "#" * filled + "." * (self.width - filled)
        line = f"[{bar}] {message}  {self._clock(elapsed)} elapsed, ~{self._clock(remaining)} left"
        phase = message.split(" ")[0]
        if self.tty:
            self.stream.write("\r" + line[:110].ljust(110))
            if fraction >= 1.0:
                self.stream.write("\n")
        elif phase != self.last or fraction >= 1.0:
            self.stream.write(line + "\n")
        self.last = phase
        self.stream.flush()


def _print_pick(result, verbose: bool) -> None:
    w, m = result.workload, result.machine
    size = w["image_size"]
    when = result.measured_at + (f", {result.elapsed_s:.0f} s" if result.elapsed_s else "")
    print(
        f"{m.get('cpu', '?')} ({m.get('simd', '?')}), TF {m.get('tf', '?')}, Keras "
        f"{m.get('keras', '?')}: ResNet18 {w['arch']} {size}x{size}, {w['mode']}, batch "
        f"{w['batch_size']}, {w['dtype_policy']}  [{result.source}, {when}]"
    )
    for note in result.notes:
        print(f"note: {note}")
    load = result.machine_load
    if result.busy:  # the label in the output, the one-line warning on stderr
        print(f"BUSY MACHINE: {load.text()}; figures unreliable, not cached")
        print(f"warning: {result.load.get('warning') or load.text()}", file=sys.stderr)
    print(
        f"{'rank':>4}  {'configuration':<34} {'img/s':>8}  {'IQR img/s':>15} "
        f"{'speedup (95% CI)':>22} {'vs ref':>8} {'rounds':>6}"
    )
    rank = 0
    for r in result.ranking:
        if r.images_per_sec is None or r.status in ("could not run", "not measured"):
            print(f"{'-':>4}  {r.label:<34} {r.status}:")
            print(f"{'':>6}{r.reason or r.status}")
            if verbose and r.detail:
                # TensorFlow's whole text, its traceback's line structure kept.
                for line in r.detail.strip().splitlines():
                    print(f"{'':>6}{line}")
            continue
        rank += 1
        iqr = f"{r.q1_images_per_sec:,.1f}-{r.q3_images_per_sec:,.1f}"
        speed = r.speedup_text()
        mark = {"winner": "*", "reference": "=", "screened out": "~", "disqualified": "!"}
        flag = mark.get(r.status, " ")
        ref = "-" if r.reference_images_per_sec is None else f"{r.reference_images_per_sec:,.1f}"
        print(
            f"{rank:>3}{flag}  {r.label:<34} {r.images_per_sec:>8,.1f}  {iqr:>15} "
            f"{speed:>22} {ref:>8} {r.rounds:>6}"
        )
        if r.status in ("screened out", "disqualified") and (verbose or r.status != "screened out"):
            print(f"{'':>6}{r.status}: {r.reason}")
    print(
        "speedup: over subclassed · graph · default, from paired rounds (Hodges-Lehmann, 95% "
        "CI); vs ref: the reference's img/s in those same rounds; * winner, ~ screened out "
        "(screening rounds, shared processes), ! disqualified"
    )
    if result.load:  # said once, measured or unknown; absent from results of older versions
        print(f"machine: {load.text()}" + (" (BUSY: figures unreliable)" if result.busy else ""))
    if result.winner is None:
        print(f"no winner: {result.decision}")
        return
    print(f"winner: {result.winner_label} ({result.decision})")
    if result.provisional:
        print("provisional: too few rounds for the statistics; not cached (raise --budget-s)")
    if result.verification:
        v = result.verification
        checks = "; ".join(
            f"{k} {e:.2g} {'<=' if e <= t else '>'} {t:g}"
            for k, (e, t) in v.get("checks", {}).items()
        )
        print(f"verified: {v['text']} ({checks})")
    apply = result.apply
    print("to use it:")
    if apply.get("environment") or apply.get("unset"):
        env = " ".join(apply.get("environment", [])) or ""
        unset = " ".join(f"unset {k};" for k in apply.get("unset", []) if not env)
        print(f"  {env or unset}  # in the shell, before Python starts (TensorFlow reads it once)")
    for line in apply.get("python", []):
        print(f"  {line}")
    if apply.get("serve"):
        print("and in the serving program (the engine alone, nothing of this project):")
        for line in apply["serve"]:
            print(f"  {line}")


def _pick_options(args) -> tuple:
    """(the workload's options, the search space) of `pick`'s command line."""

    def csv(value):
        return None if value is None else [v.strip() for v in value.split(",") if v.strip()]

    fields = dict(
        mode=args.mode,
        batch_size=args.batch_size,
        dtype_policy=args.dtype_policy,
        arch=args.arch,
        image_size=args.image_size,
    )
    space = SearchSpace(
        csv(args.variants), csv(args.executions), csv(args.runtimes), args.strategy, args.replicas
    )
    return fields, space


def cmd_pick(args) -> int:
    from blocks.measure import picker, saved, workers

    fields, space = _pick_options(args)
    try:
        if args.from_json:
            result = saved.pick_from_benchmarks(
                args.from_json, device=args.device, space=space, **fields
            )
        else:
            budget = Budget(args.budget_s)
            budget.for_mode(args.mode)  # refused before the cache is read
            workload = picker.workload_for(args.device, **fields)
            result = None if args.refresh else picker.cached(workload, space)
            if result is None:
                progress = None if args.json else Progress()
                result = picker.measure(workload, space, budget, progress)
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
        _print_pick(result, args.verbose)
    return 0


def cmd_cluster(args) -> int:
    """One member of a multi-worker cluster (one per host, TF_CONFIG naming all of them): times
    the distributed training step; the chief (task 0) prints the figures."""
    import numpy as np

    from blocks.measure import distributed, stats, steps, timing
    from blocks.measure.workload import Config, Workload
    from blocks.variants import get_variant

    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        return _fail("cluster: TF_CONFIG is not set; every host needs the cluster and its index")
    # Everything is checked before the strategy exists: TensorFlow's own refusals are tracebacks.
    try:
        workers, index = distributed.read_tf_config(tf_config)
        workload = Workload("train", args.batch_size, args.dtype_policy, args.arch, args.image_size)
        config = Config(args.variant, args.execution, "default", "multiworker", len(workers))
        get_variant(args.variant)
    except ValueError as e:
        return _fail(f"cluster: {e}")
    os.environ[distributed.STRATEGY_VAR] = "multiworker"
    distributed.configure_process()
    try:
        step = distributed.prepare(workload, config)
    except (ValueError, steps.Unsupported) as e:
        return _fail(f"cluster: {e}")
    times = [timing.sample(step.run) for _ in range(args.steps)]
    if index == 0:
        t = stats.throughput(times, args.batch_size * len(workers))
        print(
            f"{config.label}: {t['images_per_sec']:,.1f} img/s "
            f"(IQR {t['q1_images_per_sec']:,.1f}-{t['q3_images_per_sec']:,.1f}), global batch "
            f"{args.batch_size * len(workers)}, {len(workers)} workers, median step "
            f"{1000 * float(np.median(times)):.1f} ms over {args.steps} steps"
        )
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


def _workload_arguments(p) -> None:
    """The options every command that builds a workload takes (`blocks.measure.workload`)."""
    w = Workload
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=w.batch_size,
        help=f"per replica (default: {w.batch_size})",
    )
    p.add_argument(
        "--dtype-policy",
        default=w.dtype_policy,
        choices=DTYPE_POLICIES,
        help=f"default: {w.dtype_policy}",
    )
    p.add_argument("--arch", default=w.arch, choices=list(ARCHS), help=f"default: {w.arch}")
    p.add_argument("--image-size", type=_positive_int, help="square size (default: the arch's)")


def _prog() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m blocks" if name in ("", "__main__.py", "-c") else name


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
    p.add_argument("--mode", default=Workload.mode, choices=MODES, help=f"default: {Workload.mode}")
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
    p.add_argument(
        "--budget-s",
        type=_positive_float,
        default=Budget.seconds,
        help="seconds for the whole run, start-up and compilation included (default: "
        f"{Budget.DEFAULT_S['inference']:g} for inference, {Budget.DEFAULT_S['train']:g} for "
        "training)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--refresh", action="store_true", help="measure even if a result is cached")
    p.add_argument(
        "--from-json",
        metavar="RESULTS.json",
        help="pick from a saved `pytest bench/` run instead of measuring",
    )
    p.set_defaults(func=cmd_pick)
    p = sub.add_parser(
        "cluster",
        help="run on every host of a multi-worker cluster (TF_CONFIG): time the training step",
        description="One member of a MultiWorkerMirroredStrategy cluster: run the same command "
        "on every host, each with TF_CONFIG naming the cluster and its own task index; the chief "
        "(index 0) prints images/s of the distributed training step.",
    )
    p.add_argument("--variant", default="subclassed", help="default: subclassed")
    p.add_argument("--execution", default="graph", choices=EXECUTIONS, help="default: graph")
    _workload_arguments(p)
    p.add_argument("--steps", type=_positive_int, default=20, help="timed steps (20)")
    p.set_defaults(func=cmd_cluster)
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


def _import_user_variants() -> None:
    """Import the modules named in RESNET_BLOCKS_IMPORTS: they register variants of their own
    (the measuring workers import them too)."""
    import importlib

    from blocks.measure.workers import IMPORTS_VAR

    for module in filter(None, (m.strip() for m in os.environ.get(IMPORTS_VAR, "").split(","))):
        if module.startswith("."):  # import_module's TypeError would be a traceback
            raise ImportError(f"{module!r} is a relative module name; give its absolute name")
        importlib.import_module(module)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "tensorflow", True):
        from blocks import logs

        logs.quiet_tensorflow(args.verbose)
        try:
            _import_user_variants()
        except ImportError as e:
            return _fail(f"RESNET_BLOCKS_IMPORTS: {e}")
    return args.func(args)
