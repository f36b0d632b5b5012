"""A fuzzer that keeps a user's mistake harmless: the command line and the public API, given
generated bad input in a directory of decoys, answer in one line and change nothing they do not own.

Every case runs in its own temporary directory (the working directory, HOME, XDG_CACHE_HOME and
RESNET_BLOCKS_CACHE point into it) that holds decoys: directories named like files (`picks.json`,
`model.onnx`), files named like weights that are not (`w.npz` holds text), foreign and truncated
files. Each case asserts:

- the command line exits 0, or 2 (a usage or input error) or 1 (a pick in which nothing could
  run: `PickError`), with an error of one line (argparse's usage block may precede it) and no
  traceback; the API raises the documented ValueError / TypeError / FileNotFoundError /
  FileExistsError or the project's own error classes, in one line;
- a model given to a call that failed is unchanged;
- no file or directory changed but the run's own outputs (a snapshot of paths, kinds, sizes,
  mtimes and hashes, before and after).

No case may start a real pick, cluster or engine conversion in this process: `workers.Pool`,
`distributed.configure_process` and the export's converters are replaced by stand-ins that stop
the call where it would start one. A case that gets there with every option valid has passed
(its options were accepted); with an option the case knows to be bad, it fails: bad values must
be refused before any worker starts. The exhaustive profile also runs a sample of the command
lines that ended without reaching a stand-in as real `python -m blocks` processes, bounded by a
timeout and always reaped, to see what a process shows that this one hides.

`RESNET_BLOCKS_FUZZ_LOG=FILE` records every failing case in FILE (one JSON line each) and lets
the run go on: for triage of a first run, which otherwise stops at the first failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as save_safetensors

import blocks
from blocks import cli
from blocks.archs import ARCHS
from blocks.checks import DTYPE_POLICIES
from blocks.executions import EXECUTIONS, EXPORT_FORMATS, MODES
from blocks.measure import cache, distributed, workers
from blocks.measure.runtimes import RUNTIMES
from blocks.measure.workload import STRATEGIES
from blocks.weights.namings import NAMINGS
from tests.helpers.strategies import (
    DECOY_PATHS,
    FUZZ_PATHS,
    cli_value,
    csv_of,
)
from tests.test_report import run_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANT_NAMES = tuple(blocks.VARIANTS)
SHAPE = (16, 16, 3)

# Examples per test: the small profile keeps the default suite's share under ~10 s on 2 cores;
# derandomized like the `ci` profile, so a red run is reproducible.
SMALL = settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
LARGE = settings(SMALL, max_examples=150)
LARGE_PROCESSES = 20  # of the exhaustive command lines, this many run as processes too
PROCESS_TIMEOUT_S = 120

LOG = os.environ.get("RESNET_BLOCKS_FUZZ_LOG")

# Errors a user's mistake may raise: the documented builtins and the project's own classes.
ACCEPTED = (
    ValueError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    blocks.EngineError,
    blocks.PickError,
    blocks.DeviceError,
    workers.WorkerError,
)
LONGEST_MESSAGE = 1000  # characters: beyond this, a message dumps data (an array, a traceback)


# --- the sandbox ----------------------------------------------------------------------------


def _npz_bytes(arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


FOREIGN = {"layer.weight": np.ones((3, 3), np.float32), "step": np.arange(4)}
SMALL_NPZ = _npz_bytes(FOREIGN)
SMALL_SAFETENSORS = save_safetensors(FOREIGN)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))

# The decoys' contents: None makes a directory (with a file in it, so that a rename or a removal
# shows); bytes a file.
DECOYS = {
    "picks.json": None,
    "model.onnx": None,
    "adir": None,
    "results": None,
    "cache": None,  # empty: where a fresh pick cache may be written (CACHES)
    "home": None,
    "xdg": None,
    "results/shape.json": b'{"rows": [1, 2]}',
    "w.npz": b"my notes, not weights\n",
    "notes.txt": b"notes\n",
    "data.bin": PNG,
    "image.png": PNG,
    "empty.npz": b"",
    "other.json": b'{"name": "x", "values": [1, 2, 3]}',
    "list.json": b"[1, 2, 3]",
    "trunc.npz": SMALL_NPZ[: len(SMALL_NPZ) // 2],
    "trunc.safetensors": SMALL_SAFETENSORS[: len(SMALL_SAFETENSORS) // 2],
    "small.npz": SMALL_NPZ,
    "small.safetensors": SMALL_SAFETENSORS,
}
assert set(DECOY_PATHS) <= set(DECOYS) | {"run.json"}

# Where RESNET_BLOCKS_CACHE may point: a fresh file (the run may create it and its lock), or a
# decoy the cache must leave alone.
FRESH_CACHE = "cache/picks.json"
CACHES = (FRESH_CACHE, "picks.json", "notes.txt", "other.json", "adir")

# Written by libraries under HOME / XDG_CACHE_HOME in a fresh process (Keras's config, Matplotlib's
# font cache): not the project's, and not a decoy.
# ONNX Runtime's and OpenVINO's telemetry ids on their first import.
THIRD_PARTY = (
    "home/.keras",
    "home/.config",
    "home/.cache",
    "home/intel",
    "xdg/matplotlib",
    "xdg/fontconfig",
    "xdg/Microsoft",
)


class Sandbox:
    """A temporary directory of decoys; `env` points HOME, the caches and the cwd into it."""

    def __init__(self, cache_path: str = FRESH_CACHE):
        self._tmp = tempfile.TemporaryDirectory(prefix="blocks-fuzz-")
        self.root = self._tmp.name
        for name, content in DECOYS.items():
            path = os.path.join(self.root, name)
            if content is None:
                os.makedirs(path, exist_ok=True)
                if name not in ("cache", "home", "xdg"):
                    with open(os.path.join(path, "keep.txt"), "w") as f:
                        f.write("a user's file\n")
            else:
                with open(path, "wb") as f:
                    f.write(content)
        run_file(_Path(self.root), name="run.json")
        self.cache_path = cache_path
        self.env = {
            "HOME": os.path.join(self.root, "home"),
            "XDG_CACHE_HOME": os.path.join(self.root, "xdg"),
            cache.ENV_VAR: os.path.join(self.root, cache_path),
        }
        self.before = self.snapshot()

    def snapshot(self) -> dict:
        seen = {}
        for top, dirs, files in os.walk(self.root):
            for name in dirs + files:
                path = os.path.join(top, name)
                rel = os.path.relpath(path, self.root)
                if os.path.islink(path):
                    seen[rel] = ("link", os.readlink(path))
                elif os.path.isdir(path):
                    seen[rel] = ("dir",)
                else:
                    st_ = os.stat(path)
                    with open(path, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()[:16]
                    seen[rel] = ("file", st_.st_size, st_.st_mtime_ns, digest)
        return seen

    def changes(self, outputs=()) -> list:
        """Paths added, removed or changed since the start, but `outputs` and what is under them
        (the run's own), the fresh cache and libraries' own directories."""
        after = self.snapshot()
        own = [*outputs, *THIRD_PARTY]
        if self.cache_path == FRESH_CACHE:
            own += [FRESH_CACHE, FRESH_CACHE + ".lock"]
        own = [os.path.normpath(p) for p in own if p]
        changed = []
        for rel in sorted(set(self.before) | set(after)):
            if self.before.get(rel) == after.get(rel):
                continue
            if any(rel == p or rel.startswith(p + os.sep) for p in own):
                continue
            if rel not in self.before:
                changed.append(f"{rel} created")
            elif rel not in after:
                changed.append(f"{rel} removed")
            else:
                changed.append(f"{rel} changed")
        return changed

    @contextlib.contextmanager
    def entered(self):
        """cwd and the environment in the sandbox; both restored afterwards, whatever the run
        set (the `cluster` command sets a variable of its own)."""
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        os.environ.update(self.env)
        os.chdir(self.root)
        try:
            yield
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)

    def close(self):
        self._tmp.cleanup()


class _Path(str):
    """What tests.test_report.run_file takes (a tmp_path): `path / name`."""

    def __truediv__(self, name):
        import pathlib

        return pathlib.Path(self) / name


@contextlib.contextmanager
def sandbox(cache_path: str = FRESH_CACHE):
    box = Sandbox(cache_path)
    try:
        with box.entered():
            yield box
    finally:
        box.close()


# --- stand-ins where a real pick, cluster or conversion would start --------------------------


class Started(BaseException):
    """A call got where it would start workers, a cluster or a converter: stopped here.

    A BaseException, so that no `except Exception` of the code under test swallows it."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def _stop(what):
    def stand_in(*args, **kwargs):
        raise Started(what)

    return stand_in


@contextlib.contextmanager
def nothing_starts():
    from blocks import engines

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(workers, "Pool", _stop("a pick's workers")))
        stack.enter_context(mock.patch.object(distributed, "configure_process", _stop("a cluster")))
        stack.enter_context(mock.patch.object(engines, "convert", _stop("a conversion")))
        stack.enter_context(mock.patch.object(engines, "save_tf", _stop("a SavedModel export")))
        yield


# --- verdicts ---------------------------------------------------------------------------------


def verdict(case: str, problems: list) -> None:
    """Fail with every problem of the case (or, under RESNET_BLOCKS_FUZZ_LOG, record them)."""
    if not problems:
        return
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps({"case": case, "problems": problems}) + "\n")
        return
    raise AssertionError(f"{case}:\n  " + "\n  ".join(problems))


def error_problems(e: BaseException) -> list:
    """What is wrong with an exception a user's mistake raised."""
    text = str(e)
    problems = []
    if not isinstance(e, ACCEPTED):
        problems.append(f"raised {type(e).__name__}, not a documented error: {text[:200]!r}")
    if "\n" in text.strip():
        problems.append(f"{type(e).__name__} of {len(text.splitlines())} lines: {text[:200]!r}")
    if len(text) > LONGEST_MESSAGE:
        problems.append(f"{type(e).__name__} of {len(text)} characters: {text[:200]!r}...")
    if "Traceback" in text:
        problems.append("a traceback in the message")
    if not text.strip():
        problems.append(f"{type(e).__name__} with no message")
    return problems


def stderr_problems(code, err: str, out: str = "") -> list:
    """What is wrong with a command's exit status, its stderr (and a traceback on stdout)."""
    problems = []
    if "Traceback" in out:
        problems.append(f"a traceback on stdout (exit {code}): ...{out.strip()[-300:]!r}")
    if "Traceback" in err:
        problems.append(f"a traceback on stderr (exit {code}): ...{err.strip()[-300:]!r}")
    if code == 0:
        return problems
    if code not in (1, 2):
        return problems + [f"exit status {code!r}, expected 0, 1 or 2: {err.strip()[-300:]!r}"]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    usage = lines[: -1 or None]
    # argparse: "usage: ..." (wrapped, indented) then "<prog>: error: ..."; the project: "error: ..."
    is_usage = (
        bool(usage)
        and usage[0].startswith("usage:")
        and all(ln.startswith(" ") for ln in usage[1:])
    )
    if not lines or len(errors) != 1 or not lines[-1].startswith(errors[0][:1]):
        problems.append(f"exit {code} without one error line: {err.strip()[-300:]!r}")
    elif len(lines) > 1 and not is_usage:
        problems.append(f"exit {code} with {len(lines)} lines on stderr: {err.strip()[-300:]!r}")
    return problems


# --- the command line -------------------------------------------------------------------------

PARSER = cli.build_parser()
SUBCOMMANDS = PARSER._subparsers._group_actions[0].choices  # every command, as the parser has it

# Each command drawn in proportion to what there is to fuzz in it: `pick` has the most options.
# `info` takes none and builds four models (2 s): the large profile only.
WEIGHTS = {"pick": 5, "report": 2, "cluster": 2}
SMALL_WEIGHTS = {**WEIGHTS, "info": 0}

# Values each option accepts, by destination; any other option gets junk and paths only.
VALID = {
    "mode": MODES,
    "batch_size": ("1", "2", "64"),
    "dtype_policy": DTYPE_POLICIES,
    "arch": tuple(ARCHS),
    "image_size": ("8", "32"),
    "strategy": STRATEGIES,
    "replicas": ("1", "2"),
    "budget_s": ("0.5", "5"),
    "device": ("CPU:0", "cpu", "/device:CPU:0"),
    "variant": VARIANT_NAMES,
    "execution": EXECUTIONS,
    "steps": ("1", "3"),
    "from_json": ("run.json",),
    "results": ("run.json", "results"),
    "png": ("new.png", "chart.png"),
    "baseline": ("2.21.0", "2.13.0"),
    "max_top1_disagreement": ("0.01", "1%", "0"),
    "max_logit_error": ("0", "0.05"),
}
CSV = {
    "variants": VARIANT_NAMES,
    "executions": EXECUTIONS,
    "runtimes": tuple(RUNTIMES),
    "precisions": DTYPE_POLICIES,
}

# TF_CONFIG for `cluster`: unset, not JSON, JSON of another shape, a task past the cluster, and
# valid specs (the stand-in stops those before a cluster starts).
TF_CONFIGS = (
    None,
    "",
    "{",
    "[]",
    '{"cluster": {}}',
    '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 5}}',
    '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": -1}}',
    '{"cluster": {"worker": "localhost:1"}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}}',
)
# Module names for RESNET_BLOCKS_IMPORTS (user variants): none, missing, relative, harmless.
IMPORTS = (None, "", "nope_module", ".relative", "blocks.nope", ",,", "json")


def _tf_config_valid(text) -> bool:
    try:
        spec = json.loads(text)
        workers_ = spec["cluster"]["worker"]
        index = spec["task"]["index"]
    except (TypeError, ValueError, KeyError):
        return False
    return (
        isinstance(workers_, list)
        and isinstance(index, int)
        and not isinstance(index, bool)
        and 0 <= index < len(workers_)
    )


def _values_for(action, clean: bool):
    dest = action.dest
    valid = VALID.get(dest) or action.choices or ()
    if clean and (valid or dest in CSV):
        return st.sampled_from(tuple(valid)) if valid else csv_of(CSV[dest], junk=False)
    if dest in CSV:
        return st.integers(0, 3).flatmap(lambda i: csv_of(CSV[dest]) if i else cli_value())
    return cli_value(valid)


@st.composite
def command_lines(draw, weights=WEIGHTS):
    """(argv, extra environment) for one run of `python -m blocks`: in half of the cases every
    value is one the option accepts (odd combinations of valid values), else junk is mixed in."""
    clean = draw(st.booleans())
    name = draw(st.sampled_from([n for n in sorted(SUBCOMMANDS) for _ in range(weights.get(n, 1))]))
    parser = SUBCOMMANDS[name]
    argv = (["-v"] if draw(st.booleans()) else []) + [name]
    for action in parser._actions:
        if action.dest == "help":
            continue
        if not action.option_strings:  # a positional: always there, else a usage error only
            count = 1 if action.nargs in (None, 1) else draw(st.integers(1, 3))
            argv += [draw(_values_for(action, clean)) for _ in range(count)]
            continue
        if not draw(st.integers(0, 2)):  # each option in a third of the cases
            continue
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            argv.append(flag)
        elif draw(st.booleans()):
            argv += [flag, draw(_values_for(action, clean))]
        else:
            argv.append(f"{flag}={draw(_values_for(action, clean))}")
    if not clean and not draw(st.integers(0, 5)):
        argv.insert(draw(st.integers(0, len(argv))), draw(st.sampled_from(("--nope", "extra"))))
    env = {}
    if name == "cluster":
        env["TF_CONFIG"] = draw(st.sampled_from(TF_CONFIGS))
    if name != "report" and not draw(st.integers(0, 3)):
        env[workers.IMPORTS_VAR] = draw(st.sampled_from(IMPORTS[:2] if clean else IMPORTS))
    return argv, env


def _outputs(argv: list, code) -> list:
    """What a command may write: the chart of a `report` that succeeded."""
    if code != 0 or not argv or "report" not in argv:
        return []
    args = PARSER.parse_args(argv)
    return [args.png] if args.png else []


@contextlib.contextmanager
def _environment(env: dict):
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    yield


def run_in_process(argv: list, env: dict):
    """(exit status, stdout, stderr, what it would have started or None, problems) of
    `cli.main(argv)` in this process."""
    out, err = io.StringIO(), io.StringIO()
    started, problems, code = None, [], None
    with _environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with nothing_starts(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                code = cli.main(argv)
            except SystemExit as e:
                code = e.code
            except Started as e:
                started = e.what
            except Exception as e:  # a traceback for the user
                problems.append(f"{type(e).__name__} escaped main: {str(e)[:300]!r}")
                started = "a traceback"
    return code, out.getvalue(), err.getvalue(), started, problems


def check_command_line(argv: list, env: dict, cache_path: str, processes: list = None) -> None:
    with sandbox(cache_path) as box:
        code, out, err, started, problems = run_in_process(argv, env)
        if started == "a cluster" and not _tf_config_valid(env.get("TF_CONFIG")):
            problems.append(f"started a cluster with TF_CONFIG={env.get('TF_CONFIG')!r}")
        if started is None:
            problems += stderr_problems(code, err, out)
        elif started == "a traceback":
            started = None
        problems += [f"{c} (a file it does not own)" for c in box.changes(_outputs(argv, code))]
        verdict(f"python -m blocks {' '.join(argv)}  [{env}, cache {cache_path}]", problems)
        if processes is not None and started is None:
            processes.append((argv, env, cache_path))


CLI_CASES = (command_lines(), st.sampled_from(CACHES))


INDEX_PAST = '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 5}}'


@settings(SMALL, max_examples=20)
@given(command_lines(SMALL_WEIGHTS), st.sampled_from(CACHES))
@example((["list"], {workers.IMPORTS_VAR: ".relative"}), FRESH_CACHE)
@example((["pick", "--device", "CPU:0"], {}), "picks.json")
@example((["cluster", "--steps", "1"], {"TF_CONFIG": INDEX_PAST}), FRESH_CACHE)
def test_command_line(case, cache_path):
    check_command_line(*case, cache_path)


@pytest.mark.exhaustive
def test_command_line_exhaustive():
    """The large profile: many more command lines in this process, then a sample of those that
    ended without a stand-in as real processes (where a worker's or TensorFlow's traceback, an
    exit code from deep inside, or a stray file of a subprocess would show)."""
    sample = []

    @LARGE
    @given(*CLI_CASES)
    def run(case, cache_path):
        check_command_line(*case, cache_path, processes=sample)

    run()
    distinct = list({repr(case): case for case in sample}.values())
    step = max(1, len(distinct) // LARGE_PROCESSES)  # spread over the run, not its first cases
    assert distinct, "no command line ended without a stand-in: nothing to run as a process"
    for argv, env, cache_path in distinct[::step][:LARGE_PROCESSES]:
        check_process(argv, env, cache_path)


def check_process(argv: list, env: dict, cache_path: str) -> None:
    with sandbox(cache_path) as box:
        full = {**os.environ, **{k: v for k, v in env.items() if v is not None}}
        for k in [k for k, v in env.items() if v is None]:
            full.pop(k, None)
        full["PYTHONPATH"] = ROOT
        proc = subprocess.Popen(
            [sys.executable, "-m", "blocks", *argv],
            cwd=box.root,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its workers, if any, are in its process group
        )
        try:
            out, err = proc.communicate(timeout=PROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            verdict(f"python -m blocks {' '.join(argv)}", [f"ran over {PROCESS_TIMEOUT_S} s"])
            return
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind
        # TensorFlow's C++ start-up lines on stderr are not the project's.
        err = "\n".join(ln for ln in err.splitlines() if not _tf_log_line(ln))
        problems = stderr_problems(proc.returncode, err, out)
        problems += [
            f"{c} (a file it does not own)" for c in box.changes(_outputs(argv, proc.returncode))
        ]
        verdict(f"process: python -m blocks {' '.join(argv)}  [{env}, {cache_path}]", problems)


def _tf_log_line(line: str) -> bool:
    return (
        line.startswith(("WARNING: All log messages before absl", "I0000", "W0000", "E0000"))
        or "cpu_feature_guard" in line
        or line.startswith("To enable the following instructions")
    )


# --- the public API ---------------------------------------------------------------------------


class Bad:
    """A value the case knows to be wrong for its argument: the call must refuse it."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Bad({self.value!r})"


def valid_or_bad(valid, bad):
    """A value of `valid` as it is, or one of `bad` marked Bad."""
    bad = st.sampled_from(tuple(bad)).map(Bad)
    return st.one_of(st.sampled_from(tuple(valid)), bad) if valid else bad


def unwrap(kwargs: dict) -> tuple:
    """(plain keyword arguments, names of the Bad ones)."""
    bad = sorted(k for k, v in kwargs.items() if isinstance(v, Bad))
    return {k: v.value if isinstance(v, Bad) else v for k, v in kwargs.items()}, bad


@st.composite
def api_arguments(draw, options: dict, at_least_one_bad: bool):
    """A subset of `options` ({name: (valid values, bad values)}); with `at_least_one_bad`, one
    of them is always bad (the case must never get to real work)."""
    names = draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=4))
    kwargs = {n: draw(valid_or_bad(*options[n])) for n in names}
    if at_least_one_bad and not any(isinstance(v, Bad) for v in kwargs.values()):
        name = draw(st.sampled_from(sorted(options)))
        kwargs[name] = Bad(draw(st.sampled_from(tuple(options[name][1]))))
    return kwargs


# Every model given to a case, with the weights it was built with: no case may change them (each
# call given a model fails, and a save that poisons it restores it).
_BUILT: dict = {}


def as_built(model) -> dict:
    return _BUILT.setdefault(id(model), (model, export_weights_copy(model)))[1]


def export_weights_copy(model) -> dict:
    return {k: np.array(v) for k, v in blocks.canonical_variables(model).items()}


def changed_weights(model) -> list:
    built = as_built(model)
    now = blocks.canonical_variables(model)
    return [k for k, v in now.items() if not np.array_equal(np.asarray(v), built[k])]


def api_call(case: str, call, *, bad=(), model=None, outputs=(), on_success=None, box=None):
    """Run `call()`; fail if it accepted a Bad value, raised anything but a one-line documented
    error, changed the model on an error, or changed a file but `outputs`."""
    problems = []
    if model is not None:
        as_built(model)
    failed = True
    with nothing_starts(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = call()
            failed = False
        except Started as e:
            if bad:
                problems.append(f"with bad {', '.join(bad)}, it got as far as {e.what}")
        except Exception as e:
            problems += error_problems(e)
    if not failed:
        if bad:
            problems.append(f"accepted bad {', '.join(bad)}")
        elif on_success is not None:
            problems += on_success(result)
    if failed and model is not None and changed_weights(model):
        problems.append(f"the model changed although the call failed: {changed_weights(model)[:3]}")
    problems += [
        f"{c} (a file it does not own)" for c in box.changes(outputs if not failed else ())
    ]
    verdict(case, problems)


def profiles(*strategies, examples=()):
    """The small profile's test; the large one (exhaustive) is its `.exhaustive`. Both run
    `examples` (keyword arguments of the test) first: problems found once, kept found."""

    def wrap(body):
        tests = []
        for profile in (SMALL, LARGE):
            test = given(*strategies)(body)
            for kwargs in examples:
                test = example(**kwargs)(test)
            tests.append(profile(test))
        tests[0].exhaustive = pytest.mark.exhaustive(tests[1])
        return tests[0]

    return wrap


@pytest.fixture(scope="module")
def model():
    """One small model for every API case (building is the slow part)."""
    built = blocks.resnet18("subclassed", input_shape=SHAPE, seed=0)
    as_built(built)
    return built


BUILD_OPTIONS = {
    "arch": (tuple(ARCHS), ("resnet", "", None, 3, "Seed")),
    "input_shape": (
        (SHAPE, [16, 16, 3], (None, None, 3)),
        ((2, 2, 3), (16, 16), (16, 16, 0), (16.5, 16, 3), "16x16x3", (-1, 16, 3), (16, 16, None)),
    ),
    "dtype_policy": (DTYPE_POLICIES, ("float16", "int8", "", 3, "Float32")),
    "input_format": (("channels_last",), ("NHWC", None, "channels-last", 1)),
    "num_classes": ((10, 1), (0, -3, 2.5, True, "10")),
    "seed": ((0, None, 7), (-1, 1.5, "0", [0])),
    "data_format": ((), ("channels_last", "NCHW")),  # not an argument of the builders
}


@profiles(
    st.sampled_from(("resnet18", "resnet34")),
    valid_or_bad(("auto", *VARIANT_NAMES), ("nope", "", None, 3, "Subclassed", "auto ")),
    api_arguments(BUILD_OPTIONS, at_least_one_bad=False),
    st.sampled_from(CACHES),
)
def test_builders(builder, variant, kwargs, cache_path):
    """A build with a bad value is refused; all valid, only resnet18("auto") builds (it reads the
    pick cache, which a decoy at RESNET_BLOCKS_CACHE must survive), the others get a bad value."""
    if not isinstance(variant, Bad) and (variant, builder) != ("auto", "resnet18"):
        # Only resnet18("auto") builds with all values valid: a build takes a second.
        if not unwrap(kwargs)[1]:
            kwargs = {**kwargs, "seed": Bad(-1)}
    args, bad = unwrap(kwargs)
    bad += ["variant"] if isinstance(variant, Bad) else []
    name = variant.value if isinstance(variant, Bad) else variant
    with sandbox(cache_path) as box:
        api_call(
            f"blocks.{builder}({name!r}, **{args!r})  [cache {cache_path}]",
            lambda: getattr(blocks, builder)(name, **args),
            bad=bad,
            box=box,
        )


GOOD_IMAGES = np.zeros((2, *SHAPE), np.float32)
BAD_IMAGES = (
    np.zeros(SHAPE, np.float32),  # no batch axis
    np.zeros((2, 16, 16, 4), np.float32),
    np.zeros((2, 3, 16, 16), np.float32),
    np.zeros((2, 8, 8, 3), np.float32),
    np.zeros((2, *SHAPE), np.uint8),
    np.zeros((2, *SHAPE), np.int32),
    np.zeros((2, *SHAPE), bool),
    np.zeros((2, *SHAPE), object),
    "images",
    None,
    [1.0, 2.0],  # BAD_IMAGES_LIST
    [[0.0] * 3] * 2,
    {"images": GOOD_IMAGES},
)
BAD_IMAGES_LIST = 10

# Labels with good images in training: missing, of another dtype, batch or range.
BAD_LABELS = (
    "missing",
    np.zeros(2, np.float32),
    np.zeros(3, np.int32),
    np.array([0, 99]),
    np.zeros((2, 10), np.int32),
    "labels",
)


@profiles(
    valid_or_bad(MODES, ("Train", "", None, "training", 1)),
    valid_or_bad((None, *EXECUTIONS), ("nope", "XLA", "", 0, "graph,xla")),
    valid_or_bad((None, "float32"), ("float16", "nope")),
    valid_or_bad((None, 1, 2), (0, -1, 1.5, "2", True)),
    st.integers(0, len(BAD_IMAGES) - 1),
    st.integers(0, len(BAD_LABELS) - 1),
    st.booleans(),
    examples=[
        # a policy no model has; training without labels; a list as images
        dict(
            mode="train",
            execution="eager",
            dtype_policy=Bad("nope"),
            threads=None,
            image=0,
            label=0,
            train_labels=False,
        ),
        dict(
            mode="train",
            execution="graph",
            dtype_policy=None,
            threads=None,
            image=0,
            label=0,
            train_labels=True,
        ),
        dict(
            mode="inference",
            execution="graph",
            dtype_policy=None,
            threads=None,
            image=BAD_IMAGES_LIST,
            label=0,
            train_labels=False,
        ),
    ],
)
def test_compiled_step(model, mode, execution, dtype_policy, threads, image, label, train_labels):
    """compiled_step refuses bad arguments; the step it returns refuses bad images (and in
    training missing or bad labels, given good images) in one line, leaving the model as it was.
    Every call is given a bad input: none runs a real step (or an engine's conversion)."""
    kwargs = dict(mode=mode, execution=execution, dtype_policy=dtype_policy, threads=threads)
    args, bad = unwrap(kwargs)
    if args["execution"] not in blocks.ENGINES and "threads" in bad:
        bad.remove("threads")  # an engine's setting: TensorFlow's executions ignore it
    with sandbox() as box:
        made = {}

        def make():
            made["step"] = blocks.compiled_step(model, **args)

        api_call(f"blocks.compiled_step(model, **{args!r})", make, bad=bad, model=model, box=box)
        if "step" not in made:
            return
        step = made["step"]
        if args["mode"] == "train" and train_labels:
            labels = BAD_LABELS[label]
            call_args = (
                (GOOD_IMAGES,)
                if isinstance(labels, str) and labels == "missing"
                else (
                    GOOD_IMAGES,
                    labels,
                )
            )
            what = f"labels {labels!r}"
        else:
            images = BAD_IMAGES[image]
            call_args = (images, np.zeros(2, np.int32)) if args["mode"] == "train" else (images,)
            what = f"images {type(images).__name__} {getattr(images, 'shape', '')}"
            what += f" {getattr(images, 'dtype', '')}"
        api_call(
            f"compiled_step(model, **{args!r})({what})",
            lambda: step(*call_args),
            bad=["images or labels"],
            model=model,
            box=box,
        )


PATH_OBJECTS = (None, 3, b"w.npz", ["w.npz"])
NAMING_VALUES = (None, *NAMINGS)
BAD_NAMINGS = ("nope", "Canonical", "", 3)
WEIGHT_SUFFIXES = (".npz", ".safetensors")


def _own_weights_file(path):
    """On a successful save: the file has the format its suffix names, and a suffix is one."""
    from blocks.weights import files

    suffix = os.path.splitext(path)[1].lower()
    if suffix not in WEIGHT_SUFFIXES:
        return [f"saved weights under {path!r}: the suffix names no weights format"]
    with open(path, "rb") as f:
        kind = files.sniff(f.read(64))
    if kind != suffix[1:]:
        return [f"saved {kind or 'unknown'} weights under {path!r}"]
    return []


def _weights_cases(model_keys):
    # Mappings import_weights must refuse: empty, foreign, misshaped, non-float, non-finite.
    first = model_keys[0]
    return (
        {},
        FOREIGN,
        {first: np.zeros((1,), np.float32)},
        {k: np.zeros(s, np.int32) for k, s in model_keys[:3]},
        {k: np.full(s, np.nan, np.float32) for k, s in model_keys},
        {3: np.zeros(1)},
        [("conv1.kernel", np.zeros(1))],
        "weights.npz",
        None,
    )


@pytest.fixture(scope="module")
def model_keys(model):
    return [(k, tuple(v.shape)) for k, v in blocks.canonical_variables(model).items()]


@profiles(
    st.sampled_from(("save_weights", "load_weights", "read_weights", "import_weights")),
    st.one_of(st.sampled_from(FUZZ_PATHS), st.sampled_from(PATH_OBJECTS).map(Bad)),
    valid_or_bad(NAMING_VALUES, BAD_NAMINGS),
    st.integers(0, 8),
    st.booleans(),
    examples=[
        # a directory; a suffix of no weights format; non-finite weights
        dict(function="save_weights", path="adir", naming=None, which=0, poison=False),
        dict(function="save_weights", path="new.h5", naming=None, which=0, poison=False),
        dict(function="save_weights", path="new.npz", naming=None, which=0, poison=True),
    ],
)
def test_weights(model, model_keys, function, path, naming, which, poison):
    """Weights in and out: every decoy, missing and odd path, junk namings and mappings. Nothing
    here is a weights file of this model, so every load fails, leaving the model unchanged; a save
    writes only its own path, in the format the suffix names (and never non-finite weights)."""
    args, bad = unwrap({"path": path, "naming": naming})
    path, naming = args["path"], args["naming"]
    variable = blocks.canonical_variables(model)["fc.bias"]
    with sandbox() as box:
        if function == "save_weights":
            if naming is None:
                naming = "canonical"
            poison = poison and not bad
            outputs = [path] if isinstance(path, str) else []
            saved = variable.numpy()
            if poison:
                variable.assign(np.full(saved.shape, np.nan, saved.dtype))
                bad = ["weights (NaN in fc.bias)"]
            try:
                api_call(
                    f"blocks.save_weights(model{' with NaN' if poison else ''}, {path!r}, "
                    f"naming={naming!r})",
                    lambda: blocks.save_weights(model, path, naming=naming),
                    bad=bad,
                    outputs=outputs,
                    on_success=lambda _: _own_weights_file(os.path.join(box.root, path)),
                    box=box,
                )
            finally:
                variable.assign(saved)
        elif function == "load_weights":
            api_call(
                f"blocks.load_weights(model, {path!r}, naming={naming!r})",
                lambda: blocks.load_weights(model, path, naming=naming),
                bad=bad + ["a path holding no weights of this model"],
                model=model,
                box=box,
            )
        elif function == "read_weights":
            good = path in ("small.npz", "small.safetensors")
            api_call(
                f"blocks.read_weights({path!r})",
                lambda: blocks.read_weights(path),
                bad=[] if good else ["a path holding no weights"],
                box=box,
            )
        else:
            weights = _weights_cases(model_keys)[which]
            shown = weights if not isinstance(weights, dict) else f"<{len(weights)} keys>"
            api_call(
                f"blocks.import_weights(model, {shown!r}, naming={naming!r})",
                lambda: blocks.import_weights(model, weights, naming=naming),
                bad=bad + ["weights of no such model"],
                model=model,
                box=box,
            )


EXPORT_PATHS = (
    *FUZZ_PATHS,
    "out.onnx",
    "out.tflite",
    "out.xml",
    "saved",
    "out.ONNX",
    "adir/x.onnx",
)


@profiles(
    valid_or_bad(EXPORT_FORMATS, ("nope", "ONNX", "", None, "tflite", "npz")),
    st.one_of(st.sampled_from(EXPORT_PATHS), st.sampled_from(PATH_OBJECTS).map(Bad)),
    valid_or_bad((1, 2), (0, -1, 2.5, True, "1", None, 10**30)),
    st.booleans(),
)
def test_export(model, format, path, batch_size, overwrite):
    """blocks.export refuses a bad format, batch size, path or an occupied target before any
    conversion (which the stand-in stops: an export of valid arguments passes there), and leaves
    no file behind, its temporary directory included."""
    args, bad = unwrap(dict(format=format, path=path, batch_size=batch_size))
    with sandbox() as box:
        api_call(
            f"blocks.export(model, **{args!r}, overwrite={overwrite})",
            lambda: blocks.export(model, overwrite=overwrite, **args),
            bad=bad,
            box=box,
        )


PICK_OPTIONS = {
    "device": ((None, "CPU:0"), ("TPU:0", "", 3, "nope")),
    "mode": (MODES, ("Train", "", None)),
    "batch_size": ((1, 64), (0, -1, 2.5, True, "64")),
    "dtype_policy": (DTYPE_POLICIES, ("float16", "", "nope")),
    "arch": (tuple(ARCHS), ("resnet", None)),
    "input_shape": ((None, (32, 32, 3)), ((32, 16, 3), (32, 32), "32", (32, 32, 1))),
    "image_size": ((None, 16), (0, -1, 2.5, "16")),
    "variants": ((None, ["subclassed"]), ([], ["nope"], [None])),
    "executions": ((None, ["graph"]), ([], ["nope"], "graph,xla")),
    "runtimes": ((None, ["default"]), ([], ["nope"], "default,onednn")),
    "strategy": (("none",), ("nope", None, "Mirrored")),
    "replicas": ((None, 1), (0, -2, 2.5)),
    "precisions": ((None, ["float32", "mixed_bfloat16"]), ([], ["bf16"], "float32")),
    "max_top1_disagreement": ((0.01, 0), (-0.1, 2, "1%", float("nan"))),
    "max_logit_error": ((None, 0.05), (-1, "0.1", float("nan"))),
    # The decoys: w.npz holds text, picks.json is a directory; and a file that is not there.
    "weights": ((None,), ("w.npz", "picks.json", "nope.npz", "")),
    "images": ((None,), ("w.npz", "picks.json", "nope.npz", "")),
}
RACE_OPTIONS = {
    **PICK_OPTIONS,
    "budget_s": ((None, 5), (0, -1, float("nan"), "5")),
    "progress": ((None, lambda *a: None), (3, "bar")),
}


@profiles(
    st.sampled_from(("pick", "cached_pick")),
    api_arguments(RACE_OPTIONS, at_least_one_bad=False),
    st.sampled_from(CACHES),
    examples=[
        dict(function="pick", kwargs={"progress": Bad("bar")}, cache_path=FRESH_CACHE),
        dict(function="cached_pick", kwargs={}, cache_path="picks.json"),
        dict(
            function="pick",
            kwargs={"image_size": Bad(0), "input_shape": (32, 32, 3)},
            cache_path=FRESH_CACHE,
        ),
    ],
)
def test_pick_options(function, kwargs, cache_path):
    """blocks.pick refuses every bad option before a worker starts (the stand-in for the pool
    stops a pick there: with all options valid, that is a pass); cached_pick reads the cache
    without touching a decoy at RESNET_BLOCKS_CACHE."""
    if function == "cached_pick":  # it takes the options that name a pick, not how to run one
        kwargs = {k: v for k, v in kwargs.items() if k in PICK_OPTIONS}
    args, bad = unwrap(kwargs)
    with sandbox(cache_path) as box:
        api_call(
            f"blocks.{function}(**{args!r})  [cache {cache_path}]",
            lambda: getattr(blocks, function)(**args),
            bad=bad,
            box=box,
        )


# The large profile of the API: the same properties, many more cases.
test_builders_exhaustive = test_builders.exhaustive
test_compiled_step_exhaustive = test_compiled_step.exhaustive
test_weights_exhaustive = test_weights.exhaustive
test_export_exhaustive = test_export.exhaustive
test_pick_options_exhaustive = test_pick_options.exhaustive
