"""adb and LiteRT's benchmark_model: command construction, and parsing of real captured benchmark_model output.

No phone is reachable here. The adb executor is replaced by a stand-in that records every adb command line and
answers the way a phone would: with captured benchmark_model output (tests/fixtures/benchmark_model, see its
README for where each capture comes from), or by running the shell command on this machine for the python-runner
path (the "phone" is a local folder).
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeseq
from edgeseq.devices import get_profile, load_profile
from edgeseq.errors import DeviceError, InputError
from edgeseq.remote import runner_for
from edgeseq.remote.adb import AdbConnection, BenchmarkModelRunner
from edgeseq.remote.benchmark_model import benchmark_argv, parse_output
from edgeseq.remote.connection import Completed, RetryPolicy
from edgeseq.remote.runner import RemoteRunner

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"
NO_WAIT = RetryPolicy(attempts=3, backoff_s=0.0)


# ---- parsing real output --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, count, p50, p90, p99, mean, lo, std, memory, percentiles", [
    ("litert_xnnpack_percentiles.txt", 50, 899.281, 904.305, 906.121, 899.641, 898.007, 1.549, 150.141, True),
    ("litert_cpu_percentiles_scientific.txt", 50, 1239.807, 1247.415, 1252.566, 1240.27, 1238.588, 2.565, 109.832,
     True),
    ("tflite_no_prefix_op_profiling.txt", 50, 2950.34, 3189.954, 3189.954, 2950.34, 2727.568, 109.798, 46.0859, False),
    ("tflite24_android_peak_memory.txt", 50, 249.684, 254.474, 254.474, 249.684, 247.067, 1.442, 138.809, False),
])
def test_parses_captured_benchmark_model_output(name, count, p50, p90, p99, mean, lo, std, memory, percentiles):
    t = parse_output((FIXTURES / name).read_text())
    assert t.iterations == count  # the timed runs, not the warm-up line before them
    got = (t.p50_ms, t.p90_ms, t.p99_ms, t.mean_ms, t.min_ms, t.std_ms, t.peak_rss_mb)
    assert got == pytest.approx((p50, p90, p99, mean, lo, std, memory), rel=1e-6)
    assert ("median" in t.note) is percentiles and "upper bounds" in t.note


def test_a_failed_run_names_benchmark_models_error():
    with pytest.raises(DeviceError, match=r"did not finish: tensorflow/lite/kernels/expand_dims.cc:40 axis <= "
                                          r"input_dims.size was not true.; Node number 553 \(EXPAND_DIMS\) failed"):
        parse_output((FIXTURES / "failed_prepare.txt").read_text())
    with pytest.raises(DeviceError, match="did not finish: /system/bin/sh: benchmark_model: inaccessible"):
        parse_output("/system/bin/sh: benchmark_model: inaccessible or not found\n")


# ---- command construction -------------------------------------------------------------------------------------------


def test_benchmark_model_command_for_the_pixel_profile():
    pixel = get_profile("pixel-8")
    argv = benchmark_argv("/data/local/tmp/edgeseq/benchmark_model", "/data/local/tmp/edgeseq/m.tflite",
                          threads=pixel.threads, delegate=pixel.delegate.value, warmup=5, iterations=50,
                          inputs={"features": (1, 200, 128)})
    assert argv == ["/data/local/tmp/edgeseq/benchmark_model", "--graph=/data/local/tmp/edgeseq/m.tflite",
                    "--num_threads=4", "--use_xnnpack=true", "--warmup_runs=5", "--warmup_min_secs=0",
                    "--num_runs=50", "--min_secs=0", "--input_layer=features", "--input_layer_shape=1,200,128"]
    two = benchmark_argv("bm", "g.tflite", threads=None, delegate="gpu", warmup=0, iterations=3, budget_s=2.5,
                         inputs={"a": (1, 7), "b": (1,)})
    assert two[2:] == ["--use_gpu=true", "--warmup_runs=0", "--warmup_min_secs=0", "--num_runs=3", "--min_secs=0",
                       "--max_secs=2.5", "--input_layer=a,b", "--input_layer_shape=1,7:1"]
    with pytest.raises(DeviceError, match="no flag for delegate 'cuda'"):
        benchmark_argv("bm", "g", threads=1, delegate="cuda", warmup=0, iterations=1)


def test_adb_command_lines():
    adb = AdbConnection("R5CW1234ABC")
    assert adb.shell_argv("ls /data/local/tmp") == ["adb", "-s", "R5CW1234ABC", "shell", "ls /data/local/tmp"]
    assert adb.push_argv(["a.tflite", "b.npz"], "/data/local/tmp/edgeseq") == [
        "adb", "-s", "R5CW1234ABC", "push", "a.tflite", "b.npz", "/data/local/tmp/edgeseq/"]
    assert AdbConnection().pull_argv(["/d/r.json", "/d/o.npz"], "/tmp/x") == ["adb", "pull", "/d/r.json", "/d/o.npz",
                                                                              "/tmp/x"]


class FakePhone:
    """Stands in for `adb`: records argv; answers shell probes and benchmark_model runs like a phone would."""

    def __init__(self, has_binary=True, has_graph=False, output="litert_xnnpack_percentiles.txt"):
        self.calls: list[list[str]] = []
        self.has_binary, self.has_graph, self.output = has_binary, has_graph, output

    def __call__(self, argv, timeout):
        self.calls.append(list(argv))
        verb = argv[argv.index("shell") if "shell" in argv else 1]
        if verb == "shell":
            command = argv[-1]
            if command.startswith("mkdir -p"):
                missing = ([] if self.has_binary else ["no-benchmark"]) + ([] if self.has_graph else ["no-graph"])
                return Completed(tuple(argv), 0, " ".join(missing).encode(), b"")
            if "benchmark_model --graph=" in command:
                return Completed(tuple(argv), 0, (FIXTURES / self.output).read_bytes(), b"")
        return Completed(tuple(argv), 0, b"", b"")

    def shell_lines(self):
        return [c[-1] for c in self.calls if "shell" in c]


@pytest.fixture
def tflite(tmp_path):
    path = tmp_path / "cbhg-lite.fp32.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))  # only pushed, never parsed here
    return path


def _benchmark_runner(tflite, phone, **kw):
    pixel = get_profile("pixel-8")
    return BenchmarkModelRunner(tflite, pixel, AdbConnection(executor=phone, retry=NO_WAIT), **kw)


def test_profile_on_a_phone_through_benchmark_model(lite_tflite):
    phone = FakePhone()
    runner = _benchmark_runner(lite_tflite.path, phone)
    result = edgeseq.profile(runner, model="cbhg-lite", time=200, warmup=5, iterations=50)
    graph = f"/data/local/tmp/edgeseq/{runner.graph.rsplit('/', 1)[1]}"
    assert phone.calls[1] == ["adb", "push", str(lite_tflite.path), "/data/local/tmp/edgeseq/"]
    run = phone.shell_lines()[-1]
    assert run == (f"/data/local/tmp/edgeseq/benchmark_model --graph={graph} --num_threads=4 --use_xnnpack=true "
                   "--warmup_runs=5 --warmup_min_secs=0 --num_runs=50 --min_secs=0 "
                   "--input_layer=serving_default_args_0 --input_layer_shape=1,200,128 2>&1")
    assert result.runtime == "litert-xnnpack@pixel-8" and result.threads == 4
    assert (result.batch, result.time) == (1, 200)
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == pytest.approx((899.281, 904.305, 906.121))
    assert result.iterations == 50 and result.peak_rss_mb == pytest.approx(150.141)
    assert "benchmark_model" in result.note and "upper bounds" in result.note
    with pytest.raises(edgeseq.errors.UnsupportedError, match="no outputs; parity on the phone"):
        runner.infer({"features": np.zeros((1, 7, 128), np.float32)})


def test_missing_benchmark_binary_says_how_to_get_it(tflite, tmp_path, monkeypatch):
    monkeypatch.delenv("EDGESEQ_BENCHMARK_MODEL", raising=False)
    with pytest.raises(DeviceError, match=r"benchmark_model is not at /data/local/tmp/edgeseq/benchmark_model on the "
                                          r"phone; push .* EDGESEQ_BENCHMARK_MODEL"):
        _benchmark_runner(tflite, FakePhone(has_binary=False)).load()
    local = tmp_path / "android_aarch64_benchmark_model"
    local.write_bytes(b"\x7fELF")
    monkeypatch.setenv("EDGESEQ_BENCHMARK_MODEL", str(local))
    phone = FakePhone(has_binary=False, has_graph=True)
    _benchmark_runner(tflite, phone).load()
    assert phone.calls[1] == ["adb", "push", str(local), "/data/local/tmp/edgeseq/"]
    assert phone.shell_lines()[1] == ("chmod +x /data/local/tmp/edgeseq/android_aarch64_benchmark_model && mv -f "
                                      "/data/local/tmp/edgeseq/android_aarch64_benchmark_model "
                                      "/data/local/tmp/edgeseq/benchmark_model")


def test_a_failed_benchmark_is_one_error(lite_tflite):
    runner = _benchmark_runner(lite_tflite.path, FakePhone(output="failed_prepare.txt"))
    with pytest.raises(DeviceError, match=r"adb \(the only device\): benchmark_model did not finish: .*EXPAND_DIMS"):
        edgeseq.profile(runner, model="cbhg-lite", iterations=3)


def test_adb_failures(tflite):
    def answer(stderr, rc=1):
        return lambda argv, timeout: Completed(tuple(argv), rc, b"", stderr.encode())

    unauthorized = "adb: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set"
    conn = AdbConnection("X1", executor=answer(unauthorized), retry=NO_WAIT)
    with pytest.raises(DeviceError, match="accept the USB debugging prompt"):
        conn.run("true", timeout=5)
    tries = []
    gone = AdbConnection("X1", executor=lambda a, t: tries.append(a) or answer("adb: device 'X1' not found")(a, t),
                         retry=NO_WAIT)
    with pytest.raises(DeviceError, match=r"cannot reach the phone: adb: device 'X1' not found \(3 tries"):
        gone.push(["f"], "/data/local/tmp")
    assert len(tries) == 3
    many = AdbConnection(executor=answer("adb: error: more than one device/emulator"), retry=NO_WAIT)
    with pytest.raises(DeviceError, match=r"set \[transport\] serial"):
        many.run("true", timeout=5)
    # the command's own failure is the command's business, not adb's
    assert AdbConnection(executor=answer("sh: foo: not found", rc=127)).run("foo", timeout=5).returncode == 127
    with pytest.raises(DeviceError, match="'/nonexistent/adb' is not installed on this machine"):
        AdbConnection(adb="/nonexistent/adb").run("true", timeout=5)


def test_profiles_pick_the_right_runner(tflite, lite_onnx):
    pixel = get_profile("pixel-8")
    assert isinstance(runner_for(tflite, pixel, timing_only=True), BenchmarkModelRunner)
    checker = runner_for(tflite, pixel)
    assert isinstance(checker, RemoteRunner) and isinstance(checker.connection, AdbConnection)
    with pytest.raises(InputError, match="runs litert, which takes .tflite files"):
        runner_for(lite_onnx.path, pixel)
    with pytest.raises(InputError, match="runs tensorrt, which takes .onnx files"):  # it builds its own engine
        runner_for(tflite, get_profile("jetson-orin"))


# ---- the device agent over adb, with this machine as the phone -------------------------------------------------------


def _adb_on_this_machine(phone_root: Path, log: list):
    """An `adb` executor whose 'phone' is this machine: shell runs sh -c, push / pull copy files."""

    def execute(argv, timeout):
        log.append(list(argv))
        args = list(argv[1:])
        if args[:1] == ["-s"]:
            args = args[2:]
        verb, rest = args[0], args[1:]
        if verb == "shell":
            proc = subprocess.run(["sh", "-c", rest[0]], capture_output=True, timeout=timeout)
            return Completed(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
        *sources, dest = rest
        for src in sources:
            shutil.copy(src, Path(dest) / Path(src).name if verb == "push" else dest)
        return Completed(tuple(argv), 0, b"", b"")

    return execute


def test_python_runner_over_adb_end_to_end(tmp_path, lite_onnx):
    toml = tmp_path / "phone.toml"
    toml.write_text('name = "termux-phone"\nruntime = "onnxruntime"\ndelegate = "cpu"\nthreads = 2\n[transport]\n'
                    f'kind = "adb"\nserial = "emulator-5554"\npython = "{sys.executable}"\n'
                    f'remote_dir = "{tmp_path / "phone"}"\n')
    profile = load_profile(toml)
    log: list = []
    conn = AdbConnection(profile.transport.serial, executor=_adb_on_this_machine(tmp_path, log), retry=NO_WAIT)
    with RemoteRunner(lite_onnx.path, profile, conn) as runner:
        result = edgeseq.check(runner, times=(7,), batches=(1,))
    assert result.passed and result.runtime == "onnxruntime-cpu@termux-phone"
    verbs = [c[3] for c in log]
    assert verbs == ["shell", "push", "shell", "push", "shell", "pull", "shell"]  # probe+push+describe, job, cleanup
    assert all(c[:3] == ["adb", "-s", "emulator-5554"] for c in log)
    job = next(c[-1] for c in log if c[3] == "shell" and " run " in c[-1])
    assert re.fullmatch(rf"cd {tmp_path}/phone && {sys.executable} cache/agent-[0-9a-f]{{16}}\.pyz run "
                        r"jobs/[0-9a-f]{12}/job\.json", job), job
    assert not math.isnan(result.worst.rel_l2)


# ---- the artifact's metadata is read here, from the file, not from the device ----------------------------------------


def _tflite_with_metadata(path: Path, meta: dict[str, str]) -> Path:
    """A minimal .tflite flatbuffer (schema v3 Model: version, buffers, metadata) holding edgeseq.* entries, as
    formats.tflite.stamp writes them; only its metadata is ever read here."""
    flatbuffers = pytest.importorskip("flatbuffers", reason="needs the tflite extra (flatbuffers)")
    b = flatbuffers.Builder(0)

    def table(slots):  # slots: [(index, kind, value)]
        b.StartObject(3)
        for index, kind, value in slots:
            (b.PrependUOffsetTRelativeSlot if kind == "offset" else b.PrependUint32Slot)(index, value, 0)
        return b.EndObject()

    def vector(offsets):
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    data = [b.CreateByteVector(v.encode()) for v in meta.values()]
    names = [b.CreateString(f"edgeseq.{k}") for k in meta]
    buffers = vector([table([])] + [table([(0, "offset", d)]) for d in data])  # buffer 0 is the empty one
    entries = vector([table([(0, "offset", n), (1, "uint32", i + 1)]) for i, n in enumerate(names)])
    b.StartObject(8)
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(4, buffers, 0)
    b.PrependUOffsetTRelativeSlot(6, entries, 0)
    b.Finish(b.EndObject(), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


class DescribingPhone:
    """An adb stand-in for a phone running the python device agent on LiteRT: it describes the model as
    agent.py does for a .tflite (no metadata) and records, never runs, anything else."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, argv, timeout):
        self.calls.append(list(argv))
        if "shell" in argv and " describe " in argv[-1]:
            info = {"inputs": [{"name": "features", "shape": [None, None, 128], "dtype": "float32"}],
                    "outputs": ["encoded"], "metadata": {}, "provider": "xnnpack"}
            return Completed(tuple(argv), 0, json.dumps(info).encode(), b"")
        return Completed(tuple(argv), 0, b"", b"")

    def jobs(self):
        return [c[-1] for c in self.calls if "shell" in c and " run " in c[-1]]


def test_a_litert_device_gets_the_files_own_precision_and_limits(tmp_path):
    """The device agent reports no metadata for a .tflite: an int8 file read as fp32 (wrong tolerance, refused by a
    device without fp32), and its max_time went unchecked until the sweep reached the device."""
    meta = {"model": "cbhg-lite", "precision": "int8-dynamic", "max_time": "500", "max_batch": "4"}
    path = _tflite_with_metadata(tmp_path / "lite.int8-dynamic.tflite", meta)
    toml = tmp_path / "int8-phone.toml"
    toml.write_text('name = "int8-phone"\nruntime = "litert"\ndelegate = "xnnpack"\nprecisions = ["int8-dynamic"]\n'
                    '[transport]\nkind = "adb"\npython = "python3"\nremote_dir = "/data/local/tmp/edgeseq"\n')
    phone = DescribingPhone()
    runner = RemoteRunner(path, load_profile(toml), AdbConnection(executor=phone, retry=NO_WAIT))
    assert runner.metadata == {f"edgeseq.{k}": v for k, v in meta.items()} and not phone.calls  # no round trip
    with runner, pytest.raises(InputError, match="the artifact serves T up to 500; the sweep asks for T=1000"):
        edgeseq.check(runner, times=(1000,), batches=(1,))
    assert phone.calls and not phone.jobs()  # refused before any job went to the device


def test_a_remote_onnx_runner_reads_metadata_without_the_device(lite_onnx, tmp_path):
    toml = tmp_path / "phone.toml"
    toml.write_text('name = "termux-phone"\nruntime = "onnxruntime"\ndelegate = "cpu"\n[transport]\nkind = "adb"\n'
                    'python = "python3"\nremote_dir = "/data/local/tmp/edgeseq"\n')
    phone = DescribingPhone()
    runner = RemoteRunner(lite_onnx.path, load_profile(toml), AdbConnection(executor=phone, retry=NO_WAIT))
    meta = runner.metadata
    assert meta["edgeseq.model"] == "cbhg-lite" and meta["edgeseq.precision"] == "fp32" and not phone.calls


def test_benchmark_model_gets_the_tensor_name_of_a_real_export(lite_tflite):
    """An edgeseq .tflite declares `features`, but its tensor is `serving_default_args_0`: --input_layer must name the
    tensor, or benchmark_model ignores the shape and times the model at its default one."""
    phone = FakePhone()
    runner = _benchmark_runner(lite_tflite.path, phone)
    result = edgeseq.profile(runner, model="cbhg-lite", time=200, warmup=5, iterations=50)
    assert [t.name for t in runner.inputs] == ["features"] and (result.batch, result.time) == (1, 200)
    run = phone.shell_lines()[-1]
    assert "--input_layer=serving_default_args_0 --input_layer_shape=1,200,128" in run, run


# ---- `adb` itself on PATH: edgeseq's own subprocess path, with this machine as the phone ----------------------------

_FAKE_ADB = '''#!{python}
"""adb: shell runs `sh -c` in / (adb's exit status, protocol v2), push / pull copy files."""
import os, shutil, subprocess, sys
args = sys.argv[1:]
if args[:1] == ["-s"]:
    args = args[2:]
verb, rest = args[0], args[1:]
if verb == "shell":
    sys.exit(subprocess.run(["sh", "-c", " ".join(rest)], cwd="/").returncode)
*sources, dest = rest
for src in sources:
    if not os.path.exists(src):
        sys.stderr.write("adb: error: failed to stat '%s': No such file or directory\\n" % src)
        sys.exit(1)
    shutil.copy(src, os.path.join(dest, os.path.basename(src)) if os.path.isdir(dest) else dest)
'''


def _phone_on_path(tmp_path: Path, monkeypatch, precisions=("fp32",)) -> Path:
    """A fake `adb` first on PATH and a LiteRT phone profile whose benchmark_model (in the phone's folder) logs its
    arguments to bm-args.log there and prints a captured run."""
    bin_dir, phone = tmp_path / "bin", tmp_path / "phone"
    bin_dir.mkdir()
    phone.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(_FAKE_ADB.format(python=sys.executable))
    adb.chmod(0o755)
    bm = phone / "benchmark_model"
    bm.write_text(f'#!/bin/sh\necho "$@" >> {phone}/bm-args.log\ncat {FIXTURES / "litert_xnnpack_percentiles.txt"}\n')
    bm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    toml = tmp_path / "phone.toml"
    toml.write_text(f'name = "phone"\nruntime = "litert"\ndelegate = "xnnpack"\nthreads = 4\n'
                    f'precisions = {json.dumps(list(precisions))}\n[transport]\nkind = "adb"\n'
                    f'remote_dir = "{phone}"\n')
    return toml


def test_profile_on_a_phone_knows_the_model_from_the_file(lite_tflite, tmp_path, monkeypatch, run_cli):
    """benchmark_model's runner had no metadata: without -m, `edgeseq profile X.tflite --device pixel-8` stopped at
    'input features has free dimensions; pass --shape' (and a recipe's phone budget failed on it); with -m, an fp16
    file was reported as fp32 and a device's precisions were never checked."""
    toml = _phone_on_path(tmp_path, monkeypatch)
    result = edgeseq.profile(lite_tflite.path, device=str(toml), time=200, batch=2, warmup=1, iterations=3)
    assert (result.batch, result.time, result.precision) == (2, 200, "fp32")
    assert result.runtime == "litert-xnnpack@phone"
    args = (tmp_path / "phone" / "bm-args.log").read_text()
    assert "--input_layer=serving_default_args_0 --input_layer_shape=2,200,128" in args, args
    proc = run_cli("profile", lite_tflite.path, "--device", str(toml), "--time", "50", "-n", "3")
    assert proc.returncode == 0, proc.stderr
    assert "litert-xnnpack@phone batch=1 T=50" in proc.stdout, proc.stdout
    fp16_only = tmp_path / "fp16-phone.toml"
    fp16_only.write_text(toml.read_text().replace('["fp32"]', '["fp16"]'))
    with pytest.raises(InputError, match="device 'phone' runs fp16; the artifact is fp32"):
        edgeseq.profile(lite_tflite.path, device=str(fp16_only), iterations=3)


def test_benchmark_model_never_times_at_a_shape_it_was_not_given(tflite, lite_tflite, monkeypatch):
    """Without the .tflite's tensor names (no LiteRT here, or one that cannot read the file), --input_layer got the
    declared name, which benchmark_model ignores (or none at all): the phone timed the model at its default shape,
    and the row said batch=1 T=1, or the asked batch and T. Both are one-line errors now, before the phone runs."""
    phone = FakePhone()
    with pytest.raises(edgeseq.errors.UnsupportedError, match=r"LiteRT here cannot read cbhg-lite\.fp32\.tflite, "
                                                               r"so the names of its input tensors are unknown"):
        edgeseq.profile(_benchmark_runner(tflite, phone), model="cbhg-lite", time=200, iterations=3)
    assert not [line for line in phone.shell_lines() if "--graph=" in line]
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite"):
        monkeypatch.setitem(sys.modules, module, None)  # none of them importable
    phone = FakePhone()
    with pytest.raises(edgeseq.errors.MissingExtraError, match=r"no LiteRT is installed; install it with: pip "
                                                                r"install 'edgeseq\[tflite\]'"):
        edgeseq.profile(_benchmark_runner(lite_tflite.path, phone), time=200, iterations=3)
    assert not [line for line in phone.shell_lines() if "--graph=" in line]
