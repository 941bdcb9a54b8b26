"""Parity on ARM64 kernels without ARM hardware: Debian arm64 under QEMU user mode (tools/arm64-target), reached
over ssh through the same device path as a Raspberry Pi.

Every ONNX and TFLite precision of cbhg-lite and cbhg is exported once here (module-scoped), then checked on the
target at T = 1, 200, 1000 (batch 1): each must pass the default tolerances, and each parity row must record an
ARM64 int8 kernel family read by the device agent inside the emulated root, not this x86 host's.

Skips, naming what is missing, when the target is not up (`sudo tools/arm64-target up`); with
EDGESEQ_REQUIRE_ARM64=1 (what .ci/run sets after bringing it up) the same condition fails instead.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import edgeseq
from edgeseq.devices import get_profile

TOOL = Path(__file__).resolve().parents[1] / "tools" / "arm64-target"
REQUIRED = os.environ.get("EDGESEQ_REQUIRE_ARM64") == "1"
ONNX, LITERT = "arm64-qemu", "arm64-qemu-litert"
MODELS = ("cbhg-lite", "cbhg")
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
TIMES = (1, 200, 1000)
# fp16 ONNX has a test of its own below: on a core with FP16 arithmetic it computes in half precision
CASES = [pytest.param(m, f, p, id=f"{m}-{f}-{p}", marks=pytest.mark.covers(m, f))
         for m in MODELS for f in ("onnx", "tflite") for p in PRECISIONS if (f, p) != ("onnx", "fp16")]
FP16_ONNX = ("cbhg-lite", "onnx", "fp16")


def target_status() -> dict:
    done = subprocess.run([sys.executable, str(TOOL), "status", "--json"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return {"up": False, "missing": [done.stderr.strip() or "tools/arm64-target status failed"]}
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def target():
    """The target's status when it is up and its profiles load, else a skip (a failure under EDGESEQ_REQUIRE_ARM64)."""
    status = target_status()
    why = None
    if not status["up"]:
        fix = "; ".join(status.get("missing") or []) or "run `sudo tools/arm64-target up` (" + (
            "root cached" if status.get("root_ready") else "builds the arm64 root first, ~5 min") + ")"
        why = f"the ARM64 target (Debian arm64 under QEMU) is not up: {fix}"
    else:
        try:
            get_profile(ONNX), get_profile(LITERT)
        except edgeseq.errors.EdgeseqError as exc:
            why = f"the ARM64 target is up but its profiles do not load: {exc}"
    if why:
        if REQUIRED:
            pytest.fail(f"{why} (EDGESEQ_REQUIRE_ARM64=1: this run must check on ARM64)")
        pytest.skip(why)
    return status


# exports every artifact in test order, one JSON line each, while the target checks the ones before: the export
# (this machine's core) and QEMU (the other core) overlap, and a process of its own shares no torch state with the
# tests' reference runs
_EXPORTER = """
import json, os, sys
answers = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # whatever the converters print goes to the log, never into the answers
import edgeseq
fp32 = {}
for model, fmt, precision in json.loads(sys.argv[2]):
    try:
        parent = fp32.get((model, fmt)) if fmt == "onnx" and precision != "fp32" else None
        art = edgeseq.export(model, fmt, out_dir=sys.argv[1], precision=precision, parent=parent)
        if precision == "fp32":
            fp32[(model, fmt)] = art
        line = {"key": [model, fmt, precision], "path": str(art.path)}
    except Exception as exc:
        line = {"key": [model, fmt, precision], "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(line), file=answers, flush=True)
"""


@pytest.fixture(scope="module")
def artifact(target, tmp_path_factory):
    """The path of export(model, format, precision), made once per module by a background exporter process."""
    keys = [tuple(p.values) for p in CASES] + [FP16_ONNX]
    if not _has_litert_torch():
        keys = [k for k in keys if k[1] != "tflite"]
    out = tmp_path_factory.mktemp("arm64-artifacts")
    log = open(out / "exporter.log", "w")  # a file, not a pipe: the converters' chatter must never block it
    proc = subprocess.Popen([sys.executable, "-c", _EXPORTER, str(out), json.dumps(keys)], stdout=subprocess.PIPE,
                            stderr=log, text=True)
    made = {}

    def get(model: str, fmt: str, precision: str) -> str:
        key = (model, fmt, precision)
        if fmt == "tflite" and not _has_litert_torch():
            pytest.skip("needs litert-torch: pip install 'edgeseq[tflite]'")
        while key not in made:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the exporter ended before {key}: {(out / 'exporter.log').read_text()[-2000:]}")
            got = json.loads(line)
            made[tuple(got["key"])] = got
        if "error" in made[key]:
            pytest.fail(f"export {key}: {made[key]['error']}")
        return made[key]["path"]

    yield get
    proc.kill()
    proc.wait()
    proc.stdout.close()
    log.close()


def _has_litert_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("litert_torch") is not None


def test_the_target_is_aarch64_on_the_recorded_core(target):
    profile = get_profile(ONNX)
    assert profile.emulated and get_profile(LITERT).emulated
    assert target["cpu"] in profile.description and target["versions"]["machine"] == "aarch64"


def _check_on_arm64(target, artifact, model, fmt, precision):
    result = edgeseq.check(artifact(model, fmt, precision), device=ONNX if fmt == "onnx" else LITERT, times=TIMES,
                           batches=(1,))
    assert not [c.error for c in result.cases if c.error]
    assert result.precision == precision and sorted({c.time for c in result.cases}) == list(TIMES)
    assert result.runtime.endswith(f"@{ONNX if fmt == 'onnx' else LITERT}")
    cpu = result.cpu
    assert cpu["machine"] == "aarch64" and cpu["int8_isa"].startswith("arm64"), cpu
    assert "asimd" in cpu["flags"] and target["cpu"] in cpu["model"], cpu  # the emulated core's own features
    return result


@pytest.mark.parametrize("model, fmt, precision", CASES)
def test_parity_on_arm64(target, artifact, model, fmt, precision):
    result = _check_on_arm64(target, artifact, model, fmt, precision)
    assert result.passed, result.failures


def test_fp16_onnx_is_caught_where_it_computes_in_half_precision(target, artifact):
    """ONNX Runtime computes an fp16 graph in half precision on a core with FP16 arithmetic (Cortex-A76: fphp) and
    in float elsewhere (x86, Cortex-A53): the same .onnx that passes on x86 (4.9e-4) measures 2.2e-3 on the A76,
    past the fp16 tolerance (1e-3), and the check says so (bench/results/arm64-qemu-parity.json)."""
    result = _check_on_arm64(target, artifact, *FP16_ONNX)
    if "fphp" in result.cpu["flags"]:
        assert not result.passed and 1e-3 < result.worst.rel_l2 < 1e-2, result.worst
    else:
        assert result.passed, result.failures


def test_latency_there_is_marked_emulated(target, artifact):
    timing = edgeseq.profile(artifact("cbhg-lite", "onnx", "fp32"), device=ONNX, warmup=1, iterations=3,
                             time=50)
    assert timing.emulated and timing.iterations == 3 and timing.p50_ms > 0


# ---- the tool itself, without a target ----------------------------------------------------------------------------


@pytest.fixture
def tool():
    from importlib.machinery import SourceFileLoader
    from importlib.util import module_from_spec, spec_from_loader

    spec = spec_from_loader("arm64_target", SourceFileLoader("arm64_target", str(TOOL)))
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_what_up_needs_is_named_with_the_fix(tool, monkeypatch):
    monkeypatch.setattr(tool.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(tool.shutil, "which", lambda name: None if name in ("debootstrap", "sshd") else "/bin/x")
    monkeypatch.setattr(tool, "_sshd", lambda: None)
    problems = tool.missing()
    assert problems[0] == "needs root (debootstrap, chroot, mount, binfmt_misc): run it with sudo"
    assert problems[1] == f"debootstrap, sshd not installed: {tool.APT}"
    with pytest.raises(tool.TargetError, match="needs root"):
        tool.up(type("Args", (), {"cpu": "cortex-a76"})())


def test_the_root_is_keyed_by_what_it_installs(tool, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGESEQ_ARM64_CACHE", str(tmp_path))
    first = tool.root_path()
    assert first.parent == tmp_path and first.name.startswith("rootfs-bookworm-arm64-")
    monkeypatch.setattr(tool, "WHEELS", tool.WHEELS + ("tflite-runtime",))
    assert tool.root_path() != first
    first.mkdir()  # a folder without the marker (an old layout, a copy) is not a ready root
    assert tool.root_info(first) is None


def test_bad_cpu_is_one_line(tool, capsys):
    assert tool.main(["up", "--cpu", "cortex-x9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown --cpu 'cortex-x9'; choose one of: cortex-a76") and "\n" not in err
