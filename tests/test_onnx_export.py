"""ONNX export: one artifact for every T >= 1 and any batch, stamped, simplified, reproducible; specialization is an
export error."""

import numpy as np
import onnx
import pytest
import torch

import edgeseq
from edgeseq.errors import ExportError, UnsupportedError
from edgeseq.formats.onnx import OnnxExporter

SWEEP_T = (1, 7, 50, 200, 1000)
SWEEP_B = (1, 3)


@pytest.fixture(scope="module")
def cbhg_onnx(tmp_path_factory):
    return edgeseq.export("cbhg", "onnx", out_dir=tmp_path_factory.mktemp("cbhg"))


@pytest.mark.covers("cbhg", "onnx")
def test_cbhg_passes_parity_at_every_length_and_batch(cbhg_onnx):
    """The spine's acceptance test: cbhg -> ONNX holds fp32 tolerance at T in {1..1000} x batch {1, 3}."""
    result = edgeseq.check(cbhg_onnx.path, "cbhg", times=SWEEP_T, batches=SWEEP_B)
    assert {(c.batch, c.time) for c in result.cases} == {(b, t) for b in SWEEP_B for t in SWEEP_T}
    assert {c.source for c in result.cases} == {"speech", "random"}
    assert result.passed, result.failures
    assert result.worst.rel_l2 <= 1e-5 and result.worst.cosine > 0.99999


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.covers(n, "onnx"))
                                  for n in ("cbhg-postnet", "attention-cbhg", "seq-cnn")])
def test_other_models_export_and_match(name, tmp_path):
    artifact = edgeseq.export(name, "onnx", out_dir=tmp_path)
    result = edgeseq.check(artifact.path, name, times=None if name == "seq-cnn" else (1, 7, 200), batches=(1, 3))
    assert result.passed, result.failures


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cbhg-postnet", "attention-cbhg"])
def test_other_models_full_sweep(name, tmp_path):
    artifact = edgeseq.export(name, "onnx", out_dir=tmp_path)
    assert edgeseq.check(artifact.path, name, times=SWEEP_T, batches=SWEEP_B).passed


def test_time_and_batch_axes_stay_symbolic_and_gru_is_one_op(lite_onnx):
    model = onnx.load(lite_onnx.path)
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(model.graph.input[0]) == ["batch", "time", 128]
    assert dims(model.graph.output[0]) == ["batch", "time", 128]
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("GRU") == 1  # not unrolled
    assert "BatchNormalization" not in ops  # folded by the simplifier


def test_metadata_carries_version_model_and_weights(lite_onnx):
    from edgeseq.models.weights import state_dict_sha256

    meta = {p.key: p.value for p in onnx.load(lite_onnx.path).metadata_props}
    assert meta["edgeseq.model"] == "cbhg-lite"
    assert meta["edgeseq.version"] == edgeseq.__version__
    assert meta["edgeseq.weights_sha256"] == state_dict_sha256(edgeseq.get_model("cbhg-lite").build())
    assert lite_onnx.weights_sha256 == meta["edgeseq.weights_sha256"]


def test_artifact_record_matches_the_file(lite_onnx):
    from edgeseq.artifact import sha256_file

    assert lite_onnx.sha256 == sha256_file(lite_onnx.path)
    assert lite_onnx.opset == 17 and lite_onnx.format == "onnx" and lite_onnx.precision == "fp32"
    assert onnx.load(lite_onnx.path).opset_import[0].version == 17


def test_exports_are_byte_identical(tmp_path, lite_onnx):
    again = edgeseq.export("cbhg-lite", "onnx", out_dir=tmp_path)
    assert again.sha256 == lite_onnx.sha256


def test_opset_is_configurable(tmp_path):
    artifact = edgeseq.export("seq-cnn", "onnx", out_dir=tmp_path, opset=18)
    assert onnx.load(artifact.path).opset_import[0].version == 18
    with pytest.raises(UnsupportedError, match="opset 5"):
        edgeseq.export("seq-cnn", "onnx", out_dir=tmp_path / "x", opset=5)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


class _BakesTime(torch.nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], int(x.shape[1]) * x.shape[2])  # int() freezes T into the trace


def test_a_specialized_time_axis_is_an_export_error(tmp_path):
    with pytest.raises(ExportError, match="specialized"):
        edgeseq.export(_BakesTime(), "onnx", out_dir=tmp_path, example_inputs=torch.randn(2, 37, 4),
                       input_names=["x"], output_names=["y"],
                       dynamic_axes={"x": {0: "batch", 1: "time"}, "y": {0: "batch"}})
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def _fixed_declared_axes(path, spec):
    """(tensor, axis name, size) for each axis the spec declares dynamic that the file's graph declares fixed."""
    model = onnx.load(path)
    out = []
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        for axis, name in spec.dynamic_axes.get(value.name, {}).items():
            if axis >= len(dims) or not dims[axis].dim_param:
                out.append((value.name, name, dims[axis].dim_value if axis < len(dims) else None))
    return out


@pytest.mark.parametrize("exporter", [e.value for e in OnnxExporter])
def test_every_exporter_ships_symbolic_axes_or_refuses(exporter, tmp_path):
    """What a file declares is what runtimes and users read: an exporter that fixed a declared axis (torch.export
    fixes T through nn.GRU on torch 2.13, declaring cbhg-lite's output [batch, 37, 128]) is an export error, and no
    file is left behind. Whatever ships declares every dynamic axis symbolic and runs at other lengths."""
    spec = edgeseq.get_model("cbhg-lite")
    try:
        artifact = edgeseq.export(spec, "onnx", out_dir=tmp_path, exporter=exporter)
    except ExportError as exc:
        assert exporter != "torchscript", exc  # the default exporter keeps every axis
        assert "specialized" in str(exc) or "dynamic" in str(exc)
        assert list(tmp_path.iterdir()) == []
        return
    assert _fixed_declared_axes(artifact.path, spec) == []
    assert edgeseq.check(artifact.path, "cbhg-lite", times=(1, 50, 300), batches=(1, 3)).passed


def test_user_module_exports_with_names_and_dynamic_axes(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.GELU(), torch.nn.Linear(5, 2))
    artifact = edgeseq.export(net, "onnx", out_dir=tmp_path, example_inputs=torch.randn(2, 9, 6),
                              input_names=["frames"], output_names=["logits"],
                              dynamic_axes={"frames": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}})
    with edgeseq.load(artifact.path) as runner:
        x = np.random.default_rng(0).standard_normal((4, 31, 6)).astype(np.float32)
        got = runner.infer({"frames": x})["logits"]
    with torch.inference_mode():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_module_without_examples_is_an_input_error(tmp_path):
    from edgeseq.errors import InputError

    with pytest.raises(InputError, match="example_inputs"):
        edgeseq.export(torch.nn.Linear(2, 2), "onnx", out_dir=tmp_path)


def test_unsupported_precision_is_clear(tmp_path):
    with pytest.raises(UnsupportedError, match="int8-dynamic"):
        edgeseq.export("cbhg-lite", "tensorrt", out_dir=tmp_path, precision="int8-dynamic")
    assert list(tmp_path.iterdir()) == []
