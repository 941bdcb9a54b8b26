"""Layer bisection names the PyTorch module whose ONNX counterpart was corrupted."""

import json

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
        ("ConvBank2d_bank/edgeseq.formats.rewrites.ConvBN2d_3/", "bank.convs.3.conv"),
        ("Projections2d_projections/edgeseq.formats.rewrites.ConvBN2d_1/", "projections.1.conv"),
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
    corrupt_tflite_weight(lite_tflite.path, bad, "ConvBank2d_bank/edgeseq.formats.rewrites.ConvBN2d_5/")
    proc = run_cli("check", str(bad), "--model", "cbhg-lite", "--times", "20", "--bisect")
    assert proc.returncode == 1
    assert "first divergent layer: bank.convs.5.conv" in proc.stdout
