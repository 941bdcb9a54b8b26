import json
import os
import shutil
import subprocess
import sys

import pytest

import edgeseq

if not __import__("torch").cuda.is_available():  # Triton kernels run on its CPU interpreter here (test_triton_gru.py)
    os.environ.setdefault("TRITON_INTERPRET", "1")

# pytest-xdist's workers start with COLUMNS=80 set (the README's test command runs two); the CLI's console takes it
# for a terminal's width and would crop its tables, where a CI log gets the full width (edgeseq/cli/console.py)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)

COVERS_OUT = "EDGESEQ_COVERS_OUT"  # tests/test_support.py: where a collection run lists the (model, format) pairs


def pytest_collection_finish(session):
    """With EDGESEQ_COVERS_OUT set, write the (model, format) pairs that the selected tests are marked to cover."""
    out = os.environ.get(COVERS_OUT)
    if out:
        pairs = sorted({tuple(m.args) for item in session.items for m in item.iter_markers("covers")})
        with open(out, "w") as fh:
            json.dump(pairs, fh)


@pytest.fixture(scope="session")
def lite_onnx(tmp_path_factory):
    """One cbhg-lite ONNX export shared by the runner / parity / CLI tests (exporting takes about a second)."""
    out = tmp_path_factory.mktemp("lite")
    return edgeseq.export("cbhg-lite", "onnx", out_dir=out)


@pytest.fixture(scope="session")
def lite_tflite(tmp_path_factory):
    """One cbhg-lite TFLite export (about 20 s) shared by the TFLite and bisection tests."""
    pytest.importorskip("litert_torch", reason="needs litert-torch: pip install 'edgeseq[tflite]'")
    return edgeseq.export("cbhg-lite", "tflite", out_dir=tmp_path_factory.mktemp("lite-tflite"))


@pytest.fixture
def run_cli():
    """Run the real `edgeseq` entry point in a subprocess: exit codes and stderr as a user sees them."""

    def run(*args, cwd=None, timeout=600, columns: str | None = "200"):
        """columns=None: no COLUMNS in the environment, as in a CI log or a pipe."""
        exe = shutil.which("edgeseq")
        cmd = [exe, *args] if exe else [sys.executable, "-m", "edgeseq", *args]
        env = {k: v for k, v in __import__("os").environ.items() if k != "COLUMNS"}
        if columns is not None:
            env["COLUMNS"] = columns
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)

    return run


def assert_one_line_error(proc, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not proc.stdout.strip(), proc.stdout  # no library banner either (onnxruntime prints its EP Error there)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:"), lines[0]
    return lines[0]
