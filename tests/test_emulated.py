"""Emulated devices (`emulated = true`, e.g. tools/arm64-target's QEMU profiles): their numerics count, their
timings do not. Every latency from one is marked in the result, the report rows, the terminal table and JUnit, and a
recipe budget on one is 'not-judged', never pass or fail.

The device here is the loopback sshd of test_remote_ssh.py with `emulated = true` in its profile: what is checked is
the marking, which does not depend on an emulator being there (test_arm64_target.py runs the real one).
"""

import io
import json
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console

import edgeseq
from edgeseq.devices import get_profile, load_profile
from edgeseq.latency import EMULATED_NOTE, LatencyResult
from edgeseq.report import latency_notes, matrix_rows, print_table
from edgeseq.report.diff import _slowdowns

from test_remote_ssh import MISSING, serve

needs_ssh = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}: apt-get install openssh-server "
                                                     "openssh-client")


def _emulated(path):
    """The same profile, marked emulated (a top-level key: before [transport])."""
    text = path.read_text().replace("[transport]", "emulated = true\n[transport]", 1)
    out = path.with_name("emulated-" + path.name)
    out.write_text(text)
    return out


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    yield from serve(tmp_path_factory, "sshd-emu")


# ---- the profile field and where profiles are found --------------------------------------------------------------


def test_emulated_is_a_profile_field_defaulting_to_false(tmp_path):
    path = tmp_path / "qemu.toml"
    path.write_text('name = "qemu"\nruntime = "onnxruntime"\ndelegate = "cpu"\nemulated = true\n'
                    '[transport]\nkind = "ssh"\nhost = "127.0.0.1"\n')
    profile = load_profile(path)
    assert profile.emulated and profile.to_dict()["emulated"] is True
    assert not get_profile("raspberry-pi-5").emulated
    path.write_text(path.read_text().replace("emulated = true", 'emulated = "yes"'))
    with pytest.raises(edgeseq.errors.InputError, match="'emulated' must be bool"):
        load_profile(path)


def test_profiles_by_name_from_the_user_folder(tmp_path, monkeypatch):
    """tools/arm64-target writes arm64-qemu.toml there; `--device arm64-qemu` then finds it by name."""
    monkeypatch.setenv("EDGESEQ_DEVICES_DIR", str(tmp_path))
    with pytest.raises(edgeseq.errors.UnknownNameError, match=r"in .*: none \(tools/arm64-target up adds"):
        get_profile("arm64-qemu")
    (tmp_path / "arm64-qemu.toml").write_text('name = "arm64-qemu"\nruntime = "onnxruntime"\ndelegate = "cpu"\n'
                                              'emulated = true\n[transport]\nkind = "ssh"\nhost = "127.0.0.1"\n')
    assert get_profile("arm64-qemu").emulated
    assert get_profile("pixel-8").name == "pixel-8"  # shipped names still come first


# ---- latency rows -------------------------------------------------------------------------------------------------


def _report(emulated: bool) -> dict:
    art = "out/cbhg-lite.fp32.onnx"
    return {"model": {"name": "cbhg-lite"}, "environment": {}, "passed": True,
            "artifacts": [{"path": art, "format": "onnx", "precision": "fp32", "size_bytes": 10, "sha256": "0"}],
            "parity": [{"runtime": "onnxruntime-cpu@arm64-qemu", "artifact": art, "precision": "fp32", "passed": True,
                        "cases": [], "worst": {"rel_l2": 1e-7, "max_abs": 1e-6}}],
            "latency": [{"runtime": "torch-cpu", "artifact": "", "precision": "fp32", "p50_ms": 2.0, "p90_ms": 2.1,
                         "p99_ms": 2.2},
                        {"runtime": "onnxruntime-cpu@arm64-qemu", "artifact": art, "precision": "fp32",
                         "p50_ms": 40.0, "p90_ms": 41.0, "p99_ms": 42.0, "emulated": emulated, "note": ""}]}


def test_report_rows_and_table_mark_emulated_latency():
    row = matrix_rows(_report(True))[1]
    assert row["p50 ms"] == "40.00 (emulated)" and row["p90 ms"] == "41.00 (emulated)"
    assert row["x torch eager"] == "-"  # no speed-up against eager from an emulator's time
    assert latency_notes(_report(True)) == [f"latency of onnxruntime-cpu@arm64-qemu on `cbhg-lite.fp32.onnx`: "
                                            f"{EMULATED_NOTE}"]
    plain = matrix_rows(_report(False))[1]
    assert plain["p50 ms"] == "40.00" and plain["x torch eager"] == "0.05" and not latency_notes(_report(False))
    console = Console(file=io.StringIO(), width=200)
    print_table(_report(True), console)
    assert "40.00 (emulated)" in console.file.getvalue()


def test_diff_never_calls_an_emulated_row_slower():
    a = {"x_eager": 0.5, "p50_ms": 4.0, "min_ms": 3.0, "emulated": True}
    assert _slowdowns(a, dict(a, p50_ms=40.0)) == {}
    assert _slowdowns(dict(a, emulated=False), dict(a, p50_ms=40.0, emulated=False))


def test_latency_result_round_trips_the_mark():
    old = {k: 1 for k in ("batch", "time", "threads", "warmup", "iterations")}
    old.update({k: 1.0 for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "std_ms", "frames_per_s", "rtf",
                                 "peak_rss_mb")}, runtime="x", artifact="", precision="fp32")
    assert LatencyResult.from_dict(old).emulated is False  # a report written before the field
    assert LatencyResult.from_dict(dict(old, emulated=True)).to_dict()["emulated"] is True


# ---- over ssh, end to end -----------------------------------------------------------------------------------------


@needs_ssh
def test_profile_on_an_emulated_device_is_marked(sshd, lite_onnx, run_cli):
    profile = _emulated(sshd.profile("qemu-like"))
    result = edgeseq.profile(lite_onnx.path, device=str(profile), warmup=1, iterations=3, time=20)
    assert result.emulated and result.to_dict()["emulated"] is True
    assert not edgeseq.profile(lite_onnx.path, device=str(sshd.profile()), warmup=0, iterations=1, time=20).emulated
    proc = run_cli("profile", lite_onnx.path, "--device", str(profile), "-n", "2", "--warmup", "0", "--time", "20")
    assert proc.returncode == 0, proc.stderr
    assert f"note: {EMULATED_NOTE}" in proc.stdout
    proc = run_cli("profile", lite_onnx.path, "--device", str(profile), "--device", "cpu", "-n", "2", "--warmup",
                   "0", "--time", "20")
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime-cpu@qemu-like (emulated)" in proc.stdout
    assert f"note: (emulated) = {EMULATED_NOTE}" in proc.stdout


@needs_ssh
def test_budget_on_an_emulated_device_is_not_judged(sshd, tmp_path, run_cli):
    """An impossible budget on an emulated device neither fails nor passes the build: it is timed there (with
    --on-device) and recorded as 'not-judged', and JUnit lists it as skipped, marked emulated."""
    profile = _emulated(sshd.profile("qemu-pi"))
    recipe = tmp_path / "pi.toml"
    recipe.write_text(
        'name = "pi"\nmodel = "cbhg-lite"\nformats = ["onnx"]\nprecisions = ["fp32"]\n'
        f'devices = ["{profile}"]\nout = "pi"\n[parity]\ntimes = [7]\nbatches = [1]\n'
        '[latency]\ntime = 20\niterations = 3\nwarmup = 1\n'
        '[[budgets]]\ndevice = "qemu-pi"\np50_ms = 0.0001\n')
    junit = tmp_path / "junit.xml"
    proc = run_cli("export", "--recipe", str(recipe), "--out", str(tmp_path / "a"), "--on-device", "--junit",
                   str(junit))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "a" / "pi" / "manifest.json").read_text())
    (budget,) = manifest["budgets"]
    assert budget["status"] == "not-judged" and budget["measured_ms"] > 0 and manifest["passed"]
    assert budget["reason"].startswith("not judged (emulated): qemu-pi runs under an emulator")
    assert "not-judged" in proc.stdout
    case = ET.parse(junit).getroot().find(".//testcase[@classname='budget.fp32']")
    assert case.get("name").endswith("(emulated)") and case.find("skipped") is not None
    assert case.find("failure") is None

    proc = run_cli("export", "--recipe", str(recipe), "--out", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    (budget,) = json.loads((tmp_path / "b" / "pi" / "manifest.json").read_text())["budgets"]
    assert budget["status"] == "not-judged" and budget["measured_ms"] is None


# ---- the agent's CPU record under QEMU ---------------------------------------------------------------------------


def test_agent_reads_an_emulated_cores_features_from_its_auxv(tmp_path, monkeypatch):
    """QEMU user mode shows the host's /proc/cpuinfo (x86 flags) to an aarch64 python; the auxiliary vector holds the
    emulated core's HWCAP bits, which the agent names as the kernel's Features line would."""
    import platform
    import struct

    from edgeseq.environment import cpu_info
    from edgeseq.remote import agent

    a76 = (1 << 0) | (1 << 1) | (1 << 9) | (1 << 10) | (1 << 20)  # fp asimd fphp asimdhp asimddp
    auxv = tmp_path / "auxv"
    auxv.write_bytes(struct.pack("<8Q", 6, 4096, 16, a76, 26, 1 << 13, 0, 0))  # AT_PAGESZ, AT_HWCAP, AT_HWCAP2 (i8mm)
    assert agent._arm_hwcaps(str(auxv)) == ["fp", "asimd", "fphp", "asimdhp", "asimddp", "i8mm"]
    auxv.write_bytes(struct.pack("<4Q", 6, 4096, 0, 0))
    assert agent._arm_hwcaps(str(auxv)) is None and agent._arm_hwcaps(str(tmp_path / "x")) is None

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(agent, "_arm_hwcaps", lambda: ["fp", "asimd", "fphp", "asimddp"])
    monkeypatch.setenv("QEMU_CPU", "cortex-a76")
    host = tmp_path / "cpuinfo"  # what QEMU shows: the x86 host's file
    host.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n")
    got = agent._cpu(str(host))
    assert got == {"model": "QEMU cortex-a76 (emulated)", "machine": "aarch64", "flags": ["fp", "asimd", "fphp",
                                                                                          "asimddp"]}
    assert cpu_info(got["model"], got["flags"], got["machine"])["int8_isa"] == "arm64-dotprod"
