"""OrtRunner: an .ort file on ONNX Runtime's CPU provider (the ONNX runner, told the file's format)."""

from __future__ import annotations

from ...enums import Format
from ...errors import UnsupportedError
from ..onnx.runner import OnnxRunner

RUNTIME = "onnxruntime-ort"  # its rows read onnxruntime-ort-cpu, apart from the .onnx rows (onnxruntime-cpu)


class OrtRunner(OnnxRunner):
    format = Format.ORT

    def __init__(self, path, *, device: str | None = None, threads: int | None = None):
        if device not in (None, "cpu"):
            raise UnsupportedError(f"an .ort file runs on ONNX Runtime's CPU provider here (it was optimized for it); "
                                   f"run the .onnx on {device}")
        super().__init__(path, device="cpu", threads=threads)

    @property
    def runtime(self) -> str:
        return f"{RUNTIME}-{self.device}"

    def _session_options(self, ort):
        options = super()._session_options(ort)
        options.add_session_config_entry("session.load_model_format", "ORT")  # whatever the file is called
        return options


def runtime_devices() -> list[str]:
    return ["cpu"]
