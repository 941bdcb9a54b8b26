"""JUnit XML for CI systems, from the report dict: one test case per parity check, per latency budget and for a
recipe's baseline."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

from ..artifact import write_text_atomic
from ..bisection import verdict
from .diff import regression_lines
from .rows import failure_lines, stream_failure_lines, timestep_line


def render_junit(report: dict, budgets: list[dict] | None = None, baseline: dict | None = None) -> str:
    """baseline: a ReportDiff dict (a recipe's [baseline]); one test case, failed when any row regressed."""
    suite = ET.Element("testsuite", name=f"edgeseq.{report['model']['name']}")
    failures = 0
    for par in report["parity"]:
        case = ET.SubElement(suite, "testcase", classname=f"parity.{par['precision']}",
                             name=f"{par['runtime']} {Path(par['artifact']).name or 'torch'}")
        if not par["passed"]:
            failures += 1
            lines = failure_lines(par)
            bisected = [verdict(b) for b in report.get("bisections", [])
                        if b["runtime"] == par["runtime"] and b["artifact"] == par["artifact"]]
            failure = ET.SubElement(case, "failure", message=(lines[0] if lines else "parity failed")
                                    + (f"; {bisected[0]}" if bisected else ""))
            failure.text = "\n".join(lines + bisected)
        over_t = timestep_line(par)
        if over_t:  # a passing row whose error grows over T says so where CI shows a case's output
            ET.SubElement(case, "system-out").text = over_t
    for stream in report.get("streams", []):
        case = ET.SubElement(suite, "testcase", classname=f"stream.{stream['precision']}",
                             name=f"{stream['runtime']} {Path(stream['artifact']).name} chunks "
                             + ",".join(str(c["chunk"]) for c in stream["cases"]))
        if not stream["passed"]:
            failures += 1
            lines = stream_failure_lines(stream) or ["streamed output differs from the full call"]
            ET.SubElement(case, "failure", message=lines[0]).text = "\n".join(lines)
    for b in budgets or []:
        case = ET.SubElement(suite, "testcase", classname=f"budget.{b['precision']}",
                             name=f"{b['device']} {b['metric']} <= {b['limit_ms']} ms"
                             + (" (emulated)" if b["status"] == "not-judged" else ""))
        if b["status"] == "fail":
            failures += 1
            ET.SubElement(case, "failure", message=b["reason"])
        elif b["status"] in ("not-measured", "not-judged"):  # not-judged: an emulated device's time
            ET.SubElement(case, "skipped", message=b["reason"])
    if baseline is not None:
        case = ET.SubElement(suite, "testcase", classname="baseline",
                             name=f"against {Path(baseline['old']).parent.name or baseline['old']}")
        lines = regression_lines(baseline)
        if lines:
            failures += 1
            failure = ET.SubElement(case, "failure", message=lines[0])
            failure.text = "\n".join(lines)
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("skipped", str(sum(1 for b in budgets or [] if b["status"] in ("not-measured", "not-judged"))))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(report: dict, path: str | Path, budgets: list[dict] | None = None,
                baseline: dict | None = None) -> None:
    write_text_atomic(path, render_junit(report, budgets, baseline))
