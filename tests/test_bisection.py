"""Layer bisection names the PyTorch module whose ONNX counterpart was corrupted."""

import json
import re

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edgeseq
from edgeseq.errors import UnsupportedError


def corrupt_module_weight(src, dst, scope):
    """Scale part of the weight of the first node inside `scope` (e.g. '/bank/convs.3/')."""
    model = onnx.load(src)
    node = next(n for n in model.graph.node if n.name.startswith(scope) and len(n.input) > 1)
    init = next(i for i in model.graph.initializer if i.name in node.input[1:])
    arr = numpy_helper.to_array(init).copy()
    arr.flat[: max(1, arr.size // 8)] *= 2.0
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, dst)


@pytest.mark.parametrize(
    "scope, module",
    [
        ("/bank/convs.3/", "bank.convs.3.conv"),
        ("/projections/projections.1/", "projections.1.conv"),
        ("/highway/highway.1/h/", "highway.1.h"),
    ],
)
def test_names_the_corrupted_layer(lite_onnx, tmp_path, scope, module):
    bad = tmp_path / "bad.onnx"
    corrupt_module_weight(lite_onnx.path, bad, scope)
    assert not edgeseq.check(bad, "cbhg-lite", times=(20,), batches=(1,)).passed
    result = edgeseq.bisect(bad, edgeseq.get_model("cbhg-lite"), time=20)
    first = result.first_divergent
    assert first is not None and first.module.startswith(module), first
    assert first.rel_l2 > 1e-3
    # every layer before it matched
    before = result.layers[: result.layers.index(first)]
    assert before and all(layer.passed for layer in before)


def test_a_good_artifact_has_no_divergent_layer_and_fusions_are_recognised(lite_onnx):
    result = edgeseq.bisect(lite_onnx.path, edgeseq.get_model("cbhg-lite"), time=20)
    assert result.first_divergent is None
    assert len(result.layers) > 10
    assert any("fused with bn" in layer.module for layer in result.layers)  # BN folded into the conv by onnxslim
    assert json.loads(json.dumps(result.to_dict()))["first_divergent"] is None


def test_cli_check_bisect(run_cli, lite_onnx, tmp_path):
    bad = tmp_path / "bad.onnx"
    corrupt_module_weight(lite_onnx.path, bad, "/bank/convs.5/")
    proc = run_cli("check", str(bad), "--model", "cbhg-lite", "--times", "20", "--bisect", "--json",
                   str(tmp_path / "r.json"))
    assert proc.returncode == 1
    assert "first divergent layer: bank.convs.5.conv" in proc.stdout
    assert json.loads((tmp_path / "r.json").read_text())["bisect"]["first_divergent"]["module"].startswith(
        "bank.convs.5.conv")


def test_cli_check_bisect_judges_layers_by_the_device_profiles_tolerance(run_cli, lite_onnx, tmp_path):
    """A profile's [tolerances] is what the check failed against, so it is what the bisection judges layers by: a
    good artifact held to 1e-9 fails, and the layer that first exceeds 1e-9 is named (at the model's own 1e-5 no
    layer would be)."""
    profile = tmp_path / "strict.toml"
    profile.write_text('name = "strict"\nruntime = "onnxruntime"\ndelegate = "cpu"\n[transport]\nkind = "local"\n'
                       '[tolerances]\nfp32 = 1e-9\n')
    proc = run_cli("check", lite_onnx.path, "--model", "cbhg-lite", "--times", "20", "--device", str(profile),
                   "--bisect", "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "first divergent layer:" in proc.stdout
    assert json.loads((tmp_path / "r.json").read_text())["bisect"]["first_divergent"]["rel_l2"] > 1e-9


def test_bisect_other_formats_is_clear(tmp_path):
    path = tmp_path / "m.engine"
    path.write_bytes(b"not an engine" * 4)
    with pytest.raises(UnsupportedError, match="ONNX and TFLite only"):
        edgeseq.bisect(path, edgeseq.get_model("cbhg-lite"))


def corrupt_tflite_weight(src, dst, name_part, rank=4):
    """Scale part of a constant weight tensor of a .tflite in place: its bytes are found in the flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(src))
    detail = next(d for d in interp.get_tensor_details()
                  if name_part in d["name"] and len(d["shape"]) == rank and d["dtype"] == np.float32)
    weight = np.array(interp.get_tensor(detail["index"]))
    data = bytearray(open(src, "rb").read())
    at = data.find(weight.tobytes())
    assert at >= 0 and data.find(weight.tobytes(), at + 1) < 0, "weight bytes not unique in the file"
    bad = weight.copy()
    bad.flat[: max(1, bad.size // 8)] *= 2.0
    data[at: at + bad.nbytes] = bad.tobytes()
    open(dst, "wb").write(bytes(data))


@pytest.mark.parametrize(
    "name_part, module",
    [
        ("ConvBank2d_bank/edgeseq.formats.tflite.rewrites.ConvBN2d_3/", "bank.convs.3.conv"),
        ("Projections2d_projections/edgeseq.formats.tflite.rewrites.ConvBN2d_1/", "projections.1.conv"),
    ],
)
def test_tflite_names_the_corrupted_layer(lite_tflite, tmp_path, name_part, module):
    bad = tmp_path / "bad.tflite"
    corrupt_tflite_weight(lite_tflite.path, bad, name_part)
    assert not edgeseq.check(bad, "cbhg-lite", times=(20,), batches=(1,)).passed
    result = edgeseq.bisect(bad, edgeseq.get_model("cbhg-lite"), time=37)
    first = result.first_divergent
    assert first is not None and first.module.startswith(module), first
    before = result.layers[: result.layers.index(first)]
    assert before and all(layer.passed for layer in before)


def test_tflite_good_artifact_maps_the_layers(lite_tflite):
    result = edgeseq.bisect(lite_tflite.path, edgeseq.get_model("cbhg-lite"), time=37)
    assert result.first_divergent is None
    compared = {layer.module.split(" ")[0] for layer in result.layers}
    # the conv stack, the highway blocks and the GRU inside the WHILE loop are all matched to a tensor
    assert {"bank.convs.0", "pool", "projections.1", "highway.1", "gru.rnn"} <= compared


def test_tflite_gru_corruption_is_pinned_on_the_gru(lite_tflite, tmp_path):
    """A wrong GRU weight is blamed on gru.rnn, after every earlier layer passed."""
    bad = tmp_path / "bad.tflite"
    corrupt_tflite_weight(lite_tflite.path, bad, "LoopGRU_rnn", rank=2)
    first = edgeseq.bisect(bad, edgeseq.get_model("cbhg-lite"), time=37).first_divergent
    assert first is not None and first.module == "gru.rnn", first


def test_cli_check_bisect_tflite(run_cli, lite_tflite, tmp_path):
    bad = tmp_path / "bad.tflite"
    corrupt_tflite_weight(lite_tflite.path, bad, "ConvBank2d_bank/edgeseq.formats.tflite.rewrites.ConvBN2d_5/")
    proc = run_cli("check", str(bad), "--model", "cbhg-lite", "--times", "20", "--bisect")
    assert proc.returncode == 1
    assert "first divergent layer: bank.convs.5.conv" in proc.stdout


# --- the matrix bisects its own failures: `edgeseq export` names the layer, no second command --------------------

def test_matrix_names_the_divergent_layer_of_a_failing_export(monkeypatch, tmp_path):
    """An exporter that writes a wrong conv weight (simulated by corrupting the file it wrote) makes the row fail;
    the same run bisects it at its worst case and report.json / report.md / JUnit name bank.convs.3."""
    from edgeseq.formats import onnx as onnx_format
    from edgeseq.report import load_report, render_junit

    original = onnx_format.export

    def broken_export(spec, out_path, **kwargs):
        art = original(spec, out_path, **kwargs)
        corrupt_module_weight(art.path, art.path, "/bank/convs.3/")
        return art

    monkeypatch.setattr(onnx_format, "export", broken_export)
    report = edgeseq.run_matrix("cbhg-lite", out_dir=tmp_path, options=edgeseq.MatrixOptions(
        times=(20, 50), batches=(1,), iterations=2, warmup=0))
    assert not report.passed
    (found,) = report.bisections
    assert found.runtime == "onnxruntime-cpu" and found.artifact == str(tmp_path / "cbhg-lite.fp32.onnx")
    assert found.first_divergent.module.startswith("bank.convs.3"), found.first_divergent
    assert found.batch == 1 and found.time in (20, 50)  # the worst failing case of the sweep
    data = load_report(tmp_path / "report.json")
    assert data["bisections"][0]["first_divergent"]["module"].startswith("bank.convs.3")
    md = (tmp_path / "report.md").read_text()
    assert "## Which layer diverged" in md
    assert "`cbhg-lite.fp32.onnx` on onnxruntime-cpu (bisected at batch=1 T=" in md
    assert "first divergent layer: bank.convs.3" in md
    assert "first divergent layer: bank.convs.3" in render_junit(data)


def test_matrix_bisects_a_failing_pytorch_runtime_module_by_module(monkeypatch, tmp_path):
    """The CUDA rows are PyTorch runners: a failing one is compared module by module against the CPU original
    (here a CPU runner standing in for a CUDA one, its highway layer corrupted)."""
    import torch

    from edgeseq.formats import torch as torch_format
    from edgeseq.formats.torch import TorchRunner

    spec = edgeseq.get_model("cbhg-lite")
    broken = spec.build()
    with torch.no_grad():
        next(broken.highway[1].parameters()).mul_(3.0)

    class Stand(TorchRunner):
        @property
        def runtime(self):
            return "torch-cuda-fp16"

    monkeypatch.setattr(torch_format, "cuda_available", lambda: True)
    monkeypatch.setattr(torch_format, "cuda_runners", lambda spec, weights=None: [Stand(spec, module=broken)])
    report = edgeseq.run_matrix("cbhg-lite", out_dir=tmp_path, options=edgeseq.MatrixOptions(
        times=(20,), batches=(1,), iterations=2, warmup=0))
    (found,) = [b for b in report.bisections if b.runtime == "torch-cuda-fp16"]
    assert found.artifact == "" and found.first_divergent is not None
    assert found.first_divergent.module.startswith("highway"), found.first_divergent
    layers = [layer.module for layer in found.layers]
    assert all(layer.passed for layer in found.layers[:layers.index(found.first_divergent.module)])
    assert re.search(r"torch-cuda-fp16 \(bisected at batch=1 T=20 (speech|random)\): first divergent layer: highway",
                     (tmp_path / "report.md").read_text())


def test_a_format_bisection_cannot_read_gets_a_note_not_a_crash(tmp_path):
    from edgeseq.matrix import MatrixOptions, _bisect_failure
    from edgeseq.parity import OutputError, ParityCase, ParityResult, Tolerance

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine" * 4)
    bad = OutputError("encoded", 1.0, 0.5, 0.9, 10.0, Tolerance(1e-4), False, "rel L2 0.5 > 1e-4")
    par = ParityResult("cbhg-lite", "tensorrt-cuda", "fp32", str(engine), (ParityCase(1, 20, "speech", (bad,)),))
    track = type("T", (), {"say": lambda self, *a, **k: None})()
    row, found = _bisect_failure(par, edgeseq.get_model("cbhg-lite"), None, MatrixOptions(), track,
                                 artifact=engine, label=str(engine))
    assert found == [] and row.notes[-1].startswith("layer bisection not run: layer bisection is not available")
    off, none = _bisect_failure(par, edgeseq.get_model("cbhg-lite"), None, MatrixOptions(bisect=False), track,
                                artifact=engine, label=str(engine))
    assert none == [] and off is par


def test_diverged_for_good_is_where_the_error_never_came_back():
    """int8: a quantized conv can leave the output's tolerance and the error shrink again downstream; the verdict
    then also names where it left tolerance for good (here the layer after the last one that passed)."""
    from edgeseq.bisection import BisectResult, LayerError, verdict

    def layer(name, passed, rel):
        return LayerError(name, "Conv1d", name, rel, rel, passed)

    recovers = BisectResult("m", "a.onnx", "int8-static", (layer("bank.0", True, 1e-3), layer("bank.1", False, 2e-2),
                            layer("proj", True, 1e-2), layer("highway", False, 2e-2), layer("gru", False, 3e-2)), ())
    assert recovers.first_divergent.module == "bank.1" and recovers.diverged_for_good.module == "highway"
    line = verdict(recovers.to_dict())
    assert line.startswith("first divergent layer: bank.1") and "left it for good at highway (Conv1d)" in line
    straight = BisectResult("m", "a.onnx", "fp32", (layer("a", True, 0), layer("b", False, 1), layer("c", False, 1)), ())
    assert straight.diverged_for_good.module == "b" and "for good" not in verdict(straight.to_dict())
    ends_well = BisectResult("m", "a.onnx", "fp32", (layer("a", False, 1), layer("b", True, 0)), ())
    assert ends_well.diverged_for_good is None
    assert BisectResult.from_dict(json.loads(json.dumps(recovers.to_dict()))).diverged_for_good.module == "highway"
    # the bank's other convs finish after a corrupted bank.convs.0 and pass: they are parallel branches, not a
    # recovery; the error never left (bank, the concatenation, fails and so does all that follows)
    parallel = BisectResult("m", "a.onnx", "fp32", (
        layer("bank.convs.0.conv", False, 0.5), layer("bank.convs.1.conv", True, 0), layer("bank.convs.0", False, 0.5),
        layer("bank.convs.1", True, 0), layer("bank", False, 0.2), layer("proj", False, 0.1)), ())
    assert parallel.diverged_for_good.module == "bank.convs.0.conv" and "for good" not in verdict(parallel.to_dict())
