"""The `edgeseq` command as a user runs it: tables, files, exit codes 0 / 1 / 2 and one-line errors."""

import json

import pytest
from conftest import assert_one_line_error
from test_parity import corrupt


def test_models_lists_parameters_and_flops(run_cli):
    proc = run_cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {"cbhg", "cbhg-postnet", "cbhg-lite", "attention-cbhg", "cbhg-lite-stream", "seq-cnn"}
    assert 3.3e6 < rows["cbhg"]["parameters"] < 3.5e6
    assert rows["cbhg"]["flops_at_default_time"] > 1.3e9
    table = run_cli("models")
    assert table.returncode == 0 and "cbhg-lite" in table.stdout and "@ 200" in table.stdout


@pytest.mark.covers("cbhg-lite", "onnx")
def test_export_runs_the_matrix_and_exits_0(run_cli, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("export", "cbhg-lite", "--out", str(out), "--times", "1,7,50", "--batches", "1,3", "-n", "5")
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime-cpu" in proc.stdout and "PASS" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and len(report["parity"][0]["cases"]) == 12
    assert (out / "report.md").exists() and (out / "cbhg-lite.fp32.onnx").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_piped_output_shows_the_table_uncropped(run_cli, tmp_path):
    """No terminal and no COLUMNS (a CI log, `| tee`): the matrix is printed at full width, not cut at 80 columns
    into 'onnxruntime-…'."""
    proc = run_cli("export", "cbhg-lite", "--out", str(tmp_path / "o"), "--times", "7", "--batches", "1", "-n", "2",
                   columns=None)
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime-cpu" in proc.stdout and "x torch eager" in proc.stdout and "…" not in proc.stdout


def test_check_passes_then_fails_on_a_corrupted_artifact(run_cli, lite_onnx, tmp_path):
    ok = run_cli("check", lite_onnx.path, "--times", "7,50", "--json", str(tmp_path / "p.json"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("PASS cbhg-lite on onnxruntime-cpu")
    assert json.loads((tmp_path / "p.json").read_text())["passed"] is True
    bad = tmp_path / "bad.onnx"
    corrupt(lite_onnx.path, bad)
    fail = run_cli("check", str(bad), "--model", "cbhg-lite", "--times", "7")
    assert fail.returncode == 1
    assert fail.stdout.startswith("FAIL") and "rel_l2" in fail.stderr and "Traceback" not in fail.stderr


def test_profile_prints_latency(run_cli, lite_onnx, tmp_path):
    proc = run_cli("profile", lite_onnx.path, "--time", "80", "-n", "5", "--json", str(tmp_path / "l.json"))
    assert proc.returncode == 0, proc.stderr
    assert "p50" in proc.stdout and "RTF" in proc.stdout
    assert json.loads((tmp_path / "l.json").read_text())["time"] == 80


def test_dynamo_export_keeps_the_one_line_promise(run_cli, tmp_path):
    """torch.export (via onnxscript) logs a handled version-converter failure with its traceback; the user sees only
    edgeseq's own line (EDGESEQ_DEBUG=1 lets library output through)."""
    out = tmp_path / "out"
    proc = run_cli("export", "cbhg-lite", "-f", "onnx", "--exporter", "dynamo", "--out", str(out), "--times", "7",
                   "--batches", "1", "-n", "2")
    if proc.returncode == 0:  # a future torch may keep T dynamic through nn.GRU: then no library chatter either
        assert "Traceback" not in proc.stderr and "WARNING" not in proc.stderr.upper(), proc.stderr
    else:
        line = assert_one_line_error(proc, 2)
        assert "specialized" in line and "--exporter torchscript" in line
        assert not list(out.rglob("*.onnx"))


def test_profile_on_several_devices_exits_non_zero_when_one_fails(run_cli, lite_onnx, tmp_path):
    """The device that worked still gets its column; the one that failed names itself and sets the exit code
    (local-cuda is PyTorch's device, which no artifact file runs on, on every machine)."""
    out = tmp_path / "devices.json"
    proc = run_cli("profile", lite_onnx.path, "--device", "cpu", "--device", "local-cuda", "-n", "3", "--warmup", "1",
                   "--time", "20", "--json", str(out))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "onnxruntime-cpu" in proc.stdout and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "local-cuda" in errors[0] and "not a runtime for artifact files" in errors[0]
    data = {d["device"]: d for d in json.loads(out.read_text())["devices"]}
    assert data["cpu"]["result"]["iterations"] == 3 and not data["cpu"]["error"]
    assert data["local-cuda"]["result"] is None and data["local-cuda"]["exit_code"] == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "nope"], "unknown model 'nope'"),
        (["export", "cbhg-lite", "--format", "pdf"], "unknown format 'pdf'"),
        (["export", "cbhg-lite", "--precision", "int3"], "unknown precision 'int3'"),
        (["export", "cbhg-lite", "--quant", "per_channel=false"], "apply to fp16 / int8"),
        (["export", "cbhg-lite", "-p", "int8-static", "--quant", "gru=sideways"], "unknown gruexport"),
        (["export", "cbhg-lite", "--times", "1,x"], "--times must be"),
        (["export", "cbhg-lite", "--times", "0"], "--times must"),
        (["export", "cbhg-lite", "--weights", "/nonexistent.pt"], "does not exist"),
        (["export", "seq-cnn", "--times", "7"], "fixed time axis"),
        (["export", "cbhg-lite", "--tolerance", "fp33=1e-3"], "--tolerance takes PRECISION=REL_L2"),
        (["export", "cbhg-lite", "--tolerance", "fp16"], "--tolerance takes PRECISION=REL_L2"),
        (["export", "cbhg-lite", "--tolerance", "fp16=-1"], "--tolerance 'fp16=-1' must be a positive number below 10"),
    ],
)
def test_bad_export_input_is_one_line_and_writes_nothing(run_cli, tmp_path, argv, message):
    out = tmp_path / "out"
    line = assert_one_line_error(run_cli(*argv, "--out", str(out)))
    assert message in line
    assert not out.exists()


def test_bad_files_for_check_and_profile(run_cli, tmp_path, lite_onnx):
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"\x08garbage")
    assert "cannot load" in assert_one_line_error(run_cli("check", str(garbage), "--model", "cbhg"))
    assert "does not exist" in assert_one_line_error(run_cli("profile", str(tmp_path / "none.onnx")))
    assert "directory" in assert_one_line_error(run_cli("profile", str(tmp_path)))
    assert "bad --shape" in assert_one_line_error(run_cli("profile", lite_onnx.path, "--shape", "features=1by2"))
    assert "unknown model" in assert_one_line_error(run_cli("check", lite_onnx.path, "--model", "nope"))


def test_profile_shape_for_free_dimensions(run_cli, lite_onnx):
    proc = run_cli("profile", lite_onnx.path, "--shape", "features=2x33x128", "-n", "3")
    assert proc.returncode == 0, proc.stderr
    assert "batch=2 T=33" in proc.stdout
    line = assert_one_line_error(run_cli("profile", lite_onnx.path, "--shape", "features=2x33x7"))
    assert "does not fit" in line


def test_usage_errors_exit_2(run_cli):
    proc = run_cli("export")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert run_cli("--version").stdout.startswith("edgeseq ")


@pytest.mark.parametrize(("argv", "says"), [
    (("export", "cbhg-lite", "--threads", "0"), "Invalid value for '--threads' / '-t'"),
    (("export", "cbhg-lite", "-n", "many"), "Invalid value for '--iterations' / '-n'"),
    (("export", "cbhg-lite", "--bogus"), "No such option: --bogus"),
    (("profile",), "Missing argument 'artifact'"),
    (("frobnicate",), "No such command 'frobnicate'"),
])
def test_click_usage_errors_are_one_line_naming_the_help(run_cli, argv, says):
    """What click / typer reject before edgeseq runs (types, ranges, unknown options) is one line too, not click's
    usage panel, and names the help command to read."""
    line = assert_one_line_error(run_cli(*argv))
    assert says in line and line.endswith("--help)")


def test_help_and_no_arguments_still_print_help(run_cli):
    proc = run_cli("export", "--help")
    assert proc.returncode == 0 and "Usage: edgeseq export" in proc.stdout
    bare = run_cli()
    assert "Usage: edgeseq" in bare.stdout + bare.stderr and "Traceback" not in bare.stderr


def test_progress_bars_draw_on_a_terminal_only():
    """On a terminal the bars show the step and the sweep's cases; elsewhere (CI logs, pipes) they print nothing at
    all, not even the blank line a stopped transient bar leaves."""
    import io

    from rich.console import Console

    from edgeseq.cli.progress import matrix_progress
    from edgeseq.matrix import ProgressEvent

    def drive(console):
        with matrix_progress(console) as update:
            update(ProgressEvent("parity onnxruntime-cpu: 3/8", step=2, steps=5, done=3, total=8))
        return console.file.getvalue()  # every frame drawn, the last one (at stop) with the update

    shown = drive(Console(file=io.StringIO(), force_terminal=True, width=120))
    assert "parity onnxruntime-cpu" in shown and "3/8" in shown
    assert drive(Console(file=io.StringIO(), force_terminal=False, width=120)) == ""


def test_tolerance_override_gates_the_row_and_is_recorded(run_cli, tmp_path):
    """--tolerance fp32=1e-12 is tighter than float reassociation: the ONNX row fails (exit 1), the report carries
    the tolerance that judged it, and the run still names what it could (bisection)."""
    proc = run_cli("export", "cbhg-lite", "--times", "7", "--batches", "1", "-n", "2", "--tolerance", "fp32=1e-12",
                   "--out", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    row = next(p for p in report["parity"] if p["runtime"] == "onnxruntime-cpu")
    assert not row["passed"]
    assert {o["tolerance"]["rel_l2"] for c in row["cases"] for o in c["outputs"]} == {1e-12}
    assert report["bisections"] and report["bisections"][0]["runtime"] == "onnxruntime-cpu"
    # and the terminal says which layer, after the failing cases
    assert "cbhg-lite.fp32.onnx on onnxruntime-cpu (bisected at batch=1 T=7" in proc.stderr
    assert ": first divergent layer: " in proc.stderr or ": no single layer left tolerance" in proc.stderr


def test_check_takes_the_same_tolerance_flag(run_cli, lite_onnx, tmp_path):
    ok = run_cli("check", lite_onnx.path, "--times", "7", "--batches", "1", "--tolerance", "fp32=1e-3")
    assert ok.returncode == 0, ok.stderr
    proc = run_cli("check", lite_onnx.path, "--times", "7", "--batches", "1", "--tolerance", "fp32=1e-12",
                   "--json", str(tmp_path / "c.json"))
    assert proc.returncode == 1
    data = json.loads((tmp_path / "c.json").read_text())
    assert {o["tolerance"]["rel_l2"] for c in data["cases"] for o in c["outputs"]} == {1e-12}
    assert "--tolerance takes" in assert_one_line_error(run_cli("check", lite_onnx.path, "--tolerance", "x=1"))


def _output_cases(tmp_path, lite):
    """(argv, expected) for output targets that cannot be written; a_file is a plain file, a_dir a folder."""
    a_file, a_dir = tmp_path / "a_file", tmp_path / "a_dir"
    a_file.write_text("x")
    a_dir.mkdir()
    report = str(tmp_path / "r.json")  # a report for diff: any JSON; the output check comes first
    export = ["export", "cbhg-lite", "--times", "7", "--batches", "1", "-n", "2"]
    return {
        "export --out under a file": ([*export, "--out", f"{a_file}/sub"], "is a file, not a folder"),
        "export --out in /proc": ([*export, "--out", "/proc/edgeseq-out"], "cannot write in '/proc'"),
        "export --out a file": ([*export, "--out", str(a_file)], "exists and is not a directory"),
        "export --junit under a file": ([*export, "--out", str(tmp_path / "o"), "--junit", f"{a_file}/j.xml"],
                                        "--junit"),
        "check --json under a file": (["check", lite, "--json", f"{a_file}/x.json"], "is a file, not a folder"),
        "check --json a folder": (["check", lite, "--json", str(a_dir)], "is a directory"),
        "profile --json under a file": (["profile", lite, "--json", f"{a_file}/x.json"], "is a file, not a folder"),
        "preflight --json under a file": (["preflight", lite, "--json", f"{a_file}/x"], "is a file, not a folder"),
        "diff --json under a file": (["diff", report, report, "--json", f"{a_file}/x"], "is a file, not a folder"),
        "diff --md a folder": (["diff", report, report, "--md", str(a_dir)], "is a directory"),
    }


OUTPUT_CASES = ["export --out under a file", "export --out in /proc", "export --out a file",
                "export --junit under a file", "check --json under a file", "check --json a folder",
                "profile --json under a file", "preflight --json under a file", "diff --json under a file",
                "diff --md a folder"]


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_unwritable_outputs_fail_first_in_one_line(run_cli, tmp_path, lite_onnx, case):
    """They were internal errors (exit 3), often after all the work (check printed PASS, then FileExistsError)."""
    (tmp_path / "r.json").write_text("{}")
    argv, expected = _output_cases(tmp_path, lite_onnx.path)[case]
    line = assert_one_line_error(run_cli(*argv))  # nothing on stdout: no PASS, no table before the error
    assert expected in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir", "a_file", "r.json"]  # nothing else written


def test_output_folder_checks_on_the_api(tmp_path):
    """The same checks guard run_matrix, and a write that fails anyway is an OutputError (was NotADirectoryError)."""
    import edgeseq
    from edgeseq.artifact import write_text_atomic
    from edgeseq.errors import OutputError

    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        edgeseq.run_matrix("cbhg-lite", out_dir=tmp_path / "f" / "sub")
    with pytest.raises(OutputError, match="cannot write"):
        write_text_atomic(tmp_path / "f" / "x.json", "{}")


def test_repeated_format_is_exported_once(tmp_path):
    """-f onnx -f onnx used to export twice and list the artifact and its rows twice in report.json."""
    import edgeseq
    from edgeseq.matrix import MatrixOptions

    report = edgeseq.run_matrix("cbhg-lite", ["onnx", "onnx"], ["fp32", "fp32"], out_dir=tmp_path,
                                options=MatrixOptions(times=(7,), batches=(1,), iterations=2, warmup=0)).to_dict()
    assert [a["format"] for a in report["artifacts"]] == ["onnx"]
    assert [p["runtime"] for p in report["parity"]] == ["onnxruntime-cpu"]


def test_table_keeps_numbers_whole_on_an_80_column_terminal(run_cli, tmp_path):
    """The matrix table cut them to '1…' at 80 or 100 columns; now text columns fold and headers wrap instead."""
    proc = run_cli("export", "cbhg-lite", "--out", str(tmp_path), "--times", "7", "--batches", "1", "-n", "2",
                   columns="80")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    row = next(p for p in report["parity"] if p["runtime"] == "onnxruntime-cpu")
    lat = next(x for x in report["latency"] if x["runtime"] == "onnxruntime-cpu")
    notes = ("wrote ", "padding: ", "unstable timing: ")  # one-line messages (a path, a verdict) run on
    table = [ln for ln in proc.stdout.splitlines() if not ln.startswith(notes)]
    assert len(table) > 4 and max(len(ln) for ln in table) <= 80 and "…" not in proc.stdout
    assert f"{row['worst']['rel_l2']:.2e}" in proc.stdout and f"{lat['p50_ms']:.2f}" in proc.stdout


@pytest.mark.parametrize("width", [80, 100])
def test_fitted_table_never_cuts_a_number(width):
    import io

    from rich.console import Console

    from edgeseq.report import TERMINAL_COLUMNS, fitted_table

    rows = [dict(zip(TERMINAL_COLUMNS, v)) for v in (
        ["torch", "fp32", "torch-cpu", "reference", "-", "-", "127.55", "1.00", "-"],
        ["onnx", "int8-dynamic", "onnxruntime-cpu", "PASS", "2.20e-07", "1.04e-07", "1234.03", "123.55", "12.90 MB"],
        ["tflite", "int8-static", "litert-xnnpack", "FAIL", "nan", "1.04e-02", "1.03", "0.55", "900.0 kB"])]
    console = Console(file=io.StringIO(), width=width)
    console.print(fitted_table("t", TERMINAL_COLUMNS, rows, width, text=("format", "precision", "runtime")))
    shown = console.file.getvalue()
    assert "…" not in shown and max(len(ln) for ln in shown.splitlines()) <= width
    for value in ("127.55", "2.20e-07", "1.04e-07", "1234.03", "123.55", "12.90 MB", "1.04e-02", "900.0 kB"):
        assert value in shown, (value, shown)
