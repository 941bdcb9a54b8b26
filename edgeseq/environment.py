"""The environment fingerprint a report carries, read without importing heavy packages."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from ._version import __version__

PACKAGES = ("torch", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxslim", "onnxconverter-common",
            "ai-edge-litert", "litert-torch", "litert-converter", "ai-edge-quantizer", "tensorrt")
# CPU features that decide which int8 kernels a runtime picks (VNNI / AMX / ARM dot products) and fp16 support;
# reports carry the ones present
ISA_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
             "asimd", "asimddp", "fphp", "i8mm", "sve")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return isa_flags(line.split(":", 1)[1].split())
    except OSError:
        pass
    return []


def isa_flags(flags) -> list[str]:
    """The ISA_FLAGS among a CPU's flags, in ISA_FLAGS order."""
    have = set(flags)
    return [f for f in ISA_FLAGS if f in have]


def int8_isa(flags: list[str] | tuple[str, ...] | None = None, machine: str | None = None) -> str:
    """The CPU's int8 kernel family: what decides whether x86 u8s8 GEMMs saturate (they do without VNNI or AMX,
    whose 16-bit intermediate sums overflow) and which dot-product kernels ARM runs. Most capable first."""
    flags = set(cpu_flags() if flags is None else flags)
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64") or "asimd" in flags:
        return "arm64-i8mm" if "i8mm" in flags else "arm64-dotprod" if "asimddp" in flags else "arm64-neon"
    if "amx_int8" in flags:
        return "x86-amx"
    if "avx512_vnni" in flags:
        return "x86-avx512-vnni"
    if "avx_vnni" in flags:
        return "x86-avx-vnni"
    if "avx2" in flags:
        return "x86-avx2"
    return f"{machine or 'unknown'}-baseline"


def cpu_info(model: str | None = None, flags=None, machine: str | None = None) -> dict:
    """Which CPU a result was measured on: this host's by default, or a device's from what its agent read. The
    int8 kernel family is the field that decides whether an int8 artifact's parity carries over."""
    flags = cpu_flags() if flags is None else isa_flags(flags)
    machine = machine or platform.machine()
    return {"model": model or cpu_model(), "machine": machine, "flags": flags, "int8_isa": int8_isa(flags, machine)}


def fingerprint() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    flags = cpu_flags()
    return {
        "edgeseq": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": flags,
        "int8_isa": int8_isa(flags),
        "packages": versions,
    }
