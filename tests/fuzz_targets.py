"""Fuzz targets for every loader that reads a file: each may succeed or raise an EdgeseqError, nothing else.

Shared by tests/test_fuzz.py (a bounded run in the default suite) and bench/fuzz_loaders.py (a longer run).
"""

import json
import tempfile
from pathlib import Path

from edgeseq.errors import EdgeseqError

TARGETS = {}


def target(name):
    def register(fn):
        TARGETS[name] = fn
        return fn

    return register


def _write(data: bytes, suffix: str) -> Path:
    tmp = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    tmp.write(data)
    tmp.close()
    return Path(tmp.name)


def run_target(name: str, data: bytes) -> None:
    """Raise AssertionError only for a non-EdgeseqError exception (a crash as far as a user is concerned)."""
    try:
        TARGETS[name](data)
    except EdgeseqError as exc:
        assert "\n" not in str(exc), f"{name}: multi-line error {exc!r}"
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{name}: {type(exc).__name__}: {exc}") from exc


def _on_file(data: bytes, suffix: str, load) -> None:
    """Write the bytes to a file with this suffix, hand its path to the loader, always remove it."""
    path = _write(data, suffix)
    try:
        load(path)
    finally:
        path.unlink()


def _open_runner(path: Path) -> None:
    import edgeseq

    with edgeseq.load(path) as runner:
        runner.inputs  # noqa: B018


@target("onnx")
def fuzz_onnx(data: bytes) -> None:
    _on_file(data, ".onnx", _open_runner)


@target("profile_toml")
def fuzz_profile(data: bytes) -> None:
    from edgeseq.devices import load_profile

    _on_file(data, ".toml", load_profile)


@target("recipe_toml")
def fuzz_recipe(data: bytes) -> None:
    from edgeseq.recipe import load_recipe

    _on_file(data, ".toml", load_recipe)


@target("report_json")
def fuzz_report(data: bytes) -> None:
    from edgeseq.report import load_report

    _on_file(data, ".json", load_report)


@target("checkpoint")
def fuzz_checkpoint(data: bytes) -> None:
    from edgeseq.models.weights import read_checkpoint

    for suffix in (".pt", ".safetensors"):
        _on_file(data, suffix, read_checkpoint)


@target("engine_sidecar")
def fuzz_engine_sidecar(data: bytes) -> None:
    from edgeseq.formats.tensorrt import validate_sidecar, companion_paths, read_sidecar

    engine = _write(b"engine", ".engine")
    sidecar = companion_paths(engine)["sidecar"]
    sidecar.write_bytes(data)
    try:
        side = read_sidecar(engine)
        if side is not None:
            validate_sidecar(side, {"tensorrt_version": "10.0", "gpu_name": "GPU", "compute_capability": "9.0"},
                          engine.name)
    finally:
        engine.unlink()
        sidecar.unlink()


@target("tflite")
def fuzz_tflite(data: bytes) -> None:
    _on_file(data, ".tflite", _open_runner)


SEEDS = {
    "engine_sidecar": [json.dumps({"schema": "edgeseq.tensorrt-engine/1", "tensorrt_version": "10.0", "gpu_name": "GPU",
                                   "compute_capability": "9.0", "model": "cbhg"}).encode()],
    "profile_toml": [b'name = "x"\nruntime = "onnxruntime"\ndelegate = "cpu"\n[transport]\nkind = "local"\n'],
    "recipe_toml": [b'name = "t"\nmodel = "cbhg-lite"\nformats = ["onnx"]\ndevices = ["local-cpu"]\n'
                    b'[[budgets]]\ndevice = "local-cpu"\np90_ms = 5\n'],
    "report_json": [json.dumps({"schema": "edgeseq.report/1", "model": {}, "environment": {}}).encode()],
}
