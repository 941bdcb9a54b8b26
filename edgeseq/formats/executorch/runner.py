"""ExecutorchRunner: a .pte on ExecuTorch's runtime (XNNPACK delegate), running the program's plan of methods.

The plan (metadata `edgeseq.plan`, see split.py) lists the methods in order: a `method` step runs one delegated
method on named values, a `scan` step runs a recurrence method ceil(T / K) times, carrying the hidden state, over
the GRU input padded at its end (scan order: the padding follows every valid step, so it never reaches one)."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

import numpy as np

from ..._lazy import require
from ..._quiet import native_stderr_quiet
from ...enums import Format
from ...errors import ArtifactError, InputError, RuntimeFailure, UnsupportedError
from ...runner import Runner
from ...tensors import TensorSpec
from .options import EXTRA, METADATA_METHOD, PLAN_KEY

RUNTIME = "executorch-xnnpack"


def _runtime():
    """The runtime, its native start-up chatter (cpuinfo, threadpool lines on stderr) kept off the CLI's output."""
    runtime = require("executorch.runtime", EXTRA, quiet=True).Runtime
    with native_stderr_quiet(replay=False):
        return runtime.get()


def runtime_devices() -> list[str]:
    _runtime()
    return ["cpu"]


def set_threads(threads: int | None) -> None:
    """XNNPACK's thread pool is process-wide in ExecuTorch's Python bindings; size it for this runner."""
    if not threads:
        return
    try:
        from executorch.extension.pybindings import portable_lib

        with native_stderr_quiet(replay=False):  # "Resetting threadpool to N threads."
            portable_lib._unsafe_reset_threadpool(int(threads))
    except (ImportError, AttributeError):  # an older runtime without it: its default pool
        pass


def load_program(path: Path):
    if not path.is_file():
        raise ArtifactError(f"{str(path)!r} does not exist or is not a file")
    runtime = _runtime()
    try:
        with native_stderr_quiet(replay=False):
            return runtime.load_program(path.read_bytes())
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArtifactError(f"ExecuTorch cannot load {str(path)!r}: {first[:300]}") from None


def program_metadata(program, path: Path) -> dict[str, str]:
    if METADATA_METHOD not in set(program.method_names):
        raise ArtifactError(f"{str(path)!r} holds no edgeseq metadata (no {METADATA_METHOD} method)")
    try:
        with native_stderr_quiet(replay=False):
            blob = program.load_method(METADATA_METHOD).execute([])[0]
        meta = json.loads(bytes(blob.numpy().astype(np.uint8)).decode())
    except Exception as exc:
        raise ArtifactError(f"{str(path)!r} has unreadable edgeseq metadata ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{str(path)!r} has corrupted edgeseq metadata (not a table)")
    return {str(k): str(v) for k, v in meta.items()}


class ExecutorchRunner(Runner):
    """The .pte's methods on ExecuTorch; a batch runs row by row (every method is planned for batch 1)."""

    format = Format.EXECUTORCH

    def __init__(self, path: str | Path, *, device: str | None = None, threads: int | None = None):
        if device not in (None, "cpu"):
            raise UnsupportedError(f"the ExecuTorch runner runs on cpu (XNNPACK) here, not {device!r}")
        super().__init__(device="cpu", threads=threads)
        self.path = Path(path)
        self._lock = threading.Lock()
        self._meta: dict[str, str] = {}
        self._methods: dict = {}

    @property
    def runtime(self) -> str:
        return f"{RUNTIME}-cpu"

    @property
    def metadata(self) -> dict[str, str]:
        self.load()
        return dict(self._meta)

    @property
    def max_time(self) -> int | None:
        self.load()
        value = self._meta.get("edgeseq.max_time")
        return int(value) if value else None

    def _load(self):
        set_threads(self.threads)
        program = load_program(self.path)
        self._meta = program_metadata(program, self.path)
        try:
            self._plan = json.loads(self._meta[PLAN_KEY])
            declared_in = json.loads(self._meta["edgeseq.inputs"])
            declared_out = json.loads(self._meta["edgeseq.outputs"])
            with native_stderr_quiet(replay=False):  # XNNPACK's cpuinfo lines at its first init
                self._methods = {s["method"]: program.load_method(s["method"]) for s in self._plan["steps"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{str(self.path)!r} has corrupted edgeseq metadata ({type(exc).__name__}: "
                                f"{str(exc)[:100]})") from None
        except Exception as exc:
            raise ArtifactError(f"ExecuTorch cannot load the methods of {str(self.path)!r}: "
                                f"{(str(exc).splitlines() or [''])[0][:200]}") from None
        self._program = program
        specs = tuple(TensorSpec(d["name"], tuple(d["shape"]), d.get("dtype", "float32")) for d in declared_in)
        self._out_batch = [list(d["shape"]).index("batch") if "batch" in d["shape"] else None for d in declared_out]
        return specs, tuple(d["name"] for d in declared_out)

    def _infer(self, feed):
        max_time = self.max_time
        batch_axes = [list(s.shape).index("batch") if "batch" in s.shape else None for s in self._inputs]
        rows = 1
        for spec, axis in zip(self._inputs, batch_axes):
            value = feed[spec.name]
            for k, dim in enumerate(spec.shape):
                if dim == "time" and max_time is not None and value.shape[k] > max_time:
                    raise InputError(f"{self.path.name} serves sequences up to T={max_time}; got T={value.shape[k]} "
                                     "(re-export with a larger max_time, or split the input)")
            if axis is not None:
                rows = value.shape[axis]
        results = []
        with self._lock, _torch_serial():
            for b in range(rows):
                row = [np.ascontiguousarray(feed[s.name] if ax is None else np.take(feed[s.name], [b], axis=ax))
                       for s, ax in zip(self._inputs, batch_axes)]
                try:
                    results.append(self._run_plan(row))
                except (InputError, RuntimeFailure):
                    raise
                except Exception as exc:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise RuntimeFailure(f"ExecuTorch failed on {self.path.name}: {first[:300]}") from None
        outs = {}
        for k, name in enumerate(self._outputs):
            axis = self._out_batch[k]
            parts = [r[k] for r in results]
            outs[name] = parts[0] if axis is None or len(parts) == 1 else np.concatenate(parts, axis=axis)
        return outs

    def _run_plan(self, row: list) -> list[np.ndarray]:
        """The plan on one batch row. Values between methods are numpy arrays: torch's own ops on them (stack,
        flip) took milliseconds each here, its thread pool contending with XNNPACK's."""
        env = dict(zip(self._plan["inputs"], row))
        for step in self._plan["steps"]:
            method = self._methods[step["method"]]
            if step["kind"] == "method":
                outs = method.execute([_tensor(env[n]) for n in step["inputs"]])
                env.update((n, o.numpy().copy()) for n, o in zip(step["outputs"], outs))
                continue
            env[step["output"]] = self._scan(method, step, env[step["gi"]],
                                             env[step["h0"]] if step.get("h0") else None,
                                             env[step["lengths"]] if step.get("lengths") else None)
        return [env[n] for n in self._plan["outputs"]]

    @staticmethod
    def _scan(method, step: dict, gi: np.ndarray, h0, lengths=None):
        """One recurrence: the K-step method over ceil(T / K) chunks, the hidden state carried between calls. With
        `lengths` (a packed batch; one row here) over the row's own frames only, zeros after them."""
        d, hidden, k, seq = step["directions"], step["hidden"], step["steps"], step.get("layout") == "seq"
        full = gi.shape[1]
        if lengths is not None:
            gi = gi[:, :max(0, min(int(np.asarray(lengths).reshape(-1)[0]), full))]
        if seq:  # [1, T, D*3H], time order -> [T, D, 1, 3H], scan order (the backward direction flipped)
            gi = gi[0].reshape(gi.shape[1], d, 1, 3 * hidden)
        t = gi.shape[0]
        padded = -(-t // k) * k
        scan = np.zeros((padded, *gi.shape[1:]), np.float32)  # zeros after the last valid step (scan order)
        scan[:t] = gi
        if seq and d == 2:
            scan[:t, 1] = gi[::-1, 1]
        ys = np.empty((padded, d, 1, hidden), np.float32)
        h = np.zeros((d, 1, hidden), np.float32) if h0 is None else np.ascontiguousarray(h0, np.float32)
        for start in range(0, padded, k):
            y, h_out = method.execute([_tensor(scan[start:start + k]), _tensor(h)])
            ys[start:start + k] = y.numpy()
            h = h_out.numpy().copy()
        y = ys[:t]  # [T, D, 1, H]
        if not seq:
            return y
        if d == 2:
            y = np.stack([y[:, 0], y[::-1, 1]], 1)
        out = np.zeros((1, full, d * hidden), np.float32)
        out[:, :t] = y.transpose(2, 0, 1, 3).reshape(1, t, d * hidden)
        return out

    def _close(self):
        self._methods, self._program = {}, None


@contextlib.contextmanager
def _torch_serial():
    """torch's intra-op pool off while the methods run: the bindings copy each output into a torch tensor, and
    above ~300 KB torch splits that copy over its OpenMP threads, which cost a constant 8 ms per copy on a loaded
    2-core host (measured; its pool contends with XNNPACK's). The methods' own threads are XNNPACK's (`threads`)."""
    import torch

    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def _tensor(array: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The program's edgeseq metadata (its constant method), read without running the model."""
    path = Path(path)
    return program_metadata(load_program(path), path)
