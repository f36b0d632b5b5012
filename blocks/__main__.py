"""`python -m blocks <command>`: the project's command line."""

from __future__ import annotations

import argparse
import os
import sys


def _quiet_tensorflow() -> None:
    # TF's C++ start-up banner is noise on a command line; the caller can still override it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    from blocks import report

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
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m blocks",
        description="Interchangeable ResNet BasicBlock implementations: which is fastest here?",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    p = sub.add_parser("list", help="list the registered block variants")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser(
        "report", help="Markdown tables and a PNG chart from a pytest-benchmark JSON file"
    )
    p.add_argument("results", help="a file written by pytest bench/ --benchmark-json=FILE")
    p.add_argument("--png", help="where to write the chart (default: RESULTS with .png)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv=None) -> int:
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
