"""Each renderer of the report package works from a saved report.json alone (no live objects, no matrix run)."""

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

import edgeseq.report as report
from edgeseq.report import (
    Report,
    diff_reports,
    diff_table,
    load_report,
    matrix_rows,
    print_table,
    render_diff,
    render_diff_markdown,
    render_junit,
    render_markdown,
)

STORED = Path(__file__).resolve().parents[1] / "bench" / "results" / "gpu-h200-matrix-cbhg-lite.json"


@pytest.fixture()
def data():
    return load_report(STORED)


def _failed(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    data["parity"][0]["passed"] = data["passed"] = False
    data["parity"][0]["cases"][0].update(passed=False, error="boom")
    return data


def test_record_round_trips_through_a_file(tmp_path, data):
    """Saved, loaded and saved again: the same dict (a stored report gains only the fields added since)."""
    Report.from_dict(data).save(tmp_path / "r.json")
    once = load_report(tmp_path / "r.json")
    Report.from_dict(once).save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == (tmp_path / "r.json").read_text()  # NaN != NaN in a dict
    for key in ("schema", "created", "passed", "model", "environment"):
        assert once[key] == data[key], key


def test_markdown_from_the_saved_dict(data):
    md = render_markdown(data)
    rows = matrix_rows(data)
    assert md.startswith(f"# edgeseq report: {data['model']['name']}\n")
    table = [line for line in md.splitlines() if line.startswith("| ") and "parity" not in line]
    assert len([line for line in table if line.split(" | ")[2] in {r["runtime"] for r in rows}]) == len(rows)
    assert "- FAIL batch=" in render_markdown(_failed(data)) and "boom" in render_markdown(_failed(data))


def test_terminal_table_prints_names_as_written(data):
    """A runtime or model name that looks like rich markup is shown, not read."""
    data["model"]["name"] = "my[bold]model"
    data["latency"][0]["runtime"] = "torch-cpu[report]"
    console = Console(file=io.StringIO(), width=200)
    print_table(data, console)
    shown = console.file.getvalue()
    assert "edgeseq: my[bold]model" in shown and "torch-cpu[report]" in shown


def test_junit_from_the_saved_dict(data):
    suite = ET.fromstring(render_junit(_failed(data), budgets=[
        {"precision": "fp32", "device": "pi", "metric": "p50_ms", "limit_ms": 1.0, "status": "fail",
         "reason": "p50 2.0 ms > 1.0 ms"}]))
    assert suite.get("failures") == "2" and suite.get("tests") == str(len(data["parity"]) + 1)
    assert "boom" in suite.find(".//failure").text


def test_diff_of_a_report_with_itself_and_with_a_failure(data):
    same = diff_reports(data, data).to_dict()
    assert not same["regressed"] and "no regressions" in render_diff_markdown(same)
    worse = diff_reports(data, _failed(data)).to_dict()
    assert worse["regressed"] and report.regression_lines(worse)
    assert render_diff(worse)[0][0] == "status"
    console = Console(file=io.StringIO(), width=200)
    console.print(diff_table(worse))
    assert "parity now fails" in console.file.getvalue()


def test_html_from_the_saved_dict(data):
    pytest.importorskip("matplotlib")
    page = report.render_html(_failed(data))
    assert page.count("data:image/png;base64,") == 3 and "<h2>Failures</h2>" in page and "FAILED" in page


def test_the_package_exports_what_it_promises():
    import edgeseq

    assert report.diff_reports is edgeseq.diff_reports
    for name in report.__all__:
        assert getattr(report, name) is not None
