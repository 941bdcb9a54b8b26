"""RemoteRunner: the Runner interface over a Connection, with edgeseq's device agent (agent.py) doing the work there.

Session layout on the device (remote_dir from the profile):

    REMOTE_DIR/cache/agent-<sha>.py         the device agent, content-addressed (pushed once per version)
    REMOTE_DIR/cache/<sha>-<artifact name>  the artifact, content-addressed (pushed once per content)
    REMOTE_DIR/jobs/<session>/              this session's feeds, job, outputs and results; removed on close()

Round trips: load() = probe the cache, push what is missing, describe the model (3 commands, 2 when cached);
a batch of feeds (prefetch: a whole parity sweep, or padding's batches and rows), a timing job or the streaming
gate's streams (stream_runs) = push, run, pull (3 commands). infer() answers
from what prefetch brought back and only makes its own round trip for a feed it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import tempfile
import uuid
from importlib import resources
from pathlib import Path

import numpy as np

from ..artifact import sha256_path
from ..devices import DeviceProfile
from ..enums import Format
from ..errors import DeviceError, InputError, MissingExtraError, RuntimeFailure, UnsupportedError
from ..latency import Timings
from ..runner import Runner
from ..tensors import TensorSpec, validate_feed
from .connection import Completed, Connection, RetryPolicy, validate_remote_path, last_line

# the device agent's modules (edgeseq.remote), shipped as one zip python runs; never imported on the host
AGENT_MODULES = ("agent.py", "agent_base.py", "agent_trtexec.py", "agent_executorch.py")
_AGENT_MAIN = b"import sys\n\nimport agent\n\nsys.exit(agent.main(sys.argv[1:]))\n"
ERROR_PREFIX = "edgeseq-device-error: "  # kept equal to agent.ERROR_PREFIX (a test checks)
PYTHON_RUNTIMES = {"onnxruntime": Format.ONNX, "litert": Format.TFLITE,
                   "tensorrt": Format.ONNX,  # TensorRT: the device builds its engine from the TensorRT-ready ONNX
                   "coreml": Format.COREML,  # a folder (.mlpackage): it travels as a zip the agent unpacks
                   "executorch": Format.EXECUTORCH}
_PROVIDERS = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "tensorrt",
              "XnnpackExecutionProvider": "xnnpack", "NnapiExecutionProvider": "nnapi"}
DESCRIBE_TIMEOUT_S = 300


def device_suffixes(runtime: str) -> list[str]:
    """The artifact files a device's agent opens for a profile's runtime: the runtime's own format (what a TensorRT
    device builds from: an ONNX), then every format that names the runtime in its device_runtimes (.ort)."""
    from ..formats import file_suffix, registered

    want = PYTHON_RUNTIMES.get(runtime)
    if want is None:
        return []
    return [file_suffix(want)] + [f.suffixes[0] for f in registered() if runtime in f.device_runtimes]


def agent_sources() -> dict[str, bytes]:
    """The agent's modules by file name, as they go into the zip: its own, then each format's device-side modules
    (`agent_modules`: self-contained files of the format's package, e.g. ExecuTorch's plan interpreter)."""
    from ..formats import registered

    sources = {name: resources.files("edgeseq.remote").joinpath(name).read_bytes() for name in AGENT_MODULES}
    for fmt in registered():
        for name in fmt.agent_modules:
            if name in sources:
                raise RuntimeError(f"two device-agent modules are named {name!r}")
            sources[name] = resources.files(type(fmt).__module__).joinpath(name).read_bytes()
    return sources


def agent_bytes() -> bytes:
    """The agent as one zip application (`python agent-<hash>.pyz ...`): its modules and a __main__; fixed
    timestamps, so the same sources give the same bytes and the device's cached copy is reused."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in [*agent_sources().items(), ("__main__.py", _AGENT_MAIN)]:
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def feed_digest(feed: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(feed):
        value = np.ascontiguousarray(feed[name])
        h.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def remote_relative(remote_dir: str) -> str:
    """'~/x' -> 'x': commands over ssh start in the home directory, and no quoting then needs a tilde expanded."""
    if remote_dir == "~":
        return "."
    return remote_dir[2:] if remote_dir.startswith("~/") else remote_dir


class RemoteRunner(Runner):
    """Runs an artifact on a device profile's runtime through `connection`; parity and latency come back here."""

    format = Format.ONNX  # per instance: set from the artifact in __init__

    def __init__(self, path: str | Path, profile: DeviceProfile, connection: Connection, *,
                 threads: int | None = None, timeout_s: float = 900.0):
        super().__init__(device=profile.delegate.value, threads=threads or profile.threads)
        from ..formats import detect_format

        self.path = Path(path)
        self.format = detect_format(self.path)
        self.profile = profile
        self.connection = connection
        self.timeout_s = timeout_s
        runtime = profile.runtime.value
        want = PYTHON_RUNTIMES.get(runtime)
        if want is None:
            raise UnsupportedError(f"device {profile.name!r} runs {runtime}; edgeseq's device agent drives "
                                   f"{', '.join(PYTHON_RUNTIMES)} (not {runtime} yet)")
        if self.format is not want and runtime not in self._format_facts().device_runtimes:
            raise InputError(f"device {profile.name!r} runs {runtime}, which takes "
                             f"{' / '.join(device_suffixes(runtime))} files; {self.path.name} is "
                             f"{self.format.value}")
        transport = profile.transport
        self.python = validate_remote_path(transport.python, f"{profile.source or profile.name} [transport] python")
        self.remote_dir = remote_relative(validate_remote_path(transport.remote_dir,
                                                            f"{profile.source or profile.name} [transport] remote_dir"))
        self.session = uuid.uuid4().hex[:12]
        self.job_dir = f"jobs/{self.session}"
        self._local: str | None = None
        self._answers: dict[str, dict | str] = {}
        self._info: dict = {}
        self._agent_name = ""
        self._artifact_name = ""
        self._model_name = ""  # what the device agent opens: the artifact, or a TensorRT build job naming it
        self._metadata: dict[str, str] | None = None
        self._to_device: dict[str, str] = {}  # declared input name -> the device runtime's (LiteRT: args_0, ...)
        self._from_device: dict[str, str] = {}  # the device runtime's output name -> declared
        self._narrow: dict[str, str] = {}  # declared input -> the narrower dtype the file takes (LiteRT: int32)
        self._widen: dict[str, str] = {}  # declared output -> its declared dtype, where the file narrowed it

    # ---- Runner ------------------------------------------------------------------------------------------------
    def _format_facts(self):
        from ..formats import get

        return get(self.format)

    @property
    def runtime(self) -> str:
        """'<runtime>-<device>@<profile>'; a file the profile's runtime opens besides its own format (an .ort on
        onnxruntime) is labelled as that format labels its local rows (onnxruntime-ort-cpu@...)."""
        if self.format is PYTHON_RUNTIMES[self.profile.runtime.value]:
            return f"{self.profile.runtime.value}-{self.device}@{self.profile.name}"
        return f"{self._format_facts().runtime_label(self.device)}@{self.profile.name}"

    @property
    def emulated(self) -> bool:
        return self.profile.emulated

    @property
    def metadata(self) -> dict[str, str]:
        """The artifact's edgeseq metadata (model, precision, max_time / max_batch), read from the file here by its
        format's own reader: the device's runtimes do not all report it (LiteRT reports none), and check() needs it to
        pick the tolerance and refuse a T past max_time before the sweep goes to the device. TensorRT: the build job's
        (its engine's precision); a host without the reader's extra: what the device reports."""
        if self._metadata is None:
            self._metadata = self._local_metadata()
        if self._metadata is None:
            self.load()
            self._metadata = dict(self._info.get("metadata", {}))
        return dict(self._metadata)

    def _local_metadata(self) -> dict[str, str] | None:
        if self.profile.runtime.value == "tensorrt":
            return None  # what runs is the engine: its build job (made here in load()) says its precision
        try:
            from ..formats import read_metadata

            return read_metadata(self.path, self.format)
        except MissingExtraError:
            return None

    def cpu(self) -> dict:
        """The device's CPU, as its agent read it while loading (empty from an agent too old to say)."""
        from ..environment import cpu_info

        self.load()
        got = self._info.get("cpu")
        if not isinstance(got, dict):
            return {}
        return cpu_info(str(got.get("model", "")) or "unknown", list(got.get("flags") or ()),
                        str(got.get("machine", "")) or "unknown")

    def describe(self) -> dict:
        d = super().describe()
        d.update(device_profile=self.profile.name, where=self.connection.label,
                 versions=self._info.get("versions", {}))
        return d

    def _load(self):
        self._local = tempfile.mkdtemp(prefix="edgeseq-remote-")
        try:
            opener = getattr(self.connection, "open", None)
            if opener:
                opener()
            agent = agent_bytes()
            self._agent_name = f"agent-{hashlib.sha256(agent).hexdigest()[:16]}.pyz"
            zipped = ".zip" if self.path.is_dir() else ""  # a folder artifact travels as one zip file
            self._artifact_name = f"{sha256_path(self.path)[:16]}-{self.path.name}{zipped}"
            validate_remote_path(self._artifact_name, "artifact file name")
            self._model_name, job = self._artifact_name, None
            if self.profile.runtime.value == "tensorrt":
                from .tensorrt_job import build_job

                job = build_job(self.path, self._artifact_name, self.profile.transport.trtexec)
                self._model_name = f"trt-{hashlib.sha256(job).hexdigest()[:16]}.json"
            missing = self._missing_from_cache()
            if missing:
                stage = Path(self._local) / "stage"
                stage.mkdir()
                if self._agent_name in missing:
                    (stage / self._agent_name).write_bytes(agent)
                if self._artifact_name in missing:
                    (_zip_folder if self.path.is_dir() else _link_or_copy)(self.path, stage / self._artifact_name)
                if job is not None and self._model_name in missing:
                    (stage / self._model_name).write_bytes(job)
                self.connection.push([str(stage / name) for name in missing], f"{self.remote_dir}/{self.job_dir}")
                shutil.rmtree(stage, ignore_errors=True)
            moves = " && ".join(f"mv -f {self.job_dir}/{n} cache/{n}" for n in missing)
            describe = self._python_command("describe", f"cache/{self._model_name}", self.profile.runtime.value,
                                            self.profile.delegate.value, str(self.threads or 0))
            timeout = DESCRIBE_TIMEOUT_S if job is None else max(DESCRIBE_TIMEOUT_S, self.timeout_s)  # engine build
            done = self._run_in_dir(f"{moves} && {describe}" if moves else describe, timeout)
            lines = done.out_text.strip().splitlines()
            try:
                self._info = json.loads(lines[-1] if lines else "")
            except json.JSONDecodeError:
                raise DeviceError(f"{self.connection.label}: the device agent printed no description "
                                  f"({last_line(done.out_text, 'no output')})") from None
        except BaseException:
            self._cleanup_remote()
            self._cleanup_local()
            raise
        self.device = _PROVIDERS.get(self._info.get("provider", ""), self._info.get("provider") or self.device)
        inputs = tuple(TensorSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in self._info["inputs"])
        return self._declared_names(inputs, tuple(self._info["outputs"]))

    def _declared_names(self, inputs: tuple[TensorSpec, ...], outputs: tuple[str, ...]):
        """The tensor names the artifact declares (edgeseq metadata), as the local runner uses them: LiteRT on the
        device knows a .tflite's tensors by its signature's names (args_0, output_0), so feeds and outputs are
        renamed on their way to and from the device."""
        if self._metadata is None:
            self._metadata = self._local_metadata()
        meta = self._metadata if self._metadata is not None else self._info.get("metadata", {})
        from ..formats.tflite import declared_tensors, narrowed

        declared = {key: declared_tensors(meta, f"edgeseq.{key}") for key in ("inputs", "outputs")}
        if declared["inputs"] and len(declared["inputs"]) == len(inputs):
            self._to_device = {name: t.name for (name, _), t in zip(declared["inputs"], inputs)}
            # an int64 input the converter narrowed to int32 is taken as declared and cast on its way to the device
            self._narrow = {name: t.dtype for (name, dtype), t in zip(declared["inputs"], inputs)
                            if narrowed(dtype, t.dtype)}
            inputs = tuple(TensorSpec(name, t.shape, dtype if name in self._narrow else t.dtype)
                           for (name, dtype), t in zip(declared["inputs"], inputs))
        if declared["outputs"] and len(declared["outputs"]) == len(outputs):
            self._from_device = {device: name for device, (name, _) in zip(outputs, declared["outputs"])}
            self._widen = {name: dtype for name, dtype in declared["outputs"] if dtype == "int64"}
            outputs = tuple(name for name, _ in declared["outputs"])
        return inputs, outputs

    def _device_value(self, name: str, value: np.ndarray) -> np.ndarray:
        """A declared input as the file takes it (int64 lengths -> int32), refused when its values do not fit."""
        cast = self._narrow.get(name)
        if cast is None:
            return value
        if value.size and (value.min() < np.iinfo(cast).min or value.max() > np.iinfo(cast).max):
            raise InputError(f"input {name!r} has values outside {cast}, which {self.path.name} takes")
        return value.astype(cast)

    def _declared_value(self, device_name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
        name = self._from_device.get(device_name, device_name)
        widen = self._widen.get(name)
        return name, (value.astype(widen) if widen and value.dtype != widen else value)

    def _infer(self, feed):
        key = feed_digest(feed)
        if key not in self._answers:
            self._run_batch([feed])
        answer = self._answers[key]
        if isinstance(answer, str):
            raise RuntimeFailure(f"{self.connection.label}: {answer}")
        return dict(answer)

    def prefetch(self, feeds) -> None:
        """Send every not-yet-answered valid feed to the device in one job; invalid ones fail later in infer()."""
        self.load()
        todo, seen = [], set()
        for feed in feeds:
            try:
                feed = validate_feed(self._inputs, feed)
            except InputError:
                continue
            key = feed_digest(feed)
            if key not in self._answers and key not in seen:
                seen.add(key)
                todo.append(feed)
        if todo:
            self._run_batch(todo)

    def timed_runs(self, feed, *, warmup: int, iterations: int, budget_s: float | None) -> Timings:
        self.load()
        feed = validate_feed(self._inputs, feed)
        result = self._job([feed], infer=False, timing={"warmup": warmup, "iterations": iterations,
                                                         "budget_s": budget_s})
        samples = result.get("timing", {}).get("samples_ms") or []
        peak = result.get("peak_rss_mb")
        return Timings.from_samples(samples, peak_rss_mb=float("nan") if peak is None else peak)

    def stream_runs(self, feed, plan: dict, chunks: tuple[int, ...], repeats: int):
        """The chunked-vs-full gate's calls (edgeseq.streaming.stream_plan's plan) run by the agent in one job, so a
        stream costs one round trip, not one per chunk, and each call is timed on the device: (full-call seconds,
        {chunk: each repeat's call seconds}, {chunk: the stream's outputs and final state, by declared names})."""
        self.load()
        feed = validate_feed(self._inputs, feed)
        to_in = self._to_device
        to_out = {declared: device for device, declared in self._from_device.items()}
        job = {"state": [[to_in.get(i, i), to_out.get(o, o)] for i, o in plan["state"]],
               "streamed": {to_in.get(n, n): axis for n, axis in plan["streamed"].items()},
               "out_axes": {to_out.get(n, n): axis for n, axis in plan["out_axes"].items()},
               "chunks": [int(c) for c in chunks], "repeats": int(repeats)}
        result = self._job([feed], infer=False, timing=None, stream=job)
        got: dict[int, dict[str, np.ndarray]] = {int(c): {} for c in chunks}
        with np.load(Path(self._local) / "outputs.npz", allow_pickle=False) as data:
            for key in data.files:
                chunk, _, name = key.partition("/")
                declared, value = self._declared_value(name, data[key])
                got[int(chunk[5:])][declared] = value
        timings = result.get("stream") or {}
        calls = {int(c): [list(run) for run in timings.get("calls_s", {}).get(str(c), [])] for c in chunks}
        if not timings.get("full_s") or not all(calls.values()):
            raise DeviceError(f"{self.connection.label}: the device sent no stream timings back")
        return list(timings["full_s"]), calls, got

    def node_trace(self, feed, *, warmup: int, iterations: int) -> list[dict]:
        """The device's onnxruntime profiler events for `iterations` runs after `warmup` (stage_profile maps them
        to the model's stages); a runtime without a profiler is a one-line DeviceError from the device."""
        self.load()
        feed = validate_feed(self._inputs, feed)
        result = self._job([feed], infer=False, timing=None, node_profile={"warmup": warmup, "iterations": iterations})
        events = result.get("node_trace")
        if not isinstance(events, list):
            raise DeviceError(f"{self.connection.label}: the device sent no profile back")
        return events

    def _close(self):
        self._cleanup_remote()
        self._cleanup_local()
        self._answers.clear()

    def _cleanup_remote(self) -> None:
        """Remove this session's job folder (best effort, one try) and release the connection."""
        try:
            self.connection.run(f"rm -rf {self.remote_dir}/{self.job_dir}", timeout=30, retry=RetryPolicy(attempts=1))
        except DeviceError:
            pass  # the device went away: nothing left there that we can reach
        finally:
            self.connection.close()

    # ---- jobs --------------------------------------------------------------------------------------------------
    def _run_batch(self, feeds: list[dict[str, np.ndarray]]) -> None:
        result = self._job(feeds, infer=True, timing=None)
        cases = result.get("cases", [])
        if len(cases) != len(feeds):
            raise DeviceError(f"{self.connection.label}: the device answered {len(cases)} of {len(feeds)} feeds")
        with np.load(Path(self._local) / "outputs.npz", allow_pickle=False) as data:
            outputs: dict[int, dict[str, np.ndarray]] = {}
            for key in data.files:
                case, _, name = key.partition("/")
                declared, value = self._declared_value(name, data[key])
                outputs.setdefault(int(case[4:]), {})[declared] = value
        for i, (feed, case) in enumerate(zip(feeds, cases)):
            self._answers[feed_digest(feed)] = case["error"] or outputs.get(i, {})

    def _job(self, feeds: list[dict[str, np.ndarray]], *, infer: bool, timing: dict | None,
             node_profile: dict | None = None, stream: dict | None = None) -> dict:
        local = Path(self._local)
        np.savez(local / "feeds.npz", **{f"case{i}/{self._to_device.get(name, name)}": self._device_value(name, value)
                                         for i, feed in enumerate(feeds) for name, value in feed.items()})
        job = {
            "model": f"cache/{self._model_name}",
            "runtime": self.profile.runtime.value,
            "delegate": self.profile.delegate.value,
            "threads": self.threads,
            "feeds": f"{self.job_dir}/feeds.npz",
            "outputs": f"{self.job_dir}/outputs.npz",
            "result": f"{self.job_dir}/result.json",
            "infer": infer,
            "timing": timing,
            "node_profile": node_profile,
            "stream": stream,
        }
        (local / "job.json").write_text(json.dumps(job))
        for stale in ("result.json", "outputs.npz"):
            (local / stale).unlink(missing_ok=True)
        self.connection.push([str(local / "feeds.npz"), str(local / "job.json")], f"{self.remote_dir}/{self.job_dir}")
        self._run_in_dir(self._python_command("run", f"{self.job_dir}/job.json"), self.timeout_s)
        wanted = ["result.json", "outputs.npz"] if infer or stream else ["result.json"]
        self.connection.pull([f"{self.remote_dir}/{self.job_dir}/{name}" for name in wanted], str(local))
        try:
            return json.loads((local / "result.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DeviceError(f"{self.connection.label}: no readable result came back ({exc})") from None

    # ---- commands ----------------------------------------------------------------------------------------------
    def _python_command(self, *args: str) -> str:
        return " ".join([self.python, f"cache/{self._agent_name}", *(shlex.quote(a) for a in args)])

    def _missing_from_cache(self) -> list[str]:
        names = list(dict.fromkeys([self._agent_name, self._artifact_name, self._model_name]))
        probe = (f"mkdir -p {self.remote_dir}/cache {self.remote_dir}/{self.job_dir} && cd {self.remote_dir}/cache && "
                 f"for f in {' '.join(names)}; do [ -f \"$f\" ] || echo \"$f\"; done")
        done = self.connection.run(probe, timeout=DESCRIBE_TIMEOUT_S)
        if done.returncode != 0:
            raise DeviceError(f"{self.connection.label}: cannot create {self.profile.transport.remote_dir} on the "
                              f"device: {last_line(done.err_text, f'exit code {done.returncode}')}")
        return [n for n in done.out_text.split() if n in names]

    def _run_in_dir(self, command: str, timeout: float) -> Completed:
        done = self.connection.run(f"cd {self.remote_dir} && {command}", timeout=timeout)
        if done.returncode == 0:
            return done
        err = done.err_text
        label = self.connection.label
        if ERROR_PREFIX in err:
            message = err[err.rindex(ERROR_PREFIX) + len(ERROR_PREFIX):].strip().splitlines()[0]
            raise DeviceError(f"{label}: {message}")
        if done.returncode == 127 or ("not found" in err.lower() and self.python in err):
            raise DeviceError(f"{label}: python {self.python!r} was not found on the device; set [transport] python "
                              f"in the profile ({last_line(err, 'command not found')})")
        if done.returncode == 126:
            raise DeviceError(f"{label}: python {self.python!r} on the device is not executable")
        if "syntaxerror" in err.lower():
            raise DeviceError(f"{label}: python {self.python!r} on the device is too old for edgeseq's device "
                              "runner (it needs Python 3.8+)")
        if done.returncode < 0 or done.returncode in (137, 139, 134):
            raise DeviceError(f"{label}: the device agent was killed (exit {done.returncode}; out of memory?)")
        raise DeviceError(f"{label}: the device agent failed (exit {done.returncode}): "
                          f"{last_line(err, 'no message')}")

    def _cleanup_local(self) -> None:
        if self._local:
            shutil.rmtree(self._local, ignore_errors=True)
            self._local = None


def _zip_folder(src: Path, dst: Path) -> None:
    """A folder artifact as one stored (uncompressed) zip of its files, paths relative to the folder."""
    import zipfile

    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as archive:
        for item in sorted(p for p in src.rglob("*") if p.is_file()):
            archive.write(item, item.relative_to(src).as_posix())


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
