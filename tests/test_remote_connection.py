"""ssh command lines, error classification and the retry policy, without a server (test_remote_ssh.py has one)."""

import pytest

import edgeseq
from edgeseq.devices import get_profile
from edgeseq.errors import DeviceError, InputError
from edgeseq.remote import connect
from edgeseq.remote.connection import Completed, RetryPolicy, Unreachable, validate_remote_path, with_retries
from edgeseq.remote.runner import remote_relative
from edgeseq.remote.ssh import SshConnection


def test_ssh_and_scp_command_lines():
    pi = connect(get_profile("raspberry-pi-5"))
    assert isinstance(pi, SshConnection) and pi.label == "raspberry-pi-5 (pi@raspberrypi.local:22)"
    argv = pi.ssh_argv("true")
    assert argv[0] == "ssh" and argv[-3:] == ["22", "pi@raspberrypi.local", "true"]
    opts = " ".join(argv)
    for want in ("BatchMode=yes", "ConnectTimeout=10", "ServerAliveInterval=5", "IdentitiesOnly=yes",
                 "StrictHostKeyChecking=accept-new"):
        assert want in opts
    assert argv[argv.index("-i") + 1].endswith("/.ssh/id_ed25519")  # ~ expanded here, not by ssh
    strict = SshConnection("fe80::1", user="u", port=2222, known_hosts="/k/known_hosts")
    assert "UserKnownHostsFile=/k/known_hosts" in strict.ssh_argv("x") and "StrictHostKeyChecking=yes" in \
        strict.ssh_argv("x")
    assert strict.scp_push_argv(["a", "b"], "d")[-3:] == ["a", "b", "u@[fe80::1]:d/"]
    pull = strict.scp_pull_argv(["d/r.json", "d/o.npz"], "/tmp/x")
    assert pull[pull.index("-P") + 1] == "2222"
    assert pull[-3:] == ["u@[fe80::1]:d/r.json", "u@[fe80::1]:d/o.npz", "/tmp/x"]


@pytest.mark.parametrize("stderr, error, match", [
    ("ssh: connect to host pi port 22: Connection refused", Unreachable, "cannot reach the device: ssh: connect"),
    ("ssh: connect to host pi port 22: Connection timed out", Unreachable, "Connection timed out"),
    ("Connection closed by 10.0.0.7 port 22", Unreachable, "cannot reach"),
    ("client_loop: send disconnect: Broken pipe", Unreachable, "Broken pipe"),
    ("pi@pi: Permission denied (publickey).", DeviceError, "authentication failed for pi@pi with key"),
    ("Host key verification failed.", DeviceError, "host key of pi does not match ~/.ssh/known_hosts"),
    ("ssh: Could not resolve hostname pi: Name or service not known", DeviceError, "cannot resolve host 'pi'"),
])
def test_ssh_failures_are_classified(stderr, error, match):
    conn = SshConnection("pi", user="pi", key="/k")
    with pytest.raises(error, match=match) as info:
        conn.classify(Completed(("ssh",), 255, b"", stderr.encode()), ssh_exit=True)
    assert (info.type is Unreachable) == (error is Unreachable)


def test_remote_command_failures_are_not_ssh_failures():
    conn = SshConnection("pi")
    conn.classify(Completed(("ssh",), 3, b"", b"edgeseq-device-error: numpy is not installed"), ssh_exit=True)
    conn.classify(Completed(("ssh",), 127, b"", b"sh: python3: not found"), ssh_exit=True)


def test_retries_back_off_and_stop():
    slept, tries = [], []

    def down():
        tries.append(1)
        raise Unreachable("pi: cannot reach the device: refused")

    with pytest.raises(Unreachable, match=r"refused \(4 tries over"):
        with_retries(down, RetryPolicy(attempts=4, backoff_s=0.5), sleep=slept.append)
    assert slept == [0.5, 1.0, 2.0] and len(tries) == 4

    answers = iter([Unreachable("x"), Completed(("ssh",), 0, b"ok", b"")])

    def flaky():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert with_retries(flaky, RetryPolicy(), sleep=slept.append).stdout == b"ok"

    def auth():
        tries.append(1)
        raise DeviceError("auth")

    tries.clear()
    with pytest.raises(DeviceError, match="auth"):
        with_retries(auth, RetryPolicy(attempts=5), sleep=slept.append)
    assert len(tries) == 1  # not worth another try


def test_remote_paths():
    assert remote_relative("~/edgeseq") == "edgeseq" and remote_relative("/tmp/edgeseq") == "/tmp/edgeseq"
    assert validate_remote_path("/data/local/tmp/edgeseq", "x") == "/data/local/tmp/edgeseq"
    for bad in ("/tmp/my dir", "/tmp/$(reboot)", "/tmp/../etc", "a;b"):
        with pytest.raises(InputError, match="may only use"):
            validate_remote_path(bad, "profile [transport] remote_dir")


def test_device_agent_speaks_the_hosts_protocol():
    import ast

    from edgeseq.remote import agent, runner

    assert agent.ERROR_PREFIX == runner.ERROR_PREFIX
    sources = runner.agent_sources()
    assert sources["agent.py"].startswith(b'"""edgeseq\'s device agent')
    imported = set()
    for source in sources.values():
        tree = ast.parse(source, feature_version=(3, 8))  # devices run older pythons than we do
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    assert imported <= {"contextlib", "io", "json", "sys", "time", "os", "platform", "resource", "shutil", "struct",
                        "subprocess", "tempfile", "zipfile", "numpy", "onnxruntime", "coremltools", "executorch",
                        "torch", "agent", "agent_base", "agent_trtexec", "agent_executorch", "plan_exec"}, imported
    # the standard library, numpy, a runtime (torch: ExecuTorch's bindings take its tensors), its own modules
    assert "plan_exec.py" in sources  # ExecuTorch's plan interpreter, from its format package (agent_modules)
    assert runner.agent_bytes() == runner.agent_bytes()  # byte-identical: the device's cached copy is reused


def test_the_shipped_agent_runs_as_one_file_with_its_tensorrt_module(tmp_path):
    """The zip python runs on the device: its own modules import each other there (no edgeseq), a bad verb is its
    one usage line, and the TensorRT runtime (agent_trtexec.py) loads from inside the zip."""
    import subprocess
    import sys

    from edgeseq.remote import runner

    app = tmp_path / "agent-x.pyz"
    app.write_bytes(runner.agent_bytes())
    env = {"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    bad = subprocess.run([sys.executable, "-I", str(app), "nope"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith(runner.ERROR_PREFIX + "usage: agent.py")
    (tmp_path / "m.engine").write_bytes(b"")
    (tmp_path / "m.engine.version").write_text("10.0")  # built and stamped: no trtexec call
    (tmp_path / "job.json").write_text('{"engine": "m.engine", "onnx": "m.onnx", "inputs": [], "outputs": []}')
    done = subprocess.run([sys.executable, "-I", str(app), "describe", str(tmp_path / "job.json"), "tensorrt",
                           "tensorrt", "0"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0 and "TensorRT 10.0" in done.stdout, done.stdout + done.stderr


def test_tensorrt_build_job_from_the_plan_and_without_one(tmp_path, lite_onnx):
    """The job a Jetson gets: flags from the build plan beside a .trt.onnx; else a plan for the ONNX's own precision;
    an ONNX with neither edgeseq metadata nor a plan is one clear error."""
    import json

    import onnx
    from onnx import TensorProto, helper

    from edgeseq.errors import InputError
    from edgeseq.remote.tensorrt_job import build_job

    trt = edgeseq.export("cbhg-lite", "tensorrt", precision="fp16", out_dir=tmp_path / "trt")
    job = json.loads(build_job(trt.path, "abc-cbhg-lite.fp16.trt.onnx", ""))
    assert "--fp16" in job["build_args"] and not any(a.startswith("--onnx=") for a in job["build_args"])
    assert job["trtexec"] == "trtexec" and job["metadata"]["edgeseq.precision"] == "fp16"
    assert job["inputs"][0]["name"] == "features" and job["inputs"][0]["shape"][2] == 128
    assert job["inputs"][0]["opt"] == [1, 200, 128]  # the plan's optimization profile
    plain = json.loads(build_job(lite_onnx.path, "x.onnx", "/opt/trtexec"))  # no plan: fp32, --noTF32
    assert "--noTF32" in plain["build_args"] and plain["trtexec"] == "/opt/trtexec"
    assert build_job(lite_onnx.path, "x.onnx", "") == build_job(lite_onnx.path, "x.onnx", "")  # cache key is stable

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), foreign)
    with pytest.raises(InputError, match="no edgeseq metadata and no build plan"):
        build_job(foreign, "foreign.onnx", "")
