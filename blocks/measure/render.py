"""A pick as the command line shows it: the table, the decision, how to use the winner, and the
progress bar while it measures."""

from __future__ import annotations

import sys

from blocks.measure.workload import REFERENCE

# The ranking's flag column: what happened to each measured configuration.
MARKS = {"winner": "*", "reference": "=", "screened out": "~", "disqualified": "!"}


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


def print_pick(result, verbose: bool) -> None:
    """The whole of a `PickResult` on stdout (a busy machine's warning also on stderr)."""
    _print_header(result)
    _print_ranking(result, verbose)
    if result.load:  # said once, measured or unknown; absent from results of older versions
        busy = " (BUSY: figures unreliable)" if result.busy else ""
        print(f"machine: {result.machine_load.text()}{busy}")
    if result.winner is None:
        print(f"no winner: {result.decision}")
        return
    _print_winner(result)


def _print_header(result) -> None:
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


def cost_text(cost) -> str:
    """A candidate's accuracy cost in a column: top-1 agreement, then the logit error."""
    if not cost:
        return "-"
    return f"{cost['top1_agreement']:.1%} {cost['logit_error']:.1e}"


def _print_ranking(result, verbose: bool) -> None:
    width = max([34, *(len(r.label) for r in result.ranking)])
    costs = bool(result.accuracy)
    print(
        f"{'rank':>4}  {'configuration':<{width}} {'img/s':>8}  {'IQR img/s':>15} "
        f"{'speedup (95% CI)':>22} {'vs ref':>8} {'rounds':>6}"
        + (f" {'top-1, logit err':>17}" if costs else "")
    )
    rank = 0
    for r in result.ranking:
        if r.images_per_sec is None or r.status in ("could not run", "not measured"):
            print(f"{'-':>4}  {r.label:<{width}} {r.status}:")
            print(f"{'':>6}{r.reason or r.status}")
            if verbose and r.detail:
                # TensorFlow's whole text, its traceback's line structure kept.
                for line in r.detail.strip().splitlines():
                    print(f"{'':>6}{line}")
            continue
        rank += 1
        iqr = f"{r.q1_images_per_sec:,.1f}-{r.q3_images_per_sec:,.1f}"
        flag = MARKS.get(r.status, " ")
        ref = "-" if r.reference_images_per_sec is None else f"{r.reference_images_per_sec:,.1f}"
        print(
            f"{rank:>3}{flag}  {r.label:<{width}} {r.images_per_sec:>8,.1f}  {iqr:>15} "
            f"{r.speedup_text():>22} {ref:>8} {r.rounds:>6}"
            + (f" {cost_text(r.accuracy):>17}" if costs else "")
        )
        if r.status in ("screened out", "disqualified") and (verbose or r.status != "screened out"):
            print(f"{'':>6}{r.status}: {r.reason}")
    print(
        f"speedup: over {REFERENCE.label}, from paired rounds (Hodges-Lehmann, 95% "
        "CI); vs ref: the reference's img/s in those same rounds; * winner, ~ screened out "
        "(screening rounds, shared processes), ! disqualified"
    )
    if costs:
        _print_accuracy(result.accuracy)


def _print_accuracy(a: dict) -> None:
    """What the accuracy column was measured on, and the budget it was held to."""
    labels = f", reference accuracy {a['reference_accuracy']:.1%}" if a.get("labels") else ""
    bound = "none" if a["max_logit_error"] is None else f"{a['max_logit_error']:g}"
    print(
        f"top-1, logit err: against float64 of the same weights ({a['weights']}) on "
        f"{a['images']}{labels}: top-1 agreement, largest logit error relative to each image's "
        f"largest logit; budget: top-1 disagreement <= {a['max_top1_disagreement']:.1%}, "
        f"logit error <= {bound}"
    )
    if a.get("indicative"):
        print(
            "indicative only: not your weights and images; give --weights and --images to "
            "measure the cost on what you serve"
        )


def _print_winner(result) -> None:
    print(f"winner: {result.winner_label} ({result.decision})")
    won = next((r for r in result.ranking if r.status == "winner"), None)
    if won is not None and won.accuracy:
        c = won.accuracy
        changed = round((1 - c["top1_agreement"]) * c["images"])
        labels = "" if c.get("accuracy") is None else f"; accuracy {c['accuracy']:.1%}"
        print(
            f"accuracy cost: {changed} of {c['images']} top-1 classes changed against float64, "
            f"largest logit error {c['logit_error']:.1e}{labels}"
            + (" (indicative only)" if result.accuracy.get("indicative") else "")
        )
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
