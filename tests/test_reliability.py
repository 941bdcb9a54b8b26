"""Reliability: killed exports leave nothing at the final path, leftovers are cleaned, bad input is one line."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import edgeseq
from edgeseq.artifact import STAGING_PREFIX, atomic_dir, atomic_path, remove_stale, sha256_path, size_path

KILL_SCRIPT = """
import sys, edgeseq
from edgeseq.matrix import MatrixOptions
print("started", flush=True)
# little work before the export (the reference is timed with the same iterations), a long sweep after it: the
# staged artifact then sits in the staging folder for a minute (cbhg-lite, 2 cores), seconds even on a fast machine
edgeseq.run_matrix("cbhg-lite", out_dir=sys.argv[1],
                   options=MatrixOptions(times=(1000, 2000, 4000), batches=(3, 8), warmup=1, iterations=10))
"""


def test_kill_9_mid_export_leaves_nothing_and_the_next_run_is_clean(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until the run is inside its staging folder, then kill it hard
        staged = [p for p in out.glob(f"{STAGING_PREFIX}*/*.onnx")] if out.exists() else []
        if staged:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the export never reached its staging folder")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "cbhg-lite.fp32.onnx").exists() and not (out / "report.json").exists()
    assert any(p.name.startswith(STAGING_PREFIX) for p in out.iterdir())  # the killed run's leftovers
    edgeseq.run_matrix("cbhg-lite", out_dir=out, options=edgeseq.MatrixOptions(times=(7,), batches=(1,),
                                                                               iterations=2))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cbhg-lite.fp32.onnx", "report.html", "report.json", "report.md"]


def test_failed_atomic_write_leaves_nothing(tmp_path):
    final = tmp_path / "a.onnx"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("converter crashed")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_artifact_is_replaced_whole_or_not_at_all(tmp_path):
    """Core ML's .mlpackage: a failed write keeps the old folder as it was; a good one replaces it, with the usual
    permissions, and its digest covers every file's path and content."""
    final = tmp_path / "m.mlpackage"
    with atomic_dir(final) as staged:
        (staged / "Data").mkdir()
        (staged / "Data" / "w.bin").write_bytes(b"old")
    digest = sha256_path(final)
    assert size_path(final) == len(b"old") and os.stat(final).st_mode & 0o055
    with pytest.raises(RuntimeError), atomic_dir(final) as staged:
        (staged / "half").write_bytes(b"x")
        raise RuntimeError("converter crashed")
    assert [p.name for p in tmp_path.iterdir()] == ["m.mlpackage"] and sha256_path(final) == digest
    with atomic_dir(final) as staged:
        (staged / "Data").mkdir()
        (staged / "Data" / "w.bin").write_bytes(b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["m.mlpackage"] and sha256_path(final) != digest
    (final / "Data" / "w.bin").rename(final / "w.bin")  # same bytes, another path: another digest
    moved = sha256_path(final)
    (final / "w.bin").rename(final / "Data" / "w.bin")
    assert moved != sha256_path(final)


def test_stale_partials_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f".m.onnx.{dead_pid}.abc.partial").write_bytes(b"x")
    (tmp_path / f".m.onnx.{dead_pid}.abc.partial.data").write_bytes(b"x")  # a converter's side file
    (tmp_path / f"{STAGING_PREFIX}{dead_pid}-xyz").mkdir()
    (tmp_path / f".m.onnx.{os.getpid()}.abc.partial").write_bytes(b"x")  # this process: still running
    (tmp_path / "keep.onnx").write_bytes(b"x")
    removed = {p.name for p in remove_stale(tmp_path)}
    assert removed == {f".m.onnx.{dead_pid}.abc.partial", f".m.onnx.{dead_pid}.abc.partial.data",
                       f"{STAGING_PREFIX}{dead_pid}-xyz"}
    assert (tmp_path / "keep.onnx").exists() and (tmp_path / f".m.onnx.{os.getpid()}.abc.partial").exists()


def test_artifacts_get_normal_permissions(lite_onnx):
    mode = os.stat(lite_onnx.path).st_mode & 0o777
    assert mode & 0o044  # readable by group/others under the usual umask, not mkstemp's 0600


def test_nan_inputs_are_refused_not_propagated(lite_onnx):
    feed = edgeseq.get_model("cbhg-lite").example_inputs(batch=1, time=10)
    feed["features"][0, 3, 5] = np.inf
    with pytest.raises(edgeseq.EdgeseqError, match="NaN or Inf"):
        edgeseq.load(lite_onnx.path).infer(feed)
