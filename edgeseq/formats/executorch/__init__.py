"""ExecuTorch (.pte): PyTorch's own mobile runtime, every method XNNPACK-delegated. One program serves every T up to
its max_time: the model is cut at its GRUs into dynamic-T methods and static K-step recurrence methods the runner
chains (split.py explains why). `FORMAT` is what the rest of edgeseq asks; the submodules do the work: options,
split (torch only), convert, runner (which also reads the metadata, a constant method of the program).
"""

from __future__ import annotations

from ...enums import Format, Precision
from ..contract import ExportFormat, ExportSettings
from .options import DEFAULT_MAX_TIME, EXTRA, PRECISIONS, ExecutorchOptions
from .runner import RUNTIME, ExecutorchRunner, read_metadata, runtime_devices

# the flatbuffer file identifier at bytes 4:8: "ET" + the schema version (ExecuTorch 1.x writes ET12)
IDENTIFIER_PREFIX = b"ET"


class ExecutorchFormat(ExportFormat):
    format = Format.EXECUTORCH
    title = "ExecuTorch"
    extra = EXTRA
    precisions = PRECISIONS
    suffixes = (".pte",)
    needs = ("executorch",)
    settings = frozenset({"max_time"})
    runtime = RUNTIME
    agent_modules = ("plan_exec.py",)  # a board's agent runs the plan with the interpreter this runner uses

    def looks_like(self, head: bytes) -> bool:
        return head[4:6] == IDENTIFIER_PREFIX and head[6:8].isdigit()

    def _options(self, precision: Precision, settings: ExportSettings) -> ExecutorchOptions:
        return ExecutorchOptions() if settings.max_time is None else ExecutorchOptions(max_time=settings.max_time)

    def export(self, spec, out, *, precision=Precision.FP32, options=None, weights=None):
        from .convert import export

        return export(spec, out, precision=precision, options=options, weights=weights)

    def sweep_limits(self, options: ExecutorchOptions) -> dict[str, int]:
        return {"max_time": options.max_time}

    def runner(self, path, *, device=None, threads=None) -> ExecutorchRunner:
        return ExecutorchRunner(path, device=device, threads=threads)

    def runtime_devices(self) -> list[str]:
        return runtime_devices()

    def read_metadata(self, path) -> dict[str, str]:
        return read_metadata(path)


FORMAT = ExecutorchFormat()

__all__ = ["DEFAULT_MAX_TIME", "EXTRA", "FORMAT", "PRECISIONS", "ExecutorchFormat", "ExecutorchOptions",
           "ExecutorchRunner", "read_metadata", "runtime_devices"]
