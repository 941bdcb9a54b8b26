"""Runner: the one interface the parity harness and the profiler talk to (load / infer / close)."""

from __future__ import annotations

import abc
from typing import ClassVar

import numpy as np

from .enums import Format
from .tensors import TensorSpec, validate_feed


class Runner(abc.ABC):
    """Cheap to construct; heavy work happens in load(). Usable as a context manager.

    infer() validates the feed (names, dtypes, fixed dims, finite values) before the runtime sees it, so a bad
    feed is one InputError line for every format alike.
    """

    format: ClassVar[Format]
    spec = None  # the ModelSpec a runner was built from (a torch runner's); None for a file's runner

    def __init__(self, *, device: str | None = None, threads: int | None = None):
        if threads is not None and threads < 1:
            from .errors import InputError

            raise InputError(f"threads must be >= 1, got {threads}")
        self.device = device or "cpu"
        self.threads = threads
        self._loaded = False
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[str, ...] = ()

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def load(self) -> "Runner":
        if not self._loaded:
            self._inputs, self._outputs = self._load()
            self._loaded = True
        return self

    def close(self) -> None:
        if self._loaded:
            self._close()
            self._loaded = False

    def __enter__(self) -> "Runner":
        return self.load()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- use ---------------------------------------------------------------------------------------------------
    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        self.load()
        return self._inputs

    @property
    def output_names(self) -> tuple[str, ...]:
        self.load()
        return self._outputs

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.load()
        return self._infer(validate_feed(self._inputs, feed))

    def synchronize(self) -> None:
        """Wait for queued device work; a no-op on CPU runtimes."""

    def prefetch(self, feeds: list[dict[str, np.ndarray]]) -> None:
        """A hint that these feeds come next (a parity sweep). A no-op here; a remote runner sends them all to the
        device in one round trip and answers the following infer() calls from what came back."""

    def timed_runs(self, feed: dict[str, np.ndarray], *, warmup: int, iterations: int, budget_s: float | None):
        """Latency samples of infer(feed) as latency.Timings; a remote runner times on the device instead."""
        from .latency import time_locally

        return time_locally(self, feed, warmup=warmup, iterations=iterations, budget_s=budget_s)

    @property
    @abc.abstractmethod
    def runtime(self) -> str:
        """Name of the runtime + device as shown in reports, e.g. 'onnxruntime-cpu'."""

    @property
    def emulated(self) -> bool:
        """True where the runtime runs under an emulator (a QEMU device): its numerics count, its timings do not."""
        return False

    def cpu(self) -> dict:
        """The CPU this runner computes on (environment.cpu_info): the host's here; a device runner's own."""
        from .environment import cpu_info

        return cpu_info()

    @property
    def metadata(self) -> dict[str, str]:
        """The artifact's edgeseq metadata (edgeseq.model, .precision, ...); {} where the runner has none."""
        return {}

    def describe(self) -> dict:
        return {"runtime": self.runtime, "format": self.format.value, "device": self.device, "threads": self.threads}

    # ---- per format --------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _load(self) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]: ...

    @abc.abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _close(self) -> None:
        pass
