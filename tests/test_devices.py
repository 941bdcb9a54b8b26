import dataclasses

import pytest

from edgeseq.devices import Delegate, Runtime, TransportKind, get_profile, list_profiles, load_profile
from edgeseq.enums import Format
from edgeseq.errors import InputError, UnknownNameError


def test_shipped_profiles_load_and_cover_the_targets():
    profiles = {p.name: p for p in list_profiles()}
    assert {"local-cpu", "local-cuda", "pixel-8", "jetson-orin", "raspberry-pi-5"} <= set(profiles)
    pixel = profiles["pixel-8"]
    assert (pixel.runtime, pixel.delegate, pixel.threads, pixel.transport.kind) == (
        Runtime.LITERT, Delegate.XNNPACK, 4, TransportKind.ADB)
    assert pixel.format is Format.TFLITE and pixel.tolerances == {"fp16": 2e-3}
    jetson = profiles["jetson-orin"]
    assert jetson.transport.kind is TransportKind.SSH and jetson.transport.host and jetson.format is Format.TENSORRT
    assert profiles["local-cpu"].local and profiles["local-cpu"].runner_device() == "cpu"


def test_the_devices_listing_says_which_files_each_profile_runs(run_cli):
    """`edgeseq devices --json`: an onnxruntime board takes .onnx and .ort, an executorch board a .pte, a TensorRT
    board the .onnx it builds from, Core ML a .mlpackage; PyTorch on this GPU takes no file."""
    import json

    proc = run_cli("devices", "--json")
    assert proc.returncode == 0, proc.stderr
    files = {d["name"]: d["files"] for d in json.loads(proc.stdout)}
    assert files["raspberry-pi-5"] == [".onnx", ".ort"] and files["raspberry-pi-5-executorch"] == [".pte"]
    assert files["jetson-orin"] == [".onnx"] and files["mac-coreml"] == [".mlpackage"]
    assert files["pixel-8"] == [".tflite"] and files["local-cpu"] == [".onnx"] and files["local-cuda"] == []
    pi = get_profile("raspberry-pi-5-executorch")
    assert (pi.runtime, pi.delegate, pi.format) == (Runtime.EXECUTORCH, Delegate.XNNPACK, Format.EXECUTORCH)


def test_by_name_or_path(tmp_path):
    assert get_profile("pixel-8").name == "pixel-8"
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nruntime = "onnxruntime"\ndelegate = "cpu"\nthreads = 2\n[transport]\nkind = "local"\n')
    assert get_profile(str(path)).threads == 2
    with pytest.raises(UnknownNameError, match="shipped profiles: .*pixel-8"):
        get_profile("pixel-9")


@pytest.mark.parametrize(
    "text, message",
    [
        ('name = "x"\nruntime = "onnxruntime"\ndelegate = "cpu"\nthreadz = 2\n[transport]\nkind = "local"\n',
         "unknown key 'threadz'"),
        ('name = "x"\nruntime = "onnxruntime"\ndelegate = "cpu"\nthreads = "4"\n[transport]\nkind = "local"\n',
         "'threads' must be int"),
        ('name = "x"\nruntime = "onnxruntime"\ndelegate = "cpu"\nthreads = 0\n[transport]\nkind = "local"\n',
         "'threads' must be >= 1"),
        ('name = "x"\nruntime = "onnxruntime"\ndelegate = "cpu"\nthreads = -2\n[transport]\nkind = "local"\n',
         "'threads' must be >= 1"),
        ('name = "x"\nruntime = "onnxruntime"\ndelegate = "cpu"\n', "missing required key 'transport'"),
        ('name = "x"\nruntime = "qnn"\ndelegate = "cpu"\n[transport]\nkind = "local"\n', "unknown runtime 'qnn'"),
        ('name = "x"\nruntime = "litert"\ndelegate = "cpu"\n[transport]\nkind = "ssh"\n', "ssh needs 'host'"),
        ('name = "x"\nruntime = "litert"\ndelegate = "cpu"\n[transport]\nkind = "adb"\nport = "22"\n',
         "'port' must be int"),
        ('name = "x"\nruntime = "litert"\ndelegate = "cpu"\n[transport]\nkind = "local"\n[tolerances]\nfp8 = 1.0\n',
         "unknown precision 'fp8'"),
        ('name = "x"\nruntime = "litert"\ndelegate = "cpu"\n[transport]\nkind = "local"\n[tolerances]\nfp16 = -1\n',
         "positive"),
        ("name = [", "not valid TOML"),
    ],
)
def test_bad_profiles_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        load_profile(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_coreml_profiles_reach_a_mac_with_core_mls_own_compute_units():
    mac, ane = get_profile("mac-coreml"), get_profile("mac-neural-engine")
    assert (mac.format, mac.transport.kind.value, mac.runner_device()) == (Format.COREML, "ssh", "cpu")
    assert (ane.runner_device(), [p.value for p in ane.precisions]) == ("ane", ["fp16"])
    local = dataclasses.replace(mac, transport=dataclasses.replace(mac.transport, kind=TransportKind.LOCAL))
    local.validate_local(Format.COREML)  # on macOS the local runner takes it; elsewhere it says macOS at load
    with pytest.raises(InputError, match="runs coreml, which takes .mlpackage files; this artifact is onnx"):
        local.validate_local(Format.ONNX, takes=".mlpackage")
    with pytest.raises(InputError, match="not the xnnpack delegate"):
        dataclasses.replace(local, delegate=Delegate.XNNPACK).validate_local(Format.COREML)


def test_a_local_profile_names_the_files_its_runtime_takes(tmp_path, lite_onnx):
    """Through load(), the refusal names the runtime's file suffix, as the format package knows it."""
    import edgeseq

    path = tmp_path / "mac-here.toml"
    path.write_text('name = "mac-here"\nruntime = "coreml"\ndelegate = "cpu"\n[transport]\nkind = "local"\n')
    with pytest.raises(InputError, match=r"runs coreml, which takes \.mlpackage files; this artifact is onnx$"):
        edgeseq.load(lite_onnx.path, device=str(path))


def test_missing_profile_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_profile(tmp_path / "nope.toml")


def test_profiles_load_without_tomllib(tmp_path):
    """Python 3.10 (JetPack 6) has no tomllib: tomli reads the profiles, and bad TOML is still a one-line error."""
    import subprocess
    import sys

    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    code = (
        "import sys; sys.modules['tomllib'] = None\n"  # `import tomllib` now fails as on 3.10
        "from edgeseq import tomlfile; from edgeseq.devices import get_profile, load_profile\n"
        "from edgeseq.errors import InputError\n"
        "assert tomlfile.tomllib.__name__ == 'tomli', tomlfile.tomllib\n"
        "print(get_profile('pixel-8').threads)\n"
        f"try:\n    load_profile({str(bad)!r})\nexcept InputError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    threads, error = done.stdout.splitlines()
    assert threads == "4" and "not valid TOML" in error and str(bad) in error


def test_local_cuda_says_it_is_pytorch_and_what_runs_a_file_on_the_gpu(run_cli, lite_onnx):
    """local-cuda (runtime torch) times the matrix's PyTorch rows; given a file it used to say only that torch takes
    no artifact file, not what to use instead."""
    import edgeseq
    from conftest import assert_one_line_error

    with pytest.raises(InputError) as info:
        get_profile("local-cuda").validate_local(Format.ONNX)
    message = str(info.value)
    assert "'local-cuda' is PyTorch on this GPU" in message and "torch-cuda rows and recipe budgets" in message
    assert message.endswith("to run an .onnx on this GPU use --device cuda (ONNX Runtime's CUDA provider)")
    with pytest.raises(InputError, match="use --device cuda"):
        edgeseq.check(lite_onnx.path, device="local-cuda")
    line = assert_one_line_error(run_cli("check", lite_onnx.path, "--device", "local-cuda"))
    assert "use --device cuda (ONNX Runtime's CUDA provider)" in line


def test_an_adb_profile_without_remote_dir_uses_android_s_writable_folder(tmp_path):
    path = tmp_path / "phone.toml"
    path.write_text('name = "phone"\nruntime = "litert"\ndelegate = "xnnpack"\n[transport]\nkind = "adb"\n')
    assert load_profile(path).transport.remote_dir == "/data/local/tmp/edgeseq"  # Android has no /tmp for adb shell
    path.write_text('name = "box"\nruntime = "onnxruntime"\ndelegate = "cpu"\n[transport]\nkind = "ssh"\nhost = "h"\n')
    assert load_profile(path).transport.remote_dir == "/tmp/edgeseq"


def test_a_profile_records_its_core(tmp_path):
    """`cpu` names the core a profile is for (tools/arm64-target: each profile's QEMU_CPU); it is text or an error."""
    body = 'runtime = "onnxruntime"\ndelegate = "cpu"\n{cpu}\n[transport]\nkind = "ssh"\nhost = "h"\n'
    (tmp_path / "a53.toml").write_text('name = "a53"\n' + body.format(cpu='cpu = "cortex-a53"'))
    profile = load_profile(tmp_path / "a53.toml")
    assert profile.cpu == "cortex-a53" and profile.to_dict()["cpu"] == "cortex-a53"
    (tmp_path / "bad.toml").write_text('name = "bad"\n' + body.format(cpu="cpu = 53"))
    with pytest.raises(InputError, match=r"^.*bad\.toml: 'cpu' must be .*, got int$"):
        load_profile(tmp_path / "bad.toml")
    (tmp_path / "none.toml").write_text('name = "none"\n' + body.format(cpu=""))
    assert load_profile(tmp_path / "none.toml").cpu == ""
