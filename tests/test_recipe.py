import json
import xml.etree.ElementTree as ET

import pytest
from conftest import assert_one_line_error

from edgeseq.errors import InputError
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
