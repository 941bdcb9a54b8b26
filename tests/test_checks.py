"""One rule per kind of value (edgeseq/_checks.py) and the holes it closed: numpy integers, generators read once,
NaN / inf limits, recipe keys named in errors, one output-folder probe per run, torch budgets that match rows."""

import json
import math

import numpy as np
import pytest

import edgeseq
from edgeseq import _checks, api
from edgeseq.errors import InputError, OutputError
from edgeseq.models import get_model

# ---- the shared checks --------------------------------------------------------------------------------------------


def test_integer_takes_numpy_integers_and_refuses_bool_float_and_small_values():
    assert _checks.integer(np.int64(3), "n") == 3 and type(_checks.integer(np.int64(3), "n")) is int
    assert _checks.integer(None, "n", optional=True) is None
    for bad in (0, True, 2.0, "2", None):
        with pytest.raises(InputError, match=r"^n must be an integer >= 1, got "):
            _checks.integer(bad, "n")
    with pytest.raises(InputError, match=r"^warmup must be an integer >= 0, got -1$"):
        _checks.integer(-1, "warmup", minimum=0)


def test_integers_and_texts_read_an_iterable_once():
    assert _checks.integers((t for t in [7, 20]), "times") == (7, 20)
    assert _checks.integers(iter([np.int32(1)]), "batches") == (1,)
    assert _checks.integers(5, "times") == (5,) and _checks.integers(None, "times") is None
    assert _checks.texts((s for s in ["speech"]), "sources") == ("speech",)
    assert _checks.texts(iter(["a", "b"]), "sources") == ("a", "b") and _checks.texts("speech", "s") == ("speech",)
    for bad, says in (("7,20", "must be an integer or a list"), ([0], "integers >= 1"), ([], "is empty")):
        with pytest.raises(InputError, match=says):
            _checks.integers(bad, "times")
    with pytest.raises(InputError, match="must be a string or a list of strings"):
        _checks.texts((s for s in ["a", 1]), "sources")


def test_positive_number_refuses_nan_and_inf():
    assert _checks.positive_number(np.float32(0.5), "x") == 0.5
    for bad in (math.nan, math.inf, 0, -1, True, "1"):
        with pytest.raises(InputError, match=r"^x must be a positive finite number, got "):
            _checks.positive_number(bad, "x")
    assert _checks.positive_number(math.inf, "x", finite=False) == math.inf


@pytest.mark.parametrize("value", [0.8, math.nan, math.inf, "1.2", True])
def test_a_worsening_ratio_is_one_rule_for_diff_and_recipe_baselines(value):
    """diff_reports let NaN (never fails) and inf through and raised a TypeError on a string; a recipe's baseline
    refused them. Now both use _checks.ratio."""
    from pathlib import Path

    base_report = edgeseq.load_report(Path(__file__).parents[1] / "bench" / "results" / "gpu-h200-matrix-cbhg-lite.json")
    with pytest.raises(InputError, match="--max-slowdown is a ratio >= 1"):
        edgeseq.diff_reports(base_report, base_report, max_slowdown=value)
    with pytest.raises(InputError, match="is a ratio >= 1"):
        _checks.ratio(value, "baseline max_error_growth")
    assert _checks.ratio(1.2, "x") == 1.2 and _checks.ratio(np.float32(1.0), "x") == 1.0


def test_matrix_options_take_numpy_integers_like_the_api():
    """MatrixOptions checked isinstance(int): np.int64(3) iterations was refused while api.profile took it."""
    options = edgeseq.MatrixOptions(iterations=np.int64(3), threads=np.int32(2))
    assert options.iterations == 3 and type(options.iterations) is int and options.threads == 2
    with pytest.raises(InputError, match=r"MatrixOptions.warmup must be an integer >= 0, got -1"):
        edgeseq.MatrixOptions(warmup=-1)


# ---- the API ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sources", [lambda: (s for s in ["speech"]), lambda: iter(["speech"])])
def test_parity_feeds_takes_a_generator_of_sources(sources):
    """The all(...) check used to consume the generator, leaving tuple(value) empty: every source was swept."""
    feeds = list(api.parity_feeds(get_model("cbhg-lite"), [7], [1], sources()))
    assert [source for _, _, source, _ in feeds] == ["speech"]


def test_weights_must_be_a_path(tmp_path, lite_onnx):
    with pytest.raises(InputError, match="weights must be a path"):
        edgeseq.export("cbhg-lite", "onnx", out_dir=tmp_path, weights=5)
    with pytest.raises(InputError, match="weights must be a path"):
        edgeseq.check(lite_onnx, weights=5, times=7, batches=1)
    assert not any(tmp_path.iterdir())


def test_profile_many_takes_one_device_a_profile_or_a_list(lite_onnx):
    from edgeseq.devices import get_profile

    fast = dict(iterations=2, warmup=0, time=7)
    one = api.profile_many(lite_onnx, "cpu", **fast)  # used to loop over "c", "p", "u"
    assert [(d.device, d.error) for d in one] == [("cpu", "")] and one[0].result.runtime == "onnxruntime-cpu"
    named = api.profile_many(lite_onnx, get_profile("local-cpu"), **fast)
    assert [(d.device, d.error) for d in named] == [("local-cpu", "")]
    with pytest.raises(InputError, match="device must be cpu, cuda, tensorrt"):
        api.profile_many(lite_onnx, [1])  # used to be an AttributeError
    with pytest.raises(InputError, match="devices must be a device or a list"):
        api.profile_many(lite_onnx, 1)


# ---- recipes -------------------------------------------------------------------------------------------------------

BASE = 'name = "t"\nmodel = "cbhg-lite"\nformats = ["onnx"]\ndevices = ["local-cpu"]\n'


def _recipe(tmp_path, text):
    from edgeseq.recipe import load_recipe

    path = tmp_path / "r.toml"
    path.write_text(BASE + text)
    return load_recipe(path)


@pytest.mark.parametrize("extra, says", [
    ("[tolerances]\nfp32 = inf\n", r"r.toml \[tolerances\] fp32 must be a positive number below 10"),
    ("[tolerances]\nfp16 = 50\n", r"r.toml \[tolerances\] fp16 must be a positive number below 10"),
    ('[[budgets]]\ndevice = "local-cpu"\np50_ms = nan\n', "p50_ms must be a positive finite number, got nan"),
    ('[[budgets]]\ndevice = "local-cpu"\np90_ms = inf\n', "p90_ms must be a positive finite number, got inf"),
    ('out = ""\n', "'out' must be a relative folder inside the output root, got ''"),
    ("[parity]\ntimes = []\n", r"\[parity\] times is empty"),
])
def test_recipe_values_that_used_to_load_and_fail_later(tmp_path, extra, says):
    with pytest.raises(InputError, match=says):
        _recipe(tmp_path, extra)


def test_torch_fp16_budget_on_a_cuda_device_is_matched_to_its_row(tmp_path):
    """The matrix builds torch-cuda-fp16 rows on a GPU; the budget was refused, and its match looked for torch-cuda."""
    from edgeseq.recipe import judge_budgets, load_recipe

    text = BASE.replace('["local-cpu"]', '["local-cpu", "local-cuda"]') + (
        '[[budgets]]\ndevice = "local-cuda"\nformat = "torch"\nprecision = "fp16"\np50_ms = 2\n'
        '[[budgets]]\ndevice = "local-cuda"\nformat = "torch"\np50_ms = 2\n'
        '[[budgets]]\ndevice = "local-cpu"\nformat = "torch"\np50_ms = 2\n')
    (tmp_path / "r.toml").write_text(text)
    recipe = load_recipe(tmp_path / "r.toml")
    row = {"artifact": "", "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0}
    report = {"latency": [{**row, "runtime": "torch-cuda", "precision": "fp32", "p50_ms": 3.0},
                          {**row, "runtime": "torch-cuda-fp16", "precision": "fp16"},
                          {**row, "runtime": "torch-cpu", "precision": "fp32"}], "artifacts": []}
    results = judge_budgets(recipe, report)
    assert [(r.runtime, r.status, r.measured_ms) for r in results] == [
        ("torch-cuda-fp16", "pass", 1.0), ("torch-cuda", "fail", 3.0), ("torch-cpu", "pass", 1.0)]


def test_torch_budgets_only_on_rows_the_matrix_builds(tmp_path):
    cpu_fp16 = '[[budgets]]\ndevice = "local-cpu"\nformat = "torch"\nprecision = "fp16"\np50_ms = 2\n'
    with pytest.raises(InputError, match="precision 'fp16' is not built"):  # no torch-cpu-fp16 row exists
        _recipe(tmp_path, 'precisions = ["fp16"]\n' + cpu_fp16)
    int8 = '[[budgets]]\ndevice = "local-cpu"\nformat = "torch"\nprecision = "int8-dynamic"\np50_ms = 2\n'
    assert _recipe(tmp_path, 'precisions = ["int8-static"]\n' + int8).budgets[0].precision == "int8-dynamic"


# ---- the matrix ------------------------------------------------------------------------------------------------------


def test_a_sweep_past_the_tflite_max_time_is_refused_before_any_work(tmp_path, monkeypatch):
    """The default sweep (T up to 1000) with max_time=100 used to export and time everything, then fail."""
    pytest.importorskip("litert_torch")
    from edgeseq.formats import tflite

    def exported(*a, **kw):
        raise AssertionError("exported before the sweep was checked")

    monkeypatch.setattr(tflite, "export", exported)
    monkeypatch.setattr(api, "profile", exported)
    with pytest.raises(InputError, match="serves T up to 100; the sweep asks for T=1000"):
        edgeseq.run_matrix("cbhg-lite", ["tflite"], out_dir=tmp_path / "o", options=edgeseq.MatrixOptions(max_time=100))
    with pytest.raises(InputError, match="max_time applies to TFLite / Core ML / ExecuTorch exports"):
        edgeseq.run_matrix("cbhg-lite", ["onnx"], out_dir=tmp_path / "o", options=edgeseq.MatrixOptions(max_time=100))
    assert not (tmp_path / "o").exists()


# ---- output folders ------------------------------------------------------------------------------------------------


def test_a_dangling_symlink_out_is_refused_up_front(tmp_path):
    from edgeseq.artifact import validate_output_dir

    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for out in (tmp_path / "dangling", tmp_path / "dangling" / "sub"):
        with pytest.raises(OutputError, match="is a broken symlink"):
            validate_output_dir(out, "--out")


def test_the_api_names_out_dir_not_the_cli_flag(tmp_path):
    from edgeseq.recipe import run_recipe

    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"^out_dir '.*file' exists and is not a directory"):
        edgeseq.run_matrix("cbhg-lite", out_dir=tmp_path / "file", options=edgeseq.MatrixOptions(times=(7,)))
    with pytest.raises(OutputError, match=r"^out_root '.*file/t': .* is a file, not a folder"):
        run_recipe(_recipe(tmp_path, ""), tmp_path / "file")


@pytest.fixture
def probes(monkeypatch):
    """Count output-folder probes; the run stops at its first timing (right after the up-front checks)."""
    from edgeseq import artifact

    calls, probe = [], artifact._check_creatable

    def counted(folder, what, target):
        calls.append(what)
        return probe(folder, what, target)

    def stop(*a, **kw):
        raise InputError("stopped after the checks")

    monkeypatch.setattr(artifact, "_check_creatable", counted)
    monkeypatch.setattr(api, "profile", stop)
    return calls


@pytest.mark.parametrize("argv", [["export", "cbhg-lite", "--times", "7"], ["export", "--recipe", "r.toml"]])
def test_one_output_probe_per_run(tmp_path, probes, argv, monkeypatch):
    """export probed --out twice (CLI and run_matrix), a recipe three times, each with a probe file."""
    from typer.testing import CliRunner

    from edgeseq.cli.app import app

    (tmp_path / "r.toml").write_text(BASE)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [*argv, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "stopped after the checks" in result.output, result.output
    assert probes == ["--out"]


# ---- messages and small fixes --------------------------------------------------------------------------------------


def test_device_agent_takes_its_scratch_folder_at_construction(tmp_path):
    """TrtexecModel's workdir was set after construction; open_model now passes it (the job's own folder)."""
    from edgeseq.remote import agent

    (tmp_path / "m.engine").write_bytes(b"")
    (tmp_path / "m.engine.version").write_text("10.0")  # built and stamped: no trtexec call
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"engine": "m.engine", "onnx": "m.onnx", "inputs": []}))
    model = agent.open_model(str(job), "tensorrt", "tensorrt", None, str(tmp_path / "work"))
    (tmp_path / "work").mkdir()
    try:
        assert model.version == "TensorRT 10.0" and model._scratch("x").startswith(str(tmp_path / "work"))
    finally:
        model.close()


def test_print_table_builds_the_rows_once(monkeypatch):
    import io

    from rich.console import Console

    from edgeseq.report import terminal as report

    calls = []
    monkeypatch.setattr(report, "matrix_rows", lambda r: calls.append(1) or [])
    monkeypatch.setattr(report, "quant_rows", lambda r: [])
    report.print_table({"model": {"name": "m"}}, Console(width=120, file=io.StringIO()))
    assert calls == [1]
