"""`edgeseq diff OLD NEW`: two saved reports compared row by row; a regression exits 1."""

import copy
import json
from pathlib import Path

import pytest

import edgeseq
from edgeseq.errors import ArtifactError, InputError
from edgeseq.matrix import MatrixOptions
from edgeseq.report import diff_reports, load_report, render_diff

from conftest import assert_one_line_error


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One real report (cbhg-lite on ONNX Runtime), read back as the CLI reads it."""
    out = tmp_path_factory.mktemp("diff") / "old"
    edgeseq.run_matrix("cbhg-lite", out_dir=out, options=MatrixOptions(times=(7,), batches=(1,), iterations=3))
    return out / "report.json"


def _rows(diff):
    return {(r.runtime, r.artifact): r for r in diff.rows}


def _onnx_row(report):
    return next(p for p in report["parity"] if p["runtime"] == "onnxruntime-cpu")


def _latency(report, runtime):
    return next(x for x in report["latency"] if x["runtime"] == runtime)


def test_a_report_against_itself_is_the_same_everywhere(base):
    old = load_report(base)
    diff = diff_reports(old, copy.deepcopy(old), max_slowdown=1.2, max_error_growth=2.0)
    assert not diff.regressed and diff.latency_comparable
    assert {r.status for r in diff.rows} == {"same"}
    assert ("onnxruntime-cpu", "cbhg-lite.fp32.onnx") in _rows(diff)


def test_parity_that_now_fails_is_a_regression(base):
    old = load_report(base)
    new = copy.deepcopy(old)
    _onnx_row(new)["passed"] = False
    diff = diff_reports(old, new)
    row = _rows(diff)[("onnxruntime-cpu", "cbhg-lite.fp32.onnx")]
    assert diff.regressed and row.status == "regressed" and row.reasons == ("parity now fails",)
    back = diff_reports(new, old)  # and the other way round is an improvement
    assert not back.regressed and _rows(back)[("onnxruntime-cpu", "cbhg-lite.fp32.onnx")].status == "improved"


def _slower(report, runtime, factor):
    for key in ("p50_ms", "p90_ms", "p99_ms", "min_ms", "mean_ms"):  # slower code moves every statistic
        _latency(report, runtime)[key] *= factor


def test_a_slower_row_regresses_by_every_measure(base):
    old = load_report(base)
    slower = copy.deepcopy(old)
    _slower(slower, "onnxruntime-cpu", 2.0)
    row = _rows(diff_reports(old, slower, max_slowdown=1.5))[("onnxruntime-cpu", "cbhg-lite.fp32.onnx")]
    assert row.status == "regressed" and row.slowdown == pytest.approx(2.0)
    assert row.reasons[0].startswith("slower by every measure (relative to eager x2.00, p50 ")
    assert not diff_reports(old, slower).regressed  # no --max-slowdown: shown, not judged
    faster = _rows(diff_reports(slower, old, max_slowdown=1.5))[("onnxruntime-cpu", "cbhg-lite.fp32.onnx")]
    assert faster.status == "improved"


def test_load_that_moves_one_measure_is_not_a_regression(base):
    """A shared machine: a busier run moves the raw milliseconds (eager too, so the eager-relative p50 stays put),
    and eager, the noisiest row, can move alone (its p90 several times its p50 under load), which moved the
    eager-relative p50 of an unchanged row x3-7 in a user's two identical runs."""
    old = load_report(base)
    busier = copy.deepcopy(old)
    for runtime in ("torch-cpu", "onnxruntime-cpu"):
        _slower(busier, runtime, 2.0)
    calm = _rows(diff_reports(old, busier, max_slowdown=1.5))[("onnxruntime-cpu", "cbhg-lite.fp32.onnx")]
    assert calm.status == "same", calm.reasons
    noisy_eager = copy.deepcopy(old)
    _latency(noisy_eager, "torch-cpu")["p50_ms"] /= 5.0  # eager's p50 fell x5; the ONNX row did not move
    still = _rows(diff_reports(old, noisy_eager, max_slowdown=1.2))[("onnxruntime-cpu", "cbhg-lite.fp32.onnx")]
    assert still.status == "same" and still.slowdown == pytest.approx(1.0)
    tail_only = copy.deepcopy(old)
    _latency(tail_only, "onnxruntime-cpu")["p50_ms"] *= 2.0  # a worse p50 with an unchanged best run: load
    assert _rows(diff_reports(old, tail_only, max_slowdown=1.5))[("onnxruntime-cpu", "cbhg-lite.fp32.onnx")
                                                                  ].status == "same"


def test_latency_from_another_machine_is_shown_not_judged(base):
    old = load_report(base)
    other = copy.deepcopy(old)
    other["environment"]["cpu"] = "Some Other CPU"
    _latency(other, "onnxruntime-cpu")["p50_ms"] *= 3.0
    diff = diff_reports(old, other, max_slowdown=1.2)
    assert not diff.regressed and not diff.latency_comparable
    assert "different machines" in diff.notes[0]


def test_latency_at_another_thread_setting_is_shown_not_judged(base):
    """An 8-thread run against a 1-thread run on the same machine: the slower 1-thread row is not a regression."""
    old = load_report(base)
    old["environment"]["threads"] = 8
    one_thread = copy.deepcopy(old)
    one_thread["environment"]["threads"] = 1
    _slower(one_thread, "onnxruntime-cpu", 3.0)
    diff = diff_reports(old, one_thread, max_slowdown=1.2)
    assert not diff.regressed and not diff.latency_comparable
    assert "thread settings" in diff.notes[0]
    old["environment"]["threads"] = 1  # the same setting on both sides: now the slowdown is judged
    assert diff_reports(old, one_thread, max_slowdown=1.2).regressed


def test_error_growth_while_still_passing(base):
    old = load_report(base)
    new = copy.deepcopy(old)
    _onnx_row(new)["worst"]["rel_l2"] = _onnx_row(old)["worst"]["rel_l2"] * 50
    assert not diff_reports(old, new).regressed
    row = _rows(diff_reports(old, new, max_error_growth=10))[("onnxruntime-cpu", "cbhg-lite.fp32.onnx")]
    assert row.status == "regressed" and row.reasons[0].startswith("worst rel L2 x50.0")


def test_rows_in_one_report_only_are_new_or_gone(base):
    old = load_report(base)
    new = copy.deepcopy(old)
    new["parity"] = [p for p in new["parity"] if p["runtime"] != "onnxruntime-cpu"]
    new["latency"] = [x for x in new["latency"] if x["runtime"] != "onnxruntime-cpu"]
    new["artifacts"] = []
    statuses = {r.runtime: r.status for r in diff_reports(old, new).rows}
    assert statuses["onnxruntime-cpu"] == "gone" and not diff_reports(old, new).regressed
    assert {r.runtime: r.status for r in diff_reports(new, old).rows}["onnxruntime-cpu"] == "new"
    header, *rows = render_diff(diff_reports(old, new).to_dict())
    gone = next(r for r in rows if r[0] == "gone")
    assert header[0] == "status" and gone[5] == "PASS -> -" and "None" not in " ".join(gone)


def test_bad_comparisons_are_input_errors(base):
    old = load_report(base)
    other = copy.deepcopy(old)
    other["model"]["name"] = "cbhg"
    with pytest.raises(InputError, match="different models"):
        diff_reports(old, other)
    with pytest.raises(InputError, match="ratio >= 1"):
        diff_reports(old, old, max_slowdown=0.8)


def test_cli_diff(run_cli, base, tmp_path):
    worse = json.loads(base.read_text())
    _onnx_row(worse)["passed"] = False
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "report.json").write_text(json.dumps(worse))
    same = run_cli("diff", str(base), str(base.parent))  # a folder stands for its report.json
    assert same.returncode == 0 and "no regressions in 2 rows" in same.stdout, same.stderr
    proc = run_cli("diff", str(base), str(tmp_path / "new"), "--json", str(tmp_path / "d.json"), "--md",
                   str(tmp_path / "d.md"))
    assert proc.returncode == 1 and "1 of 2 rows regressed" in proc.stdout
    md = (tmp_path / "d.md").read_text()
    assert "**1 of 2 rows regressed**" in md and "| regressed | onnx | fp32 | onnxruntime-cpu |" in md
    assert "PASS -> FAIL" in proc.stdout and "parity now fails" in proc.stdout
    assert json.loads((tmp_path / "d.json").read_text())["regressed"] is True
    assert "does not exist" in assert_one_line_error(run_cli("diff", str(base), str(tmp_path / "nope.json")))
    (tmp_path / "junk.json").write_text("{}")
    assert "not an edgeseq report" in assert_one_line_error(run_cli("diff", str(base), str(tmp_path / "junk.json")))


def test_diff_of_dicts_that_are_not_reports_is_one_line():
    """The API used to raise a raw KeyError('model')."""
    with pytest.raises(ArtifactError, match="report 'old': 'model' is missing"):
        diff_reports({}, {})


@pytest.mark.parametrize("edit, says", [
    (lambda r: r.pop("parity"), "'parity' is missing"),
    (lambda r: r["latency"][0].update(p50_ms="fast"), "latency[0].p50_ms must be a number"),
    (lambda r: r["parity"][0].update(worst="bad"), "parity[0].worst must be an object or null"),
    (lambda r: r["parity"][0]["worst"].update(rel_l2=[1]), "parity[0].worst.rel_l2 must be a number or null"),
    (lambda r: r["artifacts"].append(7), "artifacts[1] must be an object"),
])
def test_broken_reports_are_one_line_errors_naming_file_and_key(run_cli, base, tmp_path, edit, says):
    """`edgeseq diff` on them was KeyError / TypeError, exit 3."""
    broken = json.loads(base.read_text())
    edit(broken)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(ArtifactError) as info:
        load_report(path)
    assert says in str(info.value) and str(path) in str(info.value)
    with pytest.raises(ArtifactError, match="report 'new'"):
        diff_reports(load_report(base), broken)
    line = assert_one_line_error(run_cli("diff", str(base), str(path)))
    assert says in line and str(path) in line


REAL_REPORT = Path(__file__).resolve().parents[1] / "bench" / "results" / "gpu-h200-matrix-cbhg-lite.json"


def _real_report_with_tolerance(tmp_path, **tolerance):
    """The committed H200 matrix report, one case's stored tolerance edited."""
    data = json.loads(REAL_REPORT.read_text())
    data["parity"][0]["cases"][0]["outputs"][0]["tolerance"].update(tolerance)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path


def test_older_reports_with_loose_stored_tolerances_stay_readable(run_cli, tmp_path):
    """Reports written before the 0 < rel_l2 < 10 input rule may store rel_l2 >= 10: loading and diffing them works."""
    path = _real_report_with_tolerance(tmp_path, rel_l2=20)
    assert load_report(path)["parity"][0]["cases"][0]["outputs"][0]["tolerance"]["rel_l2"] == 20
    proc = run_cli("diff", str(REAL_REPORT), str(path))
    assert proc.returncode == 0 and "no regressions" in proc.stdout, (proc.stdout, proc.stderr)


@pytest.mark.parametrize("tolerance, says", [
    ({"rel_l2": -1}, "Tolerance.rel_l2 must be a positive number"),
    ({"rel_l2": "tight"}, "Tolerance.rel_l2 must be a positive number"),
    ({"max_abs": -0.5}, "Tolerance.max_abs must be a number >= 0"),
])
def test_a_stored_tolerance_that_makes_no_sense_names_the_file(run_cli, tmp_path, tolerance, says):
    path = _real_report_with_tolerance(tmp_path, **tolerance)
    with pytest.raises(ArtifactError, match=f"report {str(path)!r}: {says}"):
        load_report(path)
    line = assert_one_line_error(run_cli("diff", str(REAL_REPORT), str(path)))
    assert str(path) in line and says in line
