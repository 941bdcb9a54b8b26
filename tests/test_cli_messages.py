"""Everything the CLI prints through rich is plain text: an extras hint keeps its `[report]`, a tensor name keeps its
`[batch x time x 128]`. Rich markup used to eat them ("pip install 'edgeseq'")."""

import ast
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeseq.cli.app import app
from edgeseq.errors import MissingExtraError

ROOT = Path(__file__).resolve().parents[1]
STORED = ROOT / "bench" / "results" / "gpu-h200-matrix-cbhg-lite.json"
HINT = "pip install 'edgeseq[report]'"


def _invoke(*argv):
    return CliRunner().invoke(app, list(argv))


def test_a_missing_extra_error_names_the_extra_intact(monkeypatch, tmp_path):
    import edgeseq.matrix

    def missing(*a, **kw):
        raise MissingExtraError(f"report.html needs matplotlib: {HINT}")

    monkeypatch.setattr(edgeseq.matrix, "run_matrix", missing)
    result = _invoke("export", "cbhg-lite", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: report.html needs matplotlib: {HINT}"


def test_an_internal_error_prints_its_message_intact(monkeypatch, tmp_path):
    import edgeseq.matrix

    def bug(*a, **kw):
        raise RuntimeError("features[batch x time x 128] and [bold]this[/bold]")

    monkeypatch.setattr(edgeseq.matrix, "run_matrix", bug)
    monkeypatch.delenv("EDGESEQ_DEBUG", raising=False)
    result = _invoke("export", "cbhg-lite", "--out", str(tmp_path / "o"))
    assert result.exit_code == 3
    assert "RuntimeError: features[batch x time x 128] and [bold]this[/bold]" in result.stderr


def test_export_hints_and_notes_print_intact(monkeypatch, tmp_path):
    """The closing line's report.html hint, `-f all`'s left-out formats and an artifact's note, as written."""
    import edgeseq.formats
    import edgeseq.matrix
    from edgeseq.enums import Format
    from edgeseq.report import Report

    data = json.loads(STORED.read_text())
    data["artifacts"][0]["notes"] = ["no engine was built here: pip install 'edgeseq[tensorrt]' [and a GPU]"]
    monkeypatch.setattr(edgeseq.matrix, "run_matrix", lambda *a, **kw: Report.from_dict(data))
    monkeypatch.setattr(edgeseq.formats, "formats_not_installed",
                        lambda: {Format.TFLITE: "pip install 'edgeseq[tflite]'"})
    result = _invoke("export", "cbhg-lite", "-f", "all", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "-f all left out tflite: not installed here (pip install 'edgeseq[tflite]')" in lines
    assert f"wrote {tmp_path / 'o' / 'report.json'}, report.md (report.html needs matplotlib: {HINT})" in lines
    assert any(line.endswith("no engine was built here: pip install 'edgeseq[tensorrt]' [and a GPU]") for line in lines)


def test_profile_notes_print_intact(monkeypatch, tmp_path):
    import edgeseq.api
    from edgeseq.latency import LatencyResult

    row = json.loads(STORED.read_text())["latency"][0]
    result_row = LatencyResult.from_dict({**row, "note": f"timed by [tool] benchmark_model; plots need {HINT}"})
    monkeypatch.setattr(edgeseq.api, "profile", lambda *a, **kw: result_row)
    (tmp_path / "m.onnx").write_bytes(b"")
    result = _invoke("profile", str(tmp_path / "m.onnx"))
    assert result.exit_code == 0, result.output
    assert f"note: timed by [tool] benchmark_model; plots need {HINT}" in result.stdout.splitlines()


def test_the_models_table_keeps_the_shapes():
    result = _invoke("models")
    assert result.exit_code == 0
    assert "features[batchxtimex128]" in result.stdout


def _unescaped_prints(path: Path) -> list[str]:
    """`x.print(<a str, f-string or concatenation>, ...)` calls that let rich read their text as markup."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "print"):
            continue
        if not node.args or not isinstance(node.args[0], (ast.JoinedStr, ast.Constant, ast.BinOp, ast.Name)):
            continue
        if any(k.arg == "markup" and isinstance(k.value, ast.Constant) and k.value.value is False
               for k in node.keywords):
            continue
        found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


@pytest.mark.parametrize("package", ["cli", "report"])
def test_every_rich_print_is_plain_text(package):
    """A message reaches rich as Text, a table, or a string with markup=False (console.say); never as markup."""
    paths = sorted((ROOT / "edgeseq" / package).glob("*.py"))
    assert paths
    assert [p for path in paths for p in _unescaped_prints(path)] == []
