"""Parity on ARM64 kernels without ARM hardware: Debian arm64 under QEMU user mode (tools/arm64-target), reached
over ssh through the same device path as a Raspberry Pi.

Every ONNX and TFLite precision of cbhg-lite and cbhg is exported once here (module-scoped), then checked on the
target at T = 1, 200, 1000 (batch 1): each must pass the default tolerances, and each parity row must record an
ARM64 int8 kernel family read by the device agent inside the emulated root, not this x86 host's. Then, cheaper
(T = 1, 200, one precision): cbhg-lite's .ort (ONNX Runtime Mobile) files, a user's model (ONNX and TFLite), the
padding-safe cbhg-lite's padded batches, the streaming cbhg-lite's chunked-vs-full gate (one job on the device), and
one file on two emulated cores (arm64-qemu and arm64-qemu-a53), whose kernels and recorded CPUs differ.

Skips, naming what is missing, when the target is not up (`sudo tools/arm64-target up`); with
EDGESEQ_REQUIRE_ARM64=1 (what .ci/run sets after bringing it up) the same condition fails instead.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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
ORT_CASES = [pytest.param("cbhg-lite", "ort", p, id=f"cbhg-lite-ort-{p}", marks=pytest.mark.covers("cbhg-lite", "ort"))
             for p in ("fp32", "int8-dynamic")]
A53 = "arm64-qemu-a53"  # tools/arm64-target's second core (a Pi 3's): no FP16 arithmetic, no dot products
SHORT = (1, 200)  # the T's of the cheaper checks: a single frame and a real utterance's length
USER_MODEL = str(Path(__file__).resolve().parent / "fixtures" / "public_cbhg.py") + ":coqui_style"
PADDED = "edgeseq.models.padded:cbhg_lite"
STREAM = "cbhg-lite-stream"
FORMATS = [pytest.param(f, id=f) for f in ("onnx", "tflite")]
# what each test without (model, fmt, precision) parameters needs exported, so a -k run exports only that
NEEDS = {
    "test_fp16_onnx_is_caught_where_it_computes_in_half_precision": [FP16_ONNX],
    "test_latency_there_is_marked_emulated": [("cbhg-lite", "onnx", "fp32")],
    "test_a_user_model_on_arm64": [(USER_MODEL, "{fmt}", "fp32")],
    "test_the_padded_model_is_padding_safe_on_arm64": [(PADDED, "{fmt}", "fp32")],
    "test_the_streaming_gate_on_arm64": [(STREAM, "{fmt}", "fp32")],
    "test_each_profile_runs_on_its_own_core": [FP16_ONNX],
}


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
    try:  # fp16 / int8 ONNX and ORT derive from the fp32 ONNX when this run made it
        parent = fp32.get((model, "onnx")) if fmt in ("onnx", "ort") and precision != "fp32" else None
        art = edgeseq.export(model, fmt, out_dir=sys.argv[1], precision=precision, parent=parent)
        if precision == "fp32":
            fp32[(model, fmt)] = art
        line = {"key": [model, fmt, precision], "path": str(art.path)}
    except Exception as exc:
        line = {"key": [model, fmt, precision], "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(line), file=answers, flush=True)
"""


def _needs(item) -> list[tuple[str, str, str]]:
    params = getattr(getattr(item, "callspec", None), "params", {})
    if {"model", "fmt", "precision"} <= params.keys():
        return [(params["model"], params["fmt"], params["precision"])]
    return [(m, f.format(**params), p) for m, f, p in NEEDS.get(item.originalname, [])]


@pytest.fixture(scope="module")
def artifact(target, tmp_path_factory, request):
    """The path of export(model, format, precision), made once per module by a background exporter process, in the
    order the selected tests ask (a -k run exports only what it checks)."""
    items = [i for i in request.session.items if getattr(i, "module", None) is request.module]
    keys = list(dict.fromkeys(k for item in items for k in _needs(item)))
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


# ---- .ort, a user's model, padding, streaming, a second core: one precision, T = 1, 200 ------------------------


@pytest.mark.parametrize("model, fmt, precision", ORT_CASES)
def test_ort_mobile_on_arm64(target, artifact, model, fmt, precision):
    """ONNX Runtime Mobile's .ort runs on the device's onnxruntime through the same agent, labelled as its own rows."""
    result = edgeseq.check(artifact(model, fmt, precision), device=ONNX, times=TIMES, batches=(1,))
    assert not [c.error for c in result.cases if c.error] and result.passed, result.failures
    assert result.runtime == f"onnxruntime-ort-cpu@{ONNX}" and result.cpu["machine"] == "aarch64", result.runtime
    assert sorted({c.time for c in result.cases}) == list(TIMES)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_user_model_on_arm64(target, artifact, fmt):
    """A user's module (file.py:factory) found again from the artifact's metadata, checked on ARM64 kernels."""
    result = edgeseq.check(artifact(USER_MODEL, fmt, "fp32"), device=ONNX if fmt == "onnx" else LITERT, times=SHORT,
                           batches=(1,))
    assert result.model == "coqui-style-cbhg" and result.passed, result.failures
    assert result.cpu["machine"] == "aarch64" and sorted({c.time for c in result.cases}) == list(SHORT)


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_padded_model_is_padding_safe_on_arm64(target, artifact, fmt):
    """Every row of ragged batches of 3 and 8 (zero padding, the lengths input set) equals its own run there too;
    all 13 calls go to the device in one job."""
    result = edgeseq.check_padding(artifact(PADDED, fmt, "fp32"), device=ONNX if fmt == "onnx" else LITERT)
    assert result.padding_safe and result.worst.rel_l2 < 1e-5, result.verdict()
    assert result.lengths_input == "lengths" and [len(c.lengths) for c in result.cases] == [3, 8]
    assert result.runtime.endswith(f"@{ONNX if fmt == 'onnx' else LITERT}")


@pytest.mark.parametrize("fmt", [pytest.param(f, id=f, marks=pytest.mark.covers(STREAM, f))
                                 for f in ("onnx", "tflite")])
def test_the_streaming_gate_on_arm64(target, artifact, fmt):
    """The chunked-vs-full gate on ARM64 kernels: each stream runs in one agent job (a round trip per chunk would
    cost seconds each under QEMU), its calls timed on the device."""
    result = edgeseq.check_stream(artifact(STREAM, fmt, "fp32"), device=ONNX if fmt == "onnx" else LITERT,
                                  chunks=(1, 8), time=32)
    assert result.passed, result.failures
    assert [(c.chunk, c.calls) for c in result.cases] == [(1, 32), (8, 4)]
    assert all(0 < c.chunk_ms < c.full_ms for c in result.cases), [c.to_dict() for c in result.cases]
    assert result.runtime.endswith(f"@{ONNX if fmt == 'onnx' else LITERT}")


def test_each_profile_runs_on_its_own_core(target, artifact):
    """The core is a fact of the profile: the same fp16 .onnx that fails on the A76 (FP16 arithmetic: half-precision
    kernels) passes on arm64-qemu-a53 (computed in float), and each run's CPU record names its own core."""
    a76, a53 = get_profile(ONNX), get_profile(A53)
    assert (a76.cpu, a53.cpu) == (target["cpu"], "cortex-a53") and target["cores"][A53] == "cortex-a53"
    result = edgeseq.check(artifact(*FP16_ONNX), device=A53, times=SHORT, batches=(1,))
    assert result.passed and result.worst.rel_l2 < 1e-3, result.failures
    assert result.runtime.endswith(f"@{A53}") and "QEMU cortex-a53" in result.cpu["model"], result.cpu
    assert target["cpu"] not in result.cpu["model"]  # arm64-qemu's rows name target["cpu"] (_check_on_arm64)
    assert result.cpu["int8_isa"] == "arm64-neon" and "fphp" not in result.cpu["flags"], result.cpu


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


def test_under_sudo_the_profiles_and_state_are_the_callers(tool, monkeypatch):
    """`sudo tools/arm64-target up` works as root for the caller: the profiles and the target's state (its client key,
    known_hosts) go under the caller's home and are handed to them, so their edgeseq finds `arm64-qemu`; a plain
    root run (CI) keeps root's own, and a SUDO_USER left in a user's shell is not root's business."""
    import pwd

    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "EDGESEQ_DEVICES_DIR", "EDGESEQ_ARM64_STATE"):
        monkeypatch.delenv(name, raising=False)
    caller, root = pwd.getpwnam("nobody"), pwd.getpwuid(0)
    chowned = []
    monkeypatch.setattr(tool.os, "chown", lambda path, uid, gid: chowned.append((str(path), uid, gid)))
    monkeypatch.setattr(tool.os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_USER", "nobody")
    assert tool.profile_dir() == Path(caller.pw_dir) / ".config" / "edgeseq" / "devices"
    assert tool.state_dir() == Path(caller.pw_dir) / ".cache" / "edgeseq" / "arm64-target"
    tool.give(Path("/k"))
    assert chowned == [("/k", caller.pw_uid, caller.pw_gid)]
    monkeypatch.delenv("SUDO_USER")
    assert tool.profile_dir() == Path(root.pw_dir) / ".config" / "edgeseq" / "devices"
    tool.give(Path("/k"))
    assert len(chowned) == 1  # root's files stay root's
    monkeypatch.setenv("SUDO_USER", "root")  # not root: whoever this process is, whatever the variable says
    monkeypatch.setattr(tool.os, "geteuid", lambda: caller.pw_uid)
    assert tool.login().pw_name == "nobody"


def test_bad_cpu_is_one_line(tool, capsys):
    assert tool.main(["up", "--cpu", "cortex-x9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown --cpu 'cortex-x9'; choose one of: cortex-a76") and "\n" not in err


def test_each_core_gets_profiles_of_its_own(tool):
    specs = tool.profile_specs("cortex-a76", ("cortex-a53", "neoverse-n1"))
    assert [(n, c) for n, _, _, c in specs] == [
        ("arm64-qemu", "cortex-a76"), ("arm64-qemu-litert", "cortex-a76"), ("arm64-qemu-a53", "cortex-a53"),
        ("arm64-qemu-a53-litert", "cortex-a53"), ("arm64-qemu-neoverse-n1", "neoverse-n1"),
        ("arm64-qemu-neoverse-n1-litert", "neoverse-n1")]
    assert tool.python_for("cortex-a53") == tool.VENV + "/bin/python-cortex-a53"


def test_bad_also_cpu_is_one_line(tool, capsys):
    assert tool.main(["up", "--also-cpu", "cortex-a53", "--also-cpu", "a53"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown --also-cpu 'a53'; choose one of: cortex-a76") and "\n" not in err


def test_an_ort_file_on_a_litert_device_is_one_line(tmp_path):
    from edgeseq.devices import parse_device_profile
    from edgeseq.errors import InputError
    from edgeseq.remote import runner_for

    ort = tmp_path / "m.fp32.ort"
    ort.write_bytes(b"\x00\x00\x00\x00ORTM" + bytes(24))
    profile = parse_device_profile({"name": "pi-litert", "runtime": "litert", "delegate": "xnnpack",
                                    "transport": {"kind": "ssh", "host": "127.0.0.1"}}, "pi-litert.toml")
    with pytest.raises(InputError, match=r"^device 'pi-litert' runs litert, which takes \.tflite files; m\.fp32\.ort "
                                         r"is ort$"):
        runner_for(ort, profile)
    onnx_profile = parse_device_profile({"name": "pi", "runtime": "onnxruntime", "delegate": "cpu",
                                         "transport": {"kind": "ssh", "host": "127.0.0.1"}}, "pi.toml")
    assert runner_for(ort, onnx_profile).runtime == "onnxruntime-ort-cpu@pi"  # cheap: nothing connects yet
    tfl = tmp_path / "m.fp32.tflite"
    tfl.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))
    with pytest.raises(InputError, match=r"runs onnxruntime, which takes \.onnx / \.ort files; m\.fp32\.tflite is"):
        runner_for(tfl, onnx_profile)


def test_a_narrowed_int64_input_is_cast_on_its_way_to_the_device(tmp_path):
    """LiteRT's converter narrows an int64 input (the padded model's lengths) to int32: the device describes int32,
    the runner takes the declared int64 and casts on the way (a value past int32 is one line), as the local runner."""
    from edgeseq.devices import parse_device_profile
    from edgeseq.errors import InputError
    from edgeseq.remote import runner_for
    from edgeseq.tensors import TensorSpec

    tfl = tmp_path / "m.fp32.tflite"
    tfl.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))
    profile = parse_device_profile({"name": "pi-litert", "runtime": "litert", "delegate": "xnnpack",
                                    "transport": {"kind": "ssh", "host": "127.0.0.1"}}, "pi-litert.toml")
    runner = runner_for(tfl, profile)
    runner._metadata = {"edgeseq.inputs": json.dumps([{"name": "features", "shape": [None, None, 4],
                                                       "dtype": "float32"},
                                                      {"name": "lengths", "shape": [None], "dtype": "int64"}]),
                        "edgeseq.outputs": json.dumps([{"name": "encoded", "shape": [None, None, 4],
                                                        "dtype": "float32"}])}
    inputs, outputs = runner._declared_names((TensorSpec("args_0", (None, None, 4), "float32"),
                                              TensorSpec("args_1", (None,), "int32")), ("output_0",))
    assert [(t.name, t.dtype) for t in inputs] == [("features", "float32"), ("lengths", "int64")]
    assert outputs == ("encoded",) and runner._to_device == {"features": "args_0", "lengths": "args_1"}
    sent = runner._device_value("lengths", np.array([3, 50], dtype=np.int64))
    assert sent.dtype == np.int32 and sent.tolist() == [3, 50]
    with pytest.raises(InputError, match=r"^input 'lengths' has values outside int32, which m\.fp32\.tflite takes$"):
        runner._device_value("lengths", np.array([2 ** 40], dtype=np.int64))
