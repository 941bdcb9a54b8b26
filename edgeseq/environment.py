"""The environment fingerprint a report carries, read without importing heavy packages."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from ._version import __version__

PACKAGES = ("torch", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxslim", "ai-edge-litert", "litert-torch",
            "litert-converter", "ai-edge-quantizer", "tensorrt")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "edgeseq": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
    }
