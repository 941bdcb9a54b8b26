import json
import xml.etree.ElementTree as ET

import pytest
from conftest import assert_one_line_error

from edgeseq.errors import ArtifactError, InputError
from edgeseq.recipe import builtin_recipe, load_recipe

BASE = '''name = "t"
model = "cbhg-lite"
formats = ["onnx"]
devices = ["local-cpu"]
'''


def write(tmp_path, text):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_shipped_recipes_parse():
    for name in ("android", "jetson", "server"):
        recipe = load_recipe(builtin_recipe(name))
        assert recipe.name == name and recipe.budgets
    android = load_recipe(builtin_recipe("android"))
    assert android.model == "cbhg-lite" and android.devices == ("pixel-8",)
    assert android.budgets[0].metric == "p90_ms" and android.budgets[0].limit_ms == 15.0
    assert android.tolerances == {"int8-static": 2e-2}


def test_the_ios_recipe_builds_core_ml_for_the_macs_a_user_points_at():
    from edgeseq.devices import Runtime, get_profile

    ios = load_recipe(builtin_recipe("ios"))
    assert ios.model == "cbhg-lite" and ios.formats == ("coreml",) and set(ios.precisions) == {"fp32", "fp16"}
    assert ios.devices and all(get_profile(d).runtime is Runtime.COREML for d in ios.devices)


@pytest.mark.parametrize(
    "extra, message",
    [
        ('out = "../escape"\n', "relative folder inside"),
        ('out = "/etc"\n', "relative folder inside"),
        ('out = "a/../../b"\n', "relative folder inside"),
        ('formatz = ["onnx"]\n', "unknown key 'formatz'"),
        ('precisions = ["fp64"]\n', "unknown precision 'fp64'"),
        ('[parity]\ntimes = [0, 7]\n', "integers >= 1"),
        ('[parity]\ntimes = "7"\n', "'times' must be list"),
        ('[[budgets]]\ndevice = "local-cpu"\n', "exactly one of"),
        ('[[budgets]]\ndevice = "pixel-8"\np90_ms = 5\n', "not in the recipe's devices"),
        ('[tolerances]\nfp16 = 0\n', "positive"),
        ('[baseline]\nmax_slowdown = 1.2\n', "needs 'report'"),
        ('[baseline]\nreport = "old/report.json"\n', "does not exist"),
        ('[latency]\niterations = 0\n', r"\[latency\] iterations must be an integer >= 1, got 0"),
        ('[latency]\nwarmup = -3\n', r"\[latency\] warmup must be an integer >= 0, got -3"),
        ('[latency]\ntime = 0\n', "time must be an integer >= 1"),  # was silently the model's default T
        ('[latency]\nthreads = 0\n', "threads must be an integer >= 1"),
        ('[[budgets]]\ndevice = "local-cpu"\np50_ms = -5\n', "p50_ms must be a positive finite number"),
        ('[[budgets]]\ndevice = "local-cpu"\nprecision = "int8-static"\np50_ms = 5\n',
         "#1: precision 'int8-static' is not built by the recipe"),
        ('[[budgets]]\ndevice = "local-cpu"\nformat = "tflite"\np50_ms = 5\n',
         "#1: format 'tflite' is not built by the recipe"),
    ],
)
def test_bad_recipes_are_one_line_errors(tmp_path, extra, message):
    with pytest.raises(InputError, match=message) as info:
        load_recipe(write(tmp_path, BASE + extra))
    assert "\n" not in str(info.value)


def test_unknown_device_in_recipe(tmp_path):
    with pytest.raises(InputError, match="unknown device 'nowhere'"):
        load_recipe(write(tmp_path, BASE.replace('"local-cpu"', '"nowhere"')))


def test_recipe_builds_folder_manifest_and_junit(run_cli, tmp_path):
    recipe = write(tmp_path, BASE + 'out = "app/build"\n[parity]\ntimes = [7, 50]\nbatches = [1]\n[latency]\n'
                   'time = 50\niterations = 3\n[[budgets]]\ndevice = "local-cpu"\np90_ms = 10000\n'
                   '[[budgets]]\ndevice = "local-cpu"\np50_ms = 0.000001\n')
    out, junit = tmp_path / "out", tmp_path / "junit.xml"
    proc = run_cli("export", "--recipe", str(recipe), "--out", str(out), "--junit", str(junit))
    assert proc.returncode == 1, proc.stderr  # the impossible budget fails the build
    folder = out / "app" / "build"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["passed"] is False
    assert [b["status"] for b in manifest["budgets"]] == ["pass", "fail"]
    art = manifest["artifacts"][0]
    assert art["file"] == "cbhg-lite.fp32.onnx" and art["parity_passed"] and len(art["sha256"]) == 64
    assert art["inputs"][0]["shape"] == ["batch", "time", 128]
    from edgeseq.environment import int8_isa

    assert manifest["environment"]["int8_isa"] == int8_isa()  # int8 parity holds per CPU: the manifest says which
    assert [(c["runtime"], c["int8_isa"]) for c in art["checked_on"]] == [("onnxruntime-cpu", int8_isa())]
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    assert "p50_ms" in suite.find(".//failure").get("message")
    assert {"report.json", "report.md", "report.html", "manifest.json"} <= {p.name for p in folder.iterdir()}


def test_recipe_cli_errors(run_cli, tmp_path):
    line = assert_one_line_error(run_cli("export", "--recipe", str(write(tmp_path, BASE + 'out = "../x"\n'))))
    assert "relative folder" in line
    assert "give either MODEL or --recipe" in assert_one_line_error(run_cli("export", "cbhg", "--recipe", "server"))
    assert "does not exist" in assert_one_line_error(run_cli("export", "--recipe", str(tmp_path / "none.toml")))


def test_recipe_gates_on_a_baseline_report(run_cli, tmp_path):
    """[baseline] names the last release's report.json (relative to the recipe): the build diffs against it and a
    regression fails it, in the manifest, on the terminal and in JUnit."""
    import edgeseq
    from edgeseq.matrix import MatrixOptions

    release = tmp_path / "release"
    edgeseq.run_matrix("cbhg-lite", out_dir=release, options=MatrixOptions(times=(7,), batches=(1,), iterations=3))
    good = release / "report.json"
    text = BASE + '[parity]\ntimes = [7]\nbatches = [1]\n[latency]\niterations = 3\n'
    recipe = write(tmp_path, text + '[baseline]\nreport = "release"\nmax_error_growth = 1000\n')
    assert load_recipe(recipe).baseline.report == str(good)  # a folder stands for its report.json
    out = tmp_path / "out"
    proc = run_cli("export", "--recipe", str(recipe), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "no regressions in 2 rows" in proc.stdout
    manifest = json.loads((out / "t" / "manifest.json").read_text())
    assert manifest["passed"] and manifest["baseline"]["regressed"] is False

    # a release whose row passed with a far smaller error: today's error looks like a 1e6-fold growth
    tight = json.loads(good.read_text())
    row = next(p for p in tight["parity"] if p["runtime"] == "onnxruntime-cpu")
    row["worst"]["rel_l2"] /= 1e6
    (release / "report.json").write_text(json.dumps(tight))
    junit = tmp_path / "junit.xml"
    proc = run_cli("export", "--recipe", str(recipe), "--out", str(out), "--junit", str(junit))
    assert proc.returncode == 1
    assert "regressed against" in proc.stderr and "worst rel L2 x" in proc.stderr
    manifest = json.loads((out / "t" / "manifest.json").read_text())
    assert manifest["passed"] is False and manifest["baseline"]["regressed"] is True
    failure = ET.parse(junit).getroot().find(".//testcase[@classname='baseline']/failure")
    assert failure is not None and "onnxruntime-cpu cbhg-lite.fp32.onnx: worst rel L2 x" in failure.get("message")


def test_out_dot_is_the_output_root(tmp_path):
    """out = "." used to crash with IndexError in safe_relative."""
    assert load_recipe(write(tmp_path, BASE + 'out = "."\n')).out == "."
    assert load_recipe(write(tmp_path, BASE + 'out = "./"\n')).out == "."


def test_budgets_on_what_the_recipe_builds_still_parse(tmp_path):
    text = BASE.replace('formats = ["onnx"]', 'formats = ["onnx"]\nprecisions = ["int8-dynamic"]')
    recipe = load_recipe(write(tmp_path, text + '[[budgets]]\ndevice = "local-cpu"\np50_ms = 5\n'  # fp32: always built
                               '[[budgets]]\ndevice = "local-cpu"\nprecision = "int8-dynamic"\np90_ms = 9\n'))
    assert [(b.precision, b.format) for b in recipe.budgets] == [("fp32", "onnx"), ("int8-dynamic", "onnx")]


def _report(**changes):
    """A minimal well-formed report dict (what validate_report requires), with some keys changed or deleted."""
    row = {"runtime": "torch-cpu", "artifact": "", "precision": "fp32", "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0}
    data = {"schema": "edgeseq.report/1", "model": {"name": "cbhg-lite"}, "environment": {}, "passed": True,
            "artifacts": [], "parity": [], "latency": [row]}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize("changes, says", [
    ({"parity": None}, "'parity' is missing"),
    ({"latency": [{"runtime": "torch-cpu", "artifact": "", "precision": "fp32", "p50_ms": "fast", "p90_ms": 1,
                   "p99_ms": 1}]}, "latency[0].p50_ms must be a number, got \"fast\""),
])
def test_a_broken_baseline_fails_before_the_build(run_cli, tmp_path, changes, says):
    """It used to pass the pre-build check, then crash with KeyError (exit 3) after the build, without a manifest."""
    (tmp_path / "old.json").write_text(json.dumps(_report(**changes)))
    recipe = write(tmp_path, BASE + '[baseline]\nreport = "old.json"\n')
    with pytest.raises(ArtifactError, match="old.json") as info:
        load_recipe(recipe)
    assert says in str(info.value)
    out = tmp_path / "out"
    line = assert_one_line_error(run_cli("export", "--recipe", str(recipe), "--out", str(out)))
    assert says in line and "old.json" in line
    assert not out.exists()


@pytest.mark.parametrize("flags, named", [
    (["-f", "onnx"], "--format / -f"),
    (["--precision", "fp16"], "--precision / -p"),
    (["--times", "7"], "--times"),
    (["--latency-time", "20"], "--latency-time"),
    (["--opset", "17"], "--opset"),  # even the default value, typed out, is refused: the recipe decides
])
def test_recipe_refuses_the_export_flags_it_sets(run_cli, tmp_path, flags, named):
    """They used to be silently ignored: the recipe's values ran instead."""
    out = tmp_path / "out"
    line = assert_one_line_error(run_cli("export", "--recipe", str(write(tmp_path, BASE)), "--out", str(out), *flags))
    assert line.startswith(f"error: {named} cannot be combined with --recipe; set it in the recipe")
    assert not out.exists()


def test_recipe_takes_tolerance_and_latency_flags_on_top(run_cli, tmp_path):
    """--tolerance, -n / --warmup / --threads and --no-bisect apply on top of the recipe, and the manifest records
    the values that ran (the recipe's were used before, silently)."""
    recipe = write(tmp_path, BASE + '[parity]\ntimes = [7]\nbatches = [1]\n[latency]\niterations = 3\n'
                   '[tolerances]\nfp16 = 1e-2\n')
    out = tmp_path / "out"
    proc = run_cli("export", "--recipe", str(recipe), "--out", str(out), "--tolerance", "fp32=1e-12", "-n", "2",
                   "--warmup", "1", "--threads", "1", "--no-bisect")
    assert proc.returncode == 1, proc.stderr  # fp32 rel L2 1e-12 is tighter than float reassociation
    report = json.loads((out / "t" / "report.json").read_text())
    row = next(p for p in report["parity"] if p["runtime"] == "onnxruntime-cpu")
    assert {o["tolerance"]["rel_l2"] for c in row["cases"] for o in c["outputs"]} == {1e-12}
    assert {x["iterations"] for x in report["latency"]} == {2} and {x["warmup"] for x in report["latency"]} == {1}
    assert report["bisections"] == []
    recorded = json.loads((out / "t" / "manifest.json").read_text())["recipe"]
    assert recorded["iterations"] == 2 and recorded["threads"] == 1
    assert recorded["tolerances"] == {"fp16": 1e-2, "fp32": 1e-12}


def test_a_failed_run_removes_the_folders_it_created(tmp_path, monkeypatch):
    """out_dir=a/b failing after the folders were made used to leave a/ (and a/b with iterations = 0)."""
    import edgeseq
    from edgeseq.matrix import MatrixOptions, api

    with pytest.raises(InputError, match="iterations must be an integer >= 1"):
        MatrixOptions(iterations=0)  # now caught before anything runs
    (tmp_path / "keep").mkdir()

    def broken(*a, **kw):
        raise InputError("the timing loop broke")

    monkeypatch.setattr(api, "profile", broken)
    with pytest.raises(InputError, match="timing loop broke"):
        edgeseq.run_matrix("cbhg-lite", out_dir=tmp_path / "keep" / "a" / "b",
                           options=MatrixOptions(times=(7,), batches=(1,)))
    assert [p.name for p in tmp_path.iterdir()] == ["keep"] and not any((tmp_path / "keep").iterdir())


def _latency_row(precision, p50, p90, p99=None):
    return {"runtime": "onnxruntime-cpu", "artifact": f"out/cbhg-lite.{precision}.onnx", "precision": precision,
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99 if p99 is not None else p90}


def _latency_report(*rows):
    """A report.json's latency rows with the artifact records a budget matches them by."""
    return {"latency": list(rows), "artifacts": [{"path": r["artifact"], "format": "onnx", "precision": r["precision"]}
                                                 for r in rows]}


@pytest.mark.parametrize("budget, verdict", [
    ("p90_ms = 10", "fail"),  # p50 (5 ms) is inside it; p90 (40 ms) is what the budget names
    ("p90_ms = 39.99", "fail"),  # just outside
    ("p90_ms = 40", "pass"),  # exactly at the limit
    ("p90_ms = 40.01", "pass"),  # just inside
    ("p50_ms = 4.99", "fail"),
    ("p50_ms = 5.01", "pass"),
    ("p99_ms = 79.99", "fail"),
    ("p99_ms = 80.01", "pass"),
])
def test_each_budget_is_judged_on_its_own_metric(tmp_path, budget, verdict):
    from edgeseq.recipe import judge_budgets

    recipe = load_recipe(write(tmp_path, BASE + f'[[budgets]]\ndevice = "local-cpu"\n{budget}\n'))
    report = _latency_report(_latency_row("fp32", 5.0, 40.0, 80.0))
    [result] = judge_budgets(recipe, report)
    assert (result.status, result.runtime) == (verdict, "onnxruntime-cpu")
    metric = budget.split()[0]
    assert result.measured_ms == {"p50_ms": 5.0, "p90_ms": 40.0, "p99_ms": 80.0}[metric]
    assert (metric in result.reason) is (verdict == "fail")


def test_a_budget_reads_the_row_of_its_own_precision(tmp_path):
    from edgeseq.recipe import judge_budgets

    text = BASE.replace('formats = ["onnx"]', 'formats = ["onnx"]\nprecisions = ["fp32", "int8-dynamic"]')
    recipe = load_recipe(write(tmp_path, text + '[[budgets]]\ndevice = "local-cpu"\nprecision = "int8-dynamic"\n'
                                                'p90_ms = 10\n'))
    report = _latency_report(_latency_row("fp32", 30.0, 30.0), _latency_row("int8-dynamic", 8.0, 9.0))
    [result] = judge_budgets(recipe, report)
    assert (result.status, result.measured_ms) == ("pass", 9.0)
    report["latency"].reverse()
    assert judge_budgets(recipe, report)[0].measured_ms == 9.0
