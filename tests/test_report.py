import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

import edgeseq
import edgeseq.report as report_module
from edgeseq.errors import ArtifactError
from edgeseq.matrix import MatrixOptions
from edgeseq.report import (TERMINAL_COLUMNS, Report, load_report, matrix_rows, print_table, quant_rows,
                            render_markdown)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("matrix") / "lite"
    edgeseq.run_matrix("cbhg-lite", out_dir=out, options=MatrixOptions(times=(7, 50), batches=(1, 2), iterations=3))
    return out


def test_matrix_writes_artifact_and_reports(report_dir):
    names = sorted(p.name for p in report_dir.iterdir())
    assert names == ["cbhg-lite.fp32.onnx", "report.html", "report.json", "report.md"]


def test_report_json_is_the_source_of_truth(report_dir):
    data = load_report(report_dir / "report.json")
    assert data["passed"] is True
    assert data["environment"]["packages"]["onnxruntime"]
    assert data["artifacts"][0]["sha256"] and data["artifacts"][0]["path"].endswith("cbhg-lite.fp32.onnx")
    assert len(data["parity"][0]["cases"]) == 2 * 2 * 2  # T x batch x {speech, random}
    assert {x["runtime"] for x in data["latency"]} >= {"torch-cpu", "onnxruntime-cpu"}
    again = Report.from_dict(data).to_dict()
    assert {k: v for k, v in again.items() if k != "created"} == {k: v for k, v in data.items() if k != "created"}


def test_markdown_renders_from_json_alone(report_dir):
    data = json.loads((report_dir / "report.json").read_text())
    md = render_markdown(data)
    assert md == (report_dir / "report.md").read_text()
    rows = matrix_rows(data)
    assert rows[0]["runtime"] == "torch-cpu" and rows[0]["parity"] == "reference"
    assert rows[1]["parity"] == "PASS" and rows[1]["x torch eager"] != "-"
    assert "| onnx | fp32 | onnxruntime-cpu | PASS |" in md


def test_failed_cases_are_listed_in_markdown(report_dir):
    data = json.loads((report_dir / "report.json").read_text())
    case = data["parity"][0]["cases"][0]
    case["passed"], case["error"] = False, "onnxruntime failed: boom"
    data["parity"][0]["passed"] = False
    assert "FAIL batch=1 T=7" in render_markdown(data) and "boom" in render_markdown(data)


@pytest.mark.parametrize("content", ["", "{", "[]", '{"schema": "other"}', '{"schema": "edgeseq.report/1"}'])
def test_bad_report_files(tmp_path, content):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ArtifactError):
        load_report(path)


def test_html_is_self_contained_with_four_plots(report_dir):
    """latency, error against T, error over t (the longest case of each row), size."""
    html = (report_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "alt='error over time'" in html
    assert "<script" not in html and "http" not in html.split("<body>")[1]
    assert "onnxruntime-cpu" in html and "PASSED" in html


def test_junit_from_report(report_dir):
    import xml.etree.ElementTree as ET

    from edgeseq.report import render_junit

    data = json.loads((report_dir / "report.json").read_text())
    suite = ET.fromstring(render_junit(data))
    assert suite.get("failures") == "0" and len(suite) == len(data["parity"])
    data["parity"][0]["passed"] = False
    data["parity"][0]["cases"][0].update(passed=False, error="boom")
    suite = ET.fromstring(render_junit(data))
    assert suite.get("failures") == "1" and "boom" in suite.find(".//failure").text


def test_matrix_reports_progress_case_by_case(tmp_path):
    messages = []
    edgeseq.run_matrix("seq-cnn", out_dir=tmp_path / "o", options=MatrixOptions(batches=(1, 2), iterations=2),
                       progress=messages.append)
    counts = [m for m in messages if str(m).startswith("parity of seq-cnn.fp32.onnx") and "/4 cases" in str(m)]
    assert str(counts[0]).endswith("0/4 cases") and "4/4 cases" in str(counts[-1]) and len(counts) == 5
    assert [m.done for m in counts] == [0, 1, 2, 3, 4] and {m.total for m in counts} == {4}
    # the run's steps only move forward and end complete: reference timing, export, parity sweep, latency
    steps = [m.step for m in messages]
    assert steps == sorted(steps) and messages[-1].step == messages[-1].steps == 4


# --- "all": every installed format, each with its own precisions -------------------------------------------------

def test_installed_formats_are_found_without_importing_the_sdks(monkeypatch):
    import importlib.util

    from edgeseq import formats
    from edgeseq.enums import Format

    assert formats.installed_formats() == [Format.ONNX, Format.TFLITE, Format.TENSORRT, Format.ORT, Format.COREML,
                                           Format.EXECUTORCH]  # the test extras
    from test_imports import OPTIONAL, _imported_after

    mods = _imported_after("from edgeseq.formats import installed_formats\n"
                           "assert [f.value for f in installed_formats()] == "
                           "['onnx', 'tflite', 'tensorrt', 'ort', 'coreml', 'executorch']")
    assert not set(OPTIONAL) & mods, set(OPTIONAL) & mods  # onnx, onnxruntime, litert_torch, ai_edge_litert, ...
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "litert_torch" else real(name, *a))
    assert formats.installed_formats() == [Format.ONNX, Format.TENSORRT, Format.ORT, Format.COREML, Format.EXECUTORCH]


def test_all_precisions_means_each_formats_own(tmp_path):
    """-p all with TensorRT (no int8-dynamic there) and ONNX: each format gets the precisions it has, instead of the
    run failing on the one TensorRT lacks; a precision named outright must still suit every format."""
    report = edgeseq.run_matrix("cbhg-lite", ["tensorrt", "onnx"], "all", out_dir=tmp_path,
                                options=MatrixOptions(times=(7,), batches=(1,), iterations=2, warmup=0))
    made = sorted((a.format, a.precision) for a in report.artifacts)
    assert made == sorted([("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "int8-static"),
                           ("onnx", "fp32"), ("onnx", "fp16"), ("onnx", "int8-dynamic"), ("onnx", "int8-static")])
    from edgeseq.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="int8-dynamic"):
        edgeseq.run_matrix("cbhg-lite", ["tensorrt"], ["int8-dynamic"], out_dir=tmp_path / "x")


def test_all_formats_follow_what_is_installed(monkeypatch, tmp_path):
    from edgeseq import formats
    from edgeseq.enums import Format
    from edgeseq.errors import InputError

    monkeypatch.setattr(formats, "installed_formats", lambda: [Format.ONNX])
    report = edgeseq.run_matrix("cbhg-lite", "all", ["fp32"], out_dir=tmp_path,
                                options=MatrixOptions(times=(7,), batches=(1,), iterations=2, warmup=0))
    assert [(a.format, a.precision) for a in report.artifacts] == [("onnx", "fp32")]
    monkeypatch.setattr(formats, "installed_formats", lambda: [])
    with pytest.raises(InputError, match="no export format is installed"):
        edgeseq.run_matrix("cbhg-lite", "all", ["fp32"], out_dir=tmp_path / "none")


REAL_REPORT = Path(__file__).resolve().parents[1] / "bench" / "results" / "gpu-h200-matrix-cbhg-lite.json"


@pytest.fixture(scope="module")
def quant_report(tmp_path_factory):
    """A real report with a quantized table (its "still float" column lists op types)."""
    out = tmp_path_factory.mktemp("quant")
    edgeseq.run_matrix("cbhg-lite", ["onnx"], ["fp32", "int8-dynamic", "int8-static"], out_dir=out,
                       options=MatrixOptions(times=(7,), batches=(1,), iterations=2, warmup=0))
    return load_report(out / "report.json")


def _printed(report, width):
    console = Console(file=io.StringIO(), width=width)
    print_table(report, console)
    return console.file.getvalue()


def _numbers_stay_whole(shown, rows, columns):
    """Each row's numbers (the columns between the names and the op list) appear whole, side by side (spaces or a box border between), on one line."""
    left_out = next((ln for ln in shown.splitlines() if ln.startswith("(left out to fit")), "")
    for row in rows:
        values = [row[c] for c in columns if c not in left_out]
        assert re.search("[ │]+".join(map(re.escape, values)), shown), (values, shown)


@pytest.mark.parametrize("width", [60, 80, 100, 120])
def test_narrow_tables_never_split_or_cut_a_number(quant_report, width):
    """Below ~66 columns numbers used to fold ('10.96' as '10.9' over '6'), and the boxed quantized table was chosen
    where its "still float" column could not fit, which rich then cut to '…'."""
    real = load_report(REAL_REPORT)
    for report in (real, quant_report):
        shown = _printed(report, width)
        assert max(len(ln) for ln in shown.splitlines()) <= width and "…" not in shown, shown
        _numbers_stay_whole(shown, matrix_rows(report), TERMINAL_COLUMNS[3:])
    _numbers_stay_whole(shown, quant_rows(quant_report), ("size x fp32", "p50 x fp32", "rel L2", "torch int8 rel L2"))
    for op in ("ConstantOfShape,", "Transpose"):  # op names wrap between words, never inside one
        assert op in shown
    if width >= 80:
        assert "left out" not in shown and "10.96" in _printed(real, width)
    else:  # too narrow for every column: the lowest-priority one goes, and a line says so
        assert "(left out to fit 60 columns: size)" in _printed(real, width)


def test_without_matplotlib_no_report_html_is_claimed_or_left_stale(tmp_path, monkeypatch):
    """report.html needs the report extra: without it the run says what it wrote, and an earlier run's report.html
    (which would describe another report.json) is removed."""
    import edgeseq.matrix as matrix
    import edgeseq.report.html as report_html

    monkeypatch.setattr(report_html, "html_available", lambda: False)
    monkeypatch.setattr(matrix, "html_available", lambda: False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("from an earlier run")
    said = []
    edgeseq.run_matrix("cbhg-lite", ["onnx"], out_dir=out, options=MatrixOptions(times=(7,), batches=(1,),
                                                                                 iterations=2, warmup=0),
                       progress=lambda e: said.append(str(e)))
    assert (out / "report.json").is_file() and (out / "report.md").is_file() and not (out / "report.html").exists()
    assert "writing report.json, report.md" in said and not any("report.html" in s for s in said)


def test_a_row_timed_on_a_busy_machine_is_called_unstable():
    """A user's first run: eager p50 128.6 ms with p90 820 ms made ONNX Runtime read x148 faster; the table now says
    the reference was unstable instead of looking exact."""
    report = load_report(Path(__file__).resolve().parents[1] / "bench" / "results" / "gpu-h200-matrix-cbhg-lite.json")
    eager = next(x for x in report["latency"] if x["runtime"] == "torch-cpu" and not x["artifact"])
    assert not any("torch-cpu had" in n for n in report_module.unstable_notes(report))
    eager["p50_ms"], eager["p90_ms"] = 128.63, 820.05
    notes = report_module.unstable_notes(report)
    assert any(n.startswith("unstable timing: torch-cpu had p90 820.05 ms, 6.4x its p50") and "x torch eager" in n
               for n in notes), notes
    console = Console(file=io.StringIO(), width=200)
    print_table(report, console)
    assert "unstable timing: torch-cpu" in console.file.getvalue()
    assert "unstable timing: torch-cpu" in report_module.render_markdown(report)
