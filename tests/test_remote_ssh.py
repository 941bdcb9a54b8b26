"""edgeseq over ssh, end to end, against a real OpenSSH server started here on 127.0.0.1.

The "device" is this machine: sshd (Debian's openssh-server) runs in the foreground from its own sshd_config in a
temporary folder, with a throwaway ed25519 host key and client key on a free port, and the device's python is the
one running these tests. Skips, naming what is missing (/usr/sbin/sshd, apt package openssh-server), when the sshd /
ssh / scp binaries are absent; with EDGESEQ_REQUIRE_SSHD=1 (set by .ci/run, which installs them) that is a
collection error instead, so the module cannot silently drop out of CI.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import edgeseq
from edgeseq.errors import DeviceError, InputError

from conftest import assert_one_line_error

SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.path.exists(p)), None)
MISSING = [name for name, path in (("sshd (/usr/sbin/sshd, apt package openssh-server)", SSHD),
                                   ("ssh (apt package openssh-client)", shutil.which("ssh")),
                                   ("scp (apt package openssh-client)", shutil.which("scp")),
                                   ("ssh-keygen (apt package openssh-client)", shutil.which("ssh-keygen"))) if not path]
SKIP_REASON = (f"the {len(MISSING)} OpenSSH tools these tests need are not all installed: {', '.join(MISSING)}; "
               "apt-get install openssh-server openssh-client (.ci/run does)")
if MISSING and os.environ.get("EDGESEQ_REQUIRE_SSHD"):  # CI installed them: a skip there would hide the whole module
    pytest.fail(f"EDGESEQ_REQUIRE_SSHD is set but {SKIP_REASON}", pytrace=False)
pytestmark = pytest.mark.skipif(bool(MISSING), reason=SKIP_REASON)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """One sshd in the foreground (-D), logging to a file, accepting only the throwaway client key."""

    def __init__(self, root: Path, port: int | None = None):
        self.root = root
        self.port = port or _free_port()
        self.proc = None
        if not (root / "host_key").exists():
            for name in ("host_key", "client_key"):
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
            shutil.copy(root / "client_key.pub", root / "authorized_keys")
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root}/host_key\n"
            f"AuthorizedKeysFile {root}/authorized_keys\nPidFile {root}/sshd-{self.port}.pid\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
            "LogLevel ERROR\n")
        host_key = (root / "host_key.pub").read_text().split()[:2]
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {' '.join(host_key)}\n")

    def start(self, wait: bool = True) -> "Sshd":
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir (systemd makes it)
        log = open(self.root / f"sshd-{self.port}.log", "ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")], stdout=log,
                                     stderr=log, stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"sshd exited: {(self.root / f'sshd-{self.port}.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail("sshd did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def profile(self, name: str = "loopback", runtime: str = "onnxruntime", delegate: str = "cpu",
                **transport) -> Path:
        """A device profile (.toml) reaching this server; keyword arguments override [transport] keys."""
        t = {"kind": "ssh", "host": "127.0.0.1", "user": _user(), "port": self.port,
             "key": str(self.root / "client_key"), "known_hosts": str(self.root / "known_hosts"),
             "python": sys.executable, "remote_dir": str(self.root / "device")}
        t.update(transport)
        lines = [f'name = "{name}"', f'runtime = "{runtime}"', f'delegate = "{delegate}"', "threads = 2",
                 "[transport]"]
        lines += [f"{k} = {v}" if isinstance(v, int) else f'{k} = "{v}"' for k, v in t.items()]
        path = self.root / f"{name}-{runtime}-{abs(hash(tuple(sorted(t.items()))))}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path


def serve(tmp_path_factory, name: str):
    """A module's own sshd (a generator for a module-scoped fixture to `yield from`), or a skip naming what is
    missing."""
    if MISSING:
        pytest.skip(SKIP_REASON)
    server = Sshd(tmp_path_factory.mktemp(name)).start()
    yield server
    server.stop()


def python_without(module: str, folder: Path) -> Path:
    """A device python that lacks `module`: this python, with the module made unimportable."""
    block = folder / "block" / module
    block.mkdir(parents=True)
    (block / "__init__.py").write_text(f"raise ImportError('No module named {module}')\n")
    wrapper = folder / f"python-without-{module}"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={block.parent} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def _master_pid(connection) -> int | None:
    check = subprocess.run(["ssh", "-o", f"ControlPath={connection._control_dir}/cm", "-O", "check", "-p",
                            str(connection.port), connection.target], capture_output=True, text=True)
    found = re.search(r"pid=(\d+)", check.stderr)
    return int(found.group(1)) if found else None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited (PID 1 of a container may not reap it)


def _exits_soon(pid: int, within_s: float = 5.0) -> bool:
    """`ssh -O exit` returns once the master has been told to go; the process itself ends a moment later."""
    deadline = time.monotonic() + within_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    yield from serve(tmp_path_factory, "sshd")


# ---- the device gives the answers a local run gives -----------------------------------------------------------------


def test_check_over_ssh_matches_local_in_one_round_trip(sshd, lite_onnx):
    from edgeseq.remote.runner import RemoteRunner

    sweep = dict(times=(7, 50), batches=(1, 3))
    local = edgeseq.check(lite_onnx.path, **sweep)
    runner = edgeseq.load(lite_onnx.path, device=str(sshd.profile()))
    assert isinstance(runner, RemoteRunner)
    jobs = []
    original = runner._job
    runner._job = lambda feeds, **kw: jobs.append(len(feeds)) or original(feeds, **kw)
    with runner:
        remote = edgeseq.check(runner, **sweep)
        assert runner.metadata["edgeseq.model"] == "cbhg-lite"
        master = _master_pid(runner.connection)
    assert master and _exits_soon(master)  # close() ended the ssh control master
    assert jobs == [len(local.cases)] == [8]  # the whole sweep went to the device as one job
    assert remote.passed and local.passed
    assert remote.runtime == "onnxruntime-cpu@loopback"
    assert [(c.batch, c.time, c.source, c.passed) for c in remote.cases] == \
        [(c.batch, c.time, c.source, c.passed) for c in local.cases]
    assert abs(remote.worst.rel_l2 - local.worst.rel_l2) < 1e-6
    assert remote.cpu == local.cpu and remote.cpu["int8_isa"]  # the device's agent read its own /proc/cpuinfo
    assert not list((sshd.root / "device" / "jobs").iterdir())  # the session cleaned up after itself
    cached = sorted(p.name for p in (sshd.root / "device" / "cache").iterdir())
    assert any(n.endswith("-cbhg-lite.fp32.onnx") for n in cached) and any(n.startswith("agent-") for n in cached)


def test_profile_over_ssh_times_on_the_device(sshd, lite_onnx):
    result = edgeseq.profile(lite_onnx.path, device=str(sshd.profile()), warmup=1, iterations=7, time=50)
    assert result.runtime == "onnxruntime-cpu@loopback" and result.iterations == 7 and result.threads == 2
    assert (result.batch, result.time) == (1, 50)
    assert 0 < result.min_ms <= result.p50_ms <= result.p90_ms <= result.p99_ms
    assert result.peak_rss_mb > 0 and result.artifact_bytes == lite_onnx.size_bytes


def test_cli_profiles_several_devices_side_by_side(sshd, lite_onnx, run_cli, tmp_path):
    out = tmp_path / "latency.json"
    proc = run_cli("profile", lite_onnx.path, "--device", str(sshd.profile()), "--device", "cpu", "-n", "5",
                   "--warmup", "1", "--time", "50", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    header = next(ln for ln in proc.stdout.splitlines() if "cpu" in ln and ".toml" in ln)
    assert header.index(".toml") < header.index("cpu")  # one column per device, in the order given
    assert "p90 ms" in proc.stdout and "onnxruntime-cpu@loopback" in proc.stdout
    data = json.loads(out.read_text())
    assert [d["device"] for d in data["devices"]] == [str(sshd.profile()), "cpu"]
    assert all(d["result"]["iterations"] == 5 and not d["error"] for d in data["devices"])


def test_stages_are_profiled_by_the_devices_own_onnxruntime(sshd, lite_onnx, run_cli, tmp_path):
    """profile --stages --device: the device runs onnxruntime's profiler and sends the node events back; they are
    mapped to cbhg-lite's stages here. No eager column: PyTorch is not on a device."""
    from edgeseq.stage_profile import OTHER, profile_stages

    result = profile_stages(lite_onnx.path, device=str(sshd.profile()), time=50, warmup=1, iterations=3)
    assert result.runtime == "onnxruntime-cpu@loopback" and result.iterations == 3 and result.threads == 2
    by = {r.stage: r for r in result.rows}
    assert by["gru"].onnxruntime_ms > 0 and by["bank"].onnxruntime_ms > 0 and OTHER in by
    assert all(r.eager_ms is None and r.speedup is None for r in result.rows) and result.eager_total_ms is None
    assert sum(r.onnxruntime_share_pct for r in result.rows) == pytest.approx(100.0)
    assert "GRU" in result.onnxruntime_op_types_ms
    assert not list((sshd.root / "device" / "jobs").iterdir())  # no trace or job left behind
    proc = run_cli("profile", lite_onnx.path, "--stages", "--device", str(sshd.profile()), "--time", "50", "-n", "3",
                   "--warmup", "1")
    assert proc.returncode == 0, proc.stderr
    assert "on onnxruntime-cpu@loopback" in proc.stdout and "eager" not in proc.stdout


# ---- failures are one line -----------------------------------------------------------------------------------------


def _instead_of_sleeping(monkeypatch, sleep) -> None:
    """The transports' retry loop (connection.with_retries) calls `sleep(delay)` between tries instead of waiting."""
    from edgeseq.remote import connection, ssh

    real = connection.with_retries

    def with_retries(step, policy, **_):
        return real(step, policy, sleep=sleep)

    monkeypatch.setattr(connection, "with_retries", with_retries)  # Connection.attempt: each command, scp
    monkeypatch.setattr(ssh, "with_retries", with_retries)  # SshConnection.open: the control master


def test_dead_port_is_one_line_after_bounded_retries(sshd, lite_onnx, run_cli):
    proc = run_cli("profile", lite_onnx.path, "--device", str(sshd.profile(port=_free_port())))
    line = assert_one_line_error(proc)
    assert "cannot reach the device" in line and "Connection refused" in line
    tries = re.search(r"\((\d+) tries over ([\d.]+) s\)", line)
    assert tries and int(tries[1]) == 3, line  # the default policy: 3 tries, then one line
    assert float(tries[2]) >= 1.5, line  # with its backoff between them (0.5 s + 1 s)


def _python_without_onnxruntime(tmp_path: Path) -> str:
    """The system python if it lacks onnxruntime, else this python with onnxruntime made unimportable."""
    system = "/usr/bin/python3"
    if os.path.exists(system) and subprocess.run([system, "-c", "import onnxruntime"],
                                                 capture_output=True).returncode != 0:
        return system
    return str(python_without("onnxruntime", tmp_path))


def test_missing_runtime_on_the_device(sshd, lite_onnx, tmp_path, run_cli):
    python = _python_without_onnxruntime(tmp_path)
    proc = run_cli("check", lite_onnx.path, "--device", str(sshd.profile(python=python)))
    line = assert_one_line_error(proc)
    assert f"is not installed for {python} on the device (pip install" in line, line  # onnxruntime (or numpy)


def test_onnxruntime_missing_is_named(sshd, lite_onnx, tmp_path):
    wrapper = python_without("onnxruntime", tmp_path)
    with pytest.raises(DeviceError, match=r"loopback .*: onnxruntime is not installed .* \(pip install onnxruntime\)"):
        edgeseq.profile(lite_onnx.path, device=str(sshd.profile(python=str(wrapper))), iterations=1)


def test_missing_python_on_the_device(sshd, lite_onnx):
    with pytest.raises(DeviceError, match=r"python '/nonexistent/python3' was not found on the device; set "
                                          r"\[transport\] python"):
        edgeseq.profile(lite_onnx.path, device=str(sshd.profile(python="/nonexistent/python3")), iterations=1)


def test_wrong_key_and_wrong_host_key_fail_at_once(sshd, lite_onnx, tmp_path, monkeypatch):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
    slept = []
    _instead_of_sleeping(monkeypatch, slept.append)
    with pytest.raises(DeviceError, match="ssh authentication failed .* Permission denied"):
        edgeseq.profile(lite_onnx.path, device=str(sshd.profile(key=str(tmp_path / "stranger"))), iterations=1)
    other = tmp_path / "known_hosts"
    other.write_text(f"[127.0.0.1]:{sshd.port} " + " ".join((tmp_path / "stranger.pub").read_text().split()[:2]))
    with pytest.raises(DeviceError, match="host key of 127.0.0.1 does not match"):
        edgeseq.profile(lite_onnx.path, device=str(sshd.profile(known_hosts=str(other))), iterations=1)
    assert slept == []  # no retries for what retrying cannot fix


def test_a_dropped_connection_mid_session_is_one_error(tmp_path, lite_onnx):
    server = Sshd(tmp_path).start()
    try:
        runner = edgeseq.load(lite_onnx.path, device=str(server.profile()))
        runner.load()
        feed = edgeseq.get_model("cbhg-lite").example_inputs(batch=1, time=7)
        server.stop()
        runner.connection.close()  # the control master goes with the server; new connections are refused
        with pytest.raises(DeviceError, match=r"cannot reach the device: .*Connection refused.*3 tries"):
            runner.infer(feed)
        runner.close()  # closing a runner whose device is gone is quiet
    finally:
        server.stop()


def test_a_device_that_comes_up_during_the_retries(tmp_path, lite_onnx, monkeypatch):
    """The first try is refused, the device comes up during the backoff that follows, the second try gets in."""
    server = Sshd(tmp_path)
    slept = []

    def device_boots(delay):
        slept.append(delay)
        if server.proc is None:
            server.start()  # returns once it listens

    _instead_of_sleeping(monkeypatch, device_boots)
    try:
        result = edgeseq.profile(lite_onnx.path, device=str(server.profile()), iterations=2, warmup=0, time=7)
        assert result.iterations == 2
        assert slept == [0.5]  # one retry, after the policy's first delay
    finally:
        server.stop()


def test_prefetched_answers_are_used_and_errors_stay_per_case(sshd, lite_onnx):
    spec = edgeseq.get_model("cbhg-lite")
    feeds = [spec.example_inputs(batch=1, time=t) for t in (7, 50)]
    with edgeseq.load(lite_onnx.path, device=str(sshd.profile())) as runner:
        runner.prefetch(feeds + [{"wrong": np.zeros(3, np.float32)}])  # an invalid feed is left for infer() to refuse
        calls = []
        runner._job = lambda *a, **k: calls.append(1)
        outs = [runner.infer(f) for f in feeds]
        assert calls == [] and outs[0]["encoded"].shape[:2] == (1, 7)
        with edgeseq.load(lite_onnx.path) as local:
            np.testing.assert_allclose(outs[1]["encoded"], local.infer(feeds[1])["encoded"], rtol=1e-5, atol=1e-6)


def test_an_int8_tflite_on_a_litert_device_is_checked_as_int8(sshd, tmp_path):
    """The device agent reports no metadata for a .tflite: it was checked as fp32 (fp32's tolerance; refused by a
    device whose precisions lack fp32) and its max_time went unchecked. The file's own metadata is read here now."""
    pytest.importorskip("litert_torch", reason="needs the tflite extra: pip install 'edgeseq[tflite]'")
    pytest.importorskip("ai_edge_litert", reason="needs the tflite extra: pip install 'edgeseq[tflite]'")
    art = edgeseq.export("cbhg-lite", "tflite", precision="int8-dynamic", out_dir=tmp_path)
    profile = tmp_path / "int8-device.toml"
    profile.write_text('precisions = ["int8-dynamic"]\n'
                       + sshd.profile("int8-device", runtime="litert", delegate="xnnpack").read_text())
    # accepted by a device without fp32, judged as int8; LiteRT there knows the tensors by the signature's names
    # (args_0, output_0): the feed and outputs are renamed to the file's declared names (features, encoded)
    result = edgeseq.check(art.path, device=str(profile), times=(7, 50), batches=(1,))
    assert result.runtime == "litert-xnnpack@int8-device" and result.precision == "int8-dynamic"
    assert result.passed, result.failures
    with edgeseq.load(art.path) as local:
        feed = edgeseq.get_model("cbhg-lite").example_inputs(batch=1, time=50)
        with edgeseq.load(art.path, device=str(profile)) as remote:
            assert [t.name for t in remote.inputs] == ["features"] and remote.output_names == local.output_names
            np.testing.assert_allclose(remote.infer(feed)["encoded"], local.infer(feed)["encoded"], rtol=1e-5,
                                       atol=1e-6)
    with pytest.raises(InputError, match="the artifact serves T up to 8192"):
        edgeseq.check(art.path, device=str(profile), times=(9000,), batches=(1,))


_OLD_TFLITE_RUNTIME = """
import runpy, sys, types
import ai_edge_litert.interpreter as real
sys.modules["ai_edge_litert.interpreter"] = None  # the device agent's first choice is not installed here


class OldSignatureRunner(object):  # an older tflite_runtime's: no get_input_details / get_output_details
    def __init__(self, runner):
        self._inputs, self._outputs, self._runner = runner._inputs, runner._outputs, runner

    def __call__(self, **feed):
        return self._runner(**feed)


class Interpreter(real.Interpreter):
    def get_signature_runner(self, signature_key=None):
        return OldSignatureRunner(real.Interpreter.get_signature_runner(self, signature_key))


package, module = types.ModuleType("tflite_runtime"), types.ModuleType("tflite_runtime.interpreter")
package.__version__, package.interpreter, module.Interpreter = "2.9.0", module, Interpreter
sys.modules.update({"tflite_runtime": package, "tflite_runtime.interpreter": module})
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_device_with_an_older_tflite_runtime(sshd, lite_tflite, tmp_path):
    """The device agent falls back to tflite_runtime; an older one's SignatureRunner has no get_input_details, and the
    signature's input (args_0) was looked up among the tensors' names (serving_default_args_0): the device described
    an input of shape () and dtype None, and every check ended in 'internal error: TypeError: data type 'None''."""
    pytest.importorskip("ai_edge_litert", reason="needs the tflite extra: pip install 'edgeseq[tflite]'")
    launcher = tmp_path / "old_tflite_runtime.py"
    launcher.write_text(_OLD_TFLITE_RUNTIME)
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} {launcher} \"$@\"\n")
    python.chmod(0o755)
    profile = str(sshd.profile("old-litert", runtime="litert", delegate="xnnpack", python=str(python)))
    feed = edgeseq.get_model("cbhg-lite").example_inputs(batch=2, time=20)
    with edgeseq.load(lite_tflite.path, device=profile) as remote, edgeseq.load(lite_tflite.path) as local:
        assert [(t.name, t.shape, t.dtype) for t in remote.inputs] == [("features", (None, None, 128), "float32")]
        assert remote.describe()["versions"]["runtime"] == "tflite_runtime 2.9.0"
        np.testing.assert_allclose(remote.infer(feed)["encoded"], local.infer(feed)["encoded"], rtol=1e-5,
                                   atol=1e-6)
    result = edgeseq.check(lite_tflite.path, device=profile, times=(7, 20), batches=(1,))
    assert result.passed and result.runtime == "litert-xnnpack@old-litert", result.failures


# ---- TensorRT devices (Jetson): the engine is built on the device by trtexec ---------------------------------------


@pytest.fixture(scope="module")
def trt_onnx(tmp_path_factory):
    """A TensorRT plan-only export: the TensorRT-ready ONNX and its build plan (no TensorRT here)."""
    return edgeseq.export("cbhg-lite", "tensorrt", precision="fp16", out_dir=tmp_path_factory.mktemp("trt"))


def _fake_trtexec(tmp_path) -> str:
    wrapper = tmp_path / "trtexec"
    fake = Path(__file__).parent / "doubles" / "fake_trtexec.py"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {fake} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def _jetson_profile(sshd, tmp_path, trtexec: str) -> Path:
    """A TensorRT device whose python keeps its temporary files in tmp_path/device-tmp (see _assert_nothing_left)."""
    (tmp_path / "device-tmp").mkdir()
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nTMPDIR={tmp_path / 'device-tmp'} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    return sshd.profile("jetson-like", runtime="tensorrt", delegate="tensorrt", trtexec=trtexec,
                        remote_dir=str(tmp_path / "jetson"), python=str(python))


def _assert_nothing_left(tmp_path) -> None:
    assert not list((tmp_path / "jetson" / "jobs").iterdir())  # the sessions cleaned up after themselves
    left = [p.name for p in (tmp_path / "device-tmp").iterdir() if p.name != ".ses"]  # .ses: onnxruntime's import
    assert not left  # and left no scratch folder in the device's temp


def test_tensorrt_device_builds_once_and_checks_parity_here(sshd, trt_onnx, tmp_path):
    assert trt_onnx.path.endswith(".trt.onnx")
    profile = _jetson_profile(sshd, tmp_path, _fake_trtexec(tmp_path))
    result = edgeseq.check(trt_onnx.path, device=str(profile), times=(7, 50), batches=(1, 2))
    assert result.passed and len(result.cases) == 8  # 2 T x 2 batch x (speech, random)
    assert result.runtime == "tensorrt-tensorrt@jetson-like" and result.precision == "fp16"
    cache = tmp_path / "jetson" / "cache"
    engines = list(cache.glob("*.engine"))
    assert len(engines) == 1
    built = json.loads(engines[0].read_text())
    assert "--fp16" in built["flags"]  # the build plan's precision flag reached trtexec
    assert built["profile"]["features"]["max"][1] >= 1000  # and its optimization profile
    stamp = engines[0].stat().st_mtime_ns
    timing = edgeseq.profile(trt_onnx.path, device=str(profile), warmup=2, iterations=9, time=50)
    assert engines[0].stat().st_mtime_ns == stamp  # a second session reuses the cached engine
    assert timing.iterations == 9 and 0 < timing.min_ms <= timing.p50_ms <= timing.p99_ms
    assert timing.runtime == "tensorrt-tensorrt@jetson-like"
    _assert_nothing_left(tmp_path)


def test_tensorrt_device_without_trtexec_is_one_line(sshd, trt_onnx, tmp_path, run_cli):
    profile = _jetson_profile(sshd, tmp_path, str(tmp_path / "no-such-trtexec"))
    proc = run_cli("check", trt_onnx.path, "--device", str(profile))
    line = assert_one_line_error(proc)
    assert "trtexec was not found" in line and "[transport] trtexec" in line, line
    _assert_nothing_left(tmp_path)


def test_tensorrt_device_refuses_shapes_outside_the_profile(sshd, trt_onnx, tmp_path):
    profile = _jetson_profile(sshd, tmp_path, _fake_trtexec(tmp_path))
    with edgeseq.load(trt_onnx.path, device=str(profile)) as runner:
        x = np.zeros((1, 50, 128), np.float32)
        assert runner.infer({"features": x})[runner.output_names[0]].shape[:2] == (1, 50)
        with pytest.raises(edgeseq.errors.RuntimeFailure, match="outside the optimization profile"):
            runner.infer({"features": np.zeros((1, 5000, 128), np.float32)})
        assert not list((tmp_path / "jetson" / "jobs").glob("*/edgeseq-trt-*"))  # each job removes its scratch
    _assert_nothing_left(tmp_path)


# ---- a recipe's budgets judged on the device itself ------------------------------------------------------------------


def test_recipe_budgets_on_the_device(sshd, tmp_path, run_cli):
    """--on-device times each budget's artifact on its ssh device and gates on it: a generous budget passes, an
    impossible one fails the build (exit 1), and without the flag both stay 'not-measured' (exit 0)."""
    profile = sshd.profile("loopback-pi")
    recipe = tmp_path / "pi.toml"
    recipe.write_text(
        'name = "pi"\nmodel = "cbhg-lite"\nformats = ["onnx"]\nprecisions = ["fp32"]\n'
        f'devices = ["{profile}"]\nout = "pi"\n[parity]\ntimes = [7]\nbatches = [1]\n'
        '[latency]\ntime = 50\niterations = 5\nwarmup = 1\n'
        '[[budgets]]\ndevice = "loopback-pi"\np50_ms = 5000.0\n'
        '[[budgets]]\ndevice = "loopback-pi"\np90_ms = 0.0001\n')
    proc = run_cli("export", "--recipe", str(recipe), "--out", str(tmp_path / "a"), "--on-device")
    assert proc.returncode == 1, proc.stderr
    manifest = json.loads((tmp_path / "a" / "pi" / "manifest.json").read_text())
    generous, impossible = manifest["budgets"]
    assert generous["status"] == "pass" and 0 < generous["measured_ms"] <= 5000
    assert generous["runtime"] == "onnxruntime-cpu@loopback-pi"
    assert impossible["status"] == "fail" and "p90_ms" in impossible["reason"]
    assert not manifest["passed"]

    proc = run_cli("export", "--recipe", str(recipe), "--out", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    budgets = json.loads((tmp_path / "b" / "pi" / "manifest.json").read_text())["budgets"]
    assert {b["status"] for b in budgets} == {"not-measured"} and "--on-device" in budgets[0]["reason"]


def test_on_device_without_a_recipe_is_one_line(run_cli):
    assert_one_line_error(run_cli("export", "cbhg-lite", "--on-device"))


def test_check_refuses_a_second_device(sshd, lite_onnx, run_cli):
    """`check --device A --device B` checked on B alone and said nothing about A."""
    proc = run_cli("check", lite_onnx.path, "--device", str(sshd.profile()), "--device", "cpu", "--times", "7",
                   "--batches", "1")
    line = assert_one_line_error(proc)
    assert "check runs on one --device (got 2:" in line and "edgeseq profile" in line, line
    proc = run_cli("check", lite_onnx.path, "--device", str(sshd.profile()), "--times", "7", "--batches", "1")
    assert proc.returncode == 0 and "onnxruntime-cpu@loopback" in proc.stdout, proc.stderr


# ---- Core ML devices (a Mac): the .mlpackage travels zipped; coremltools' predict is a double here ----------------


def test_a_coreml_device_gets_the_package_zipped_and_answers_parity(sshd, tmp_path, lite_onnx):
    """The protocol path of runtime = "coreml" with tests/doubles/fake_coremltools.py as the Mac's python."""
    pytest.importorskip("coremltools", reason="needs coremltools: pip install 'edgeseq[coreml]'")
    art = edgeseq.export("cbhg-lite", "coreml", precision="fp16", out_dir=tmp_path / "art")
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).parent / 'doubles' / 'fake_coremltools.py'}"
                      " \"$@\"\n")
    python.chmod(0o755)
    device = tmp_path / "mac"
    path = sshd.profile("mac-like", runtime="coreml", delegate="ane", python=str(python), remote_dir=str(device))
    path.write_text(path.read_text().replace("threads = 2", 'threads = 2\nprecisions = ["fp16"]'))
    profile = str(path)
    result = edgeseq.check(art.path, device=profile, times=(7, 50), batches=(1, 2))
    assert result.passed and result.runtime == "coreml-ane@mac-like", result.failures
    cached = sorted(p.name for p in (device / "cache").iterdir())
    assert [n for n in cached if n.endswith(".mlpackage.zip")] and [n for n in cached if n.endswith(".mlpackage")]
    assert len([n for n in cached if n.endswith(".mlpackage")]) == 1  # unpacked once: describe and run share it
    assert not list((device / "jobs").iterdir())
    with pytest.raises(edgeseq.errors.InputError, match="runs coreml, which takes .mlpackage files; .* is onnx"):
        edgeseq.load(lite_onnx.path, device=profile)
