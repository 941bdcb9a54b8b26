"""The guard on the support table: the default test run exports and checks every (model, format) pair it lists."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import COVERS_OUT

from edgeseq.enums import Format
from edgeseq.formats import support_table, unsupported_pairs

TESTS = Path(__file__).parent


def test_support_table_lists_every_model_in_every_format_with_its_precisions():
    table = support_table()
    assert {"cbhg", "cbhg-lite", "cbhg-postnet", "attention-cbhg", "seq-cnn"} <= set(table)
    left_out = unsupported_pairs()
    assert left_out == {}, left_out  # every registered format exports every registered model
    for model, formats in table.items():
        assert set(formats) == {Format.ONNX, Format.TFLITE, Format.TENSORRT, Format.ORT, Format.COREML,
                                Format.EXECUTORCH} - {f for (m, f) in left_out if m == model}
        assert [p.value for p in formats[Format.TENSORRT]] == ["fp32", "fp16", "int8-static"]
        assert len(formats[Format.ONNX]) == len(formats[Format.TFLITE]) == 4
        assert formats[Format.ORT] == formats[Format.ONNX]  # an .ort is converted from the ONNX of its precision
        assert [p.value for p in formats[Format.COREML]] == ["fp32", "fp16"]  # Core ML's two compute precisions


def test_every_model_format_pair_is_exercised_by_the_default_run(tmp_path):
    """Collects the default run (-m "not slow", as .ci/run) and reads the pairs its tests are marked to cover."""
    out = tmp_path / "covers.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not slow", "-p", "no:cacheprovider", str(TESTS)],
        capture_output=True, text=True, timeout=600, env={**__import__("os").environ, COVERS_OUT: str(out)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    covered = {tuple(pair) for pair in json.loads(out.read_text())}
    wanted = {(model, fmt.value) for model, formats in support_table().items() for fmt in formats}
    assert not wanted - covered, f"no default-run test exports and checks: {sorted(wanted - covered)}"
    assert not covered - wanted, f"marked pairs that the support table does not list: {sorted(covered - wanted)}"


def test_formats_left_out_of_all_are_named_with_their_extra(monkeypatch):
    import edgeseq.formats as formats

    assert formats.formats_not_installed() == {}  # the test environment has every extra
    monkeypatch.setattr(formats, "installed_formats", lambda: [Format.ONNX, Format.TENSORRT, Format.ORT,
                                                                    Format.COREML])
    assert formats.formats_not_installed() == {Format.TFLITE: "pip install 'edgeseq[tflite]'",
                                               Format.EXECUTORCH: "pip install 'edgeseq[executorch]'"}
