"""`python -m blocks <command>` (or `resnet-blocks <command>`): the project's command line.

Arguments are parsed, and usage errors reported, before TensorFlow is imported; each command
imports what it needs. TensorFlow's log lines stay off unless `--verbose` (see `blocks.logs`).
"""

from __future__ import annotations

import argparse
import os
import sys


def cmd_list(args) -> int:
    import blocks

    rows = [
        (name, v.model, v.data_format, v.summary, v.wins) for name, v in blocks.VARIANTS.items()
    ]
    print(f"TensorFlow {blocks.TF_VERSION}, Keras {blocks.KERAS_VERSION}")
    print(f"{'variant':<12} {'model':<11} {'layout':<15} what it is / where it should win")
    for name, model, fmt, summary, wins in rows:
        print(f"{name:<12} {model:<11} {fmt:<15} {summary}")
        print(f"{'':<40} wins: {wins}")
    return 0


def cmd_report(args) -> int:
    from blocks.measure import report

    try:
        rows = report.load(args.results)
        report.annotate(rows)
        text = report.markdown(rows)
        if not text:
            print(f"{args.results}: no ResNet benchmarks in it", file=sys.stderr)
            return 1
        print(text)
        png = args.png or os.path.splitext(args.results)[0] + ".png"
        print(f"chart: {report.plot(rows, png)}")
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


class _Progress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, stream=sys.stderr, width=24):
        self.stream, self.width, self.last = stream, width, None
        self.tty = stream.isatty()

    @staticmethod
    def _clock(seconds):
        return "--:--" if seconds is None else f"{int(seconds) // 60}:{int(seconds) % 60:02d}"

    def __call__(self, done, total, message, elapsed, remaining):
        filled = int(self.width * done / max(total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        line = f"[{bar}] {message}  {self._clock(elapsed)} elapsed, ~{self._clock(remaining)} left"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
            if done >= total:
                self.stream.write("\n")
        elif message != self.last and not message.startswith("timing round") or done >= total:
            self.stream.write(line + "\n")
        self.last = message
        self.stream.flush()


def _print_pick(result) -> None:
    k = result.key
    shape = "x".join(map(str, k["input_shape"][:2]))
    print(
        f"{k['device']['name']} ({k['device']['kind']}), TF {k['tf']}, Keras {k['keras']}: "
        f"ResNet18 {k['arch']} {shape}, {k['mode']}, batch {k['batch_size']}, {k['dtype_policy']}"
        f"  [{result.source}, {result.measured_at}]"
    )
    print(
        f"{'rank':>4}  {'variant':<12} {'img/s':>9}  {'IQR img/s':>17} {'speedup':>8} {'rounds':>6}"
    )
    for i, r in enumerate(result.ranking, start=1):
        if r.images_per_sec is None:
            print(f"{'-':>4}  {r.variant:<12} could not run: {r.error}")
            continue
        iqr = f"{r.q1_images_per_sec:,.1f}-{r.q3_images_per_sec:,.1f}"
        speed = f"{r.speedup_vs_subclassed:.2f}x" if r.speedup_vs_subclassed else "-"
        print(
            f"{i:>4}  {r.variant:<12} {r.images_per_sec:>9,.1f}  {iqr:>17} {speed:>8} {r.rounds:>6}"
        )
    print(f"winner: {result.winner} ({result.decision})")


def cmd_pick(args) -> int:
    import json

    from blocks.measure import picker

    options = dict(
        mode=args.mode,
        batch_size=args.batch_size,
        dtype_policy=args.dtype_policy,
        arch=args.arch,
        input_shape=None if args.image_size is None else (args.image_size, args.image_size, 3),
        variants=args.variants.split(",") if args.variants else None,
    )
    try:
        if args.from_json:
            result = picker.pick_from_benchmarks(args.from_json, device=args.device, **options)
        else:
            result = None if args.refresh else picker.cached(args.device, **options)
            if result is None:
                progress = None if args.json else _Progress()
                result = picker.pick(
                    args.device, budget_s=args.budget_s, progress=progress, **options
                )
    except picker.PickError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        _print_pick(result)
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
        help="show TensorFlow's own log lines and full error texts (also: RESNET_BLOCKS_VERBOSE=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    p = sub.add_parser("list", help="list the registered block variants")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("info", help="FLOPs per image and parameters of each arch and depth")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser(
        "pick",
        help="time every variant on this device and pick the fastest (cached)",
        description="Time each variant's ResNet18 here, rank them, and pick the fastest; a "
        "statistical tie goes to the simplest variant. Results are cached per device and "
        "configuration; --refresh measures again.",
    )
    p.add_argument("--device", help="CPU:0, GPU:0, ... (default: the first GPU, else the CPU)")
    p.add_argument("--mode", default="inference", help="inference or train (default: inference)")
    p.add_argument("--batch-size", type=int, default=64, help="default: 64")
    p.add_argument(
        "--dtype-policy",
        default="float32",
        help="float32, mixed_bfloat16 or mixed_float16 (default: float32)",
    )
    p.add_argument("--arch", default="seed", help="seed or imagenet (default: seed)")
    p.add_argument("--image-size", type=int, help="square image size (default: the arch's)")
    p.add_argument("--variants", help="comma-separated variants (default: all registered)")
    p.add_argument(
        "--budget-s",
        type=float,
        help="seconds of timed work for all variants together (default: 45)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--refresh", action="store_true", help="measure even if a result is cached")
    p.add_argument(
        "--from-json",
        metavar="RESULTS.json",
        help="pick from a saved pytest-benchmark run instead of measuring",
    )
    p.set_defaults(func=cmd_pick)
    p = sub.add_parser(
        "report", help="Markdown tables and a PNG chart from a pytest-benchmark JSON file"
    )
    p.add_argument("results", help="a file written by pytest bench/ --benchmark-json=FILE")
    p.add_argument("--png", help="where to write the chart (default: RESULTS with .png)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from blocks import logs

    logs.quiet_tensorflow(args.verbose)
    return args.func(args)
