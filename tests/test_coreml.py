"""Core ML (.mlpackage): converted here at both compute precisions and checked structurally on any OS (the program
loads back as a spec, its GRU became while_loops, T and batch are RangeDims up to the export's bounds, edgeseq's
metadata round-trips); listed as converted, not run, where Core ML cannot predict; run and checked for parity on
macOS. The runner's feed / fetch conversion is tested here with a fake model object."""

import json
import sys

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error

import edgeseq
from edgeseq import formats
from edgeseq.errors import ArtifactError, InputError, RuntimeFailure, UnsupportedError
from edgeseq.formats import support_table
from edgeseq.formats.coreml import DEFAULT_MAX_BATCH, DEFAULT_MAX_TIME, MACOS_ONLY, CoremlRunner
from edgeseq.formats.coreml import runner as runner_mod
from edgeseq.formats.coreml.convert import NOT_RUN
from edgeseq.formats.coreml.metadata import load_spec, model_file
from edgeseq.formats.coreml.structure import STRUCTURE_KEY, read_structure

pytest.importorskip("coremltools", reason="needs coremltools: pip install 'edgeseq[coreml]'")

MACOS = sys.platform == "darwin"
needs_macos = pytest.mark.skipif(not MACOS, reason="needs macOS: Core ML prediction (coremltools' MLModel.predict)")
off_macos = pytest.mark.skipif(MACOS, reason="on macOS Core ML runs the package: the parity tests cover it there")


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    """cbhg-lite at both compute precisions (about 4 s each)."""
    out = tmp_path_factory.mktemp("coreml")
    return {p: edgeseq.export("cbhg-lite", "coreml", precision=p, out_dir=out) for p in ("fp32", "fp16")}


def gru_directions(model: str) -> int:
    """The while_loops the converter should make: one per GRU direction and layer of the PyTorch original."""
    module = edgeseq.get_model(model).build()
    return sum(m.num_layers * (2 if m.bidirectional else 1) for m in module.modules() if isinstance(m, torch.nn.GRU))


def test_both_precisions_are_mlprograms_whose_grus_became_while_loops(lite):
    spec = edgeseq.get_model("cbhg-lite")
    for precision, art in lite.items():
        assert art.format == "coreml" and art.precision == precision
        assert art.path.endswith(f"cbhg-lite.{precision}.mlpackage")
        assert formats.detect_format(art.path).value == "coreml"
        structure = read_structure(load_spec(art.path))
        assert len(structure.while_loops) == gru_directions("cbhg-lite") == structure.ops["while_loop"]
        for loop in structure.while_loops:  # the GRU's gates are inside each loop body
            assert {"sigmoid", "tanh", "linear"} <= set(loop["body_ops"]), loop
        assert [t.name for t in structure.inputs] == spec.input_names
        assert [t.name for t in structure.outputs] == spec.output_names
        assert structure.upper_bound("features", 1) == DEFAULT_MAX_TIME  # T: RangeDim(1, max_time)
        assert structure.upper_bound("features", 0) == DEFAULT_MAX_BATCH
        assert structure.inputs[0].ranges[2] == (spec.inputs[0].shape[2],) * 2  # the feature axis stays fixed
        assert structure.note() in art.notes
    fp32, fp16 = (read_structure(load_spec(lite[p].path)) for p in ("fp32", "fp16"))
    assert fp16.ops.get("cast", 0) > fp32.ops.get("cast", 0)  # fp16 compute: fp32 I/O cast at the edges
    assert lite["fp16"].size_bytes < lite["fp32"].size_bytes  # fp16 weights


def test_edgeseq_metadata_and_the_structure_round_trip(lite):
    art = lite["fp16"]
    meta = formats.read_metadata(art.path)
    assert (meta["edgeseq.model"], meta["edgeseq.precision"], meta["edgeseq.weights_sha256"]) == \
           ("cbhg-lite", "fp16", art.weights_sha256)
    assert meta["edgeseq.max_time"] == str(DEFAULT_MAX_TIME)
    assert json.loads(meta[STRUCTURE_KEY]) == read_structure(load_spec(art.path)).to_dict()
    assert formats.get("coreml").update_metadata(art.path, {"edgeseq.note": "kept"})
    again = formats.read_metadata(art.path)
    assert again == {**meta, "edgeseq.note": "kept"}
    assert formats.detect_format(art.path).value == "coreml"  # the rewritten package is still a package


def test_max_time_bounds_the_time_range(tmp_path):
    spec = edgeseq.get_model("cbhg-lite")
    bound = spec.default_time + 1
    art = edgeseq.export("cbhg-lite", "coreml", precision="fp16", out_dir=tmp_path, max_time=bound)
    assert read_structure(load_spec(art.path)).upper_bound("features", 1) == bound
    assert formats.read_metadata(art.path)["edgeseq.max_time"] == str(bound)
    again = edgeseq.export("cbhg-lite", "coreml", precision="fp16", out_dir=tmp_path)  # over the folder it made
    assert read_structure(load_spec(again.path)).upper_bound("features", 1) == DEFAULT_MAX_TIME
    assert [p.name for p in tmp_path.iterdir()] == ["cbhg-lite.fp16.mlpackage"]  # nothing staged is left


@off_macos
def test_the_matrix_lists_packages_as_converted_not_run_with_no_parity(tmp_path):
    from edgeseq.plan import MatrixOptions
    from edgeseq.report import matrix_entries

    options = MatrixOptions(times=(7,), batches=(1,), warmup=0, iterations=1)
    for _ in range(2):  # the second run replaces the first run's folders
        report = edgeseq.run_matrix("cbhg-lite", ["coreml"], ["fp16"], out_dir=tmp_path, options=options).to_dict()
    rows = [e for e in matrix_entries(report) if e["format"] == "coreml"]
    assert [(r["precision"], r["parity"], r["runtime"]) for r in rows] == [("fp32", "not run", "(none here)"),
                                                                          ("fp16", "not run", "(none here)")]
    assert not [p for p in report["parity"] if p["artifact"].endswith(".mlpackage")]
    assert not [x for x in report["latency"] if x["artifact"].endswith(".mlpackage")]
    for art in report["artifacts"]:
        assert art["notes"][0] == f"{NOT_RUN}: {MACOS_ONLY}"
        assert any(n.startswith("Core ML structure: ") for n in art["notes"])
        assert formats.detect_format(art["path"]).value == "coreml"
    assert "converted, not run here" in (tmp_path / "report.md").read_text()


# ---- bad input: one line, nothing half-written ---------------------------------------------------------------------


@off_macos
def test_checking_a_package_off_macos_is_one_line_naming_macos(lite, run_cli):
    with pytest.raises(UnsupportedError, match="Core ML prediction needs macOS"):
        edgeseq.check(lite["fp32"].path, times=(7,), batches=(1,))
    line = assert_one_line_error(run_cli("check", lite["fp32"].path, "--times", "7"))
    assert "needs macOS" in line and 'runtime = "coreml"' in line


def test_a_corrupt_or_foreign_package_is_a_one_line_artifact_error(lite, tmp_path, run_cli):
    import shutil

    cut = tmp_path / "cut.fp32.mlpackage"
    shutil.copytree(lite["fp32"].path, cut)
    spec_file = model_file(cut)
    spec_file.write_bytes(spec_file.read_bytes()[:999])
    with pytest.raises(ArtifactError, match="is not a readable Core ML package"):
        formats.read_metadata(cut)
    assert "cut.fp32.mlpackage" in assert_one_line_error(run_cli("check", str(cut), "--times", "7"))
    empty = tmp_path / "empty.mlpackage"
    empty.mkdir()
    with pytest.raises(ArtifactError, match="is not a Core ML package"):
        formats.detect_format(empty)
    flat = tmp_path / "flat.mlpackage"
    flat.write_bytes(b"not a folder")
    with pytest.raises(ArtifactError, match="is a file; a Core ML package"):
        formats.detect_format(flat)


def test_unsupported_precisions_settings_and_models_fail_before_writing(tmp_path, run_cli):
    line = assert_one_line_error(run_cli("export", "cbhg-lite", "-f", "coreml", "-p", "int8-dynamic", "-o",
                                         str(tmp_path / "o")))
    assert "Core ML export at int8-dynamic is not available (it has: fp32, fp16)" in line
    with pytest.raises(InputError, match="--shapes applies to TensorRT exports only"):
        edgeseq.export("cbhg-lite", "coreml", out_dir=tmp_path / "o", shapes="features=1x1x128:1x2x128:1x3x128")

    class Det(torch.nn.Module):  # an op coremltools has no converter for
        def forward(self, x):
            return x * torch.linalg.det(x[:, :2, :2]).reshape(-1, 1, 1)

    with pytest.raises(edgeseq.errors.ExportError, match="coremltools could not convert .*linalg_det"):
        edgeseq.export(Det(), "coreml", out_dir=tmp_path / "o", example_inputs=torch.randn(2, 9, 6),
                       input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch", 1: "time"}})
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_without_coremltools_export_and_read_name_the_extra(lite, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)  # as if not installed
    for call in (lambda: edgeseq.export("cbhg-lite", "coreml", out_dir=tmp_path), lambda: load_spec(lite["fp32"].path)):
        with pytest.raises(edgeseq.errors.MissingExtraError, match=r"pip install 'edgeseq\[coreml\]'"):
            call()
    assert not list(tmp_path.iterdir())


def test_a_package_of_another_model_is_not_overwritten(lite, tmp_path):
    import shutil

    shutil.copytree(lite["fp16"].path, tmp_path / "cbhg.fp16.mlpackage")  # cbhg-lite's package under cbhg's name
    with pytest.raises(InputError, match="holds model 'cbhg-lite'.*not this one \\('cbhg'\\)"):
        edgeseq.export("cbhg", "coreml", precision="fp16", out_dir=tmp_path)
    assert formats.read_metadata(tmp_path / "cbhg.fp16.mlpackage")["edgeseq.model"] == "cbhg-lite"


# ---- the runner: feed / fetch conversion with a fake model (Core ML itself is macOS only) --------------------------


class FakeMLModel:
    """MLModel's predict(): records what it was fed, answers fp16 arrays (as an fp16 program's outputs can be)."""

    def __init__(self, outputs: dict):
        self.outputs, self.fed = outputs, []

    def predict(self, feed):
        self.fed.append(feed)
        batch, time_ = next(iter(feed.values())).shape[:2]
        return {name: np.ones((batch, time_, width), np.float16) for name, width in self.outputs.items()}


def test_the_runner_converts_feeds_and_outputs_around_predict(lite, monkeypatch):
    spec = edgeseq.get_model("cbhg-lite")
    width = spec.outputs[0].shape[-1]
    fake = FakeMLModel({"encoded": width})
    monkeypatch.setattr(runner_mod, "can_predict", lambda: True)
    monkeypatch.setattr(CoremlRunner, "_open", lambda self: fake)
    with CoremlRunner(lite["fp16"].path, device="ane") as runner:
        assert runner.runtime == "coreml-ane" and runner.metadata["edgeseq.precision"] == "fp16"
        assert [(t.name, t.shape) for t in runner.inputs] == [(t.name, t.shape) for t in spec.inputs]
        feed = spec.example_inputs(batch=2, time=7)
        out = runner.infer(feed)
        assert list(out) == spec.output_names and out["encoded"].dtype == np.float32
        assert out["encoded"].shape == spec.shape_for(spec.outputs[0], 2, 7)
        assert fake.fed[-1]["features"].flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(fake.fed[-1]["features"], feed["features"])
        too_long = spec.example_inputs(batch=1, time=DEFAULT_MAX_TIME + 1, source="random")
        with pytest.raises(InputError, match=f"serves sequences up to T={DEFAULT_MAX_TIME}; got"):
            runner.infer(too_long)
        fake.outputs = {"other": width}
        with pytest.raises(RuntimeFailure, match="Core ML returned no 'encoded'"):
            runner.infer(feed)


def test_the_runner_off_macos_names_macos_and_the_ssh_route(lite, tmp_path):
    with pytest.raises(UnsupportedError, match="Core ML runs on cpu, gpu, ane, all"):
        CoremlRunner(lite["fp32"].path, device="cuda")
    with pytest.raises(ArtifactError, match="not an .mlpackage folder"):
        CoremlRunner(tmp_path / "missing.mlpackage").load()
    if not MACOS:
        with pytest.raises(UnsupportedError, match='needs macOS.*runtime = "coreml"'):
            CoremlRunner(lite["fp32"].path).load()
        assert formats.get("coreml").runtime_devices() == []


# ---- every model: parity where Core ML runs -----------------------------------------------------------------------


@needs_macos
@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.covers(m, "coreml")) for m in support_table()])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_every_model_runs_on_core_ml_and_passes_parity(model, precision, tmp_path):
    art = edgeseq.export(model, "coreml", precision=precision, out_dir=tmp_path)
    result = edgeseq.check(art.path, times=None if model == "seq-cnn" else (1, 7, 200), batches=(1, 3))
    assert result.passed, result.worst


@pytest.mark.slow
@pytest.mark.parametrize("model", list(support_table()))
def test_every_model_converts_with_one_while_loop_per_gru_direction(model, tmp_path):
    art = edgeseq.export(model, "coreml", precision="fp16", out_dir=tmp_path)
    structure = read_structure(load_spec(art.path))
    assert len(structure.while_loops) == gru_directions(model)
    assert [t.name for t in structure.outputs] == edgeseq.get_model(model).output_names
