"""`import edgeseq` stays light, and every module imports without any optional SDK being pulled in."""

import json
import pkgutil
import subprocess
import sys

import edgeseq

OPTIONAL = ("onnx", "onnxruntime", "onnxslim", "onnxscript", "onnxconverter_common", "tensorrt", "ai_edge_litert",
            "tensorflow", "litert_torch", "triton", "coremltools", "executorch")
# Modules that hold an optional SDK's own code (Triton kernels), imported lazily by their one user only.
SDK_MODULES = {"edgeseq.kernels.triton_gru_kernels"}


def _imported_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_import_edgeseq_imports_nothing_heavy():
    mods = _imported_after("import edgeseq")
    assert not {"torch", "numpy", *OPTIONAL} & mods


def test_every_module_imports_without_optional_sdks():
    names = [m.name for m in pkgutil.walk_packages(edgeseq.__path__, "edgeseq.")
             if not m.name.endswith("__main__") and m.name not in SDK_MODULES]
    assert "edgeseq.formats.onnx" in names and "edgeseq.cli.app" in names and "edgeseq.kernels.triton_gru" in names
    mods = _imported_after("\n".join(f"import {n}" for n in names))
    assert not set(OPTIONAL) & mods, set(OPTIONAL) & mods


def test_lazy_api_names_resolve():
    for name in edgeseq.__all__:
        assert getattr(edgeseq, name) is not None


def test_missing_extra_names_the_pip_command(monkeypatch):
    from edgeseq._lazy import require
    from edgeseq.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # simulates the package being absent
    try:
        require("onnxruntime", "onnx")
    except MissingExtraError as exc:
        assert "pip install 'edgeseq[onnx]'" in str(exc)
    else:
        raise AssertionError("require() did not raise for a missing module")


def test_every_subpackage_ships_in_the_wheel():
    """pyproject lists packages explicitly (devices/ and exporters/ are mapped in): a new one must be added."""
    import tomllib
    from pathlib import Path

    root = Path(edgeseq.__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "edgeseq").rglob("__init__.py")}
    assert found <= listed, found - listed
