"""Every script in examples/ runs as documented."""

import ast
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script, *args, cwd):
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def _scripts_the_tests_run() -> set[str]:
    """The script names that this module's test functions pass to run() (read from the source, not hard-coded)."""
    tree = ast.parse(Path(__file__).read_text())
    return {node.args[0].value for fn in tree.body if isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_")
            for node in ast.walk(fn) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "run" and node.args and isinstance(node.args[0], ast.Constant)}


def test_every_example_has_a_test():
    assert _scripts_the_tests_run() == {p.name for p in EXAMPLES.glob("*.py")}


def test_export_cbhg(tmp_path):
    proc = run("export_cbhg.py", "--model", "cbhg-lite", "--out", str(tmp_path / "o"), "--times", "1,50", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "parity PASS: 8 cases" in proc.stdout and "p50" in proc.stdout
    assert (tmp_path / "o" / "cbhg-lite.fp32.onnx").exists()


def test_bring_your_own_model(tmp_path):
    proc = run("bring_your_own_model.py", "--out", str(tmp_path / "byo"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "my-cbhg: inputs [('mel', ('batch', 'time', 40))], outputs [('encoded', ('batch', 'time', 64))]" in out
    assert "check PASS: 10 cases (T = [1, 7, 50, 200, 1000])" in out  # the full sweep by default
    assert "recipe: my-cbhg.fp32.onnx parity PASS" in out and "recipe: my-cbhg.int8-dynamic.onnx parity PASS" in out
    manifest = tmp_path / "byo" / "builds" / "my-cbhg-server" / "manifest.json"
    assert '"model": "my-cbhg"' in manifest.read_text()


def test_embed_in_app(tmp_path, lite_onnx):
    proc = run("embed_in_app.py", "--artifact", lite_onnx.path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("speech_0: 225 frames")


def test_find_divergent_layer_onnx_and_tflite(tmp_path):
    for fmt in ("onnx", "tflite"):
        proc = run("find_divergent_layer.py", "--format", fmt, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert f"cbhg-lite.fp32.{fmt} against the fine-tuned checkpoint: FAIL" in proc.stdout
        assert "first divergent layer: bank.convs.3.conv.1 (Conv1d)" in proc.stdout


def test_release_gate(tmp_path):
    """Quantizing the MatMuls too makes the int8 row fail: the gate names it against the last release, and the
    candidate's own bisection says where the error left tolerance for good (after the bank, whose int8 convs the
    last release had too)."""
    proc = run("release_gate.py", "--out", str(tmp_path / "builds"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "regressed onnx int8-static" in out and "parity now fails" in out
    assert "same      onnx fp32" in out and "the gate fails this build: 1 row(s) regressed" in out
    for_good = out.split("left it for good at ", 1)[1].split(" ", 1)[0]
    assert not for_good.startswith("bank"), out
    assert (tmp_path / "builds" / "last-release" / "report.json").is_file()


def test_streaming_app(tmp_path):
    proc = run("streaming_app.py", "--chunk", "8", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("speech_0: 225 frames in 29 calls of 8, streamed vs whole rel L2 ")
    assert lines[-1].startswith("streaming matches the whole-utterance run")
