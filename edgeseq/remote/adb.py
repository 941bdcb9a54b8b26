"""adb transport (Android): `adb push` / `adb shell` / `adb pull`, and LiteRT's benchmark_model on the phone.

Two ways to run on a phone:
- latency (`edgeseq profile`): push the .tflite, run LiteRT's prebuilt `benchmark_model` (no Python needed on the
  phone) and parse what it prints into a LatencyResult (benchmark_model.py);
- parity (`edgeseq check`): the same device agent as over ssh, for phones with a Python that has numpy and
  ai-edge-litert (e.g. Termux), driven through AdbConnection by RemoteRunner.

adb >= Android 7 returns the shell command's exit status (shell protocol v2), which is what the runners rely on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..artifact import sha256_file
from ..devices import DeviceProfile
from ..enums import Format
from ..errors import DeviceError, InputError, MissingExtraError, UnsupportedError
from ..latency import Timings
from ..runner import Runner
from ..tensors import TensorSpec
from .benchmark_model import benchmark_argv, parse_output, shell_line
from .connection import (Completed, Connection, Executor, RetryPolicy, Unreachable, validate_remote_path, last_line,
                         run_subprocess)

BENCHMARK_ENV = "EDGESEQ_BENCHMARK_MODEL"  # a local benchmark_model binary to push when the phone has none
_TRANSIENT = ("device offline", "no devices/emulators found", "not found", "protocol fault", "connection reset",
              "closed", "failed to connect", "cannot connect")


class AdbConnection(Connection):
    def __init__(self, serial: str = "", *, label: str = "", retry: RetryPolicy = RetryPolicy(),
                 executor: Executor = run_subprocess, adb: str = "adb"):
        self.serial = serial
        self.label = label or f"adb {serial or '(the only device)'}"
        self.retry = retry
        self.execute = executor
        self.adb = adb

    def base(self) -> list[str]:
        return [self.adb, *(["-s", self.serial] if self.serial else [])]

    def shell_argv(self, command: str) -> list[str]:
        return [*self.base(), "shell", command]

    def push_argv(self, local_paths: Sequence[str], remote_dir: str) -> list[str]:
        return [*self.base(), "push", *local_paths, f"{remote_dir}/"]

    def pull_argv(self, remote_paths: Sequence[str], local_dir: str) -> list[str]:
        return [*self.base(), "pull", *remote_paths, local_dir]

    def classify(self, done: Completed, *, own_exit: bool) -> None:
        """Raise for adb's own failures (its messages start with 'adb: ' or 'error: '), not the command's."""
        if done.returncode == 0:
            return
        text = done.err_text.strip() or done.out_text.strip()
        adb_lines = [ln for ln in text.splitlines() if ln.startswith(("adb: ", "error: "))]
        if not adb_lines and not own_exit:
            return
        line = (adb_lines or [last_line(text, f"adb exited with {done.returncode}")])[-1][:300]
        low = line.lower()
        if "unauthorized" in low:
            raise DeviceError(f"{self.label}: the phone has not authorized this computer; accept the USB debugging "
                              f"prompt on it ({line})")
        if "more than one device" in low:
            raise DeviceError(f"{self.label}: several devices are attached; set [transport] serial in the profile "
                              f"({line})")
        if any(s in low for s in _TRANSIENT):
            raise Unreachable(f"{self.label}: cannot reach the phone: {line}")
        raise DeviceError(f"{self.label}: {line}")

    def run(self, command: str, *, timeout: float, retry: RetryPolicy | None = None) -> Completed:
        return self.attempt(self.shell_argv(command), timeout, lambda done: self.classify(done, own_exit=False),
                            retry)

    def push(self, local_paths: Sequence[str], remote_dir: str) -> None:
        self.attempt(self.push_argv(local_paths, remote_dir), 600, lambda done: self.classify(done, own_exit=True))

    def pull(self, remote_paths: Sequence[str], local_dir: str) -> None:
        self.attempt(self.pull_argv(remote_paths, local_dir), 600, lambda done: self.classify(done, own_exit=True))


class BenchmarkModelRunner(Runner):
    """Latency of a .tflite on a phone through LiteRT's benchmark_model; it gives timings, not outputs."""

    format = Format.TFLITE

    def __init__(self, path: str | Path, profile: DeviceProfile, connection: Connection, *,
                 threads: int | None = None, local_binary: str | None = None, timeout_s: float = 900.0):
        super().__init__(device=profile.delegate.value, threads=threads or profile.threads)
        from ..formats import detect_format

        self.path = Path(path)
        if detect_format(self.path) is not Format.TFLITE:
            raise InputError(f"benchmark_model runs .tflite files; {self.path.name} is not one")
        self.profile = profile
        self.connection = connection
        self.timeout_s = timeout_s
        where = f"{profile.source or profile.name} [transport]"
        self.remote_dir = validate_remote_path(profile.transport.remote_dir, f"{where} remote_dir")
        self.binary = validate_remote_path(profile.transport.benchmark_model or f"{self.remote_dir}/benchmark_model",
                                        f"{where} benchmark_model")
        self.local_binary = local_binary if local_binary is not None else os.environ.get(BENCHMARK_ENV) or None
        self.graph = ""
        self._raw: dict[str, str] = {}  # declared input name -> the tensor name benchmark_model's --input_layer wants
        self._metadata: dict[str, str] | None = None

    @property
    def runtime(self) -> str:
        return f"litert-{self.device}@{self.profile.name}"

    def cpu(self) -> dict:
        """Unknown: benchmark_model reports timings only, and the phone's CPU is not this host's."""
        return {}

    @property
    def metadata(self) -> dict[str, str]:
        """The .tflite's edgeseq metadata, read here from the file (benchmark_model reports none): profile() needs
        it to know the model (its input at the asked batch and T), the precision and the device's precisions."""
        if self._metadata is None:
            try:
                from ..formats import read_metadata

                self._metadata = read_metadata(self.path, Format.TFLITE)
            except MissingExtraError:
                self._metadata = {}
        return dict(self._metadata)

    def commands(self, feed_shapes: dict[str, tuple[int, ...]] | None, *, warmup: int, iterations: int,
                 budget_s: float | None) -> str:
        """The shell line run on the phone (2>&1: benchmark_model logs to stderr on some builds)."""
        argv = benchmark_argv(self.binary, self.graph, threads=self.threads, delegate=self.profile.delegate.value,
                              warmup=warmup, iterations=iterations, budget_s=budget_s, inputs=feed_shapes)
        return shell_line(argv) + " 2>&1"

    def _load(self):
        self.graph = f"{self.remote_dir}/{sha256_file(self.path)[:16]}-{self.path.name}"
        validate_remote_path(self.graph, "artifact file name")
        probe = (f"mkdir -p {self.remote_dir} && {{ [ -x {self.binary} ] || echo no-benchmark; }} && "
                 f"{{ [ -f {self.graph} ] || echo no-graph; }}")
        missing = self.connection.run(probe, timeout=120).out_text.split()
        if "no-benchmark" in missing:
            if not self.local_binary:
                raise DeviceError(
                    f"{self.connection.label}: LiteRT's benchmark_model is not at {self.binary} on the phone; push "
                    f"the prebuilt android_aarch64_benchmark_model there (adb push ... {self.binary} && adb shell "
                    f"chmod +x {self.binary}) or set {BENCHMARK_ENV}=/path/to/it to let edgeseq push it")
            if not Path(self.local_binary).is_file():
                raise InputError(f"{BENCHMARK_ENV}={self.local_binary!r} is not a file")
            self.connection.push([self.local_binary], self.remote_dir)
            pushed = f"{self.remote_dir}/{Path(self.local_binary).name}"
            move = f" && mv -f {pushed} {self.binary}" if pushed != self.binary else ""
            self.connection.run(f"chmod +x {pushed}{move}", timeout=60)
        if "no-graph" in missing:
            self.connection.push([str(self.path)], self.remote_dir)
            self.connection.run(f"mv -f {self.remote_dir}/{self.path.name} {self.graph}", timeout=60)
        inputs, self._raw = _local_inputs(self.path, self.metadata)
        return inputs, ()

    def _infer(self, feed):
        raise UnsupportedError(f"{self.profile.name}: benchmark_model times the model but returns no outputs; parity "
                               "on the phone runs through edgeseq's python device agent (edgeseq check)")

    def timed_runs(self, feed, *, warmup: int, iterations: int, budget_s: float | None) -> Timings:
        self.load()
        shapes = {name: tuple(int(d) for d in value.shape) for name, value in (feed or {}).items()}
        if self._inputs:  # the interpreter's input order and tensor names, which benchmark_model requires
            shapes = {self._raw.get(s.name, s.name): shapes[s.name] for s in self._inputs if s.name in shapes}
        elif shapes:  # given a name that is no tensor of the graph, benchmark_model ignores the shape
            raise UnsupportedError(f"LiteRT here cannot read {self.path.name}, so the names of its input tensors are "
                                   "unknown and benchmark_model would time it at its default shape, not the one "
                                   f"asked ({', '.join(shapes)})")
        done = self.connection.run(self.commands(shapes or None, warmup=warmup, iterations=iterations,
                                                 budget_s=budget_s), timeout=self.timeout_s)
        text = done.out_text + done.err_text
        if done.returncode == 127:
            raise DeviceError(f"{self.connection.label}: {self.binary} cannot run on the phone "
                              f"({last_line(text, 'not found')})")
        try:
            timings = parse_output(text)
        except DeviceError as exc:
            raise DeviceError(f"{self.connection.label}: {exc}") from None
        note = f"timed on {self.profile.name} by LiteRT benchmark_model; {timings.note}"
        return Timings(**{**timings.__dict__, "note": note})

    def _close(self):
        self.connection.close()


def _local_inputs(path: Path, meta: dict[str, str]) -> tuple[tuple[TensorSpec, ...], dict[str, str]]:
    """The .tflite's inputs read here with a local LiteRT (the tflite extra; none is a MissingExtraError), named
    as the file declares them (edgeseq metadata: `features`, what feeds use), with the tensor name benchmark_model's
    --input_layer needs for each (`serving_default_args_0`): given `features` it would not fix T, and the phone would
    time the model at its default shape instead."""
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite"):
        try:
            mod = __import__(module, fromlist=["Interpreter"])
        except ImportError:
            continue
        try:
            interpreter = mod.Interpreter(model_path=str(path))
            details = interpreter.get_input_details()
        except Exception:  # an interpreter that cannot read it here may still run it there
            return (), {}
        raw = [d["name"] for d in details]
        names = _declared_input_names(meta, interpreter, details) or raw
        specs = tuple(TensorSpec(name, tuple(int(x) if int(x) >= 0 else None
                                             for x in d.get("shape_signature", d["shape"])),
                                 getattr(d["dtype"], "__name__", str(d["dtype"]))) for name, d in zip(names, details))
        return specs, dict(zip(names, raw))
    raise MissingExtraError(f"timing {path.name} with benchmark_model reads its input tensors here first (the names "
                            "--input_layer takes, and its free dimensions): no LiteRT is installed; install it with: "
                            "pip install 'edgeseq[tflite]'")


def _declared_input_names(meta: dict[str, str], interpreter, details) -> list[str] | None:
    """edgeseq's declared input names (in signature order) matched to the interpreter's inputs by tensor index."""
    from ..formats.tflite import declared_names

    declared = declared_names(meta, "edgeseq.inputs") or []
    try:
        signatures = interpreter.get_signature_list()
        if len(signatures) != 1 or len(declared) != len(details):
            return None
        key = next(iter(signatures))
        by_signature = interpreter.get_signature_runner(key).get_input_details()
        index_to_name = {by_signature[n]["index"]: name for n, name in zip(signatures[key]["inputs"], declared)}
        return [index_to_name[d["index"]] for d in details]
    except Exception:  # no metadata, another signature layout: the raw names are all there is
        return None
