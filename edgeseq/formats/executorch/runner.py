"""ExecutorchRunner: a .pte on ExecuTorch's runtime (XNNPACK delegate), running the program's plan of methods
(plan_exec.py interprets it; the device agent ships that same file, so a board runs the plan as this runner does)."""

from __future__ import annotations

import threading
from pathlib import Path

from ..._lazy import require
from ..._quiet import native_stderr_quiet
from ...enums import Format
from ...errors import ArtifactError, InputError, RuntimeFailure, UnsupportedError
from ...runner import Runner
from ...tensors import TensorSpec
from . import plan_exec
from .options import EXTRA, METADATA_METHOD

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
    with native_stderr_quiet(replay=False):  # "Resetting threadpool to N threads."
        plan_exec.set_threads(threads)


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
    try:
        with native_stderr_quiet(replay=False):
            return plan_exec.read_metadata(program)
    except KeyError:
        raise ArtifactError(f"{str(path)!r} holds no edgeseq metadata (no {METADATA_METHOD} method)") from None
    except TypeError:
        raise ArtifactError(f"{str(path)!r} has corrupted edgeseq metadata (not a table)") from None
    except Exception as exc:
        raise ArtifactError(f"{str(path)!r} has unreadable edgeseq metadata ({type(exc).__name__})") from None


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
        self._plan: plan_exec.PlanProgram | None = None

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
        return self._plan.max_time

    def _load(self):
        set_threads(self.threads)
        program = load_program(self.path)
        self._meta = program_metadata(program, self.path)
        try:
            with native_stderr_quiet(replay=False):  # XNNPACK's cpuinfo lines at its first init
                self._plan = plan_exec.PlanProgram(program, self._meta)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{str(self.path)!r} has corrupted edgeseq metadata ({type(exc).__name__}: "
                                f"{str(exc)[:100]})") from None
        except Exception as exc:
            raise ArtifactError(f"ExecuTorch cannot load the methods of {str(self.path)!r}: "
                                f"{(str(exc).splitlines() or [''])[0][:200]}") from None
        self._program = program
        specs = tuple(TensorSpec(d["name"], tuple(d["shape"]), d.get("dtype", "float32")) for d in self._plan.inputs)
        return specs, tuple(d["name"] for d in self._plan.outputs)

    def _infer(self, feed):
        plan = self._plan
        too_long = plan.too_long(feed)
        if too_long:
            raise InputError(f"{self.path.name} serves sequences up to T={too_long[1]}; got T={too_long[0]} "
                             "(re-export with a larger max_time, or split the input)")
        results = []
        with self._lock, plan_exec.torch_serial():
            for row in plan.rows(feed):
                try:
                    results.append(plan.run_row(row))
                except (InputError, RuntimeFailure):
                    raise
                except Exception as exc:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise RuntimeFailure(f"ExecuTorch failed on {self.path.name}: {first[:300]}") from None
        return plan.join(results)

    def _close(self):
        self._plan, self._program = None, None


def read_metadata(path: str | Path) -> dict[str, str]:
    """The program's edgeseq metadata (its constant method), read without running the model."""
    path = Path(path)
    return program_metadata(load_program(path), path)
