"""ONNX Runtime Mobile (.ort): converted from the ONNX of the same precision, it computes exactly what that .onnx
computes at any batch and T, carries its metadata, and ships its operators config and mobile usability check."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error

import edgeseq
from edgeseq import formats
from edgeseq.errors import ArtifactError, UnsupportedError
from edgeseq.formats.ort import OrtRunner

pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install 'edgeseq[onnx]'")

CASES = [(b, t, s) for b in (1, 3) for t in (1, 7, 200) for s in ("speech", "random")]


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    """fp32 and int8-static of cbhg-lite as .onnx and .ort; the int8 .ort derives from the fp32 .ort (the matrix's
    way: the parent is the same format's fp32 file), the int8 .onnx from the fp32 .onnx."""
    out = tmp_path_factory.mktemp("ort")
    onnx32 = edgeseq.export("cbhg-lite", "onnx", out_dir=out)
    ort32 = edgeseq.export("cbhg-lite", "ort", out_dir=out)
    onnx8 = edgeseq.export("cbhg-lite", "onnx", precision="int8-static", out_dir=out, parent=onnx32)
    ort8 = edgeseq.export("cbhg-lite", "ort", precision="int8-static", out_dir=out, parent=ort32)
    return {"fp32": (onnx32, ort32), "int8-static": (onnx8, ort8)}


def outputs(runner, spec):
    with runner:
        return [runner.infer(spec.example_inputs(batch=b, time=t, source=s))["encoded"] for b, t, s in CASES]


def identical(a: list, b: list) -> bool:
    """The bound measured between an .ort and its .onnx (ONNX Runtime 1.32, CPU, 1 thread): none, bit for bit."""
    return all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.covers("cbhg-lite", "ort")
@pytest.mark.parametrize("precision", ["fp32", "int8-static"])
def test_the_ort_computes_exactly_what_its_onnx_computes_at_any_batch_and_t(lite, precision):
    onnx_art, ort_art = lite[precision]
    spec = edgeseq.get_model("cbhg-lite")
    want = outputs(formats.runner_for(onnx_art.path, threads=1), spec)
    got = outputs(OrtRunner(ort_art.path, threads=1), spec)
    assert identical(want, got)
    nudged = [g.copy() for g in got]  # one float one ulp off is caught: the bound is exactly zero
    nudged[-1].flat[0] = np.nextafter(nudged[-1].flat[0], np.float32(np.inf))
    assert not identical(want, nudged)
    assert edgeseq.check(ort_art.path, times=(1, 7, 50), batches=(1, 2)).passed


def test_the_artifact_names_its_format_source_and_precision(lite):
    for precision, (onnx_art, ort_art) in lite.items():
        assert ort_art.format == "ort" and ort_art.precision == precision and ort_art.path.endswith(
            f"cbhg-lite.{precision}.ort")
        assert ort_art.weights_sha256 == onnx_art.weights_sha256
        assert formats.detect_format(ort_art.path).value == "ort"
    assert lite["int8-static"][1].quantization["config"] == lite["int8-static"][0].quantization["config"]


def test_an_int8_ort_is_larger_by_the_float_weights_onnx_runtime_folds_at_load(lite):
    """The int8 .onnx stores the float ops' weights (GRU, MatMul) as int8 + scales dequantized by Cast and Mul,
    which ONNX Runtime folds at load; the .ort is the model after that folding, so exactly those weights are float
    in it, and the size difference is theirs (docs/formats.md, ONNX Runtime Mobile)."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py import fbs

    onnx_art, ort_art = lite["int8-static"]
    model = onnx.load(onnx_art.path)
    stored_int8 = {t.name[: -len("_weight_int8")] for t in model.graph.initializer if t.name.endswith("_weight_int8")}
    onnx_float = sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer if t.data_type == 1)
    graph = fbs.InferenceSession.InferenceSession.GetRootAs(Path(ort_art.path).read_bytes(), 0).Model().Graph()
    inits = [graph.Initializers(i) for i in range(graph.InitializersLength())]
    folded = {t.Name().decode(): t.RawDataLength() for t in inits if t.DataType() == 1 and t.RawDataLength() > 4096}
    assert folded and set(folded) <= stored_int8, (sorted(folded), sorted(stored_int8))
    assert any(n.startswith("onnx::GRU") for n in folded)
    # the folded weights are 4 bytes a value where the .onnx holds 1: they account for the growth, within 15%
    growth = ort_art.size_bytes - onnx_art.size_bytes
    assert 0.85 * (sum(folded.values()) * 3 / 4) <= growth <= 1.15 * (sum(folded.values()) * 3 / 4 + onnx_float)


def test_the_operators_config_names_the_ops_of_a_reduced_build(lite):
    for precision, ops in (("fp32", ("GRU", "MatMul")), ("int8-static", ("GRU", "QuantizeLinear"))):
        art = lite[precision][1]
        config = open(art.path + ".operators.config").read().splitlines()
        assert config[0] == f"# operators of cbhg-lite.{precision}.ort, for an ONNX Runtime build with " \
                            "--include_ops_by_config"
        listed = {op for line in config[1:] for op in line.split(";")[2].split(",")}
        assert set(ops) <= listed
        assert all(line.split(";")[0] in ("ai.onnx", "com.microsoft") for line in config[1:])
        assert any(n.startswith("operators config: cbhg-lite.") for n in art.notes)


def test_mobile_usability_is_in_the_notes_and_the_metadata(lite):
    art = lite["fp32"][1]
    notes = [n for n in art.notes if n.startswith("mobile usability: ")]
    assert [n.split()[2] for n in notes] == ["NNAPI", "CoreML"]
    assert all("held back by the dynamic shapes" in n for n in notes)
    record = json.loads(formats.read_metadata(art.path)["edgeseq.mobile_usability"])
    assert [r["ep"] for r in record] == ["NNAPI", "CoreML"]
    for r in record:
        assert "GRU" in r["unsupported_ops"]  # neither provider takes the GRU: it stays on the CPU
        assert r["supported"] + r["blocked_by_dynamic_shapes"] <= r["nodes"]
        assert r["supported_if_fixed"] > r["supported"]  # the dynamic T is what holds most nodes back


def test_metadata_is_read_from_the_file_without_a_session(lite, monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "InferenceSession", None)  # read_metadata must not need one
    onnx_art, ort_art = lite["int8-static"]
    meta = formats.read_metadata(ort_art.path)
    source = formats.read_metadata(onnx_art.path)
    assert {k: meta[k] for k in ("edgeseq.model", "edgeseq.precision", "edgeseq.weights_sha256")} == \
           {k: source[k] for k in ("edgeseq.model", "edgeseq.precision", "edgeseq.weights_sha256")}
    assert meta["edgeseq.onnx_sha256"] == ort_art.parent
    assert lite["fp32"][1].parent == lite["fp32"][0].sha256  # the plain -f onnx export of that precision
    assert meta["edgeseq.precision"] == "int8-static"


def test_check_of_an_ort_file_via_the_cli_needs_no_model_name(lite, run_cli):
    proc = run_cli("check", lite["fp32"][1].path, "--times", "7,50", "--batches", "1")
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime-ort-cpu" in proc.stdout


def test_a_corrupt_ort_is_a_one_line_artifact_error(lite, tmp_path, run_cli):
    bad = tmp_path / "cut.fp32.ort"
    bad.write_bytes(open(lite["fp32"][1].path, "rb").read()[:4096])
    with pytest.raises(ArtifactError, match="is not a readable ORT format model"):
        formats.read_metadata(bad)
    line = assert_one_line_error(run_cli("check", str(bad), "--model", "cbhg-lite", "--times", "7"))
    assert "cut.fp32.ort" in line
    foreign = tmp_path / "x.ort"
    foreign.write_bytes(b"\x08\x07\x12\x00TFL3" + bytes(64))
    with pytest.raises(ArtifactError, match="is not an ORT model"):
        formats.detect_format(foreign)


def test_rows_are_named_apart_from_the_onnx_rows_and_run_on_the_cpu(lite):
    fmt = formats.get("ort")
    assert fmt.runtime_label("cpu") == "onnxruntime-ort-cpu" != formats.get("onnx").runtime_label("cpu")
    assert fmt.runtime_devices() == ["cpu"]
    with pytest.raises(UnsupportedError, match="CPU provider"):
        fmt.runner(lite["fp32"][1].path, device="cuda")


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.covers(m, "ort"))
                                   for m in ("cbhg", "cbhg-postnet", "attention-cbhg", "seq-cnn")])
def test_every_model_exports_to_ort_and_passes_parity(model, tmp_path):
    artifact = edgeseq.export(model, "ort", out_dir=tmp_path)
    result = edgeseq.check(artifact.path, times=None if model == "seq-cnn" else (1, 7, 50), batches=(1, 2))
    assert result.passed, result.worst
